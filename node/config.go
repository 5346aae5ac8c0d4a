package node

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/lease"
	"github.com/outpost-mesh/outpost/node/agentlink"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/node/clientaddr"
	"github.com/outpost-mesh/outpost/node/keys"
	"github.com/outpost-mesh/outpost/node/otlp"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/node/query"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage/remotewrite"
	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// Config is a node's configuration file (`outpost serve --config FILE`).
// Every field has a default (DefaultConfig) and is documented in
// docs/config.md; unknown fields are an error.
type Config struct {
	// Region is the region's name; every node of a region sets the same.
	// Default "default".
	Region string `yaml:"region"`
	// NodeID is this node's unique, stable id. Default: the host name.
	NodeID string `yaml:"node_id"`
	// DataDir holds the state file, the Raft log and snapshots. Default
	// /var/lib/outpost.
	DataDir string `yaml:"data_dir"`
	// BootstrapExpect is how many nodes form a new region: 1, 3 or 5.
	// Every node of a new region sets the same value. Default 3.
	BootstrapExpect int `yaml:"bootstrap_expect"`
	// AdminTokenFile is where the node that bootstraps the region writes
	// the first region-admin API token (0600). Default DATA_DIR/admin.token.
	AdminTokenFile string `yaml:"admin_token_file"`

	HTTP   HTTPConfig   `yaml:"http"`
	Raft   RaftConfig   `yaml:"raft"`
	Gossip GossipConfig `yaml:"gossip"`
	TLS    TLSConfig    `yaml:"tls"`
	Keys   KeysConfig   `yaml:"keys"`
	Auth   AuthConfig   `yaml:"auth"`
	Lease  lease.Config `yaml:"lease"`
	Drills DrillsConfig `yaml:"drills"`
	Agents AgentsConfig `yaml:"agents"`
	// Telemetry is the store agents' metrics land in, the OTLP receiver
	// on the agent port and the query API.
	Telemetry TelemetryConfig `yaml:"telemetry"`
	// Federation is this node's read-only federation endpoint (HTTP/3
	// over QUIC) and client; off unless federation.bind is set.
	Federation FederationConfig `yaml:"federation"`
	Log        LogConfig        `yaml:"log"`
}

// TelemetryConfig configures the telemetry path.
type TelemetryConfig struct {
	// Enabled turns the OTLP receiver, the store and the query API on.
	// Default true.
	Enabled bool `yaml:"enabled"`
	// The store: retention, size and cardinality budgets (defaults in
	// storage/telemetry).
	telemetry.Config `yaml:",inline"`
	// OTLP bounds one export request.
	OTLP otlp.Config `yaml:"otlp"`
	// Query bounds queries.
	Query query.Config `yaml:"query"`
	// RemoteWrite also forwards stored samples to a scale-out store
	// through a queue on disk (off by default).
	RemoteWrite remotewrite.Config `yaml:"remote_write"`
}

// FederationConfig sets the node's federation with peer regions.
type FederationConfig struct {
	// Bind is the UDP address the federation endpoint listens on (HTTP/3
	// over QUIC, mutual TLS with the node certificate). Empty (the
	// default): federation is off on this node, and adding peers or links
	// and the global routes say so.
	Bind string `yaml:"bind"`
	// Advertise is the host:port peers dial, shown as federation_addr in
	// `outpostctl status`. Default: the bound address.
	Advertise string `yaml:"advertise"`
	// Timeout bounds one call to one peer, its answer read included, so a
	// global view answers within it whatever the peers do. Default 3s,
	// 100ms..30s.
	Timeout time.Duration `yaml:"timeout"`
	// PollInterval is how often each peer's health is asked, which keeps
	// `outpostctl peers list` current. Default 10s, 1s..10m.
	PollInterval time.Duration `yaml:"poll_interval"`
	// AuditInterval is how often the counted federation calls and
	// refusals are written to the audit log (the first refusal of a
	// peer and reason in each interval is written at once). Default 1m,
	// 1s..1h.
	AuditInterval time.Duration `yaml:"audit_interval"`
}

