// Package agentlink is the node's agent port: an HTTPS listener with the
// node certificate that serves enrollment (no client certificate; the
// bootstrap token is the credential), and, to agents presenting a
// certificate of the region CA, the OpAMP control link (opamp-go over
// WebSocket), certificate renewal and the list of nodes to measure.
//
// The node knows an agent by its certificate's fingerprint; what the
// agent says of itself (instance uid, host, version) is recorded but
// never trusted. Pushes go only to agents that announced the capability,
// and only committed dispatches are pushed. Presence (which node holds
// which agent, from where) is recorded through Raft, so the FSM sees
// every node's attachments in log order and flags a certificate used
// from two addresses at once.
package agentlink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-telemetry/opamp-go/server"
	st "github.com/open-telemetry/opamp-go/server/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/lease"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Region is what the agent port needs of the Raft group.
type Region interface {
	Apply(ctx context.Context, cmd []byte) (raft.Result, error)
	ReadBarrier(ctx context.Context) error
	Members() []raft.Member
	SetMeta(fn func(*raft.NodeMeta))
	NodeID() string
}

// Committer commits inner (nil: nothing but the record) with its audit
// record naming actor, as this node.
type Committer func(ctx context.Context, actor, action, entity, tenant string, detail any, inner []byte) (raft.Result, error)

// Defaults.
const (
	DefaultMaxAgents      = 10000
	DefaultMaxMessage     = 1 << 20
	DefaultHeartbeat      = 30 * time.Second
	DefaultSendTimeout    = 10 * time.Second
	DefaultRetireGrace    = 10 * time.Second
	DefaultReadTimeout    = 30 * time.Second
	DefaultWriteTimeout   = 30 * time.Second
	DefaultIdleTimeout    = time.Minute
	DefaultMaxUnauth      = 1024
	DefaultMaxHandshakes  = 256
	DefaultMessageRate    = 10.0
	presenceFlushInterval = 100 * time.Millisecond
)

// Config configures the agent port.
type Config struct {
	Region string // region name
	NodeID string
	URL    string // this port's URL as agents reach it (advertised in gossip)
	CA     *pki.CA
	Ident  *pki.Identity
	Store  *storage.Store
	Hub    *lease.Hub
	Commit Committer
	// Telemetry, if set, serves OTLP metrics exports (POST /v1/metrics)
	// from an agent the certificate identified.
	Telemetry  func(w http.ResponseWriter, r *http.Request, a agents.Agent)
	Lifetime   time.Duration // agent certificate lifetime
	MaxAgents  int           // connections this node accepts (then 503)
	MaxMessage int64         // bytes per OpAMP message from an agent
	Heartbeat  time.Duration // offered to agents with ReportsHeartbeat; 3× silence closes their link, 20× others' (idleBound)
	// SendTimeout bounds one push; a slower agent is disconnected.
	SendTimeout time.Duration
	// RetireGrace is how long a link on a certificate a renewal replaced
	// may stay open (the renewed agent reconnects with the new one).
	RetireGrace time.Duration
	// ReadTimeout bounds reading one request that is not an OpAMP link
	// (enrollment, renewal, the node list); a TLS handshake and a
	// request's headers get min(10s, ReadTimeout). WriteTimeout bounds
	// writing its answer; IdleTimeout a kept-alive connection between
	// requests. An upgraded OpAMP link drops all three for its own
	// bounds (the heartbeat, SendTimeout per message written).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// MaxUnauthenticated caps open connections without a client
	// certificate (enrollment), MaxHandshakes TLS handshakes in flight;
	// one source address gets at most half of each. More are closed at
	// once and counted (outpost_agent_port_shed_total).
	MaxUnauthenticated int
	MaxHandshakes      int
	// MessageRate is the OpAMP messages per second one agent may send
	// to this node (all its links together), with bursts of three
	// seconds' worth; more are not processed (counted as shed) and the
	// agent is asked for its full state once it is back under the rate.
	MessageRate float64
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
	Now         func() time.Time
}

