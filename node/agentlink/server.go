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
	"crypto/x509"
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

	"github.com/gorilla/websocket"
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
	Region     string // region name
	NodeID     string
	URL        string // this port's URL as agents reach it (advertised in gossip)
	CA         *pki.CA
	Ident      *pki.Identity
	Store      *storage.Store
	Hub        *lease.Hub
	Commit     Committer
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

// Count is the number of live agent connections here.
func (s *Server) Count() int { return int(s.count.Load()) }

// checkCert runs inside the TLS handshake for a verified agent
// certificate: a revoked one is refused before any HTTP is spoken.
func (s *Server) checkCert(leaf *x509.Certificate) error {
	var a agents.Agent
	var ok bool
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		a, ok = agents.Reader{Tx: tx}.ByFingerprint(pki.Fingerprint(leaf))
		return nil
	})
	if ok && a.Revoked {
		// Counted and logged by the gate (handshakeRefused).
		return fmt.Errorf("agent %s: %w", a.ID, errRevokedCert)
	}
	// A retired certificate is refused after the handshake, where the
	// refusal can be audited with the address it came from.
	return nil // unknown here: onConnecting checks again after a read barrier
}

// refusal is an HTTP refusal of an OpAMP connection. opamp-go writes no
// body for it, so the reason goes in headers: the machine code
// (agentwire.Code…) and a sentence.
func refusal(status int, retryAfter, code, reason string) st.ConnectionResponse {
	r := st.ConnectionResponse{Accept: false, HTTPStatusCode: status,
		HTTPResponseHeader: map[string]string{agentwire.HeaderCode: code, agentwire.HeaderReason: reason}}
	if retryAfter != "" {
		r.HTTPResponseHeader["Retry-After"] = retryAfter
	}
	return r
}

// refused logs a refusal of an agent connection at info, once a minute
// per address and reason (a refused agent retries).
func (s *Server) refused(reason, addr string, err error) {
	s.m.refused.WithLabelValues(reason).Inc()
	if s.logOnce("refused/"+reason+"/"+addr, time.Minute) {
		s.logger.Info("refused an agent connection", "reason", reason, "from", addr, "err", err)
	}
}

var (
	errNoCertificate = errors.New("a client certificate is required: enroll first (outpost-agent --token …)")
	errNotWebSocket  = errors.New("OpAMP is served over WebSocket only: connect with wss:// as outpost-agent does")
	errFull          = errors.New("this node holds its maximum of agents: attach to another node")
)

// identify returns the agent record a verified certificate belongs to,
// reading through a barrier when this node has not yet applied it (an
// agent enrolled a moment ago through another node).
func (s *Server) identify(ctx context.Context, leaf *x509.Certificate) (agents.Agent, error) {
	tenant, id, err := pki.AgentIdentity(leaf, s.cfg.Region)
	if err != nil {
		return agents.Agent{}, err
	}
	fp := pki.Fingerprint(leaf)
	lookup := func() (a agents.Agent, ok bool) {
		_ = s.cfg.Store.View(func(tx *storage.Tx) error {
			a, ok = agents.Reader{Tx: tx}.ByFingerprint(fp)
			return nil
		})
		return a, ok
	}
	a, ok := lookup()
	if !ok {
		bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := s.raft.ReadBarrier(bctx)
		cancel()
		if err != nil {
			return agents.Agent{}, fmt.Errorf("%w: %v", errUnavailable, err)
		}
		if a, ok = lookup(); !ok {
			return agents.Agent{}, errUnknownCert
		}
	}
	if a.ID != id || a.Tenant != tenant {
		return agents.Agent{}, errUnknownCert
	}
	if a.Revoked {
		return agents.Agent{}, errRevoked
	}
	if a.Fingerprint != fp {
		return a, errRetired
	}
	return a, nil
}

var (
	errUnavailable = errors.New("the region cannot confirm the certificate now")
	errUnknownCert = errors.New("certificate not registered to an agent (its enrollment did not complete): enroll again with a new bootstrap token")
	errRevoked     = errors.New("agent revoked: enroll again with a new bootstrap token if this host should report")
	errRetired     = errors.New("certificate replaced by a renewal: the agent uses the newest one in its state directory; if this host did not renew, its key may be copied: revoke the agent")
)

