package federation

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// The wire shapes of federation: what one region answers another. None
// has a tenant field: a tenant's rows are asked for and answered under a
// link id, which both regions configured against their own local tenant.
// None has a peer or source field either: the asking region labels each
// row with the peer it came from, so a peer cannot claim to be local or
// another peer. Decoding is strict (unknown fields refused) and every
// answer is checked by its Validate against the limits below before any
// row is used.

// Limits a decoded answer must stay within; beyond them it is malformed.
const (
	MaxAgents    = 20000 // rows in an agents answer
	MaxNodes     = 64    // nodes in a health answer
	MaxSamples   = 20000 // samples in a query answer
	MaxLabels    = 64    // labels per sample
	MaxString    = 256   // bytes in any string field
	MaxWarnings  = 16    // warnings in a query answer
	MaxAgeMs     = int64(365 * 24 * time.Hour / time.Millisecond)
	MaxRTTMs     = 60_000.0
	MaxQueryLen  = 4096 // bytes in a query asked of a peer
	MaxLinkIDLen = 64
)

// ErrMalformed marks an answer outside the shapes or limits above.
var ErrMalformed = errors.New("malformed answer")

// Health is a region's health as one of its nodes sees it. It holds no
// tenant data, so any configured peer may read it.
type Health struct {
	Region string       `json:"region"`
	Node   string       `json:"node"` // the node that answered
	Leader string       `json:"leader"`
	Nodes  []NodeHealth `json:"nodes"`
	Lease  LeaseHealth  `json:"lease"`
	// AgeMs is how stale the answering node's state may be: 0 on the
	// leader, the time since it last heard from the leader elsewhere.
	AgeMs int64 `json:"age_ms"`
}

// NodeHealth is one node of a region.
type NodeHealth struct {
	ID            string `json:"id"`
	RaftState     string `json:"raft_state"`
	LastContactMs int64  `json:"last_contact_ms"`
	Agents        int    `json:"agents"`
}

// LeaseHealth is the region's dispatch lease.
type LeaseHealth struct {
	Holder      string `json:"holder"`
	Token       uint64 `json:"token"`
	ExpiresInMs int64  `json:"expires_in_ms"`
}

// Agents is a linked tenant's agents in the answering region.
type Agents struct {
	Link   string     `json:"link"`
	AgeMs  int64      `json:"age_ms"`
	Agents []AgentRow `json:"agents"`
}

// AgentRow is one agent, without its tenant, fingerprint, source address
// or instance id: what an operator needs to see it, no more.
type AgentRow struct {
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

// Query is an instant PromQL query's answer for a linked tenant: a vector
// (or one scalar sample with no labels). The tenant label is removed from
// every sample before it leaves the node.
type Query struct {
	Link       string   `json:"link"`
	AgeMs      int64    `json:"age_ms"`
	ResultType string   `json:"result_type"` // vector or scalar
	Samples    []Sample `json:"samples"`
	// Complete is false when the answering region itself missed data
	// (a node of it did not answer, or its agents lost events); Warnings
	// say what.
	Complete bool     `json:"complete"`
	Warnings []string `json:"warnings,omitempty"`
}

// Sample is one series' value at the query time. V is a decimal string,
// as Prometheus writes values, so NaN and ±Inf survive JSON.
type Sample struct {
	Labels map[string]string `json:"labels"`
	T      int64             `json:"t"` // milliseconds since the epoch
	V      string            `json:"v"`
}

func str(field, s string) error {
	if len(s) > MaxString {
		return fmt.Errorf("%w: %s is %d bytes (at most %d)", ErrMalformed, field, len(s), MaxString)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrMalformed, field)
	}
	return nil
}

func age(ms int64) error {
	if ms < 0 || ms > MaxAgeMs {
		return fmt.Errorf("%w: age_ms %d out of range", ErrMalformed, ms)
	}
	return nil
}

// Validate checks h's limits, and that it names region (a peer answers
// for itself, not for another region).
func (h Health) Validate(region string) error {
	if h.Region != region {
		return fmt.Errorf("%w: answer claims region %q, the peer is %q", ErrMalformed, h.Region, region)
	}
	if len(h.Nodes) > MaxNodes {
		return fmt.Errorf("%w: %d nodes (at most %d)", ErrMalformed, len(h.Nodes), MaxNodes)
	}
	for _, e := range []error{str("node", h.Node), str("leader", h.Leader), str("lease.holder", h.Lease.Holder), age(h.AgeMs)} {
		if e != nil {
			return e
		}
	}
	for _, n := range h.Nodes {
		if err := errors.Join(str("nodes.id", n.ID), str("nodes.raft_state", n.RaftState)); err != nil {
			return err
		}
		if n.Agents < 0 || n.Agents > MaxAgents || n.LastContactMs < 0 || n.LastContactMs > MaxAgeMs {
			return fmt.Errorf("%w: node %q: counts out of range", ErrMalformed, n.ID)
		}
	}
	return nil
}

