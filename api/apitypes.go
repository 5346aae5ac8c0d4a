package api

import (
	"encoding/json"
	"time"
)

// Error is the body of every non-2xx API response.
type Error struct {
	Error string `json:"error"`
	// Hint says what to do next.
	Hint string `json:"hint,omitempty"`
	// Code names the error for programs where one must act on it (the
	// agent enrollment codes of internal/agentwire); usually empty.
	Code string `json:"code,omitempty"`
}

// Region is GET /api/v1/region and `outpostctl status --json`.
type Region struct {
	Region string `json:"region"`
	Node   string `json:"node"` // the node that answered
	Leader string `json:"leader"`
	Nodes  []Node `json:"nodes"`
	// Lease is null until the dispatch lease exists.
	Lease *Lease `json:"lease"`
}

// Lease is the dispatch lease as the answering node sees it.
type Lease struct {
	Holder string `json:"holder"` // "" when nobody holds it (released, or never acquired)
	Token  uint64 `json:"token"`
	// ExpiresInMs is how long the lease has left: on the holder, on its
	// own clock since its last renewal; elsewhere, since this node applied
	// that renewal. 0 once it ran out.
	ExpiresInMs int64 `json:"expires_in_ms"`
	Released    bool  `json:"released,omitempty"`
	// DurationMs and DriftMarginMs are the timings in use.
	DurationMs    int64 `json:"duration_ms"`
	DriftMarginMs int64 `json:"drift_margin_ms"`
	// StaleRefused counts entries the FSM refused for a stale token.
	StaleRefused uint64 `json:"stale_refused"`
}

// DispatchRequest is POST /api/v1/dispatches and
// POST /api/v1/tenants/{tenant}/dispatches.
type DispatchRequest struct {
	// ID makes a retry safe: the same id is applied once. Default random.
	ID       string          `json:"id,omitempty"`
	Selector string          `json:"selector"`
	Kind     string          `json:"kind"`
	Payload  json.RawMessage `json:"payload,omitempty"`
}

// Dispatch is a committed, fenced dispatch. Region-wide views show the
// payload's digest and size only; the tenant's own views show the payload.
type Dispatch struct {
	ID            string          `json:"id"`
	Tenant        string          `json:"tenant,omitempty"`
	Selector      string          `json:"selector"`
	Kind          string          `json:"kind"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadSHA256 string          `json:"payload_sha256,omitempty"`
	PayloadBytes  int             `json:"payload_bytes"`
	Token         uint64          `json:"token"`
	Node          string          `json:"node"` // the issuing node
	Issued        time.Time       `json:"issued"`
	Index         uint64          `json:"index"`
}

// Event is one line of GET /api/v1/events (newline-delimited JSON): what
// the answering node saw, in order. Kinds: leader, lease, dispatch (a
// committed dispatch this node delivered), fenced, heartbeat, lagged (the
// stream fell behind and ends; re-read with GET /api/v1/dispatches).
type Event struct {
	Kind     string    `json:"kind"`
	At       time.Time `json:"at"`
	Node     string    `json:"node"`
	Leader   string    `json:"leader,omitempty"`
	Lease    *Lease    `json:"lease,omitempty"`
	Dispatch *Dispatch `json:"dispatch,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	// Index is the Raft index of the lease state or dispatch the event
	// carries (0 for the others).
	Index uint64 `json:"index,omitempty"`
	// Initial marks the opening leader and lease events, the node's state
	// when the stream began rather than a change.
	Initial bool `json:"initial,omitempty"`
}

// DispatchLookup is GET /api/v1/dispatches/{id} (region-wide ids) and
// GET /api/v1/tenants/{tenant}/dispatches/{id} (that tenant's): whether
// the id committed in that scope, and at which index. Tenant is the
// scope's tenant id when it did (empty for region-wide).
type DispatchLookup struct {
	ID        string `json:"id"`
	Committed bool   `json:"committed"`
	Tenant    string `json:"tenant,omitempty"`
	Index     uint64 `json:"index,omitempty"`
}

// DrillFault is POST /api/v1/drills/isolate: cut this node off from
// every peer, or from Peers only, for DurationMs (then it heals itself).
type DrillFault struct {
	DurationMs int64    `json:"duration_ms"`
	Peers      []string `json:"peers,omitempty"`
}

