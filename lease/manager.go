package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Raft is what the manager needs of the region (raft.Region).
type Raft interface {
	NodeID() string
	IsLeader() bool
	Barrier(timeout time.Duration) error
	Apply(ctx context.Context, cmd []byte) (raft.Result, error)
}

// Store is the read side of the state store.
type Store interface {
	View(fn func(*storage.Tx) error) error
}

// AuditFunc returns the audit metadata (raft.Audited) of a lease change
// or dispatch, so it commits with its record; nil leaves it unaudited.
type AuditFunc func(ctx context.Context, action, entity, tenant string, detail any) ([]byte, error)

type actorKey struct{}

// WithActor names who asks for a dispatch, for its audit record.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// Actor is the actor WithActor set, or "system".
func Actor(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "system"
}

// Manager acquires, renews and releases this node's lease and issues its
// dispatches. Run drives it; Wake nudges it when leadership changes.
type Manager struct {
	cfg    Config
	raft   Raft
	store  Store
	fsm    *FSM
	clock  Clock
	logger *slog.Logger
	hub    *Hub
	audit  AuditFunc
	trace  func(Trace)
	wake   chan struct{}

	mu         sync.Mutex
	held       bool
	token      uint64 // the held token, or the last one held
	validUntil time.Time
	renewDue   time.Time
	released   bool // gave the lease up for a handoff; do not re-acquire
	waitLogged uint64
	waitSince  time.Time // when this leader began waiting out another's lease

	m *metrics
}

// Options are the parts of a Manager that are injected.
type Options struct {
	Clock  Clock
	Logger *slog.Logger
	Hub    *Hub
	Audit  AuditFunc
	// Trace, if set, is told of every lease entry this node sent to Raft
	// and how it ended: fault tests build their linearizability histories
	// from it.
	Trace func(Trace)
}

// Trace is one lease entry a node proposed: an acquisition (Token the one
// it replaces, NewToken the result), a release, or a dispatch (Token the
// one it carried). Err is Raft's or the FSM's answer.
type Trace struct {
	Op       OpKind // OpAcquire, OpRelease, or "dispatch"
	Node     string
	Token    uint64
	NewToken uint64
	ID       string
	Start    time.Time
	End      time.Time
	Err      error
}

// OpDispatch marks a dispatch in a Trace.
const OpDispatch OpKind = "dispatch"

// NewManager returns the manager of this node's lease.
func NewManager(cfg Config, r Raft, store Store, fsm *FSM, opts Options) *Manager {
	if opts.Clock == nil {
		opts.Clock = RealClock
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, raft: r, store: store, fsm: fsm, clock: opts.Clock, logger: opts.Logger,
		hub: opts.Hub, audit: opts.Audit, trace: opts.Trace, wake: make(chan struct{}, 1)}
	m.m = newMetrics(m)
	return m
}

// Config returns the timings in use.
func (m *Manager) Config() Config { return m.cfg }

// Wake makes the manager re-check leadership now (call it on every
// leader change).
func (m *Manager) Wake() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// idle is how often a non-leader re-checks, besides Wake.
const idle = 250 * time.Millisecond

// Run keeps the lease while this node leads, until ctx ends. It fences
// before it returns.
func (m *Manager) Run(ctx context.Context) {
	for {
		next := m.step(ctx)
		select {
		case <-ctx.Done():
			m.fence(fenceStopping, "node stopping")
			return
		case <-m.wake:
		case <-m.clock.After(next):
		}
	}
}

// step does one round of the lease's work and says when to come back.
func (m *Manager) step(ctx context.Context) time.Duration {
	if !m.raft.IsLeader() {
		m.fence(fenceDeposed, "this node is no longer the Raft leader")
		m.mu.Lock()
		m.released = false
		m.mu.Unlock()
		return idle
	}
	m.mu.Lock()
	held, released, validUntil, renewDue := m.held, m.released, m.validUntil, m.renewDue
	m.mu.Unlock()
	now := m.clock.Now()
	switch {
	case released:
		return idle
	case !held:
		return m.acquire(ctx)
	case !now.Before(validUntil):
		m.fence(fenceExpired, "the lease's last renewal is older than lease.duration - lease.drift_margin")
		return 0
	case !now.Before(renewDue):
		return m.renew(ctx)
	}
	return renewDue.Sub(now)
}

