// Package agent is the outpost-agent runtime: it enrolls once with a
// bootstrap token (its key made and kept here, 0600), renews its
// certificate when a third of its life is left, measures the handshake
// RTT to every node of its region, attaches over OpAMP (WebSocket, mTLS)
// to the nearest node with room, re-evaluates with hysteresis, fails over
// when its node goes, and applies the fenced dispatches its node pushes:
// it persists the highest fencing token it has seen and refuses any
// dispatch under a lower one.
//
// The agent links no server code and no test code: TestBinaryDependencies
// (internal/pkgdoc) lists what outpost-agent must not link and why; the
// wire shapes it shares with the node are in internal/agentwire.
package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-mesh/outpost/agent/dataplane"
	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/internal/meshid"
)

// Version is the agent's version, reported to its node.
var Version = "0.1.0-dev"

// Defaults.
const (
	DefaultHeartbeat  = 30 * time.Second
	DefaultReevaluate = 5 * time.Minute
	DefaultHysteresis = 1.5
	DefaultMinGain    = 2 * time.Millisecond
	// DefaultUnknownTokenGrace is how long enrollment keeps asking while
	// nodes answer that they have not seen the token.
	DefaultUnknownTokenGrace = 30 * time.Second
)

// Config configures an agent.
type Config struct {
	// Servers are agent endpoints of the region's nodes (https://host:port);
	// after enrollment the node's own list is used and refreshed.
	Servers []string
	// Token is the bootstrap token; needed only until the agent enrolled.
	Token string
	// StateDir keeps the key, certificate, CA and state.
	StateDir string
	// CAPEM or CAPin says which CA to trust when enrolling (one is
	// needed then; afterwards the CA saved at enrollment is used).
	CAPEM []byte
	CAPin string
	// Host is the name reported (default the host name).
	Host string
	// Heartbeat is how often the agent reports until its node offers an
	// interval (OpAMPConnectionSettings.heartbeat_interval_seconds),
	// which the agent then follows. Default 30s.
	Heartbeat time.Duration
	// Reevaluate is how often the RTTs are measured again. Default 5m.
	Reevaluate time.Duration
	// Hysteresis: move to a nearer node only when the current one's RTT
	// is more than this factor above it and by at least MinGain.
	Hysteresis float64
	MinGain    time.Duration
	// UnknownTokenGrace is how long enrollment keeps asking while nodes
	// answer that they have not seen the bootstrap token (created a
	// moment ago elsewhere, it may not have replicated). Default 30s.
	UnknownTokenGrace time.Duration
	// Apply applies a validated config (default: keep it); the agent
	// applies its probes and export interval itself when Telemetry is on.
	Apply func(agentwire.Config) error
	// Telemetry turns on the data plane (eBPF or procfs), the probes and
	// the OTLP export; nil leaves the agent a control-plane client only.
	Telemetry *TelemetryConfig
	Logger    *slog.Logger
}

// Status is what the agent is doing (for its log, tests and outpost dev).
type Status struct {
	AgentID      string
	Tenant       string
	Region       string
	Node         string // node id attached to ("" when not attached)
	URL          string
	RTT          time.Duration
	Connected    bool
	HighestToken uint64
	LastIndex    uint64
	Applied      []string
	ConfigStatus string
	CertExpires  time.Time
	Attaches     int // connections established so far
}

// Agent is a running agent.
type Agent struct {
	cfg    Config
	logger *slog.Logger
	store  store
	key    *ecdsa.PrivateKey // guarded by renewMu once running
	cert   atomic.Pointer[tls.Certificate]

	renewMu  sync.Mutex
	renewed  chan struct{} // a renewal saved a new certificate
	renewNow chan struct{} // a node said the certificate was replaced
	pool     *x509.CertPool
	closing  sync.WaitGroup // links being said goodbye to

	mu       sync.Mutex
	tel      *telemetry // nil until Run started it, or when off
	st       State
	node     string
	url      string
	rtt      time.Duration
	conn     bool
	attaches int
	lastMsg  time.Time
	// msgs and gap: messages from the node on the current link, and the
	// longest wait between two of them (the node answers each heartbeat,
	// so this follows the interval the node offered).
	msgs int
	gap  time.Duration
}