// DrillState is GET /api/v1/drills and the answer to drill requests.
type DrillState struct {
	Node      string   `json:"node"`
	Enabled   bool     `json:"enabled"`
	Isolated  bool     `json:"isolated"`
	Blocked   []string `json:"blocked,omitempty"`
	HealsInMs int64    `json:"heals_in_ms,omitempty"`
	Lease     *Lease   `json:"lease,omitempty"`
	// Raft timings in use, for drill reports.
	HeartbeatTimeoutMs int64 `json:"heartbeat_timeout_ms"`
	ElectionTimeoutMs  int64 `json:"election_timeout_ms"`
}

// DrillStop is POST /api/v1/drills/stop: stop this node abruptly, as a
// crash would; it restarts after RestartAfterMs where it can (outpost dev)
// or by its supervisor (outpost serve exits with status 75).
type DrillStop struct {
	RestartAfterMs int64 `json:"restart_after_ms"`
}

// StaleProbe is POST /api/v1/drills/stale[?id=stale-…]: this node proposed
// a dispatch under the last token it held, bypassing its own fence, and the
// region answered. The caller may choose the id (stale-, then up to 58 of
// A-Z a-z 0-9 . _ -), so it can look the id up even when the call fails.
// Outcome is one of the StaleOutcome constants.
type StaleProbe struct {
	ID      string `json:"id"`
	Token   uint64 `json:"token"`
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
}

// Outcomes of a stale probe (StaleProbe.Outcome).
const (
	// StaleOutcomeRefused: the FSM refused the stale token: the fence held.
	StaleOutcomeRefused = "refused"
	// StaleOutcomeNotAppended: this node reached no leader, so nothing was
	// appended and the fence was not tested.
	StaleOutcomeNotAppended = "not_appended"
	// StaleOutcomeBadCommand: the entry was malformed (or its id already
	// used), so it was refused for that, not for its token: the fence was
	// not tested.
	StaleOutcomeBadCommand = "bad_command"
	// StaleOutcomeAccepted: it committed (a fencing failure unless this
	// node still holds the lease).
	StaleOutcomeAccepted = "accepted"
	// StaleOutcomeUnknown: the outcome is not known; look the id up later
	// (GET /api/v1/dispatches/{id}).
	StaleOutcomeUnknown = "unknown"
)

// Node is one node of the region.
type Node struct {
	ID            string `json:"id"`
	Address       string `json:"address"` // Raft address
	APIURL        string `json:"api_url"`
	Suffrage      string `json:"suffrage"`   // voter, nonvoter, none
	RaftState     string `json:"raft_state"` // leader, follower, candidate, shutdown, unreachable
	Gossip        string `json:"gossip"`     // alive, failed, left, unknown
	LastContactMs int64  `json:"last_contact_ms"`
	AppliedIndex  uint64 `json:"applied_index"`
	// CommitIndex is the highest Raft index the node knows committed (the
	// leader's is the region's); AppliedIndex trails it while the node
	// applies.
	CommitIndex    uint64 `json:"commit_index"`
	Agents         int    `json:"agents"`
	AgentURL       string `json:"agent_url"`
	FederationAddr string `json:"federation_addr"`
	// Version is the node's build, in one word: a release ("v1.2.0") or
	// a build of a checkout ("devel+84b87cd1c9e2"). Empty when the node
	// did not say: it is unreachable, or older than this field.
	Version string `json:"version,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Member is one gossip member in GET /api/v1/members.
type Member struct {
	ID         string    `json:"id"`
	GossipAddr string    `json:"gossip_addr"`
	Status     string    `json:"status"`
	Since      time.Time `json:"since"`
	Region     string    `json:"region"`
	RaftAddr   string    `json:"raft_addr"`
	APIURL     string    `json:"api_url"`
	InRegion   bool      `json:"in_region"`
}

// Health is GET /api/v1/health.
type Health struct {
	Status       string `json:"status"`
	Node         string `json:"node"`
	Leader       string `json:"leader"`
	IsLeader     bool   `json:"is_leader"`
	AppliedIndex uint64 `json:"applied_index"`
}

// KVEntry is one key in GET /api/v1/kv.
type KVEntry struct {
	Key  string `json:"key"`
	Size int    `json:"size"`
}

// WriteResult answers a committed write.
type WriteResult struct {
	Index uint64 `json:"index"`
}

// Login is POST /api/v1/login.
type Login struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Session answers a login.
type Session struct {
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
}

// WhoAmI is GET /api/v1/whoami.
type WhoAmI struct {
	// Region names the node's region: it pins the origin of the audit
	// logs a client verifies.
	Region      string            `json:"region"`
	Actor       string            `json:"actor"`
	User        string            `json:"user,omitempty"`
	RegionAdmin bool              `json:"region_admin"`
	Tenants     map[string]string `json:"tenants"` // tenant name -> role
	// Grants are the caller's active break-glass grants (a region
	// admin's read-only access to a tenant), so a UI can show each one's
	// expiry on every page while it lasts.
	Grants []ActiveGrant `json:"grants,omitempty"`
	// Federation: this node has federation on (global views answer).
	Federation bool `json:"federation"`
}

// ActiveGrant is one break-glass grant in effect for the caller.
type ActiveGrant struct {
	Tenant  string    `json:"tenant"` // tenant name
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// TenantCreate is POST /api/v1/tenants. Admin is the account that becomes
// the tenant's first Admin.
type TenantCreate struct {
	Name  string `json:"name"`
	Admin string `json:"admin"`
}

// Tenant is one tenant as its members and region admins see it.
type Tenant struct {
	Name    string    `json:"name"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Role    string    `json:"role,omitempty"` // the caller's role
}