// acquire takes the lease once the previous one has run out on this
// node's clock, counted from when this node applied its last renewal.
func (m *Manager) acquire(ctx context.Context) time.Duration {
	// As leader, a barrier applies every committed entry: the lease read
	// next is the latest, and no stale-term acquisition can commit later.
	if err := m.raft.Barrier(2 * time.Second); err != nil {
		return 20 * time.Millisecond
	}
	var s State
	var seen time.Time
	_ = m.store.View(func(tx *storage.Tx) error {
		s, seen = m.fsm.Seen(tx)
		return nil
	})
	now := m.clock.Now()
	if s.Held() && s.Holder != m.raft.NodeID() {
		// The holder fences at Duration - margin after its renewal began,
		// which was before this node applied it: waiting Duration + margin
		// from the apply leaves 2×margin for clock rate and scheduling.
		if until := seen.Add(s.Duration() + m.cfg.DriftMargin); now.Before(until) {
			if m.waitLogged != s.Token {
				m.waitLogged, m.waitSince = s.Token, now
				m.logger.Info("leader waits out the previous dispatch lease before acquiring", "holder", s.Holder, "token", s.Token, "wait", until.Sub(now).Round(time.Millisecond))
			}
			return until.Sub(now)
		}
	}
	// A lease this node held itself (re-elected, or self-fenced while
	// leading) needs no wait: no other node acquired it since, or the read
	// above would show that.
	cmd, err := Op{Kind: OpAcquire, Node: m.raft.NodeID(), Token: s.Token, DurationMs: m.cfg.Duration.Milliseconds()}.Encode()
	if err != nil {
		m.logger.Error("encoding a lease acquisition failed", "err", err)
		return idle
	}
	cmd, err = m.audited(ctx, cmd, "lease.acquire", "lease", "", map[string]any{"previous_holder": s.Holder, "previous_token": s.Token})
	if err != nil {
		m.logger.Error("auditing a lease acquisition failed", "err", err)
		return idle
	}
	start := m.clock.Now()
	wall := time.Now()
	actx, cancel := context.WithTimeout(ctx, m.cfg.Duration-m.cfg.DriftMargin)
	res, err := m.raft.Apply(actx, cmd)
	cancel()
	if err == nil {
		err = res.Err
	}
	var ns State
	if err == nil && (json.Unmarshal(res.Value, &ns) != nil || ns.Holder != m.raft.NodeID()) {
		err = fmt.Errorf("%w: acquisition answered %q", ErrBadCommand, res.Value)
	}
	if m.trace != nil {
		m.trace(Trace{Op: OpAcquire, Node: m.raft.NodeID(), Token: s.Token, NewToken: ns.Token, Start: wall, End: time.Now(), Err: err})
	}
	if err != nil {
		if !errors.Is(err, ErrConflict) {
			m.logger.Warn("acquiring the dispatch lease failed; retrying", "err", err)
		}
		return 20 * time.Millisecond
	}
	m.m.acquisitions.Inc()
	if !m.waitSince.IsZero() {
		m.m.wait.Observe(m.clock.Now().Sub(m.waitSince).Seconds())
		m.waitSince = time.Time{}
	}
	m.mu.Lock()
	m.held, m.token = true, ns.Token
	m.validUntil = start.Add(m.cfg.Duration - m.cfg.DriftMargin)
	m.renewDue = start.Add(m.cfg.Duration / 3)
	m.mu.Unlock()
	m.logger.Info("acquired the dispatch lease", "token", ns.Token, "previous_holder", s.Holder, "previous_token", s.Token)
	return m.cfg.Duration / 3
}

// renew extends the lease; a renewal that cannot commit before the lease
// runs out on this node's clock fences it.
func (m *Manager) renew(ctx context.Context) time.Duration {
	m.mu.Lock()
	token, validUntil := m.token, m.validUntil
	m.mu.Unlock()
	cmd, err := Op{Kind: OpRenew, Node: m.raft.NodeID(), Token: token}.Encode()
	if err != nil {
		return idle
	}
	start := m.clock.Now()
	actx, cancel := context.WithTimeout(ctx, validUntil.Sub(start))
	res, err := m.raft.Apply(actx, cmd)
	cancel()
	if err == nil {
		err = res.Err
	}
	now := m.clock.Now()
	if err == nil {
		m.m.renewals.WithLabelValues("ok").Inc()
	} else {
		m.m.renewals.WithLabelValues("failed").Inc()
	}
	switch {
	case err == nil:
		m.mu.Lock()
		if m.held && m.token == token {
			m.validUntil = start.Add(m.cfg.Duration - m.cfg.DriftMargin)
			m.renewDue = start.Add(m.cfg.Duration / 3)
		}
		m.mu.Unlock()
		return max(0, start.Add(m.cfg.Duration/3).Sub(now))
	case IsStale(err):
		m.fence(fenceTakenOver, "the lease was taken over: "+err.Error())
		return 0
	case !now.Before(validUntil):
		m.fence(fenceRenewal, "renewal did not commit before lease.duration - lease.drift_margin: "+err.Error())
		return 0
	}
	if errors.Is(err, raft.ErrShutdown) {
		// This node is stopping: the lease is given up with it (fenced
		// as "node stopping"), nothing an operator need act on.
		m.logger.Info("renewing the dispatch lease failed: this node is stopping", "err", err)
		return 20 * time.Millisecond
	}
	m.logger.Warn("renewing the dispatch lease failed; retrying", "err", err)
	return 20 * time.Millisecond
}