func (f FederationConfig) validate() error {
	if f.Bind == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(f.Bind); err != nil {
		return fmt.Errorf("federation.bind %q: %v", f.Bind, err)
	}
	if f.Advertise != "" {
		if h, _, err := net.SplitHostPort(f.Advertise); err != nil || h == "" {
			return fmt.Errorf("federation.advertise %q: give HOST:PORT peers dial", f.Advertise)
		}
	}
	for _, d := range []struct {
		name      string
		v, lo, hi time.Duration
	}{{"timeout", f.Timeout, 100 * time.Millisecond, 30 * time.Second}, {"poll_interval", f.PollInterval, time.Second, 10 * time.Minute},
		{"audit_interval", f.AuditInterval, time.Second, time.Hour}} {
		if d.v < d.lo || d.v > d.hi {
			return fmt.Errorf("federation.%s %v: use %v..%v", d.name, d.v, d.lo, d.hi)
		}
	}
	return nil
}

// AgentsConfig sets how agents enroll and connect.
type AgentsConfig struct {
	// Bind is the agent port: enrollment, the OpAMP control link and
	// certificate renewal, over TLS with the node certificate. Left out of
	// the file, it is port 7443 on the host raft.bind names, or on every
	// address when raft.bind is a wildcard (defaultAgentBind).
	// DefaultConfig says 0.0.0.0:7443.
	Bind string `yaml:"bind"`
	// Advertise is the host (or host:port) agents dial. Default: the
	// host of raft.advertise (or of raft.bind when it names one).
	Advertise string `yaml:"advertise"`
	// CertLifetime is the validity of an agent's client certificate; the
	// agent renews it when a third is left. Default 24h, 10m..720h.
	CertLifetime time.Duration `yaml:"cert_lifetime"`
	// MaxConnections is how many agents this node holds; more are told
	// to try another node (503). Default 10000.
	MaxConnections int `yaml:"max_connections"`
	// MaxMessageBytes caps one OpAMP message from an agent; a larger one
	// closes the connection. Default 1 MiB, 4 KiB..16 MiB.
	MaxMessageBytes int64 `yaml:"max_message_bytes"`
	// Heartbeat is the interval offered to agents that announce
	// ReportsHeartbeat (OpAMP heartbeat_interval_seconds); such a link
	// silent for three is closed, another after twenty. Default 30s,
	// 1s..10m.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// RetireGrace is how long a connection on an agent certificate that
	// a renewal replaced may stay open; the renewed agent reconnects
	// with its new certificate well before. Default 10s, 1s..10m.
	RetireGrace time.Duration `yaml:"retire_grace"`
	// ReadTimeout bounds reading one request other than an OpAMP link
	// (enrollment, renewal, node list); the TLS handshake and the headers
	// get min(10s, read_timeout). Default 30s, 1s..10m.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing the answer to such a request. Default
	// 30s, 1s..10m.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout bounds a kept-alive connection between requests.
	// Default 1m, 1s..10m. OpAMP links have their own bound (heartbeat).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxUnauthenticated caps open connections without a client
	// certificate (enrollment); one address gets half. Default 1024.
	MaxUnauthenticated int `yaml:"max_unauthenticated"`
	// MaxHandshakes caps TLS handshakes in flight; one address gets
	// half. Default 256.
	MaxHandshakes int `yaml:"max_handshakes"`
	// MaxMessageRate is the OpAMP messages per second one agent may send
	// to a node, in bursts of three seconds' worth; more are shed
	// (counted) and the agent is then asked for its full state. Default
	// 10, 0.1..1000.
	MaxMessageRate float64 `yaml:"max_message_rate"`
}

// DefaultAgentPort is the agent port when agents.bind is left out.
const DefaultAgentPort = "7443"

