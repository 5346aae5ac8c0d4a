package agents

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// CmdAgents is the raft command type of agent state changes that every
// node must react to when they commit (revocation closes live
// connections) or that need a decision in the FSM (presence: an agent
// showing up from two addresses at once is flagged by the FSM, which
// sees every node's attachments in log order).
const CmdAgents raft.CommandType = 68

// More buckets.
var (
	BucketPresence       = []byte("agent_presence")        // agent id -> Presence
	BucketDispatchStatus = []byte("agent_dispatch_status") // dispatch id "/" agent id -> ConfigStatus
	BucketInstanceUIDs   = []byte("agent_instance_uids")   // tenant/instance uid an agent reported -> agent id (older entries: uid -> id)
)

// Presence kinds.
const (
	Attach    = "attach"     // an agent connected to Node over Conn from Addr
	Detach    = "detach"     // that connection closed
	Update    = "update"     // the agent reported new Info on Conn
	Seen      = "seen"       // Node still holds connections to Agents
	Status    = "status"     // the agent reported how a dispatch went
	NodeReset = "node_reset" // Node restarted: none of its earlier connections exist
)

// Flag kinds: a known certificate doing something its agent should not.
const (
	FlagTwoAddresses = "two_addresses" // connected from two addresses at once
	FlagNewAddress   = "new_address"   // connected from an address never seen for it
	FlagInstanceUID  = "instance_uid"  // reported another agent's instance uid
)

// Config statuses an agent reports for a dispatch.
const (
	ConfigApplied = "applied"
	ConfigFailed  = "failed"
	ConfigRefused = "refused" // stale fencing token: the agent had seen a higher one
)

// Bounds on what presence keeps.
const (
	maxAddrs        = 8
	maxFlags        = 16
	MaxPresenceOps  = 512
	maxOpBytes      = 1 << 20 // the node port's frame cap
	maxStatusErrLen = 512
	// SeenEvery is how often a node confirms the agents it holds; a
	// connection not confirmed for two of these is not counted as live
	// when another shows up.
	SeenEvery = 30 * time.Second
)

// LinkInfo is what an agent says about itself over its control link
// (informational: the node knows the agent by its certificate).
type LinkInfo struct {
	Host         string  `json:"host,omitempty"`
	Version      string  `json:"version,omitempty"`
	Mode         string  `json:"mode,omitempty"`        // ebpf | procfs
	ModeReason   string  `json:"mode_reason,omitempty"` // why procfs
	OS           string  `json:"os,omitempty"`
	Arch         string  `json:"arch,omitempty"`
	InstanceUID  string  `json:"instance_uid,omitempty"`
	Capabilities uint64  `json:"capabilities,omitempty"`
	Healthy      bool    `json:"healthy"`
	Health       string  `json:"health,omitempty"`
	RTTMs        float64 `json:"rtt_ms,omitempty"`
	// HealthKnown and RTTKnown say the agent reported its health (it
	// announced ReportsHealth) and its RTT: zero values are not reports.
	HealthKnown bool `json:"health_known,omitempty"`
	RTTKnown    bool `json:"rtt_known,omitempty"`
}

// HealthText is the health shown for a connected agent: "" when the
// agent never reported it, else "healthy" or "unhealthy[: reason]".
func (i LinkInfo) HealthText() string {
	switch {
	case !i.HealthKnown:
		return ""
	case i.Healthy:
		return "healthy"
	case i.Health != "":
		return "unhealthy: " + i.Health
	}
	return "unhealthy"
}

// CapabilityNames lists the capabilities the agent announced, by their
// OpAMP names without the prefix ("ReportsStatus"); a bit OpAMP does not
// name is shown in hex.
func (i LinkInfo) CapabilityNames() []string {
	var out []string
	for bit := uint64(1); bit != 0 && bit <= i.Capabilities; bit <<= 1 {
		if i.Capabilities&bit == 0 {
			continue
		}
		name, ok := protobufs.AgentCapabilities_name[int32(bit)]
		if !ok {
			name = "0x" + strconv.FormatUint(bit, 16)
		}
		out = append(out, strings.TrimPrefix(name, "AgentCapabilities_"))
	}
	return out
}

// RTT is the reported RTT in milliseconds, nil when none was reported.
func (i LinkInfo) RTT() *float64 {
	if !i.RTTKnown {
		return nil
	}
	v := i.RTTMs
	return &v
}