// TenantSettings is GET/PUT /api/v1/tenants/{tenant}/settings.
type TenantSettings struct {
	BreakGlassAutoApprove bool `json:"breakglass_auto_approve"`
	// ProbeAllow lists address ranges (CIDR, at most 32) the tenant's
	// probes may reach although the SSRF guard refuses them: link-local
	// and cloud metadata addresses, unspecified, multicast.
	ProbeAllow []string `json:"probe_allow,omitempty"`
}

// UserCreate is POST /api/v1/users. An empty password makes the server
// generate one and return it once.
type UserCreate struct {
	Name        string `json:"name"`
	Password    string `json:"password,omitempty"`
	RegionAdmin bool   `json:"region_admin,omitempty"`
}

// User is one account.
type User struct {
	Name        string            `json:"name"`
	Source      string            `json:"source"`
	RegionAdmin bool              `json:"region_admin"`
	Tenants     map[string]string `json:"tenants"` // tenant name -> role
	// LockedUntil is the latest end of a lock of the account for some
	// source address; LockedSources counts the addresses it is locked
	// for. Slowed: wrong passwords from everywhere slow every login.
	LockedUntil   *time.Time `json:"locked_until,omitempty"`
	LockedSources int        `json:"locked_sources,omitempty"`
	Slowed        bool       `json:"slowed,omitempty"`
	Password      string     `json:"password,omitempty"` // only when generated
}

// TokenCreate is POST /api/v1/tokens (region-admin tokens) and
// /api/v1/tenants/{tenant}/tokens (role is viewer, operator or admin).
type TokenCreate struct {
	Name string `json:"name"`
	Role string `json:"role,omitempty"`
	TTL  string `json:"ttl,omitempty"` // Go duration; empty = no expiry
}

// APIToken is one API token; Token is set only in the create answer.
type APIToken struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Tenant    string    `json:"tenant,omitempty"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires,omitzero"`
	CreatedBy string    `json:"created_by"`
	// Owner is the account the token acts for; it never has more access
	// than that account has at the time of each request.
	Owner string `json:"owner,omitempty"`
	Token string `json:"token,omitempty"`
}

// TenantMember is a tenant member or an invited account; PUT
// .../members/{user} takes {"role": …}. Status is "member" or "invited"
// (then Expires and InvitedBy say until when and by whom).
type TenantMember struct {
	User      string    `json:"user"`
	Role      string    `json:"role"`
	Status    string    `json:"status,omitempty"`
	InvitedBy string    `json:"invited_by,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
}

// Invitation is an invitation addressed to the caller
// (GET /api/v1/invitations).
type Invitation struct {
	Tenant    string    `json:"tenant"`
	Role      string    `json:"role"`
	InvitedBy string    `json:"invited_by"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
}

// BreakGlassRequest is POST /api/v1/tenants/{tenant}/breakglass.
type BreakGlassRequest struct {
	Reason   string `json:"reason"`
	Duration string `json:"duration"` // Go duration, at most 24h
}

// Grant is a break-glass grant.
type Grant struct {
	ID         string    `json:"id"`
	Tenant     string    `json:"tenant"`
	Requester  string    `json:"requester"`
	Reason     string    `json:"reason"`
	Duration   string    `json:"duration"`
	Created    time.Time `json:"created"`
	Approved   bool      `json:"approved"`
	ApprovedBy string    `json:"approved_by,omitempty"`
	Expires    time.Time `json:"expires,omitzero"`
	Active     bool      `json:"active"`
}

