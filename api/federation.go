package api

import "time"

// PeerCreate adds a peer region (POST /api/v1/peers). Name is the peer
// region's own name; CAPEM its CA certificate, pinned; Secret the shared
// secret both regions configure (at least 32 bytes).
type PeerCreate struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	CAPEM  string `json:"ca_pem"`
	Secret string `json:"secret"`
}

// Peer is a configured peer and its state as the answering node sees it.
type Peer struct {
	Name      string    `json:"name"`
	Addr      string    `json:"addr"`
	CAPin     string    `json:"ca_pin"`
	CAExpires time.Time `json:"ca_expires"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	Links     int       `json:"links"`
	State     PeerState `json:"state"`
}

// PeerState is a peer's last known state. State is "unknown" until the
// first call, then the status of the latest call (ok, stale, timeout,
// refused, malformed, error): a peer whose data is old is "stale", never
// "ok".
type PeerState struct {
	State       string    `json:"state"`
	RTTMs       float64   `json:"rtt_ms"`
	LastOK      time.Time `json:"last_ok,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	DataAgeMs   int64     `json:"data_age_ms"`
	CertExpires time.Time `json:"cert_expires,omitzero"`
	Checked     time.Time `json:"checked,omitzero"`
	Node        string    `json:"node"` // the node whose view this is
}

// LinkCreate links the tenant to a peer (POST
// /api/v1/tenants/T/links). LinkID is empty on the first side (a new id
// is made) and the other side's id on the second.
type LinkCreate struct {
	Peer   string `json:"peer"`
	LinkID string `json:"link_id,omitempty"`
}

// Link is a tenant's link to a peer.
type Link struct {
	ID        string    `json:"id"`
	Peer      string    `json:"peer"`
	Tenant    string    `json:"tenant"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

// PeerStatus is how one peer contributed to a global answer.
type PeerStatus struct {
	Peer        string    `json:"peer"`
	Status      string    `json:"status"` // ok, stale, timeout, refused, malformed, error
	LatencyMs   float64   `json:"latency_ms"`
	DataAgeMs   int64     `json:"data_age_ms"`
	Rows        int       `json:"rows"`
	Error       string    `json:"error,omitempty"`
	At          time.Time `json:"at"`
	CertExpires time.Time `json:"cert_expires,omitzero"`
}

// Global is what every global view carries: whether the answer is
// complete (every peer asked answered fresh rows) and each peer's status.
type Global struct {
	Complete bool         `json:"complete"`
	Peers    []PeerStatus `json:"peers"`
}

// GlobalAgent is an agent row of a global view: Source is "local" or
// "peer:NAME" (the peer it came from, set by this region, never by the
// peer).
type GlobalAgent struct {
	Source      string    `json:"source"`
	Region      string    `json:"region"`
	ID          string    `json:"id"`
	Host        string    `json:"host"`
	Version     string    `json:"version"`
	Node        string    `json:"node"`
	RTTMs       *float64  `json:"rtt_ms,omitempty"`
	Mode        string    `json:"mode"`
	ModeReason  string    `json:"mode_reason,omitempty"`
	Health      string    `json:"health,omitempty"`
	LastSeen    time.Time `json:"last_seen,omitzero"`
	CertExpires time.Time `json:"cert_expires"`
}

// GlobalAgents answers GET /api/v1/tenants/T/global/agents.
type GlobalAgents struct {
	Global
	Agents []GlobalAgent `json:"agents"`
}

// RegionHealth is one region's health in a global view.
type RegionHealth struct {
	Source    string         `json:"source"`
	Region    string         `json:"region"`
	Node      string         `json:"node"`
	Leader    string         `json:"leader"`
	Nodes     []RegionMember `json:"nodes"`
	Lease     RegionLease    `json:"lease"`
	DataAgeMs int64          `json:"data_age_ms"`
}

// RegionMember is a node in RegionHealth.
type RegionMember struct {
	ID            string `json:"id"`
	RaftState     string `json:"raft_state"`
	LastContactMs int64  `json:"last_contact_ms"`
	Agents        int    `json:"agents"`
}

// RegionLease is the lease in RegionHealth.
type RegionLease struct {
	Holder      string `json:"holder"`
	Token       uint64 `json:"token"`
	ExpiresInMs int64  `json:"expires_in_ms"`
}

// GlobalHealth answers GET /api/v1/global/health.
type GlobalHealth struct {
	Global
	Regions []RegionHealth `json:"regions"`
}

// GlobalSample is one sample of a global query; every remote sample has
// the label outpost_peer naming its peer.
type GlobalSample struct {
	Labels map[string]string `json:"labels"`
	T      int64             `json:"t"`
	V      string            `json:"v"`
}

// GlobalQuery answers GET /api/v1/tenants/T/global/query.
type GlobalQuery struct {
	Global
	ResultType string         `json:"result_type"`
	Samples    []GlobalSample `json:"samples"`
	Warnings   []string       `json:"warnings,omitempty"`
}