// Validate checks a's limits and that it answers link.
func (a Agents) Validate(link string) error {
	if a.Link != link {
		return fmt.Errorf("%w: answer is for link %q, asked %q", ErrMalformed, a.Link, link)
	}
	if len(a.Agents) > MaxAgents {
		return fmt.Errorf("%w: %d agents (at most %d)", ErrMalformed, len(a.Agents), MaxAgents)
	}
	if err := age(a.AgeMs); err != nil {
		return err
	}
	for _, r := range a.Agents {
		for _, f := range [...]struct{ n, v string }{{"agents.id", r.ID}, {"agents.host", r.Host}, {"agents.version", r.Version}, {"agents.node", r.Node},
			{"agents.mode", r.Mode}, {"agents.mode_reason", r.ModeReason}, {"agents.health", r.Health}} {
			if err := str(f.n, f.v); err != nil {
				return err
			}
		}
		if r.ID == "" {
			return fmt.Errorf("%w: an agent without an id", ErrMalformed)
		}
		if r.RTTMs != nil && (math.IsNaN(*r.RTTMs) || *r.RTTMs < 0 || *r.RTTMs > MaxRTTMs) {
			return fmt.Errorf("%w: agent %q: rtt_ms out of range", ErrMalformed, r.ID)
		}
	}
	return nil
}

// Validate checks q's limits and that it answers link.
func (q Query) Validate(link string) error {
	if q.Link != link {
		return fmt.Errorf("%w: answer is for link %q, asked %q", ErrMalformed, q.Link, link)
	}
	switch q.ResultType {
	case "vector":
	case "scalar":
		if len(q.Samples) != 1 || len(q.Samples[0].Labels) != 0 {
			return fmt.Errorf("%w: a scalar is one sample without labels", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: result_type %q (vector or scalar)", ErrMalformed, q.ResultType)
	}
	if len(q.Samples) > MaxSamples || len(q.Warnings) > MaxWarnings {
		return fmt.Errorf("%w: %d samples, %d warnings (at most %d, %d)", ErrMalformed, len(q.Samples), len(q.Warnings), MaxSamples, MaxWarnings)
	}
	if err := age(q.AgeMs); err != nil {
		return err
	}
	for _, w := range q.Warnings {
		if err := str("warnings", w); err != nil {
			return err
		}
	}
	for _, s := range q.Samples {
		if len(s.Labels) > MaxLabels {
			return fmt.Errorf("%w: a sample with %d labels (at most %d)", ErrMalformed, len(s.Labels), MaxLabels)
		}
		for k, v := range s.Labels {
			if err := errors.Join(str("label name", k), str("label value", v)); err != nil {
				return err
			}
			if k == "" {
				return fmt.Errorf("%w: an empty label name", ErrMalformed)
			}
			if k == PeerLabel {
				return fmt.Errorf("%w: a sample carries the %s label itself (claiming a peer)", ErrMalformed, PeerLabel)
			}
		}
		if _, err := strconv.ParseFloat(s.V, 64); err != nil {
			return fmt.Errorf("%w: sample value %q is not a number", ErrMalformed, s.V)
		}
	}
	return nil
}

// PeerLabel is the label the asking region puts on every remote sample:
// the peer it came from. A peer's own samples may not carry it.
const PeerLabel = "outpost_peer"

// The answering side fits its answer to the limits above before it is
// sent, so that one long value of an honest region (a host name, a label
// value, a warning) does not make the asker refuse the whole answer as
// malformed.

// clip cuts s to MaxString bytes, on a rune boundary.
func clip(s string) string {
	if len(s) <= MaxString {
		return s
	}
	n := MaxString - len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// fit cuts the rows' strings to MaxString and drops an RTT out of range.
func (a *Agents) fit() {
	a.Agents = append([]AgentRow{}, a.Agents...) // not written in place: the rows are the view's
	for i := range a.Agents {
		r := &a.Agents[i]
		r.ID, r.Host, r.Version, r.Node = clip(r.ID), clip(r.Host), clip(r.Version), clip(r.Node)
		r.Mode, r.ModeReason, r.Health = clip(r.Mode), clip(r.ModeReason), clip(r.Health)
		if r.RTTMs != nil && (math.IsNaN(*r.RTTMs) || *r.RTTMs < 0 || *r.RTTMs > MaxRTTMs) {
			r.RTTMs = nil
		}
	}
}

// fit leaves out the samples a peer would refuse (over MaxLabels labels,
// a label name or value over MaxString, an empty label name or PeerLabel
// itself), saying so in a warning and no longer Complete, and cuts the
// warnings to MaxWarnings of MaxString.
func (q *Query) fit() {
	kept, left := make([]Sample, 0, len(q.Samples)), 0
	for _, s := range q.Samples {
		ok := len(s.Labels) <= MaxLabels
		for k, v := range s.Labels {
			if k == "" || k == PeerLabel || len(k) > MaxString || len(v) > MaxString {
				ok = false
			}
		}
		if ok {
			kept = append(kept, s)
		} else {
			left++
		}
	}
	q.Samples = kept
	if left > 0 {
		q.Complete = false
		w := fmt.Sprintf("%d series left out: federation carries at most %d labels of %d bytes each, and no %s label", left, MaxLabels, MaxString, PeerLabel)
		q.Warnings = append([]string{w}, q.Warnings...)
	}
	ws := q.Warnings[:min(len(q.Warnings), MaxWarnings)]
	q.Warnings = nil // not written in place: the slice is the view's
	for _, w := range ws {
		q.Warnings = append(q.Warnings, clip(w))
	}
}