// ConfigStatus is the outcome an agent reported for a dispatch.
type ConfigStatus struct {
	Dispatch string    `json:"dispatch"`
	Token    uint64    `json:"token"`
	Status   string    `json:"status"`
	Error    string    `json:"error,omitempty"`
	Node     string    `json:"node"`
	At       time.Time `json:"at"`
}

// Flag records a certificate seen where it should not be.
type Flag struct {
	Kind   string    `json:"kind"`
	At     time.Time `json:"at"`
	Node   string    `json:"node"`
	Addr   string    `json:"addr"`
	Detail string    `json:"detail"`
	// Tenanted marks an instance_uid flag raised since uids are kept per
	// tenant: its detail names only an agent of the same tenant.
	Tenanted bool `json:"tenanted,omitempty"`
}

// Presence is where an agent is attached, as recorded through Raft.
type Presence struct {
	Node     string        `json:"node,omitempty"` // "" while detached
	Conn     string        `json:"conn,omitempty"`
	Addr     string        `json:"addr,omitempty"`
	Since    time.Time     `json:"since,omitzero"`
	LastSeen time.Time     `json:"last_seen,omitzero"`
	Info     LinkInfo      `json:"info"`
	Addrs    []string      `json:"addrs,omitempty"` // distinct source addresses, newest last
	Flags    []Flag        `json:"flags,omitempty"`
	Config   *ConfigStatus `json:"config,omitempty"`
}

// PresenceOp is one presence change.
type PresenceOp struct {
	Kind   string        `json:"kind"`
	Agent  string        `json:"agent,omitempty"`
	Node   string        `json:"node"`
	Conn   string        `json:"conn,omitempty"`
	Addr   string        `json:"addr,omitempty"`
	At     time.Time     `json:"at"`
	Info   *LinkInfo     `json:"info,omitempty"`
	Status *ConfigStatus `json:"status,omitempty"`
	Agents []string      `json:"agents,omitempty"`
}

// RevokeOp revokes an agent.
type RevokeOp struct {
	Agent string    `json:"agent"`
	At    time.Time `json:"at"`
	By    string    `json:"by"`
}

// RenewOp replaces an agent's certificate: it applies only while the
// agent is not revoked and still has the certificate Old.
type RenewOp struct {
	Agent       string    `json:"agent"`
	Old         string    `json:"old"`
	Fingerprint string    `json:"fingerprint"`
	Expires     time.Time `json:"expires"`
	KeyHash     string    `json:"key_hash,omitempty"`
	Cert        string    `json:"cert,omitempty"`
}

// ClearFlagsOp acknowledges an agent's flags raised up to Through (the
// ones the admin saw): they are removed; a flag raised since stays.
type ClearFlagsOp struct {
	Agent   string    `json:"agent"`
	Through time.Time `json:"through"`
	At      time.Time `json:"at"`
	By      string    `json:"by"`
}

// Op is one CmdAgents entry: exactly one of its fields is set.
type Op struct {
	Revoke     *RevokeOp     `json:"revoke,omitempty"`
	Renew      *RenewOp      `json:"renew,omitempty"`
	ClearFlags *ClearFlagsOp `json:"clear_flags,omitempty"`
	Presence   []PresenceOp  `json:"presence,omitempty"`
}

// Encode returns the log entry bytes.
func (o Op) Encode() ([]byte, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	return raft.EncodeJSON(CmdAgents, o)
}

// DecodeOp parses the payload of a CmdAgents entry.
func DecodeOp(payload []byte) (Op, error) {
	var o Op
	if err := raft.DecodeStrictJSON(payload, maxOpBytes, &o, raft.ErrBadCommand); err != nil {
		return Op{}, err
	}
	return o, o.validate()
}

func (o Op) validate() error {
	n := 0
	if o.Revoke != nil {
		n++
	}
	if o.Renew != nil {
		n++
	}
	if o.ClearFlags != nil {
		n++
	}
	if len(o.Presence) > 0 {
		n++
	}
	if n != 1 {
		return fmt.Errorf("%w: an agents op sets exactly one of revoke, renew, clear_flags, presence", raft.ErrBadCommand)
	}
	if len(o.Presence) > MaxPresenceOps {
		return fmt.Errorf("%w: at most %d presence changes per entry", raft.ErrBadCommand, MaxPresenceOps)
	}
	for _, p := range o.Presence {
		switch p.Kind {
		case Attach, Detach, Update, Seen, Status, NodeReset:
		default:
			return fmt.Errorf("%w: presence kind %q", raft.ErrBadCommand, p.Kind)
		}
		if p.Node == "" {
			return fmt.Errorf("%w: presence change without a node", raft.ErrBadCommand)
		}
		if (p.Kind == Status) != (p.Status != nil) {
			return fmt.Errorf("%w: a status change carries exactly a status", raft.ErrBadCommand)
		}
	}
	return nil
}

