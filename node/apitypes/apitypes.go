// Package apitypes holds the JSON shapes of the node's HTTP API, shared by
// the server (node/api) and its clients (outpostctl). It imports only the
// standard library, so a client links no server code.
package apitypes

import "time"

// Error is the body of every non-2xx API response.
type Error struct {
	Error string `json:"error"`
	// Hint says what to do next.
	Hint string `json:"hint,omitempty"`
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

// Lease is the dispatch lease.
type Lease struct {
	Holder      string `json:"holder"`
	Token       uint64 `json:"token"`
	ExpiresInMs int64  `json:"expires_in_ms"`
}

// Node is one node of the region.
type Node struct {
	ID             string `json:"id"`
	Address        string `json:"address"` // Raft address
	APIURL         string `json:"api_url"`
	Suffrage       string `json:"suffrage"`   // voter, nonvoter, none
	RaftState      string `json:"raft_state"` // leader, follower, candidate, shutdown, unreachable
	Gossip         string `json:"gossip"`     // alive, failed, left, unknown
	LastContactMs  int64  `json:"last_contact_ms"`
	AppliedIndex   uint64 `json:"applied_index"`
	Agents         int    `json:"agents"`
	AgentURL       string `json:"agent_url"`
	FederationAddr string `json:"federation_addr"`
	Error          string `json:"error,omitempty"`
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
	Actor       string            `json:"actor"`
	User        string            `json:"user,omitempty"`
	RegionAdmin bool              `json:"region_admin"`
	Tenants     map[string]string `json:"tenants"` // tenant name -> role
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
	LockedUntil *time.Time        `json:"locked_until,omitempty"`
	Password    string            `json:"password,omitempty"` // only when generated
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
	Token     string    `json:"token,omitempty"`
}

// TenantMember is a tenant member; PUT .../members/{user} takes {"role": …}.
type TenantMember struct {
	User string `json:"user"`
	Role string `json:"role"`
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
