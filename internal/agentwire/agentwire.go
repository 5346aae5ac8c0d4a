// Package agentwire holds what an agent and its node exchange besides
// OpAMP's own messages: the agent port's paths, enrollment and renewal
// bodies, the node list, the dispatch a remote config carries and the
// config it applies, and the description attributes. The agent links
// this and no package under node/; it imports only the standard library.
package agentwire

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Paths on a node's agent port (TLS with the node certificate).
const (
	PathOpAMP    = "/v1/opamp"             // WebSocket OpAMP; client certificate required
	PathEnroll   = "/api/v1/agents/enroll" // the API's enrollment; no client certificate
	PathRenew    = "/v1/renew"             // client certificate required
	PathNodes    = "/v1/nodes"             // client certificate required
	PathMetrics  = "/v1/metrics"           // OTLP/HTTP metrics export; client certificate required
	DispatchFile = "outpost.dispatch.json" // the remote config file carrying a dispatch
	DispatchKind = "config"                // the dispatch kind agents apply
)

// MaxHeartbeat is the longest heartbeat interval a node offers
// (agents.heartbeat).
const MaxHeartbeat = 10 * time.Minute

// Codes in a node's error body ("code") that an agent acts on.
const (
	// CodeTokenNotSeen: the node that answered has no record of the
	// bootstrap token. A token created a moment ago on another node may
	// not have replicated to it yet, so the agent asks again for a while
	// before it believes the token unknown.
	CodeTokenNotSeen = "token_not_seen"
	// CodeTokenUnknown: the node read the region's latest state and the
	// token is not in it; asking again will not help.
	CodeTokenUnknown = "token_unknown"
	// CodeCertRetired: a renewal replaced the certificate the agent
	// presented; it asks for the renewal's certificate again.
	CodeCertRetired = "certificate_retired"
	// CodeCertRefused: the node refuses the certificate for good (agent
	// revoked, or the certificate was never registered).
	CodeCertRefused = "certificate_refused"
	// CodeCertRequired: the route needs an agent certificate (enroll
	// first).
	CodeCertRequired = "certificate_required"
	// CodeNotWebSocket: OpAMP is served over WebSocket only.
	CodeNotWebSocket = "not_websocket"
	// CodeNodeFull: the node holds agents.max_connections agents; try
	// another node (503, Retry-After).
	CodeNodeFull = "node_full"
	// CodeUnavailable: the node cannot confirm the certificate now (no
	// leader); try again (503, Retry-After).
	CodeUnavailable = "unavailable"
	// CodeTokenExpired, CodeTokenRevoked, CodeTokenUsed: enrollment
	// refusals (403) of a token the region knows; a new token is needed.
	CodeTokenExpired = "token_expired"
	CodeTokenRevoked = "token_revoked"
	CodeTokenUsed    = "token_used"
)

// Headers a node's refusal of an OpAMP WebSocket upgrade carries, where
// no body can be read by an OpAMP client: the code (one of Code…) and a
// sentence for people.
const (
	HeaderCode   = "X-Outpost-Code"
	HeaderReason = "X-Outpost-Reason"
)