func (s *Server) onConnecting(r *http.Request) st.ConnectionResponse {
	addr := hostOf(r.RemoteAddr)
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		s.refused("no_certificate", addr, errNoCertificate)
		return refusal(http.StatusUnauthorized, "", agentwire.CodeCertRequired, errNoCertificate.Error())
	}
	if !websocket.IsWebSocketUpgrade(r) {
		s.refused("not_websocket", addr, errNotWebSocket)
		return refusal(http.StatusBadRequest, "", agentwire.CodeNotWebSocket, errNotWebSocket.Error())
	}
	leaf := r.TLS.PeerCertificates[0]
	a, err := s.identify(r.Context(), leaf)
	switch {
	case errors.Is(err, errUnavailable):
		s.refused("no_leader", addr, err)
		return refusal(http.StatusServiceUnavailable, "2", agentwire.CodeUnavailable, errUnavailable.Error())
	case err != nil:
		reason := "unknown_certificate"
		switch {
		case errors.Is(err, errRevoked):
			reason = "revoked"
		case errors.Is(err, errRetired):
			reason = "retired"
		}
		fp := pki.Fingerprint(leaf)
		s.m.refused.WithLabelValues(reason).Inc()
		s.logger.Warn("refused an agent connection", "reason", reason, "err", err, "from", addr, "fingerprint", fp)
		switch reason {
		case "unknown_certificate":
			s.auditOnce("cert/"+fp, "agent.connect_refused", "agent_cert/"+fp, "",
				map[string]string{"reason": err.Error(), "from": addr})
		case "retired":
			// Who uses a replaced certificate holds an old key of the
			// agent's: worth an operator's look (once a minute per
			// certificate, so the record count stays bounded).
			s.auditOnce("retired/"+fp, "agent.connect_refused", "agent/"+a.ID, a.Tenant,
				map[string]string{"reason": "retired certificate", "fingerprint": fp, "from": addr})
		}
		code := agentwire.CodeCertRefused
		if reason == "retired" {
			code = agentwire.CodeCertRetired
		}
		return refusal(http.StatusForbidden, "", code, err.Error())
	}
	if s.count.Load() >= int64(s.cfg.MaxAgents) {
		s.refused("full", addr, errFull)
		return refusal(http.StatusServiceUnavailable, "5", agentwire.CodeNodeFull, errFull.Error())
	}
	l := &link{s: s, agent: a, fp: pki.Fingerprint(leaf), addr: addr, id: newConnID(), since: s.cfg.Now().UTC(),
		certExpires: leaf.NotAfter}
	return st.ConnectionResponse{Accept: true, ConnectionCallbacks: st.ConnectionCallbacks{
		OnConnected:            l.onConnected,
		OnMessage:              l.onMessage,
		OnConnectionClose:      l.onClose,
		OnReadMessageError:     l.onReadError,
		OnMessageResponseError: l.onResponseError,
	}}
}

// plainOpAMP refuses OpAMP over plain HTTP: its body is read without a
// bound by opamp-go, and agents here always use WebSocket.
func (s *Server) plainOpAMP(w http.ResponseWriter, r *http.Request) {
	s.refused("not_websocket", hostOf(r.RemoteAddr), errNotWebSocket)
	writeJSON(w, http.StatusBadRequest, api.Error{Error: "OpAMP over plain HTTP is not served here",
		Hint: "connect with WebSocket (wss://) as outpost-agent does", Code: agentwire.CodeNotWebSocket})
}

func (s *Server) register(l *link) {
	s.mu.Lock()
	ls := s.links[l.agent.ID]
	if ls == nil {
		ls = map[*link]struct{}{}
		s.links[l.agent.ID] = ls
	}
	ls[l] = struct{}{}
	b := s.rates[l.agent.ID]
	if b == nil {
		b = &bucket{tokens: s.burst(), last: s.cfg.Now()}
		s.rates[l.agent.ID] = b
	}
	l.rate = b
	s.mu.Unlock()
	s.count.Add(1)
}

func (s *Server) unregister(l *link) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := s.links[l.agent.ID]
	if _, ok := ls[l]; !ok {
		return false
	}
	delete(ls, l)
	if len(ls) == 0 {
		delete(s.links, l.agent.ID)
		delete(s.rates, l.agent.ID)
	}
	s.count.Add(-1)
	return true
}

// snapshot returns every live link.
func (s *Server) snapshot() []*link {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*link, 0, s.count.Load())
	for _, ls := range s.links {
		for l := range ls {
			out = append(out, l)
		}
	}
	return out
}

func (s *Server) linksOf(agentID string) []*link {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*link, 0, len(s.links[agentID]))
	for l := range s.links[agentID] {
		out = append(out, l)
	}
	return out
}

// Disconnect closes the agent's live connections here (revocation).
func (s *Server) Disconnect(agentID string) int {
	ls := s.linksOf(agentID)
	for _, l := range ls {
		_ = l.conn.Disconnect()
	}
	if len(ls) > 0 {
		s.logger.Info("closed a revoked agent's connections", "agent", agentID, "connections", len(ls))
	}
	return len(ls)
}