// fence stops this node dispatching at once.
func (m *Manager) fence(kind, reason string) {
	m.mu.Lock()
	was := m.held
	m.held = false
	token := m.token
	m.mu.Unlock()
	if was {
		m.m.fences.WithLabelValues(kind).Inc()
		// A node that stops on purpose gives its lease up as designed:
		// said at info. Every other fence is a failure an operator
		// should hear of.
		log := m.logger.Warn
		if kind == fenceStopping {
			log = m.logger.Info
		}
		log("stopped dispatching (self-fenced)", "token", token, "reason", reason)
		m.hub.Publish(Event{Kind: EventFenced, Node: m.raft.NodeID(), Reason: reason})
	}
}

// Holding returns the token this node may dispatch with now, or false:
// not the holder, its lease has run out on its own clock, or Raft no
// longer reports this node as leader. The last is asked on every call
// (and fences) rather than left to the next step, which may be up to
// Duration/3 away: a deposed leader must stop dispatching at once.
func (m *Manager) Holding() (uint64, bool) {
	if !m.raft.IsLeader() {
		m.fence(fenceDeposed, "this node is no longer the Raft leader")
		return 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.held || !m.clock.Now().Before(m.validUntil) {
		return 0, false
	}
	return m.token, true
}

// ExpiresIn is how long this node's lease has left on its own clock (0
// when it holds none).
func (m *Manager) ExpiresIn() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.held {
		return 0
	}
	return max(0, m.validUntil.Sub(m.clock.Now()))
}

// Release gives the lease up for a handoff (a leadership transfer or a
// graceful stop): the next leader need not wait it out. This node does
// not re-acquire while it stays leader.
func (m *Manager) Release(ctx context.Context) error {
	m.mu.Lock()
	held, token := m.held, m.token
	m.held, m.released = false, true
	m.mu.Unlock()
	if !held {
		return ErrNotHolder
	}
	m.hub.Publish(Event{Kind: EventFenced, Node: m.raft.NodeID(), Reason: "released for a handoff"})
	cmd, err := Op{Kind: OpRelease, Node: m.raft.NodeID(), Token: token}.Encode()
	if err != nil {
		return err
	}
	if cmd, err = m.audited(ctx, cmd, "lease.release", "lease", "", map[string]any{"token": token}); err != nil {
		return err
	}
	wall := time.Now()
	res, err := m.raft.Apply(ctx, cmd)
	if err == nil {
		err = res.Err
	}
	if m.trace != nil {
		m.trace(Trace{Op: OpRelease, Node: m.raft.NodeID(), Token: token, Start: wall, End: time.Now(), Err: err})
	}
	return err
}

// Resume lets a node that released the lease acquire it again (a handoff
// that did not happen).
func (m *Manager) Resume() {
	m.mu.Lock()
	m.released = false
	m.mu.Unlock()
	m.Wake()
}

// Dispatch issues d under this node's lease: stamps the token and issuer,
// commits it through Raft (with its audit record) and returns it as
// committed. tenant is the caller's handle for a tenant's dispatch (zero
// for a region-wide one). A retry with the same id returns the original.
func (m *Manager) Dispatch(ctx context.Context, tenant storage.Tenant, d Dispatch) (Dispatch, error) {
	token, ok := m.Holding()
	if !ok {
		return Dispatch{}, ErrNotHolder
	}
	return m.issue(ctx, tenant, d, token, "dispatch.issue")
}

