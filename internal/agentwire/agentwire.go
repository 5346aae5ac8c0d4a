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
	"strconv"
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
	// ProbeAllow are the address ranges (CIDR, at most MaxProbeAllow) the
	// SSRF guard lets this config's probes reach: the tenant's
	// probe_allow setting, which the node sets when it commits a tenant's
	// dispatch (a request that sets it is refused), so that the agent
	// allows the names it resolves exactly as the node allowed literals.
	ProbeAllow []string `json:"probe_allow,omitempty"`
}

// Probe is one active check.
type Probe struct {
	Kind     string `json:"kind"`   // tcp | http | dns | icmp
	Target   string `json:"target"` // host:port, URL, name or host
	Interval string `json:"interval,omitempty"`
}

// Limits on a Config.
const (
	MaxProbes     = 256
	MaxProbeAllow = 32
)

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
	if _, err := ParseProbeAllow(c.ProbeAllow); err != nil {
		return err
	}
	for i, p := range c.Probes {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("probes[%d]: %w", i, err)
		}
	}
	return nil
}

// ParseProbeAllow parses probe_allow ranges: at most MaxProbeAllow
// CIDR ranges with no host bits set.
func ParseProbeAllow(ranges []string) ([]netip.Prefix, error) {
	if len(ranges) > MaxProbeAllow {
		return nil, fmt.Errorf("probe_allow: at most %d ranges", MaxProbeAllow)
	}
	out := make([]netip.Prefix, 0, len(ranges))
	for _, r := range ranges {
		p, err := netip.ParsePrefix(r)
		if err != nil || p != p.Masked() {
			return nil, fmt.Errorf("probe_allow %q: use a CIDR range with no host bits set (e.g. 169.254.10.0/24)", r)
		}
		out = append(out, p)
	}
	return out, nil
}

// Validate checks one probe: its kind, the shape of its target and its
// interval. It does not apply the SSRF guard (GuardTargets, GuardHost).
func (p Probe) Validate() error {
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
		// An empty host dials this host, and resolvers read text after
		// a space in their own ways: neither is a probe target.
		h, _, err := net.SplitHostPort(p.Target)
		if err != nil || h == "" || strings.ContainsFunc(h, badHostRune) {
			return fmt.Errorf("tcp target %q: use host:port", p.Target)
		}
	case "http":
		u, err := url.Parse(p.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			return fmt.Errorf("http target %q: use an http:// or https:// URL", p.Target)
		}
	case "dns", "icmp":
		if strings.ContainsAny(p.Target, "/:") || strings.ContainsFunc(p.Target, badHostRune) {
			return fmt.Errorf("%s target %q: use a host name or address", p.Kind, p.Target)
		}
	default:
		return fmt.Errorf("kind %q: use tcp, http, dns or icmp", p.Kind)
	}
	return nil
}

// badHostRune reports a space or control character, which no host name
// or address holds.
func badHostRune(r rune) bool { return r <= ' ' || r == 0x7f }

// ErrGuardedTarget is wrapped when a probe aims at an address the SSRF
// guard refuses.
var ErrGuardedTarget = errors.New("probe target refused by the SSRF guard")

// guardRule is one range the SSRF guard refuses unless allowed.
type guardRule struct {
	name   string
	prefix netip.Prefix
}

// guarded are the ranges a probe may not reach unless its tenant allowed
// them, the narrowest first so that a refusal names the most specific
// rule: cloud metadata services, loopback (the agent's own host: its
// local services and admin ports), link-local (where metadata services
// live), the unspecified address (which dials this host), multicast and
// broadcast.
var guarded = []guardRule{
	{"cloud metadata", netip.MustParsePrefix("169.254.169.254/32")},
	{"cloud metadata", netip.MustParsePrefix("fd00:ec2::254/128")},
	{"cloud metadata", netip.MustParsePrefix("100.100.100.200/32")}, // Alibaba Cloud
	{"cloud metadata", netip.MustParsePrefix("168.63.129.16/32")},   // Azure WireServer
	{"loopback", netip.MustParsePrefix("127.0.0.0/8")},
	{"loopback", netip.MustParsePrefix("::1/128")},
	{"link-local", netip.MustParsePrefix("169.254.0.0/16")},
	{"link-local", netip.MustParsePrefix("fe80::/10")},
	{"unspecified", netip.MustParsePrefix("0.0.0.0/8")},
	{"unspecified", netip.MustParsePrefix("::/128")},
	{"broadcast", netip.MustParsePrefix("255.255.255.255/32")},
	{"multicast", netip.MustParsePrefix("224.0.0.0/4")},
	{"multicast", netip.MustParsePrefix("ff00::/8")},
}

// Prefixes that embed an IPv4 address: NAT64 (RFC 6052, RFC 8215) and 6to4.
var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour  = netip.MustParsePrefix("2002::/16")
)

// metadataNames are host names of cloud metadata services; each counts
// as the metadata address 169.254.169.254.
var metadataNames = map[string]bool{
	"metadata": true, "metadata.google.internal": true, "metadata.goog": true,
	"instance-data": true, "instance-data.ec2.internal": true, "metadata.azure.internal": true,
}