// OnAgentsEvent is the agents FSM's commit notice (wired by the node).
func (s *Server) OnAgentsEvent(ev agents.Event) {
	if ev.Revoked != "" {
		s.Disconnect(ev.Revoked)
	}
	if r := ev.Retired; r != nil {
		// The renewed agent moves its link to the new certificate on its
		// own; what still uses the old one after the grace is closed.
		time.AfterFunc(s.cfg.RetireGrace, func() {
			if s.ctx.Err() == nil {
				s.closeRetired(r.Agent, r.Fingerprint)
			}
		})
	}
}

// closeRetired closes the agent's links that use a retired certificate.
func (s *Server) closeRetired(agentID, fp string) {
	n := 0
	for _, l := range s.linksOf(agentID) {
		if l.fp == fp {
			_ = l.conn.Disconnect()
			n++
		}
	}
	if n > 0 {
		s.logger.Info("closed links on a renewed agent's retired certificate", "agent", agentID, "connections", n)
	}
}

// Live fills in what this node knows of a connected agent.
func (s *Server) Live(a *api.Agent) {
	ls := s.linksOf(a.ID)
	if len(ls) == 0 {
		return
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].since.After(ls[j].since) })
	l := ls[0]
	l.mu.Lock()
	defer l.mu.Unlock()
	a.Node, a.SourceAddr, a.LastSeen = s.cfg.NodeID, l.addr, l.lastSeen
	a.RTTMs, a.Mode, a.Health = l.info.RTT(), orUnknown(l.info.Mode), l.info.HealthText()
	a.Capabilities = capabilityNames(l.info.Capabilities)
	if l.info.Host != "" {
		a.Host = l.info.Host
	}
	if l.info.Version != "" {
		a.Version = l.info.Version
	}
	if len(ls) > 1 {
		a.Connections = len(ls)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
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

// housekeeping advertises this node's agent count in gossip (at most
// once a second) and confirms the agents it holds through Raft.
func (s *Server) housekeeping() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastCount := int64(-1)
	lastSeen := s.cfg.Now()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		if n := s.count.Load(); n != lastCount {
			lastCount = n
			s.raft.SetMeta(func(m *raft.NodeMeta) { m.Agents = int(n) })
		}
		if now := s.cfg.Now(); now.Sub(lastSeen) >= agents.SeenEvery {
			lastSeen = now
			s.confirmSeen(now.UTC())
			s.closeStale(now)
			s.pruneRates(now)
		}
	}
}

func (s *Server) confirmSeen(now time.Time) {
	s.mu.Lock()
	ids := make([]string, 0, len(s.links))
	for id := range s.links {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	const chunk = 2000
	for len(ids) > 0 {
		n := min(chunk, len(ids))
		s.queue(agents.PresenceOp{Kind: agents.Seen, Node: s.cfg.NodeID, At: now, Agents: ids[:n]})
		ids = ids[n:]
	}
}

// closeStale closes links whose certificate is no longer the agent's
// (renewed or revoked) for longer than the retire grace: the commit
// notices do it at once, this catches what they miss (a node that caught
// up from a snapshot sees no notices).
func (s *Server) closeStale(now time.Time) {
	ls := s.snapshot()
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := agents.Reader{Tx: tx}
		for _, l := range ls {
			a, ok := rd.Agent(l.agent.ID)
			// The current certificate's issue time, near enough: when the
			// renewal that replaced the link's happened.
			renewed := a.CertExpires.Add(-s.cfg.Lifetime)
			if ok && (a.Revoked || a.Fingerprint != l.fp && now.Sub(renewed) > s.cfg.RetireGrace) {
				s.logger.Info("closing a link on a revoked or replaced certificate", "agent", a.ID, "revoked", a.Revoked)
				go func() { _ = l.conn.Disconnect() }()
			}
		}
		return nil
	})
}

// pruneRates forgets rate-limit stamps older than a minute, so that
// refusals from many addresses do not grow them without bound.
func (s *Server) pruneRates(now time.Time) {
	for _, m := range []*sync.Map{&s.logRate, &s.auditRate} {
		m.Range(func(k, v any) bool {
			if now.Sub(v.(time.Time)) >= time.Minute {
				m.Delete(k)
			}
			return true
		})
	}
}

// auditOnce records a security-relevant event at most once a minute per
// key, so a misbehaving agent cannot flood the audit log.
func (s *Server) auditOnce(key, action, entity, tenant string, detail any) {
	now := s.cfg.Now()
	if prev, ok := s.auditRate.Load(key); ok && now.Sub(prev.(time.Time)) < time.Minute {
		return
	}
	s.auditRate.Store(key, now)
	s.audit(action, entity, tenant, detail)
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