// Event is what the FSM tells its node when an entry commits.
type Event struct {
	Revoked string       // an agent id whose certificates are revoked
	Retired *RetiredCert // a certificate a renewal replaced
	Flags   []FlaggedAgent
	Refused []StatusReport // agents that refused a dispatch's stale token
}

// RetiredCert is an agent certificate a renewal replaced.
type RetiredCert struct {
	Agent       string
	Fingerprint string
}

// FlaggedAgent is a flag the FSM raised on an agent.
type FlaggedAgent struct {
	Agent  string `json:"agent"`
	Tenant string `json:"tenant"`
	Flag   Flag   `json:"flag"`
	// InstanceUID is the uid refused with an instance_uid flag: the
	// node assigns the agent a new one on the link that claimed it.
	InstanceUID string `json:"instance_uid,omitempty"`
	// Repeat: the flag was already raised (not recorded or audited
	// again); only the uid is to be replaced.
	Repeat bool `json:"repeat,omitempty"`
}

// StatusReport is one agent's report on one dispatch.
type StatusReport struct {
	Agent  string       `json:"agent"`
	Tenant string       `json:"tenant"`
	Status ConfigStatus `json:"status"`
}

// FSM applies CmdAgents entries. notify runs after the state file
// committed the entry (never for replayed entries).
type FSM struct {
	notify func(Event)
}

// NewFSM returns the handler set; notify may be nil.
func NewFSM(notify func(Event)) *FSM { return &FSM{notify: notify} }

// Handlers returns the FSM's raft handlers.
func (f *FSM) Handlers() map[raft.CommandType]raft.HandlerFunc {
	return map[raft.CommandType]raft.HandlerFunc{CmdAgents: f.apply}
}

// Result is the JSON result of a CmdAgents entry.
type Result struct {
	Applied bool           `json:"applied"`
	Flags   []FlaggedAgent `json:"flags,omitempty"`
	Refused []StatusReport `json:"refused,omitempty"`
}

func (f *FSM) apply(tx *storage.Tx, _ uint64, payload []byte) ([]byte, error) {
	o, err := DecodeOp(payload)
	if err != nil {
		return nil, err
	}
	var res Result
	var ev Event
	switch {
	case o.Revoke != nil:
		a, ok := Reader{tx}.Agent(o.Revoke.Agent)
		if ok && !a.Revoked {
			a.Revoked, a.RevokedAt, a.RevokedBy = true, o.Revoke.At, o.Revoke.By
			if err := putJSON(tx, BucketAgents, a.ID, a); err != nil {
				return nil, err
			}
		}
		// Applied (and announced) even when already revoked: a node that
		// missed the first notice still closes what it holds.
		res.Applied, ev.Revoked = ok, o.Revoke.Agent
	case o.Renew != nil:
		r := o.Renew
		a, ok := Reader{tx}.Agent(r.Agent)
		if ok && !a.Revoked && a.Fingerprint == r.Old {
			a.Fingerprint, a.CertExpires, a.KeyHash, a.Cert = r.Fingerprint, r.Expires, r.KeyHash, r.Cert
			if err := putJSON(tx, BucketAgents, a.ID, a); err != nil {
				return nil, err
			}
			if err := tx.Put(BucketFingerprints, []byte(r.Fingerprint), []byte(a.ID)); err != nil {
				return nil, err
			}
			res.Applied = true
			ev.Retired = &RetiredCert{Agent: a.ID, Fingerprint: r.Old}
		}
	case o.ClearFlags != nil:
		p, ok := Reader{tx}.Presence(o.ClearFlags.Agent)
		kept := p.Flags[:0:0]
		for _, fl := range p.Flags {
			if fl.At.After(o.ClearFlags.Through) {
				kept = append(kept, fl)
			}
		}
		if ok && len(kept) < len(p.Flags) {
			p.Flags = kept
			if err := putJSON(tx, BucketPresence, o.ClearFlags.Agent, p); err != nil {
				return nil, err
			}
			res.Applied = true
		}
	default:
		for _, p := range o.Presence {
			if err := applyPresence(tx, p, &res); err != nil {
				return nil, err
			}
		}
		res.Applied = true
		ev.Flags, ev.Refused = res.Flags, res.Refused
	}
	if f.notify != nil && (ev.Revoked != "" || ev.Retired != nil || len(ev.Flags) > 0 || len(ev.Refused) > 0) {
		tx.OnCommit(func() { f.notify(ev) })
	}
	return json.Marshal(res)
}