// defaultAgentBind is agents.bind when the file leaves it out: the agent
// port on the host raft.bind names. Following raft.bind keeps nodes that
// share a machine on different addresses (127.0.0.2, 127.0.0.3, …) from
// colliding on a wildcard agent port, and listens where agents.advertise
// (which defaults to the same host) says agents should dial. A wildcard
// or host-name raft.bind gives every address.
func (c Config) defaultAgentBind() string {
	if h, _, err := net.SplitHostPort(c.Raft.Bind); err == nil {
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
			return net.JoinHostPort(h, DefaultAgentPort)
		}
	}
	return net.JoinHostPort("0.0.0.0", DefaultAgentPort)
}

// agentAdvertise is the host agents dial when agents.advertise is unset.
func (c Config) agentAdvertise() string {
	if c.Agents.Advertise != "" {
		return c.Agents.Advertise
	}
	for _, a := range []string{c.Raft.Advertise, c.Raft.Bind} {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" && !net.ParseIP(h).IsUnspecified() {
			return h
		}
	}
	return ""
}

// DrillsConfig gates failover drills (`outpostctl drill`), which cut this
// node off from its peers or stop it on a region admin's request.
type DrillsConfig struct {
	// Enabled allows drills on this node. Default false: a production
	// region enables them for a game day, not permanently.
	Enabled bool `yaml:"enabled"`
	// MaxDuration caps how long one drill may isolate a node; it heals by
	// itself after that even if the drill's client vanished. Default 5m.
	MaxDuration time.Duration `yaml:"max_duration"`
}

// KeysConfig locates the master key that wraps the node's secrets at rest
// (CA key, gossip key, OIDC client secret). It never enters the database.
type KeysConfig struct {
	// MasterKeyFile holds the base64 32-byte master key (`outpost keys
	// generate`), mode 0600. OUTPOST_MASTER_KEY overrides it. Required:
	// every node of a region uses the same key.
	MasterKeyFile string `yaml:"master_key_file"`
	// PreviousMasterKeyFile holds the key being rotated away from; secrets
	// wrapped by it still open until `outpostctl keys rotate` finishes.
	// OUTPOST_PREVIOUS_MASTER_KEY overrides it. Default none.
	PreviousMasterKeyFile string `yaml:"previous_master_key_file"`
}

// AuthConfig is operator login.
type AuthConfig struct {
	// Lockout is when wrong passwords lock an account for the address
	// they came from, and slow it for everyone. Defaults: 5 failures from
	// one address within 15m lock it for that address for 15m; 20 from
	// anywhere allow one attempt every 2s.
	Lockout auth.LockoutPolicy `yaml:"lockout"`
	// InvitationTTL is how long a tenant Admin's invitation can be
	// accepted. Default 168h (7 days); at most 720h.
	InvitationTTL time.Duration `yaml:"invitation_ttl"`
	// OIDC enables login through an OpenID Connect IdP. Default off.
	OIDC *auth.OIDCConfig `yaml:"oidc"`
}

// MasterKeySources are where the master keys come from.
func (c Config) MasterKeySources() (current, previous keys.Source) {
	return keys.Source{File: c.Keys.MasterKeyFile, Env: "OUTPOST_MASTER_KEY"},
		keys.Source{File: c.Keys.PreviousMasterKeyFile, Env: "OUTPOST_PREVIOUS_MASTER_KEY"}
}