// StaleProbe is a failover drill's check of the fencing: it proposes a
// dispatch with the last token this node held, skipping its own fence,
// so the FSM must be the one to refuse it. It returns the dispatch as
// sent (with its id, so the drill can later check it never committed).
func (m *Manager) StaleProbe(ctx context.Context) (Dispatch, error) {
	return m.StaleProbeID(ctx, "")
}

// StaleProbeID is StaleProbe with the dispatch id chosen by the caller: a
// drill whose call failed or timed out can still look that id up
// (committed would be a fencing failure). An empty id is made here. The
// caller must choose an id no other dispatch uses: a retry of a committed
// id is answered with that dispatch.
func (m *Manager) StaleProbeID(ctx context.Context, id string) (Dispatch, error) {
	if id == "" {
		id = "stale-" + m.raft.NodeID() + "-" + randomID()
	}
	m.mu.Lock()
	token := m.token
	m.mu.Unlock()
	d := Dispatch{ID: id, Kind: "drill.stale", Selector: "none"}
	out, err := m.issue(ctx, storage.Tenant{}, d, token, "dispatch.issue")
	if err != nil {
		d.Token, d.Node = token, m.raft.NodeID()
		return d, err
	}
	return out, nil
}

func (m *Manager) issue(ctx context.Context, tenant storage.Tenant, d Dispatch, token uint64, action string) (Dispatch, error) {
	d.Tenant = ""
	if tenant.Valid() {
		d.Tenant = tenant.ID()
	}
	if d.ID == "" {
		d.ID = randomID()
	}
	d.Token, d.Node, d.Issued, d.Index = token, m.raft.NodeID(), time.Now().UTC(), 0
	// A retry of a dispatch this node already applied is answered from
	// the state file, without a second entry or audit record. (The FSM
	// dedupes by id too, for retries that race the first.)
	var prev []byte
	_ = m.store.View(func(tx *storage.Tx) error {
		if idx, found, _ := lookupRef(tx, d.Tenant, d.ID); found {
			prev = getDispatch(tx, d.Tenant, idx)
		}
		return nil
	})
	if prev != nil {
		var out Dispatch
		if err := json.Unmarshal(prev, &out); err == nil {
			return out, nil
		}
	}
	cmd, err := d.Encode()
	if err != nil {
		return Dispatch{}, err
	}
	cmd, err = m.audited(ctx, cmd, action, "dispatch/"+d.ID, d.Tenant, map[string]any{
		"kind": d.Kind, "selector": d.Selector, "token": d.Token, "payload_bytes": len(d.Payload)})
	if err != nil {
		return Dispatch{}, err
	}
	wall := time.Now()
	res, err := m.raft.Apply(ctx, cmd)
	if err == nil {
		err = res.Err
	}
	if m.trace != nil {
		m.trace(Trace{Op: OpDispatch, Node: d.Node, Token: d.Token, ID: d.ID, Start: wall, End: time.Now(), Err: err})
	}
	if IsStale(err) {
		m.m.stale.Inc()
	}
	if err != nil {
		return Dispatch{}, err
	}
	var out Dispatch
	if err := json.Unmarshal(res.Value, &out); err != nil {
		return Dispatch{}, fmt.Errorf("reading the committed dispatch: %w", err)
	}
	return out, nil
}

func (m *Manager) audited(ctx context.Context, cmd []byte, action, entity, tenant string, detail any) ([]byte, error) {
	if m.audit == nil {
		return cmd, nil
	}
	meta, err := m.audit(ctx, action, entity, tenant, detail)
	if err != nil {
		return nil, err
	}
	return raft.Audited(meta, cmd)
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Status is the lease as this node sees it.
type Status struct {
	State
	// Refused counts stale entries the FSM refused.
	Refused uint64
	// ExpiresIn: on the holder, what its own clock leaves of the lease;
	// elsewhere, Duration since this node applied the last renewal.
	ExpiresIn time.Duration
	// HeldHere: this node holds the lease and may dispatch now.
	HeldHere bool
}

// Status returns the lease as this node sees it.
func (m *Manager) Status() Status {
	var st Status
	var seen time.Time
	_ = m.store.View(func(tx *storage.Tx) error {
		st.State, seen = m.fsm.Seen(tx)
		_, st.Refused = ReadState(tx)
		return nil
	})
	if token, ok := m.Holding(); ok && token == st.Token {
		st.HeldHere, st.ExpiresIn = true, m.ExpiresIn()
	} else if st.Held() {
		st.ExpiresIn = max(0, seen.Add(st.Duration()).Sub(m.clock.Now()))
	}
	return st
}
