package lease

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Buckets of the lease and of dispatches.
var (
	// BucketLease holds "current" (State) and "refused" (the count of
	// stale entries the FSM refused, big-endian uint64).
	BucketLease = []byte("lease")
	// BucketDispatches holds region-wide dispatches by index; a tenant's
	// dispatches are in its own bucket of the same name.
	BucketDispatches = []byte("dispatches")
	// BucketDispatchIDs maps a dispatch id to its index (big-endian
	// uint64), per scope: region-wide ids in the region's bucket, a
	// tenant's in its own bucket of the same name. Ids are unique within
	// a scope only, so one tenant's ids tell another nothing.
	BucketDispatchIDs = []byte("dispatch_ids")

	keyCurrent = []byte("current")
	keyRefused = []byte("refused")
)

// State is the lease as the FSM holds it.
type State struct {
	Holder     string `json:"holder"`
	Token      uint64 `json:"token"`
	DurationMs int64  `json:"duration_ms"`
	Renewals   uint64 `json:"renewals"`
	Released   bool   `json:"released"`
	// Index is the Raft index of the acquisition.
	Index uint64 `json:"index"`
}

// Held reports whether a node holds the lease (it may have expired on
// the clocks; only the token check is authoritative).
func (s State) Held() bool { return s.Holder != "" && !s.Released }

// Duration is the lease's duration as its holder acquired it.
func (s State) Duration() time.Duration { return time.Duration(s.DurationMs) * time.Millisecond }

// key identifies one applied version of the lease: a change of any part
// is a renewal, acquisition or release this node applied.
func (s State) key() [3]uint64 {
	rel := uint64(0)
	if s.Released {
		rel = 1
	}
	return [3]uint64{s.Token, s.Renewals, rel}
}

// ReadState returns the lease in tx (the zero State before the first
// acquisition) and how many stale entries the FSM has refused.
func ReadState(tx *storage.Tx) (State, uint64) {
	var s State
	if b := tx.Get(BucketLease, keyCurrent); b != nil {
		_ = json.Unmarshal(b, &s)
	}
	var refused uint64
	if b := tx.Get(BucketLease, keyRefused); len(b) == 8 {
		refused = binary.BigEndian.Uint64(b)
	}
	return s, refused
}

// FSM applies lease and dispatch entries. Besides the replicated state it
// keeps one local, non-replicated fact: when this node applied the lease
// version it last saw, on its own monotonic clock (Seen).
type FSM struct {
	node  string
	hub   *Hub
	clock Clock

	mu   sync.Mutex
	seen seenAt
}

type seenAt struct {
	key [3]uint64
	at  time.Time
	ok  bool
}

// NewFSM returns the lease FSM of node; hub receives committed lease
// changes and dispatches.
func NewFSM(node string, hub *Hub, clock Clock) *FSM {
	if clock == nil {
		clock = RealClock
	}
	return &FSM{node: node, hub: hub, clock: clock}
}

// Handlers are the raft command handlers to register in raft.Config.
func (f *FSM) Handlers() map[raft.CommandType]raft.HandlerFunc {
	return map[raft.CommandType]raft.HandlerFunc{CmdLease: f.applyOp, CmdDispatch: f.applyDispatch}
}