// HTTPConfig is the operator API (and, later, the UI).
type HTTPConfig struct {
	// Bind is the API listen address. Default 127.0.0.1:7070.
	Bind string `yaml:"bind"`
	// AdvertiseURL is how peers and tools reach this API. Default
	// http://BIND (https when TLS is set).
	AdvertiseURL string `yaml:"advertise_url"`
	// CertFile and KeyFile serve the API over TLS when both are set.
	// Default: plain HTTP (put a TLS proxy in front, or set these).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// TrustedProxies are the reverse proxies (CIDR prefixes, or single
	// addresses) whose X-Forwarded-For names the client: login limits,
	// lockout sources, enrollment limits and audit records then key on
	// that client instead of the proxy. Default none: the header is
	// ignored. Any host inside a listed prefix can choose the address
	// the node sees, so list only the proxies. The agent port never
	// reads the header.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Proxies parses TrustedProxies, naming a bad entry.
func (c HTTPConfig) Proxies() (clientaddr.Proxies, error) {
	ps := make([]netip.Prefix, 0, len(c.TrustedProxies))
	for i, e := range c.TrustedProxies {
		p, err := clientaddr.ParsePrefix(e)
		if err != nil {
			return clientaddr.Proxies{}, fmt.Errorf("http.trusted_proxies[%d] %q: %v", i, e, err)
		}
		ps = append(ps, p)
	}
	return clientaddr.New(ps...), nil
}

// RaftConfig is the Raft port and timing.
type RaftConfig struct {
	// Bind is the listen address for Raft and node-to-node RPCs (mutual
	// TLS). Default 0.0.0.0:7301.
	Bind string `yaml:"bind"`
	// Advertise is the address peers dial. Required when Bind is 0.0.0.0.
	Advertise   string `yaml:"advertise"`
	raft.Tuning `yaml:",inline"`
}

// GossipConfig is memberlist discovery.
type GossipConfig struct {
	// Bind is the gossip listen address (TCP and UDP). Default 0.0.0.0:7302.
	Bind string `yaml:"bind"`
	// Advertise is the address peers gossip to. Required when Bind is 0.0.0.0.
	Advertise string `yaml:"advertise"`
	// Seeds are gossip addresses of other nodes; one reachable seed is
	// enough. Default none (a single-node region, or the first node).
	Seeds []string `yaml:"seeds"`
	// KeyFile holds the base64 gossip encryption key (16, 24 or 32 bytes;
	// `outpost keygen` makes one). The environment variable
	// OUTPOST_GOSSIP_KEY overrides it. Required.
	KeyFile string `yaml:"key_file"`
}

// TLSConfig locates the region CA. Every node holds the CA key: it issues
// its own node certificate at start (and, later, agent certificates).
type TLSConfig struct {
	// CACert and CAKey are PEM files (`outpost ca create` writes them).
	// Default: DATA_DIR/ca/ca.crt and ca.key, generated at first start if
	// missing, which suits a single node; copy them to every other node
	// of the region before it starts.
	CACert string `yaml:"ca_cert"`
	CAKey  string `yaml:"ca_key"`
}

// LogConfig controls the node's structured log.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

// DefaultConfig returns a config that runs a node of a 3-node region once
// the gossip key, advertise addresses and seeds are filled in.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Region:          "default",
		NodeID:          host,
		DataDir:         "/var/lib/outpost",
		BootstrapExpect: 3,
		HTTP:            HTTPConfig{Bind: "127.0.0.1:7070"},
		Raft:            RaftConfig{Bind: "0.0.0.0:7301", Tuning: raft.DefaultTuning()},
		Gossip:          GossipConfig{Bind: "0.0.0.0:7302"},
		Log:             LogConfig{Level: "info", Format: "text"},
		Auth:            AuthConfig{Lockout: auth.DefaultLockoutPolicy(), InvitationTTL: 7 * 24 * time.Hour},
		Lease:           lease.DefaultConfig(),
		Drills:          DrillsConfig{MaxDuration: 5 * time.Minute},
		Federation:      FederationConfig{Timeout: 3 * time.Second, PollInterval: 10 * time.Second, AuditInterval: time.Minute},
		Agents: AgentsConfig{Bind: "0.0.0.0:" + DefaultAgentPort, CertLifetime: pki.AgentCertLifetime, MaxConnections: agentlink.DefaultMaxAgents,
			MaxMessageBytes: agentlink.DefaultMaxMessage, Heartbeat: agentlink.DefaultHeartbeat,
			RetireGrace: agentlink.DefaultRetireGrace, ReadTimeout: agentlink.DefaultReadTimeout, WriteTimeout: agentlink.DefaultWriteTimeout,
			IdleTimeout: agentlink.DefaultIdleTimeout, MaxUnauthenticated: agentlink.DefaultMaxUnauth, MaxHandshakes: agentlink.DefaultMaxHandshakes,
			MaxMessageRate: agentlink.DefaultMessageRate},
		Telemetry: TelemetryConfig{Enabled: true, Config: telemetry.Config{}.Defaults(), OTLP: otlp.Config{}.Defaults(),
			Query: query.Config{}.Defaults(), RemoteWrite: remotewrite.Config{}.Defaults()},
	}
}