// KeyStatus is GET /api/v1/keys and the answer of POST /api/v1/keys/rotate.
type KeyStatus struct {
	Node          string `json:"node"`
	KeyID         string `json:"key_id"`
	PreviousKeyID string `json:"previous_key_id,omitempty"`
	Secrets       int    `json:"secrets"`
	// OnPrevious counts stored secrets still wrapped by the previous key;
	// rotation is complete when it is 0 on the region (and every node's
	// files were re-wrapped at its restart).
	OnPrevious int `json:"on_previous"`
	Rewrapped  int `json:"rewrapped,omitempty"`
}

// DrillKeys is the namespace of the region's keys that failover drills
// write (drill/RUN/ROUND/SEQ) and keep, so a drill's report can be checked
// against them afterwards. Listing the region's keys leaves them out
// unless asked for (all=true, or a prefix inside it).
const DrillKeys = "drill/"

// DrillReport is `outpostctl drill failover --json`: what a failover drill
// measured. Times run from the fault (t0) to the moment the drill received
// a surviving node's event saying so, in milliseconds. Rounds counts the
// rounds run; a round that failed is in PerRound with Error set and is
// left out of the time statistics, but its stale and lost counts stay in
// the totals.
type DrillReport struct {
	Mode            string    `json:"mode"` // transfer, isolate or stop
	Rounds          int       `json:"rounds"`
	LeaderElectedMs DrillStat `json:"leader_elected_ms"`
	LeaseAcquiredMs DrillStat `json:"lease_acquired_ms"`
	FirstDispatchMs DrillStat `json:"first_dispatch_ms"`
	// StaleAttempted counts the deposed holder's stale dispatches that got
	// an answer, or whose call failed and were looked up; StaleRefused
	// those the FSM refused for their token (only these show the fence
	// working); StaleNotAppended those its node could not append at all
	// (no leader reachable); StaleBadCommand those refused as malformed,
	// not for their token (neither tested the fence); StaleAccepted those
	// that committed or were delivered (a fencing failure: must be 0).
	StaleAttempted   int `json:"stale_attempted"`
	StaleRefused     int `json:"stale_refused"`
	StaleNotAppended int `json:"stale_not_appended"`
	StaleBadCommand  int `json:"stale_bad_command"`
	StaleAccepted    int `json:"stale_accepted"`
	// AckedWrites counts key writes the region acknowledged during the
	// rounds; AckedWritesLost those a linearizable read did not find
	// afterwards (must be 0).
	AckedWrites     int `json:"acked_writes"`
	AckedWritesLost int `json:"acked_writes_lost"`
	// ProbesCommitted counts the drill's probe dispatches the region said
	// committed; ProbesLost those a linearizable lookup did not find
	// afterwards (must be 0).
	ProbesCommitted int          `json:"probes_committed"`
	ProbesLost      int          `json:"probes_lost"`
	PerRound        []DrillRound `json:"per_round"`
	Timings         DrillTimings `json:"timings"`
}