// Server is a running agent port.
type Server struct {
	cfg    Config
	raft   Region // set by Serve
	ln     net.Listener
	gate   *gate
	hs     *http.Server
	opamp  http.HandlerFunc
	logger *slog.Logger
	m      *metrics
	// connCtx is opamp-go's per-connection context hook.
	connCtx func(context.Context, net.Conn) context.Context

	mu    sync.Mutex
	links map[string]map[*link]struct{} // agent id -> its live links here

	count     atomic.Int64
	presence  chan agents.PresenceOp
	updMu     sync.Mutex
	updates   map[string]*agents.LinkInfo // link id -> latest report while its update is queued
	rates     map[string]*bucket          // agent id -> its message budget here (under mu)
	desired   *desired
	auditRate sync.Map // agent id -> time of the last protocol-violation record
	logRate   sync.Map // key -> time of the last rate-limited log line

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Listen binds the agent port (so the URL is known before Start).
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agents.bind %s: %w (pick a free port, or 127.0.0.1:0 for any)", addr, err)
	}
	return ln, nil
}

// Start serves the agent port on ln until Close.
func New(cfg Config) (*Server, error) {
	if cfg.MaxAgents <= 0 {
		cfg.MaxAgents = DefaultMaxAgents
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	if cfg.RetireGrace <= 0 {
		cfg.RetireGrace = DefaultRetireGrace
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxUnauthenticated <= 0 {
		cfg.MaxUnauthenticated = DefaultMaxUnauth
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = DefaultMaxHandshakes
	}
	if cfg.MessageRate <= 0 {
		cfg.MessageRate = DefaultMessageRate
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, logger: cfg.Logger.With("component", "agents"), links: map[string]map[*link]struct{}{},
		presence: make(chan agents.PresenceOp, 1<<16), updates: map[string]*agents.LinkInfo{}, rates: map[string]*bucket{}}
	var err error
	if s.m, err = newMetrics(cfg.Registerer, s); err != nil {
		return nil, err
	}
	s.desired = newDesired(cfg.Store)
	s.ctx, s.cancel = context.WithCancel(context.Background())

	h, connCtx, err := server.New(opampLogger{s.logger}).Attach(server.Settings{
		Callbacks: st.Callbacks{OnConnecting: s.onConnecting},
		// Off: the size limit reads frame lengths as message bytes, and
		// compression state costs memory per connection.
		EnableCompression: false,
	})
	if err != nil {
		return nil, err
	}
	s.opamp = limitHijack(http.HandlerFunc(h), cfg.MaxMessage)
	s.connCtx = connCtx
	return s, nil
}

// Serve starts serving agents on ln. rg is the Raft group the port
// records through; enroll, if set, serves the enrollment path (the
// node's API handler, which also serves it on the API address). New and
// Serve are two steps so the node can hand the server to the agents FSM
// and the API, which are built before the Raft group and the API
// handler exist.
func (s *Server) Serve(ln net.Listener, rg Region, enroll http.Handler) error {
	cfg := s.cfg
	s.ln, s.raft = ln, rg
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentwire.PathOpAMP, s.opamp)
	mux.HandleFunc("POST "+agentwire.PathOpAMP, s.plainOpAMP)
	mux.HandleFunc("POST "+agentwire.PathRenew, s.renew)
	mux.HandleFunc("GET "+agentwire.PathNodes, s.nodes)
	if cfg.Telemetry != nil {
		mux.HandleFunc("POST "+agentwire.PathMetrics, func(w http.ResponseWriter, r *http.Request) {
			if a, ok := s.requireAgent(w, r); ok {
				cfg.Telemetry(w, r, a)
			}
		})
	}
	if enroll != nil {
		mux.Handle("POST "+agentwire.PathEnroll, enroll)
	}
	tlsCfg := pki.AgentServerTLS(cfg.CA, cfg.Ident, cfg.Region, cfg.Now, s.checkCert)
	// HTTP/1.1 only: WebSocket needs it, and a connection carries one
	// request at a time, which is what the caps count.
	tlsCfg.NextProtos = []string{"http/1.1"}
	s.gate = newGate(s, ln, tlsCfg)
	s.hs = &http.Server{
		Handler:   mux,
		TLSConfig: tlsCfg,
		// opamp-go's plain-HTTP path and its connection registry need it.
		ConnContext: s.connCtx,
		ConnState:   s.gate.connState,
		// Bounded so a slow client cannot hold a connection; an OpAMP
		// link resets them when it is upgraded (link.onConnected).
		ReadHeaderTimeout: handshakeTimeout(cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	// Connections from an earlier run of this node are gone.
	s.queue(agents.PresenceOp{Kind: agents.NodeReset, Node: cfg.NodeID, At: cfg.Now().UTC()})
	rg.SetMeta(func(m *raft.NodeMeta) { m.AgentURL = cfg.URL })
	sub := cfg.Hub.Subscribe(4096)
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		if err := s.hs.Serve(s.gate); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("agent port stopped", "err", err)
		}
	}()
	go func() { defer s.wg.Done(); s.writePresence() }()
	go func() { defer s.wg.Done(); s.deliverLoop(sub) }()
	go func() { defer s.wg.Done(); s.housekeeping() }()
	s.logger.Info("agent port listening", "url", cfg.URL, "max_agents", cfg.MaxAgents,
		"max_unauthenticated", cfg.MaxUnauthenticated, "max_handshakes", cfg.MaxHandshakes)
	return nil
}

// Close stops the port and closes every agent connection (the agents
// fail over to another node).
func (s *Server) Close() error {
	s.cancel()
	if s.hs == nil { // never served
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.hs.Shutdown(ctx)
	_ = s.gate.Close()
	// Shutdown leaves hijacked connections open.
	s.mu.Lock()
	var all []*link
	for _, ls := range s.links {
		for l := range ls {
			all = append(all, l)
		}
	}
	s.mu.Unlock()
	for _, l := range all {
		_ = l.conn.Disconnect()
	}
	s.wg.Wait()
	return err
}

// nodes lists the region's agent endpoints for an agent to measure.
func (s *Server) nodes(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.requireAgent(w, r); !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.agentNodes())
}

func (s *Server) agentNodes() []agentwire.Node {
	out := []agentwire.Node{}
	for _, m := range s.raft.Members() {
		if m.Meta.AgentURL == "" || m.Meta.Region != s.cfg.Region || m.Meta.Leaving || m.Status != raft.MemberAlive {
			continue
		}
		n := agentwire.Node{ID: m.ID, URL: m.Meta.AgentURL, Agents: m.Meta.Agents}
		if m.ID == s.cfg.NodeID {
			n.Agents = s.Count()
			n.Full = n.Agents >= s.cfg.MaxAgents
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// requireAgent answers 401/403 unless the request carries the
// certificate of a registered, unrevoked agent.
func (s *Server) requireAgent(w http.ResponseWriter, r *http.Request) (agents.Agent, bool) {
	a, retired, ok := s.requireAgentOrRetired(w, r)
	if ok && retired {
		writeJSON(w, http.StatusForbidden, api.Error{Error: errRetired.Error(), Code: agentwire.CodeCertRetired})
		return agents.Agent{}, false
	}
	return a, ok
}

// requireAgentOrRetired is requireAgent that also lets through a
// certificate a renewal replaced, saying so.
func (s *Server) requireAgentOrRetired(w http.ResponseWriter, r *http.Request) (a agents.Agent, retired, ok bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeJSON(w, http.StatusUnauthorized, api.Error{Error: "a client certificate is required here", Hint: "enroll first: outpost-agent --token …",
			Code: agentwire.CodeCertRequired})
		return agents.Agent{}, false, false
	}
	a, err := s.identify(r.Context(), r.TLS.PeerCertificates[0])
	switch {
	case errors.Is(err, errRetired):
		return a, true, true
	case errors.Is(err, errUnavailable):
		w.Header().Set("Retry-After", "2")
		writeJSON(w, http.StatusServiceUnavailable, api.Error{Error: err.Error(), Hint: "retry in a few seconds", Code: agentwire.CodeUnavailable})
	case err != nil:
		s.refused("certificate_refused", hostOf(r.RemoteAddr), err)
		writeJSON(w, http.StatusForbidden, api.Error{Error: err.Error(), Code: agentwire.CodeCertRefused})
	default:
		return a, false, true
	}
	return agents.Agent{}, false, false
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func newConnID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// AdvertisedURL is the URL agents use for a bound agent port: advertise
// (host or host:port) when set, else the bound address.
func AdvertisedURL(advertise string, bound net.Addr) string {
	host := advertise
	_, port, _ := net.SplitHostPort(bound.String())
	if host == "" {
		host = bound.String()
	} else if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, port)
	}
	return (&url.URL{Scheme: "https", Host: host}).String()
}