// Dispatch is a committed dispatch as the node delivers it to an
// agent (the body of the remote config file DispatchFile).
type Dispatch struct {
	ID      string          `json:"id"`
	Kind    string          `json:"kind"`
	Token   uint64          `json:"token"`
	Index   uint64          `json:"index"`
	Node    string          `json:"node"` // the issuing node
	Issued  time.Time       `json:"issued"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Config is the payload of a "config" dispatch: what the agent
// observes and how it reports.
type Config struct {
	// Probes are active checks the agent runs.
	Probes []Probe `json:"probes,omitempty"`
	// SampleRate is the fraction of flows reported, 0 < r ≤ 1 (default 1).
	SampleRate float64 `json:"sample_rate,omitempty"`
	// ExportInterval is how often telemetry is sent (default 15s, 1s..1h).
	ExportInterval string `json:"export_interval,omitempty"`
}

// Probe is one active check.
type Probe struct {
	Kind     string `json:"kind"`   // tcp | http | dns | icmp
	Target   string `json:"target"` // host:port, URL, name or host
	Interval string `json:"interval,omitempty"`
}

// Limits on an Config.
const MaxProbes = 256

// Validate checks a config the way the agent will apply it.
func (c Config) Validate() error {
	if len(c.Probes) > MaxProbes {
		return fmt.Errorf("at most %d probes", MaxProbes)
	}
	if c.SampleRate < 0 || c.SampleRate > 1 {
		return fmt.Errorf("sample_rate %v: use a fraction in (0, 1]", c.SampleRate)
	}
	if c.ExportInterval != "" {
		d, err := time.ParseDuration(c.ExportInterval)
		if err != nil || d < time.Second || d > time.Hour {
			return fmt.Errorf("export_interval %q: use a duration from 1s to 1h", c.ExportInterval)
		}
	}
	for i, p := range c.Probes {
		if err := p.validate(); err != nil {
			return fmt.Errorf("probes[%d]: %w", i, err)
		}
	}
	return nil
}

func (p Probe) validate() error {
	if p.Interval != "" {
		d, err := time.ParseDuration(p.Interval)
		if err != nil || d < time.Second || d > time.Hour {
			return fmt.Errorf("interval %q: use a duration from 1s to 1h", p.Interval)
		}
	}
	if p.Target == "" || len(p.Target) > 512 {
		return fmt.Errorf("target: 1..512 characters")
	}
	switch p.Kind {
	case "tcp":
		if _, _, err := net.SplitHostPort(p.Target); err != nil {
			return fmt.Errorf("tcp target %q: use host:port", p.Target)
		}
	case "http":
		u, err := url.Parse(p.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("http target %q: use an http:// or https:// URL", p.Target)
		}
	case "dns", "icmp":
		if strings.ContainsAny(p.Target, " /:") {
			return fmt.Errorf("%s target %q: use a host name or address", p.Kind, p.Target)
		}
	default:
		return fmt.Errorf("kind %q: use tcp, http, dns or icmp", p.Kind)
	}
	return nil
}

// ErrGuardedTarget is wrapped when a probe aims at an address the SSRF
// guard refuses.
var ErrGuardedTarget = errors.New("probe target refused by the SSRF guard")

// guarded are the addresses a probe may not reach unless its tenant
// allowed them: link-local (cloud metadata services live there:
// 169.254.169.254, fd00:ec2::254), Alibaba's metadata address, the
// unspecified and multicast ranges.
var guarded = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("fd00:ec2::254/128"),
	netip.MustParsePrefix("100.100.100.200/32"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("ff00::/8"),
}

// metadataNames are host names of cloud metadata services; each counts
// as the metadata address 169.254.169.254.
var metadataNames = map[string]bool{
	"metadata": true, "metadata.google.internal": true, "metadata.goog": true,
	"instance-data": true, "instance-data.ec2.internal": true, "metadata.azure.internal": true,
}

var metadataAddr = netip.MustParseAddr("169.254.169.254")

// ProbeHost is the host a probe reaches: the host of a tcp host:port or
// an http URL, or a dns/icmp target itself.
func (p Probe) ProbeHost() string {
	switch p.Kind {
	case "tcp":
		h, _, _ := net.SplitHostPort(p.Target)
		return h
	case "http":
		if u, err := url.Parse(p.Target); err == nil {
			return u.Hostname()
		}
	}
	return p.Target
}

// GuardTargets refuses probes whose target is a guarded address (an
// address literal in a guarded range, or a metadata service's name)
// outside the allowed prefixes. Names other than metadata services are
// resolved on the agent, which must check the addresses it resolves the
// same way before it probes (DNS can point anywhere).
func (c Config) GuardTargets(allow []netip.Prefix) error {
	for i, p := range c.Probes {
		host := strings.TrimSuffix(strings.ToLower(p.ProbeHost()), ".")
		addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
		switch {
		case metadataNames[host]:
			addr = metadataAddr
		case err != nil:
			continue // a name: checked on the agent once resolved
		}
		addr = addr.Unmap().WithZone("")
		if GuardedAddr(addr, allow) {
			return fmt.Errorf("probes[%d]: %w: %s is link-local, a metadata service, unspecified or multicast (a tenant Admin can allow a range in the tenant's probe_allow setting)", i, ErrGuardedTarget, p.Target)
		}
	}
	return nil
}

// GuardedAddr reports whether addr is guarded and not in allow.
func GuardedAddr(addr netip.Addr, allow []netip.Prefix) bool {
	for _, a := range allow {
		if a.Contains(addr) {
			return false
		}
	}
	for _, g := range guarded {
		if g.Contains(addr) {
			return true
		}
	}
	return false
}

// ParseConfig decodes a config payload strictly and validates it.
func ParseConfig(payload []byte) (Config, error) {
	var c Config
	if len(payload) == 0 {
		return c, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("config payload: %w", err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("config payload: trailing data")
	}
	return c, c.Validate()
}

// RenewRequest is POST /v1/renew on the agent port: a new key's request,
// sent over mTLS with the current certificate.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// Renewal answers a renewal.
type Renewal struct {
	Certificate string    `json:"certificate"` // PEM
	CA          string    `json:"ca"`          // PEM
	CertExpires time.Time `json:"cert_expires"`
}

// Node is one node an agent may attach to (GET /v1/nodes).
type Node struct {
	ID     string `json:"id"`
	URL    string `json:"url"`
	Agents int    `json:"agents"`
	Full   bool   `json:"full,omitempty"`
}

// Description attributes an agent reports (OpAMP AgentDescription).
const (
	AttrHost    = "host.name"
	AttrVersion = "service.version"
	AttrOS      = "os.type"
	AttrArch    = "host.arch"
	AttrMode    = "outpost.mode"   // ebpf | procfs
	AttrRTT     = "outpost.rtt_ms" // handshake RTT to the attached node
	AttrService = "service.name"
)

// RefusedPrefix starts the error an agent reports for a dispatch whose
// fencing token is lower than one it has seen.
const RefusedPrefix = "refused: stale fencing token"

// EnrollRequest is POST /api/v1/agents/enroll: an agent redeems its
// bootstrap token with a certificate request for a key it made itself.
type EnrollRequest struct {
	Token       string `json:"token"`
	CSR         string `json:"csr"` // PEM "CERTIFICATE REQUEST"
	Host        string `json:"host"`
	Version     string `json:"version,omitempty"`
	InstanceUID string `json:"instance_uid,omitempty"` // informational
}

// Enrollment is the answer to an enrollment: the agent's identity, its
// certificate, the region CA to verify nodes with, and the nodes' agent
// endpoints.
type Enrollment struct {
	AgentID     string    `json:"agent_id"`
	Region      string    `json:"region"`
	Tenant      string    `json:"tenant"`
	Certificate string    `json:"certificate"` // PEM
	CA          string    `json:"ca"`          // PEM
	CertExpires time.Time `json:"cert_expires"`
	Servers     []string  `json:"servers"` // agent endpoint URLs of the region's nodes
}