const maxConfigSize = 1 << 20

var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate rejects bad values and conflicting settings, naming the field.
// It reports the first problem; CheckConfig lists them all.
func (c Config) Validate() error {
	if ps := c.problems(); len(ps) > 0 {
		return ps[0]
	}
	return nil
}

// problems is every check of Validate, each message beginning with the
// field as the YAML file writes it (CheckConfig finds its line by that).
func (c Config) problems() []error {
	var ps []error
	add := func(err error) {
		if err != nil {
			ps = append(ps, err)
		}
	}
	add(c.Federation.validate())
	if !namePattern.MatchString(c.Region) {
		add(fmt.Errorf("region %q: use 1-63 lowercase letters, digits and '-'", c.Region))
	}
	if !namePattern.MatchString(c.NodeID) {
		add(fmt.Errorf("node_id %q: use 1-63 lowercase letters, digits and '-'", c.NodeID))
	}
	if c.DataDir == "" {
		add(errors.New("data_dir is required"))
	}
	switch c.BootstrapExpect {
	case 1, 3, 5:
	default:
		add(fmt.Errorf("bootstrap_expect %d: a region has 1, 3 or 5 nodes", c.BootstrapExpect))
	}
	if (c.HTTP.CertFile == "") != (c.HTTP.KeyFile == "") {
		add(errors.New("http.cert_file and http.key_file must be set together"))
	}
	if (c.TLS.CACert == "") != (c.TLS.CAKey == "") {
		add(errors.New("tls.ca_cert and tls.ca_key must be set together"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add(fmt.Errorf("log.level %q: use debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add(fmt.Errorf("log.format %q: use text or json", c.Log.Format))
	}
	if c.BootstrapExpect > 1 && c.Raft.MinQuorum > c.BootstrapExpect {
		add(fmt.Errorf("raft.min_quorum %d exceeds bootstrap_expect %d", c.Raft.MinQuorum, c.BootstrapExpect))
	}
	add(c.Raft.Tuning.Validate())
	add(c.Lease.Validate())
	add(c.Telemetry.Config.Validate())
	add(c.Telemetry.RemoteWrite.Validate())
	if c.Telemetry.RemoteWrite.Enabled && !c.Telemetry.Enabled {
		add(errors.New("telemetry.remote_write.enabled needs telemetry.enabled: remote_write forwards what the store takes"))
	}
	add(c.Telemetry.OTLP.Validate())
	if q := c.Telemetry.Query; q.Timeout < time.Second || q.MaxSamples < 1000 || q.MaxConcurrent < 1 || q.LookbackDelta < time.Second {
		add(fmt.Errorf("telemetry.query: timeout (%v) and lookback_delta (%v) at least 1s, max_samples (%d) at least 1000, max_concurrent (%d) at least 1",
			q.Timeout, q.LookbackDelta, q.MaxSamples, q.MaxConcurrent))
	} else {
		add(c.Telemetry.Query.Validate())
	}
	if l := c.Agents.CertLifetime; l < pki.MinAgentCertLifetime || l > pki.MaxAgentCertLifetime {
		add(fmt.Errorf("agents.cert_lifetime %v must be in [%v, %v]", l, pki.MinAgentCertLifetime, pki.MaxAgentCertLifetime))
	}
	if c.Drills.MaxDuration < time.Second || c.Drills.MaxDuration > time.Hour {
		add(fmt.Errorf("drills.max_duration %v must be in [1s, 1h]", c.Drills.MaxDuration))
	}
	if l := c.Auth.Lockout; l.MaxFailures < 1 || l.Window <= 0 || l.LockFor <= 0 || l.SlowAfter < l.MaxFailures || l.SlowEvery <= 0 || l.SlowEvery > time.Minute {
		add(fmt.Errorf("auth.lockout: max_failures (%d), window, lock_for and slow_every must be positive, slow_every at most 1m, and slow_after (%d) at least max_failures", l.MaxFailures, l.SlowAfter))
	}
	if d := c.Auth.InvitationTTL; d < time.Second || d > 30*24*time.Hour {
		add(fmt.Errorf("auth.invitation_ttl %v must be in [1s, 720h] (default 168h)", d))
	}
	if c.Auth.OIDC != nil {
		if err := c.Auth.OIDC.Validate(); err != nil {
			add(err)
		} else if c.Auth.OIDC.ClientSecretFile == "" {
			add(errors.New("auth.oidc.client_secret_file is required (wrap the secret: outpost keys wrap --purpose oidc_client_secret)"))
		}
	}
	for _, a := range []struct{ field, bind, adv string }{
		{"raft", c.Raft.Bind, c.Raft.Advertise},
		{"gossip", c.Gossip.Bind, c.Gossip.Advertise},
	} {
		add(checkBindAdvertise(a.field, a.bind, a.adv))
	}
	if h, _, err := net.SplitHostPort(c.Agents.Bind); err != nil {
		add(fmt.Errorf("agents.bind %q: %v", c.Agents.Bind, err))
	} else if (h == "" || net.ParseIP(h).IsUnspecified()) && c.agentAdvertise() == "" {
		add(fmt.Errorf("agents.bind %q listens on every address; set agents.advertise to the host agents should dial", c.Agents.Bind))
	}
	if c.Agents.MaxConnections < 1 {
		add(fmt.Errorf("agents.max_connections %d must be at least 1", c.Agents.MaxConnections))
	}
	if m := c.Agents.MaxMessageBytes; m < 4<<10 || m > 16<<20 {
		add(fmt.Errorf("agents.max_message_bytes %d must be in [4096, 16777216]", m))
	}
	if h := c.Agents.Heartbeat; h < time.Second || h > agentwire.MaxHeartbeat {
		add(fmt.Errorf("agents.heartbeat %v must be in [1s, 10m]", h))
	}
	if g := c.Agents.RetireGrace; g < time.Second || g > 10*time.Minute {
		add(fmt.Errorf("agents.retire_grace %v must be in [1s, 10m]", g))
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"read_timeout", c.Agents.ReadTimeout}, {"write_timeout", c.Agents.WriteTimeout}, {"idle_timeout", c.Agents.IdleTimeout}} {
		if d.v < time.Second || d.v > 10*time.Minute {
			add(fmt.Errorf("agents.%s %v must be in [1s, 10m]", d.field, d.v))
		}
	}
	if c.Agents.MaxUnauthenticated < 2 {
		add(fmt.Errorf("agents.max_unauthenticated %d must be at least 2 (one address gets half)", c.Agents.MaxUnauthenticated))
	}
	if r := c.Agents.MaxMessageRate; r < 0.1 || r > 1000 {
		add(fmt.Errorf("agents.max_message_rate %v must be in [0.1, 1000]", r))
	}
	if c.Agents.MaxHandshakes < 2 {
		add(fmt.Errorf("agents.max_handshakes %d must be at least 2 (one address gets half)", c.Agents.MaxHandshakes))
	}
	h, _, herr := net.SplitHostPort(c.HTTP.Bind)
	if herr != nil {
		add(fmt.Errorf("http.bind %q: %v", c.HTTP.Bind, herr))
	}
	_, err := c.HTTP.Proxies()
	add(err)
	if herr == nil && c.HTTP.AdvertiseURL == "" && (h == "" || net.ParseIP(h).IsUnspecified()) {
		add(fmt.Errorf("http.bind %q listens on every address; set http.advertise_url to the URL peers and tools should use", c.HTTP.Bind))
	}
	for i, s := range c.Gossip.Seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			add(fmt.Errorf("gossip.seeds[%d] %q: %v", i, s, err))
		}
	}
	return ps
}

// checkBindAdvertise checks a listen address and, when the listen host is
// unspecified (0.0.0.0), that an advertise address is set.
func checkBindAdvertise(field, bind, adv string) error {
	h, _, err := net.SplitHostPort(bind)
	if err != nil {
		return fmt.Errorf("%s.bind %q: %v", field, bind, err)
	}
	if adv != "" {
		ah, ap, err := net.SplitHostPort(adv)
		if err != nil {
			return fmt.Errorf("%s.advertise %q: %v", field, adv, err)
		}
		if ip := net.ParseIP(ah); ip == nil || ip.IsUnspecified() || ap == "0" {
			return fmt.Errorf("%s.advertise %q: use an IP:port peers can reach", field, adv)
		}
		return nil
	}
	if ip := net.ParseIP(h); ip == nil || ip.IsUnspecified() {
		return fmt.Errorf("%s.bind %q listens on every address; set %s.advertise to the IP:port peers should dial", field, bind, field)
	}
	return nil
}

// LoadConfig reads a YAML config over DefaultConfig. Unknown fields, a
// second document and type mismatches are errors that name the field and
// line.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	c, err := ParseConfig(f)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes YAML from r over DefaultConfig and validates it.
func ParseConfig(r io.Reader) (Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return Config{}, err
	}
	if len(data) > maxConfigSize {
		return Config{}, fmt.Errorf("config is larger than %d bytes", maxConfigSize)
	}
	c := fileDefaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("only one YAML document is allowed")
	}
	c.fillDerived()
	return c, c.Validate()
}

