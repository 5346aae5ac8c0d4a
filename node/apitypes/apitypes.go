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