// New loads the agent's state, enrolling first when it has none.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.UnknownTokenGrace <= 0 {
		cfg.UnknownTokenGrace = DefaultUnknownTokenGrace
	}
	if cfg.Reevaluate <= 0 {
		cfg.Reevaluate = DefaultReevaluate
	}
	if cfg.Hysteresis < 1 {
		cfg.Hysteresis = DefaultHysteresis
	}
	if cfg.MinGain <= 0 {
		cfg.MinGain = DefaultMinGain
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	st, err := openStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, logger: cfg.Logger, store: st, renewed: make(chan struct{}, 1),
		renewNow: make(chan struct{}, 1)}
	if err := st.reconcile(); err != nil {
		return nil, fmt.Errorf("finishing an interrupted renewal: %w", err)
	}
	if a.key, err = st.key(); err != nil {
		return nil, err
	}
	if a.st, err = st.load(); err != nil {
		return nil, err
	}
	cert, err := st.certificate(a.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (remove it to enroll again with a new token)", st.path(certFile), err)
	}
	if cert == nil || a.st.AgentID == "" {
		if err := a.enroll(ctx); err != nil {
			return nil, err
		}
	} else {
		a.cert.Store(cert)
		if a.pool, _, err = st.ca(); err != nil {
			return nil, fmt.Errorf("%s: %w", st.path(caFile), err)
		}
	}
	if len(cfg.Servers) > 0 && len(a.st.Servers) == 0 {
		a.st.Servers = cfg.Servers
	}
	if a.st.InstanceUID == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		a.st.InstanceUID = hex.EncodeToString(b)
		if err := st.save(a.st); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// enroll redeems the bootstrap token at the first server that answers.
func (a *Agent) enroll(ctx context.Context) error {
	if a.cfg.Token == "" {
		return errors.New("this agent has not enrolled: pass a bootstrap token (--token-file, or OUTPOST_AGENT_TOKEN; make one with `outpostctl tokens create --tenant T`)")
	}
	if len(a.cfg.Servers) == 0 {
		return errors.New("--servers is required to enroll: the agent endpoints of the region's nodes (https://host:7443,…)")
	}
	var tlsCfg *tls.Config
	var pinned *x509.Certificate
	switch {
	case len(a.cfg.CAPEM) > 0:
		pool, _, err := parseCA(a.cfg.CAPEM)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		tlsCfg = serverTLS(pool, "", func() *tls.Certificate { return nil })
	case a.cfg.CAPin != "":
		if !strings.HasPrefix(a.cfg.CAPin, "sha256:") || len(a.cfg.CAPin) != 7+64 {
			return fmt.Errorf("--ca-pin %q: use the sha256:… value `outpostctl tokens create` printed", a.cfg.CAPin)
		}
		tlsCfg = pinnedTLS(strings.ToLower(a.cfg.CAPin), &pinned)
	default:
		return errors.New("to enroll, say which CA to trust: --ca-pin sha256:… (printed by `outpostctl tokens create`) or --ca FILE")
	}
	csrPEM, err := csr(a.key)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: false}, Timeout: 20 * time.Second}
	defer hc.CloseIdleConnections()
	req := agentwire.EnrollRequest{Token: a.cfg.Token, CSR: csrPEM, Host: a.cfg.Host, Version: Version}
	// Rounds over every server until one answers or ctx ends: an election
	// (503), a node restarting or a full limiter (429) passes. Asking
	// again is safe: the same key redeemed again gets the same agent.
	start := time.Now()
	for round := 0; ; round++ {
		var errs []error
		for _, s := range a.cfg.Servers {
			var out agentwire.Enrollment
			err := postJSON(ctx, hc, strings.TrimRight(s, "/")+agentwire.PathEnroll, req, &out)
			if err != nil {
				errs = append(errs, err)
				if refused(err) {
					// The token was refused: another node would refuse it too.
					return fmt.Errorf("enrollment refused: %w", err)
				}
				a.logger.Warn("enrollment attempt failed; trying the next server", "server", s, "err", err)
				continue
			}
			return a.finishEnroll(out, pinned)
		}
		mayPass := func(err error) bool {
			return transient(err) || notSeen(err) && time.Since(start) < a.cfg.UnknownTokenGrace
		}
		if !slices.ContainsFunc(errs, mayPass) {
			// A wrong CA pin or certificate does not pass by waiting, and
			// a token no node has seen for a while is not coming.
			if slices.ContainsFunc(errs, notSeen) {
				return fmt.Errorf("enrollment refused: no node has seen this token for %v: %w", a.cfg.UnknownTokenGrace, errors.Join(errs...))
			}
			return fmt.Errorf("could not enroll with any server: %w", errors.Join(errs...))
		}
		wait := min(enrollRetryMin<<min(round, 6), enrollRetryMax)
		a.logger.Warn("no server enrolled the agent; retrying", "in", wait, "round", round+1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("could not enroll with any server: %w", errors.Join(append(errs, ctx.Err())...))
		case <-time.After(wait):
		}
	}
}