// DrillStat summarizes one duration over a drill's rounds, in
// milliseconds (nearest-rank percentiles).
type DrillStat struct {
	P50 int64 `json:"p50"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
}

// DrillRound is one round of a failover drill: the fault on Node, which
// held the lease with Token, and what the other nodes reported after it.
// The *Ms fields are -1 when the round ended before seeing it.
type DrillRound struct {
	Round           int    `json:"round"`
	Node            string `json:"node"`
	Token           uint64 `json:"token"`
	NewLeader       string `json:"new_leader"`
	NewHolder       string `json:"new_holder"`
	NewToken        uint64 `json:"new_token"`
	LeaderElectedMs int64  `json:"leader_elected_ms"`
	LeaseAcquiredMs int64  `json:"lease_acquired_ms"`
	FirstDispatchMs int64  `json:"first_dispatch_ms"`
	StaleAttempted  int    `json:"stale_attempted"`
	StaleRefused    int    `json:"stale_refused"`
	// StaleNotAppended: its node reached no leader (never appended).
	StaleNotAppended int `json:"stale_not_appended"`
	// StaleBadCommand: refused as malformed, not for its token.
	StaleBadCommand int `json:"stale_bad_command"`
	// StaleUnknown: answered "unknown", or the call failed, and a later
	// lookup found it not committed.
	StaleUnknown     int      `json:"stale_unknown"`
	StaleAccepted    int      `json:"stale_accepted"`
	StaleAcceptedIDs []string `json:"stale_accepted_ids,omitempty"`
	AckedWrites      int      `json:"acked_writes"`
	AckedWritesLost  int      `json:"acked_writes_lost"`
	LostKeys         []string `json:"lost_keys,omitempty"` // the first few
	// Probes counts the dispatches the drill sent to find the first one
	// issued under the new lease; ProbesCommitted those that committed;
	// ProbesLost those of them a lookup after the round did not find.
	Probes          int      `json:"probes"`
	ProbesCommitted int      `json:"probes_committed"`
	ProbesLost      int      `json:"probes_lost"`
	LostProbeIDs    []string `json:"lost_probe_ids,omitempty"` // the first few
	Error           string   `json:"error,omitempty"`
}

// DrillTimings are the settings a drill ran with: the region's lease and
// Raft timings (from GET /api/v1/drills on Node) and the drill's own.
type DrillTimings struct {
	Node               string `json:"node"`
	LeaseDurationMs    int64  `json:"lease_duration_ms"`
	LeaseDriftMarginMs int64  `json:"lease_drift_margin_ms"`
	HeartbeatTimeoutMs int64  `json:"heartbeat_timeout_ms"`
	ElectionTimeoutMs  int64  `json:"election_timeout_ms"`
	IsolateForMs       int64  `json:"isolate_for_ms,omitempty"`   // isolate mode
	IsolatedBy         string `json:"isolated_by,omitempty"`      // isolate mode: how the holder was cut off
	RestartAfterMs     int64  `json:"restart_after_ms,omitempty"` // stop mode
}

// BootstrapTokenCreate is POST /api/v1/tenants/{tenant}/agent-tokens.
type BootstrapTokenCreate struct {
	TTL string `json:"ttl,omitempty"` // Go duration, 1m..24h; default 15m
}

// BootstrapToken is one agent bootstrap token. Token (the secret) is set
// only in the create answer; the node keeps its hash alone.
type BootstrapToken struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	CreatedBy string    `json:"created_by"`
	// Status is unused, redeemed, revoked or expired; Agent is the agent
	// a redeemed token enrolled.
	Status string `json:"status"`
	Agent  string `json:"agent,omitempty"`
	Token  string `json:"token,omitempty"`
	// At creation: the region CA's pin (outpost-agent --ca-pin) and the
	// nodes' agent endpoints (--servers).
	CAPin   string   `json:"ca_pin,omitempty"`
	Servers []string `json:"servers,omitempty"`
}

// AgentConfigStatus is an agent's report on a dispatch, as recorded
// through Raft: applied, failed, or refused (a stale fencing token).
type AgentConfigStatus struct {
	Dispatch string    `json:"dispatch"`
	Token    uint64    `json:"token"`
	Status   string    `json:"status"`
	Error    string    `json:"error,omitempty"`
	Node     string    `json:"node"`
	At       time.Time `json:"at"`
}

// Agent is one agent, as `outpostctl agents list` shows it.
type Agent struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	Host        string    `json:"host"`
	Version     string    `json:"version"`
	InstanceUID string    `json:"instance_uid,omitempty"` // what the agent says; informational
	Fingerprint string    `json:"fingerprint"`
	Enrolled    time.Time `json:"enrolled"`
	CertExpires time.Time `json:"cert_expires"`
	// Node is the node it is attached to ("" when not connected), RTTMs
	// its handshake round trip to that node (absent: not reported), Mode
	// ebpf or procfs. Health is disconnected, revoked, healthy or
	// unhealthy[: reason]; absent while a connected agent has not
	// reported it (it did not announce ReportsHealth).
	Node         string    `json:"node"`
	RTTMs        *float64  `json:"rtt_ms,omitempty"`
	Mode         string    `json:"mode"`
	ModeReason   string    `json:"mode_reason,omitempty"` // why procfs (eBPF could not load, or configured)
	Health       string    `json:"health,omitempty"`
	LastSeen     time.Time `json:"last_seen,omitzero"`
	Capabilities []string  `json:"capabilities,omitempty"`
	SourceAddr   string    `json:"source_addr,omitempty"`
	// Connections is set when the agent holds more than one connection.
	Connections int `json:"connections,omitempty"`
	// Config is what the agent last reported for a dispatch.
	Config    *AgentConfigStatus `json:"config,omitempty"`
	Flags     []string           `json:"flags,omitempty"` // e.g. an unexpected source address
	Revoked   bool               `json:"revoked,omitempty"`
	RevokedAt time.Time          `json:"revoked_at,omitzero"`
}
