package lease

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/outpost-mesh/outpost/raft"
)

// Command types of the lease (raft custom commands; node/auth has 64/65).
const (
	// CmdLease acquires, renews or releases the lease (Op).
	CmdLease raft.CommandType = 66
	// CmdDispatch is one fenced dispatch (Dispatch).
	CmdDispatch raft.CommandType = 67
)

// Errors callers match with errors.Is, also on a node that forwarded
// the write (each is registered with raft.RegisterError in init).
var (
	// ErrStaleToken: the FSM refused an entry whose fencing token is not
	// the current one, or whose issuer does not hold the lease.
	ErrStaleToken = errors.New("stale fencing token")
	// ErrConflict: an acquisition named a token that is no longer current
	// (someone else acquired first).
	ErrConflict = errors.New("lease changed since it was read")
	// ErrNotHolder: this node does not hold the lease (or has fenced
	// itself); dispatch on the holder (GET /api/v1/region names it).
	ErrNotHolder = errors.New("this node does not hold the dispatch lease")
	// ErrBadCommand marks a lease or dispatch entry that does not decode
	// or validate.
	ErrBadCommand = errors.New("malformed lease command")
)

func init() {
	raft.RegisterError("lease.stale_token", ErrStaleToken)
	raft.RegisterError("lease.conflict", ErrConflict)
	raft.RegisterError("lease.not_holder", ErrNotHolder)
	raft.RegisterError("lease.bad_command", ErrBadCommand)
}

// IsStale reports whether err is the FSM's refusal of a stale token,
// also when reported by the leader for a forwarded write (the error
// crosses nodes by its registered code, raft.RegisterError).
func IsStale(err error) bool { return errors.Is(err, ErrStaleToken) }

// OpKind is what an Op does to the lease.
type OpKind string

const (
	OpAcquire OpKind = "acquire" // take the lease; Token is the one it replaces
	OpRenew   OpKind = "renew"   // extend it; Token is the held one
	OpRelease OpKind = "release" // give it up (graceful handoff); Token is the held one
)

// Op is the payload of a CmdLease entry.
type Op struct {
	Kind       OpKind `json:"op"`
	Node       string `json:"node"`
	Token      uint64 `json:"token"`
	DurationMs int64  `json:"duration_ms,omitempty"`
}

// maxEntry caps an encoded lease entry: a dispatch's payload plus its
// fields.
const maxEntry = MaxPayload + 8<<10

// Limits of a Dispatch.
const (
	MaxPayload     = 256 << 10
	MaxSelectorLen = 1024
)

var (
	idPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	kindPattern = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,63}$`)
	nodePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

func (o Op) validate() error {
	switch o.Kind {
	case OpAcquire:
		if o.DurationMs < 1 || o.DurationMs > int64(maxDuration/time.Millisecond) {
			return fmt.Errorf("%w: acquire duration %dms out of range", ErrBadCommand, o.DurationMs)
		}
	case OpRenew, OpRelease:
		if o.DurationMs != 0 {
			return fmt.Errorf("%w: %s carries no duration", ErrBadCommand, o.Kind)
		}
	default:
		return fmt.Errorf("%w: unknown lease op %q", ErrBadCommand, o.Kind)
	}
	if !nodePattern.MatchString(o.Node) {
		return fmt.Errorf("%w: bad node id", ErrBadCommand)
	}
	return nil
}

// Encode returns the log entry bytes: type, then JSON.
func (o Op) Encode() ([]byte, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	return raft.EncodeJSON(CmdLease, o)
}

// DecodeOp parses the payload of a CmdLease entry. It never panics on
// hostile input.
func DecodeOp(data []byte) (Op, error) {
	var o Op
	if err := decodeStrict(data, &o); err != nil {
		return o, err
	}
	return o, o.validate()
}

// Dispatch is one fenced instruction to agents: the unit config pushes,
// probe sets and package offers build on.
type Dispatch struct {
	// ID is unique in its scope (the tenant's, or the region-wide one):
	// a retry with the same id in the same scope is recognised and not
	// applied twice; another tenant may use the same id for its own.
	ID string `json:"id"`
	// Tenant is the owning tenant; empty for a region-wide dispatch.
	Tenant string `json:"tenant,omitempty"`
	// Selector picks the target agents (free-form until agents exist).
	Selector string `json:"selector"`
	// Kind names what the dispatch does ("config", "probe_set", …).
	Kind    string          `json:"kind"`
	Payload json.RawMessage `json:"payload,omitempty"`
	// Token is the fencing token it was issued under; Node the issuer.
	Token uint64 `json:"token"`
	Node  string `json:"node"`
	// Issued is the issuer's wall clock (informational).
	Issued time.Time `json:"issued"`
	// Index is the Raft index it committed at (set by the FSM).
	Index uint64 `json:"index,omitempty"`
}

// Validate checks the dispatch's fields.
func (d Dispatch) Validate() error {
	switch {
	case !idPattern.MatchString(d.ID):
		return fmt.Errorf("%w: id must be 1..64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)", ErrBadCommand)
	case !kindPattern.MatchString(d.Kind):
		return fmt.Errorf("%w: kind must be 1..64 of a-z 0-9 . _ - (starting with a letter)", ErrBadCommand)
	case len(d.Selector) > MaxSelectorLen:
		return fmt.Errorf("%w: selector exceeds %d bytes", ErrBadCommand, MaxSelectorLen)
	case len(d.Payload) > MaxPayload:
		return fmt.Errorf("%w: payload exceeds %d bytes", ErrBadCommand, MaxPayload)
	case len(d.Payload) > 0 && !json.Valid(d.Payload):
		return fmt.Errorf("%w: payload is not JSON", ErrBadCommand)
	case !nodePattern.MatchString(d.Node):
		return fmt.Errorf("%w: bad issuing node id", ErrBadCommand)
	case d.Tenant != "" && len(d.Tenant) > 32:
		return fmt.Errorf("%w: bad tenant id", ErrBadCommand)
	}
	return nil
}

// Encode returns the log entry bytes: type, then JSON.
func (d Dispatch) Encode() ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return raft.EncodeJSON(CmdDispatch, d)
}

// DecodeDispatch parses the payload of a CmdDispatch entry.
func DecodeDispatch(data []byte) (Dispatch, error) {
	var d Dispatch
	if err := decodeStrict(data, &d); err != nil {
		return d, err
	}
	return d, d.Validate()
}

func decodeStrict(data []byte, v any) error {
	return raft.DecodeStrictJSON(data, maxEntry, v, ErrBadCommand)
}