// fileDefaults is what a config file is decoded over: DefaultConfig,
// less the defaults that follow other fields (fillDerived sets them).
func fileDefaults() Config {
	c := DefaultConfig()
	// Cleared so that a file without agents.bind gets the default derived
	// from its raft.bind.
	c.Agents.Bind = ""
	// Cleared too: left out, the leader lease follows the heartbeat
	// timeout (its default equals it), so lowering only the heartbeat
	// timeout is not an error.
	c.Raft.LeaderLeaseTimeout = 0
	return c
}

// fillDerived sets the defaults that follow other fields.
func (c *Config) fillDerived() {
	if c.AdminTokenFile == "" {
		c.AdminTokenFile = c.DataDir + "/admin.token"
	}
	if c.Agents.Bind == "" {
		c.Agents.Bind = c.defaultAgentBind()
	}
	if c.Raft.LeaderLeaseTimeout == 0 {
		c.Raft.LeaderLeaseTimeout = min(raft.DefaultTuning().LeaderLeaseTimeout, c.Raft.HeartbeatTimeout)
	}
	if c.BootstrapExpect == 1 && c.Raft.MinQuorum > 1 {
		c.Raft.MinQuorum = 0
	}
}

// PurposeGossipKey is the wrapped-file purpose of the gossip key.
const PurposeGossipKey = "gossip_key"

// GossipKey returns the gossip key from OUTPOST_GOSSIP_KEY or the key
// file, which holds it wrapped by the master key.
func (c Config) GossipKey(p *keys.Protector) ([]byte, error) {
	src, raw := "OUTPOST_GOSSIP_KEY", os.Getenv("OUTPOST_GOSSIP_KEY")
	if raw == "" {
		if c.Gossip.KeyFile == "" {
			return nil, errors.New("gossip.key_file is not set and OUTPOST_GOSSIP_KEY is empty; create a key with `outpost keygen --out gossip.key` (wrapped by the master key) and use the same key on every node")
		}
		b, err := keys.ReadFile(p, c.Gossip.KeyFile, PurposeGossipKey)
		if err != nil {
			return nil, fmt.Errorf("gossip.key_file: %w", err)
		}
		src, raw = c.Gossip.KeyFile, string(b)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("gossip key from %s is not base64: %w", src, err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("gossip key from %s is %d bytes; it must be 16, 24 or 32 (`outpost keygen` makes a 32-byte key)", src, len(key))
}