var (
	metadataAddr = netip.MustParseAddr("169.254.169.254")
	loopbackAddr = netip.MustParseAddr("127.0.0.1")
)

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
// address literal in a guarded range, a metadata service's or loopback
// name, or an IPv4 address in a form other than dotted decimal) outside
// the allowed prefixes. Other names are resolved on the agent, which
// must check the addresses it dials the same way before it probes (DNS
// can point anywhere).
func (c Config) GuardTargets(allow []netip.Prefix) error {
	for i, p := range c.Probes {
		rule, allowable := guardHost(p.ProbeHost(), allow)
		if rule == "" {
			continue
		}
		fix := "a tenant Admin can allow a range in the tenant's probe_allow setting"
		if !allowable {
			fix = "write the address in dotted decimal (a.b.c.d)"
		}
		return fmt.Errorf("probes[%d]: %w: %s: rule %s (%s)", i, ErrGuardedTarget, p.Target, rule, fix)
	}
	return nil
}

// GuardHost names the SSRF rule that refuses a probe's host (as
// ProbeHost gives it) before any resolution, or returns "" when the host
// passes: a name other than a metadata service's or localhost's passes
// here and must be checked once resolved, address by address, with
// GuardRule.
func GuardHost(host string, allow []netip.Prefix) string {
	rule, _ := guardHost(host, allow)
	return rule
}

// guardHost is GuardHost, also reporting whether allowing a range can
// lift the refusal.
func guardHost(host string, allow []netip.Prefix) (rule string, allowable bool) {
	h := strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	switch {
	case metadataNames[h]:
		if allowed(metadataAddr, allow) {
			return "", true
		}
		return "metadata service name " + h, true
	case h == "localhost" || strings.HasSuffix(h, ".localhost"): // RFC 6761: always loopback
		if allowed(loopbackAddr, allow) {
			return "", true
		}
		return "loopback name " + h, true
	}
	if addr, err := netip.ParseAddr(h); err == nil {
		return GuardRule(addr, allow), true
	}
	// net/url and net.SplitHostPort pass "2852039166", "0xa9fea9fe" or
	// "0251.0376.0251.0376" through as names; Go's resolver then asks
	// DNS, but getaddrinfo (cgo, curl, most other clients) reads them
	// with inet_aton as 169.254.169.254. Mapping them would make the
	// guard's reading the one that counts; refusing them leaves no
	// reading to disagree on, and no one needs them to write an address.
	if addr, ok := parseInetAton(h); ok {
		return fmt.Sprintf("ambiguous IPv4 form (inet_aton reads %s)", addr), false
	}
	return "", true
}

// GuardRule names the SSRF rule that refuses addr, such as "loopback
// 127.0.0.0/8" or "cloud metadata fd00:ec2::254/128", or returns "" when
// addr is not guarded or an allowed prefix holds it. IPv4-mapped IPv6
// addresses count as the IPv4 address, and zones are ignored.
func GuardRule(addr netip.Addr, allow []netip.Prefix) string {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return "invalid address"
	}
	if allowed(addr, allow) {
		return ""
	}
	// An IPv4 address inside a NAT64 (RFC 6052 well-known and local-use
	// prefixes) or 6to4 address reaches that IPv4 host through a
	// translator: it is guarded as the IPv4 address it embeds.
	if addr.Is6() {
		b := addr.As16()
		var v4 netip.Addr
		switch {
		case nat64.Contains(addr), nat64Local.Contains(addr):
			v4 = netip.AddrFrom4([4]byte(b[12:16]))
		case sixToFour.Contains(addr):
			v4 = netip.AddrFrom4([4]byte(b[2:6]))
		}
		if v4.IsValid() {
			if allowed(v4, allow) {
				return ""
			}
			if rule := GuardRule(v4, allow); rule != "" {
				return rule + " (embedded in " + addr.String() + ")"
			}
		}
	}
	for _, g := range guarded {
		if g.prefix.Contains(addr) {
			return g.name + " " + g.prefix.String()
		}
	}
	return ""
}

// GuardedAddr reports whether addr is guarded and not in allow.
func GuardedAddr(addr netip.Addr, allow []netip.Prefix) bool {
	return GuardRule(addr, allow) != ""
}

func allowed(addr netip.Addr, allow []netip.Prefix) bool {
	for _, a := range allow {
		if a.Contains(addr) {
			return true
		}
	}
	return false
}

// parseInetAton reads s the way inet_aton(3) does: one to four parts
// separated by dots, each decimal, octal (leading 0) or hex (0x), the
// last filling the remaining bytes ("10.1" is 10.0.0.1), and reports
// false for anything inet_aton refuses. (It also reads dotted decimal,
// which netip.ParseAddr reads the same way; callers try that first.)
func parseInetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var vals [4]uint64
	for i, p := range parts {
		base, digits := 10, p
		switch {
		case len(p) > 2 && (p[:2] == "0x" || p[:2] == "0X"):
			base, digits = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		v, err := strconv.ParseUint(digits, base, 32) // no sign, no "_"
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	// All but the last part are one byte; the last fills the rest.
	last := len(parts) - 1
	for _, v := range vals[:last] {
		if v > 0xff {
			return netip.Addr{}, false
		}
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n := uint32(vals[last])
	for i, v := range vals[:last] {
		n |= uint32(v) << (24 - 8*i)
	}
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
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
	AttrMode    = "outpost.mode" // ebpf | procfs
	// AttrModeReason says why an agent runs in procfs mode (eBPF could
	// not load: no privilege, verifier, integrity; or configured).
	AttrModeReason = "outpost.mode_reason"
	AttrRTT        = "outpost.rtt_ms" // handshake RTT to the attached node
	AttrService    = "service.name"
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