func putJSON(tx *storage.Tx, bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, []byte(key), b)
}

func applyPresence(tx *storage.Tx, op PresenceOp, res *Result) error {
	rd := Reader{tx}
	switch op.Kind {
	case NodeReset:
		var stale []string
		tx.ForEach(BucketPresence, nil, func(k, v []byte) bool {
			var p Presence
			if json.Unmarshal(v, &p) == nil && p.Node == op.Node && p.Since.Before(op.At) {
				stale = append(stale, string(k))
			}
			return true
		})
		for _, id := range stale {
			p, _ := rd.Presence(id)
			p.Node, p.Conn = "", ""
			if err := putJSON(tx, BucketPresence, id, p); err != nil {
				return err
			}
		}
		return nil
	case Seen:
		for _, id := range op.Agents {
			if p, ok := rd.Presence(id); ok && p.Node == op.Node {
				p.LastSeen = op.At
				if err := putJSON(tx, BucketPresence, id, p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	a, ok := rd.Agent(op.Agent)
	if !ok {
		return nil // not an agent (any more): nothing to record
	}
	p, _ := rd.Presence(op.Agent)
	switch op.Kind {
	case Attach:
		if a.Revoked {
			return nil
		}
		if len(p.Addrs) == 0 && a.EnrolledFrom != "" {
			p.Addrs = []string{a.EnrolledFrom}
		}
		flag := func(kind, detail string) {
			addFlag(&p, res, a, Flag{Kind: kind, At: op.At, Node: op.Node, Addr: op.Addr, Detail: detail})
		}
		// Still attached elsewhere, recently confirmed, from another
		// address: two hosts hold this certificate.
		if p.Conn != "" && p.Conn != op.Conn && p.Addr != op.Addr && op.At.Sub(p.LastSeen) < 2*SeenEvery+SeenEvery/2 {
			flag(FlagTwoAddresses, fmt.Sprintf("connected from %s to %s while connected from %s to %s", op.Addr, op.Node, p.Addr, p.Node))
		} else if len(p.Addrs) > 0 && !slices.Contains(p.Addrs, op.Addr) {
			flag(FlagNewAddress, fmt.Sprintf("connected from %s; known addresses %v", op.Addr, p.Addrs))
		}
		if i := slices.Index(p.Addrs, op.Addr); i >= 0 {
			p.Addrs = slices.Delete(p.Addrs, i, i+1)
		}
		p.Addrs = append(p.Addrs, op.Addr)
		if len(p.Addrs) > maxAddrs {
			p.Addrs = p.Addrs[len(p.Addrs)-maxAddrs:]
		}
		p.Node, p.Conn, p.Addr, p.Since, p.LastSeen = op.Node, op.Conn, op.Addr, op.At, op.At
		if op.Info != nil {
			p.Info = *op.Info
		}
	case Detach:
		if p.Conn != op.Conn {
			return nil // the agent has attached again since
		}
		p.Node, p.Conn, p.LastSeen = "", "", op.At
	case Update:
		if p.Conn != op.Conn {
			return nil
		}
		if op.Info != nil {
			info := *op.Info
			// The instance uid is the agent's own claim: within a tenant
			// the first agent to report one keeps it, and another claiming
			// it is flagged (the node knows agents by certificate, so the
			// claim changes nothing else) and given a new one by its node.
			// Uids are unique per tenant, so nothing one tenant's agents
			// report depends on, or tells of, another tenant's agents.
			if uid := info.InstanceUID; uid != "" && uid != p.Info.InstanceUID {
				owner := uidOwner(tx, rd, a.Tenant, uid)
				switch {
				case owner == "":
					if err := tx.Put(BucketInstanceUIDs, []byte(a.Tenant+"/"+uid), []byte(a.ID)); err != nil {
						return err
					}
				case owner != a.ID:
					before := len(res.Flags)
					addFlag(&p, res, a, Flag{Kind: FlagInstanceUID, At: op.At, Node: op.Node, Addr: p.Addr, Tenanted: true,
						Detail: fmt.Sprintf("reported instance uid %s, which agent %s of this tenant reported first", uid, owner)})
					if len(res.Flags) > before {
						res.Flags[before].InstanceUID = uid
					} else {
						// The same claim again: still a uid to replace.
						res.Flags = append(res.Flags, FlaggedAgent{Agent: a.ID, Tenant: a.Tenant, InstanceUID: uid,
							Flag: Flag{Kind: FlagInstanceUID, At: op.At, Node: op.Node, Addr: p.Addr}, Repeat: true})
					}
					info.InstanceUID = p.Info.InstanceUID
				}
			}
			p.Info = info
		}
		p.LastSeen = op.At
	case Status:
		st := *op.Status
		st.Node = op.Node
		if len(st.Error) > maxStatusErrLen {
			st.Error = st.Error[:maxStatusErrLen]
		}
		switch st.Status {
		case ConfigApplied, ConfigFailed, ConfigRefused:
		default:
			return fmt.Errorf("%w: config status %q", raft.ErrBadCommand, st.Status)
		}
		if err := putJSON(tx, BucketDispatchStatus, st.Dispatch+"/"+a.ID, st); err != nil {
			return err
		}
		p.Config = &st
		if st.Status == ConfigRefused {
			res.Refused = append(res.Refused, StatusReport{Agent: a.ID, Tenant: a.Tenant, Status: st})
		}
	}
	return putJSON(tx, BucketPresence, op.Agent, p)
}

// uidOwner is the agent of tenant that first reported uid, or "". An
// entry written before uids were kept per tenant (key: the bare uid)
// counts only when its agent is of the same tenant.
func uidOwner(tx *storage.Tx, rd Reader, tenant, uid string) string {
	if owner := tx.Get(BucketInstanceUIDs, []byte(tenant+"/"+uid)); owner != nil {
		return string(owner)
	}
	if owner := string(tx.Get(BucketInstanceUIDs, []byte(uid))); owner != "" {
		if o, ok := rd.Agent(owner); ok && o.Tenant == tenant {
			return owner
		}
	}
	return ""
}

// addFlag records a flag on p and in the result, unless the newest flag
// already says the same (a claim repeated on every report is one event).
func addFlag(p *Presence, res *Result, a Agent, fl Flag) {
	if n := len(p.Flags); n > 0 && p.Flags[n-1].Kind == fl.Kind && p.Flags[n-1].Detail == fl.Detail {
		return
	}
	p.Flags = append(p.Flags, fl)
	if len(p.Flags) > maxFlags {
		p.Flags = p.Flags[len(p.Flags)-maxFlags:]
	}
	res.Flags = append(res.Flags, FlaggedAgent{Agent: a.ID, Tenant: a.Tenant, Flag: fl})
}

// Presence returns where an agent is attached (ok false: never was).
func (r Reader) Presence(id string) (Presence, bool) { return get[Presence](r.Tx, BucketPresence, id) }

// AttachedPerNode counts, per node, the agents the registry records as
// attached there: each agent once, on the node it last attached to. It is
// the region's count of agents by node: a node's own live connections
// overstate it after a failover (a dead node still advertises its last
// count, a deposed one may hold a half-closed link).
func (r Reader) AttachedPerNode() map[string]int {
	out := map[string]int{}
	r.Tx.ForEach(BucketPresence, nil, func(_, v []byte) bool {
		var p struct {
			Node string `json:"node"`
		}
		if json.Unmarshal(v, &p) == nil && p.Node != "" {
			out[p.Node]++
		}
		return true
	})
	return out
}

// DispatchStatus lists what agents reported for dispatch id.
func (r Reader) DispatchStatus(id string) []StatusReport {
	var out []StatusReport
	prefix := []byte(id + "/")
	r.Tx.ForEach(BucketDispatchStatus, prefix, func(k, v []byte) bool {
		if !bytes.HasPrefix(k, prefix) {
			return false
		}
		var st ConfigStatus
		if json.Unmarshal(v, &st) == nil {
			out = append(out, StatusReport{Agent: string(k[len(prefix):]), Status: st})
		}
		return true
	})
	return out
}