// refused reports whether a node refused the enrollment for good: a 4xx
// other than 429 and other than a token the node has not seen yet.
func refused(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.Code/100 == 4 && se.Code != http.StatusTooManyRequests && se.Reason != agentwire.CodeTokenNotSeen
}

// notSeen reports whether the node had no record of the token, which a
// token created a moment ago on another node may not have reached.
func notSeen(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.Reason == agentwire.CodeTokenNotSeen
}

// transient reports whether an enrollment attempt may succeed if asked
// again: the node answered 5xx or 429, or the network failed (refused,
// reset, timed out). A certificate that fails verification is not.
func transient(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.Code/100 == 5 || se.Code == http.StatusTooManyRequests
	}
	var ne *net.OpError
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded)
}

// Enrollment retries back off from enrollRetryMin to enrollRetryMax
// between rounds over the servers.
const (
	enrollRetryMin = 250 * time.Millisecond
	enrollRetryMax = 10 * time.Second
)

func (a *Agent) finishEnroll(out agentwire.Enrollment, pinned *x509.Certificate) error {
	pool, ca, err := parseCA([]byte(out.CA))
	if err != nil {
		return fmt.Errorf("the node's enrollment answer: CA: %w", err)
	}
	if pinned != nil && !pinned.Equal(ca) {
		return errors.New("the node answered with a CA other than the pinned one")
	}
	if len(a.cfg.CAPEM) > 0 {
		if _, given, _ := parseCA(a.cfg.CAPEM); given == nil || !given.Equal(ca) {
			return errors.New("the node answered with a CA other than --ca")
		}
	}
	cert, err := certWithKey([]byte(out.Certificate), a.key)
	if err != nil {
		return fmt.Errorf("the node's enrollment answer: %w", err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("the issued certificate does not verify: %w", err)
	}
	tenant, id, err := meshid.Agent(cert.Leaf, out.Region)
	if err != nil || id != out.AgentID {
		return fmt.Errorf("the issued certificate does not name agent %s of region %s", out.AgentID, out.Region)
	}
	if err := a.store.saveCA([]byte(out.CA)); err != nil {
		return err
	}
	if err := a.store.saveCert([]byte(out.Certificate)); err != nil {
		return err
	}
	a.st.AgentID, a.st.Region, a.st.Tenant = out.AgentID, out.Region, tenant
	if len(out.Servers) > 0 {
		a.st.Servers = out.Servers
	}
	if err := a.store.save(a.st); err != nil {
		return err
	}
	a.pool = pool
	a.cert.Store(cert)
	a.logger.Info("enrolled", "agent", out.AgentID, "region", out.Region, "tenant", out.Tenant, "cert_expires", out.CertExpires)
	return nil
}

// Status returns what the agent is doing.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{AgentID: a.st.AgentID, Tenant: a.st.Tenant, Region: a.st.Region, Node: a.node, URL: a.url, RTT: a.rtt,
		Connected: a.conn, HighestToken: a.st.HighestToken, LastIndex: a.st.LastIndex, Applied: append([]string(nil), a.st.Applied...),
		ConfigStatus: a.st.ConfigStatus, Attaches: a.attaches}
	if c := a.cert.Load(); c != nil {
		s.CertExpires = c.Leaf.NotAfter
	}
	return s
}

// appliedConfig is the config of the last dispatch applied, if any.
func (a *Agent) appliedConfig() (agentwire.Config, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.st.Config) == 0 {
		return agentwire.Config{}, false
	}
	cfg, err := agentwire.ParseConfig(a.st.Config)
	return cfg, err == nil
}

// Telemetry reports the data plane's health (ok false when it is off
// or not started).
func (a *Agent) Telemetry() (dataplane.Health, bool) {
	a.mu.Lock()
	t := a.tel
	a.mu.Unlock()
	if t == nil {
		return dataplane.Health{}, false
	}
	return t.plane.Health(), true
}

func (a *Agent) tlsConfig() *tls.Config {
	return serverTLS(a.pool, a.st.Region, func() *tls.Certificate { return a.cert.Load() })
}