// Seen returns the lease in tx and when this node applied that version of
// it. A version it did not see applied (it was restored from a snapshot,
// or applied before a restart) counts from now: the conservative choice.
func (f *FSM) Seen(tx *storage.Tx) (State, time.Time) {
	s, _ := ReadState(tx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.seen.ok || f.seen.key != s.key() {
		f.seen = seenAt{key: s.key(), at: f.clock.Now(), ok: true}
	}
	return s, f.seen.at
}

func (f *FSM) noteApplied(s State) {
	f.mu.Lock()
	f.seen = seenAt{key: s.key(), at: f.clock.Now(), ok: true}
	f.mu.Unlock()
}

func (f *FSM) applyOp(tx *storage.Tx, index uint64, payload []byte) ([]byte, error) {
	op, err := DecodeOp(payload)
	if err != nil {
		return nil, err
	}
	s, _ := ReadState(tx)
	switch op.Kind {
	case OpAcquire:
		if op.Token != s.Token {
			return nil, fmt.Errorf("%w: the lease token is %d, not %d", ErrConflict, s.Token, op.Token)
		}
		s = State{Holder: op.Node, Token: s.Token + 1, DurationMs: op.DurationMs, Index: index}
	case OpRenew, OpRelease:
		if !s.Held() || op.Token != s.Token || op.Node != s.Holder {
			return nil, f.refuse(tx, op.Node, op.Token, s)
		}
		if op.Kind == OpRenew {
			s.Renewals++
		} else {
			s.Released = true
		}
	}
	b, _ := json.Marshal(s)
	if err := tx.Put(BucketLease, keyCurrent, b); err != nil {
		return nil, err
	}
	tx.OnCommit(func() {
		f.noteApplied(s)
		if op.Kind != OpRenew {
			st := s
			f.hub.Publish(Event{Kind: EventLease, Node: f.node, Lease: &st})
		}
	})
	return b, nil
}

// refuse counts a stale entry and returns the error its writer sees.
func (f *FSM) refuse(tx *storage.Tx, node string, token uint64, s State) error {
	_, n := ReadState(tx)
	_ = tx.Put(BucketLease, keyRefused, binary.BigEndian.AppendUint64(nil, n+1))
	holder := s.Holder
	if !s.Held() {
		holder = "nobody (released)"
	}
	return fmt.Errorf("%w: %s sent token %d; the lease is held by %s with token %d", ErrStaleToken, node, token, holder, s.Token)
}

func (f *FSM) applyDispatch(tx *storage.Tx, index uint64, payload []byte) ([]byte, error) {
	d, err := DecodeDispatch(payload)
	if err != nil {
		return nil, err
	}
	s, _ := ReadState(tx)
	if !s.Held() || d.Token != s.Token || d.Node != s.Holder {
		return nil, f.refuse(tx, d.Node, d.Token, s)
	}
	if idx, found, err := lookupRef(tx, d.Tenant, d.ID); err != nil {
		return nil, err
	} else if found {
		// A retry of a committed dispatch of this scope: answer with the
		// original. Another tenant's use of the id is not looked at.
		return getDispatch(tx, d.Tenant, idx), nil
	}
	d.Index = index
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	idx := binary.BigEndian.AppendUint64(nil, index)
	if err := putRef(tx, d.Tenant, d.ID, idx); err != nil {
		return nil, err
	}
	if err := putDispatch(tx, d.Tenant, idx, b); err != nil {
		return nil, err
	}
	tx.OnCommit(func() {
		dd := d
		f.hub.Publish(Event{Kind: EventDispatch, Node: f.node, Dispatch: &dd})
	})
	return b, nil
}

// lookupRef reads the id index of one scope (tenant "" is the region):
// the index key of the dispatch with that id, if one committed there.
func lookupRef(tx *storage.Tx, tenant, id string) (idx []byte, found bool, err error) {
	if tenant == "" {
		owner, idx, found, err := parseRef(tx.Get(BucketDispatchIDs, []byte(id)))
		if owner != "" {
			// A tenant's id in the layout before ids were scoped: not
			// the region's.
			return nil, false, err
		}
		return idx, found, err
	}
	h, err := storage.Scope(tenant)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	if ref := tx.Tenant(h).Get(BucketDispatchIDs, []byte(id)); ref != nil {
		_, idx, found, err := parseRef(ref)
		return idx, found, err
	}
	// The layout before ids were scoped kept every id in the region's
	// bucket as "TENANT/" + index: a retry of such a dispatch of this
	// tenant is still recognised. Only an entry naming this tenant counts.
	owner, idx, found, err := parseRef(tx.Get(BucketDispatchIDs, []byte(id)))
	if err != nil || !found || owner != tenant {
		return nil, false, nil
	}
	return idx, true, nil
}

// parseRef decodes an id index value: a big-endian index, or the older
// "TENANT/" + index, whose owner it returns.
func parseRef(ref []byte) (owner string, idx []byte, found bool, err error) {
	switch {
	case ref == nil:
		return "", nil, false, nil
	case len(ref) == 8:
		return "", ref, true, nil
	case len(ref) > 8 && ref[len(ref)-9] == '/':
		return string(ref[:len(ref)-9]), ref[len(ref)-8:], true, nil
	}
	return "", nil, false, fmt.Errorf("%w: damaged dispatch id index", ErrBadCommand)
}

// putRef records id in its scope's id index.
func putRef(tx *storage.Tx, tenant, id string, idx []byte) error {
	if tenant == "" {
		return tx.Put(BucketDispatchIDs, []byte(id), idx)
	}
	h, err := storage.Scope(tenant)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return tx.Tenant(h).Put(BucketDispatchIDs, []byte(id), idx)
}

// putDispatch stores a dispatch in the region bucket or, for a tenant's,
// through the tenant handle re-created from the committed entry (the API
// built the entry from the caller's handle).
func putDispatch(tx *storage.Tx, tenant string, idx, b []byte) error {
	if tenant == "" {
		return tx.Put(BucketDispatches, idx, b)
	}
	h, err := storage.Scope(tenant)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return tx.Tenant(h).Put(BucketDispatches, idx, b)
}

func getDispatch(tx *storage.Tx, tenant string, idx []byte) []byte {
	if tenant == "" {
		return append([]byte(nil), tx.Get(BucketDispatches, idx)...)
	}
	h, err := storage.Scope(tenant)
	if err != nil {
		return nil
	}
	return append([]byte(nil), tx.Tenant(h).Get(BucketDispatches, idx)...)
}

// List returns up to limit committed dispatches after index `after`, in
// log order: the region-wide ones, or those of the tenant handle h.
func List(tx *storage.Tx, h storage.Tenant, after uint64, limit int) []Dispatch {
	var out []Dispatch
	start := binary.BigEndian.AppendUint64(nil, after+1)
	fn := func(k, v []byte) bool {
		if len(k) != 8 || string(k) < string(start) {
			return true
		}
		var d Dispatch
		if json.Unmarshal(v, &d) == nil {
			out = append(out, d)
		}
		return len(out) < limit
	}
	if h.Valid() {
		tx.Tenant(h).ForEach(BucketDispatches, nil, fn)
	} else {
		tx.ForEach(BucketDispatches, nil, fn)
	}
	return out
}

// Latest returns up to limit of the newest committed dispatches, newest
// first: the region-wide ones, or those of the tenant handle h.
func Latest(tx *storage.Tx, h storage.Tenant, limit int) []Dispatch {
	var out []Dispatch
	fn := func(k, v []byte) bool {
		var d Dispatch
		if len(k) == 8 && json.Unmarshal(v, &d) == nil {
			out = append(out, d)
		}
		return len(out) < limit
	}
	if h.Valid() {
		tx.Tenant(h).ForEachReverse(BucketDispatches, fn)
	} else {
		tx.ForEachReverse(BucketDispatches, fn)
	}
	return out
}

// LatestOf is Latest for the scope a delivered dispatch names: tenant
// is the tenant id a dispatch or an agent certificate carries ("" for
// region-wide). An invalid id yields nothing.
func LatestOf(tx *storage.Tx, tenant string, limit int) []Dispatch {
	var h storage.Tenant
	if tenant != "" {
		var err error
		if h, err = storage.Scope(tenant); err != nil {
			return nil
		}
	}
	return Latest(tx, h, limit)
}

// Lookup finds a committed dispatch by id in one scope: the region-wide
// dispatches (zero handle) or those of the tenant handle h. Drills use it
// to check that a stale dispatch never committed. It never looks at
// another scope, so an answer says nothing about other tenants' ids.
func Lookup(tx *storage.Tx, h storage.Tenant, id string) (index uint64, ok bool) {
	idx, found, err := lookupRef(tx, h.ID(), id)
	if !found || err != nil {
		return 0, false
	}
	return binary.BigEndian.Uint64(idx), true
}
