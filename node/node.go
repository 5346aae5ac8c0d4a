package node

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/lease"
	"github.com/outpost-mesh/outpost/node/agentlink"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/node/auditlog"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/node/httpapi"
	"github.com/outpost-mesh/outpost/node/keys"
	"github.com/outpost-mesh/outpost/node/otlp"
	"github.com/outpost-mesh/outpost/node/peering"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/node/query"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
	"github.com/outpost-mesh/outpost/storage/remotewrite"
	"github.com/outpost-mesh/outpost/storage/telemetry"
	"github.com/outpost-mesh/outpost/ui"
)

// Options are the parts of a node that are injected rather than configured.
type Options struct {
	Logger *slog.Logger
	// FederationTap sees every federation request and answer this node
	// serves or receives (tests scan them for tenant ids).
	FederationTap func(r *http.Request, status int, body []byte)
	// GossipKey overrides Config.GossipKey() (dev mode passes one in).
	GossipKey []byte
	// CA overrides loading the region CA from files (dev mode).
	CA *pki.CA
	// Dev enables the dev-mode node control routes.
	Dev httpapi.DevControl
	// Keys overrides loading the master key from config (dev mode).
	Keys *keys.Protector
	// HTTPClient is used to reach the OIDC IdP (tests); default
	// http.DefaultClient.
	HTTPClient *http.Client
	// StopDrill stops this node for a stop drill and starts it again
	// after the delay (dev mode). Default: the node kills itself and Run
	// returns ErrStoppedByDrill for the supervisor to restart it.
	StopDrill func(restartAfter time.Duration)
	// DenialWindow overrides httpapi.DefaultDenialWindow, the window in which
	// one identity's refusals are counted into one audit record (tests).
	DenialWindow time.Duration
	// Now overrides the API's clock, which decides token, session and
	// grant expiry (tests); default time.Now.
	Now func() time.Time
}

// Node is one running Outpost node.
type Node struct {
	cfg    Config
	opts   Options
	logger *slog.Logger
	reg    *prometheus.Registry

	store  *storage.Store
	keys   *keys.Protector
	region *raft.Region
	hub    *lease.Hub
	lease  *lease.Manager
	httpLn net.Listener
	http   *http.Server
	apiURL string
	// The agent port.
	agentLn net.Listener
	// fedConn is the federation endpoint's UDP socket (nil: federation
	// off); fed its runtime, fedAddr what peers dial.
	fedConn  net.PacketConn
	fed      *peering.Runtime
	fedAddr  string
	agentURL string
	agents   *agentlink.Server
	// The telemetry path (nil when telemetry.enabled is false).
	tsdb  *telemetry.DB
	query *query.API
	// remoteWrite is the tsdb's sink when telemetry.remote_write is on.
	remoteWrite *remotewrite.Queue
	// claimAudits bounds the audit records of one agent's tenant claims:
	// an agent replaying a bad payload cannot grow the audit log without
	// bound; what is not recorded is logged.
	claimAudits *auth.RateLimiter

	cancel context.CancelFunc
	wg     sync.WaitGroup
	// apiWG is the API's background work (goAPI): a graceful stop waits
	// for it before the region shuts down, since it ends by committing
	// the refusal counts of the open windows.
	apiWG sync.WaitGroup
	once  sync.Once
	// stopAPI closes the API's stopping channel (graceful stop or Kill).
	stopAPI func()
	// drillStopped is signalled when a stop drill killed the node.
	drillStopped chan struct{}
}

// commandHandlers joins the custom Raft command handlers of every
// package that has some (auth's, then the lease's and the agents' given).
func commandHandlers(lease, agents map[raft.CommandType]raft.HandlerFunc) (map[raft.CommandType]raft.HandlerFunc, error) {
	return raft.MergeHandlers(auth.Handlers(), lease, agents)
}

// Start opens the node's storage, joins its region and serves the API.
// On error nothing is left running.
func Start(cfg Config, opts Options) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if cfg.AdminTokenFile == "" {
		cfg.AdminTokenFile = filepath.Join(cfg.DataDir, "admin.token")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, opts: opts, logger: opts.Logger.With("node", cfg.NodeID), reg: prometheus.NewRegistry(), drillStopped: make(chan struct{}, 1)}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() {
		if err != nil {
			n.Kill()
		}
	}()
	// The master key first: without it no secret opens, and nothing else
	// should start.
	kp := opts.Keys
	if kp == nil {
		if kp, err = keys.LoadMaster(cfg.MasterKeySources()); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
	}
	n.keys = kp
	key := opts.GossipKey
	if key == nil {
		if key, err = cfg.GossipKey(kp); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	n.store, err = storage.Open(filepath.Join(cfg.DataDir, "state.db"), storage.Options{Region: cfg.Region})
	if err != nil {
		return nil, err
	}
	if err := n.checkCanary(); err != nil {
		return nil, err
	}
	ca := opts.CA
	if ca == nil {
		if ca, err = n.loadCA(); err != nil {
			return nil, err
		}
	}
	// Bind the API first: a port in use fails before the node joins.
	n.httpLn, err = net.Listen("tcp", cfg.HTTP.Bind)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("http.bind %s: %w; stop the process using it or choose another http.bind (outpost dev --http)", cfg.HTTP.Bind, syscall.EADDRINUSE)
		}
		return nil, fmt.Errorf("http.bind %s: %w", cfg.HTTP.Bind, err)
	}
	n.apiURL = cfg.HTTP.AdvertiseURL
	if n.apiURL == "" {
		scheme := "http"
		if cfg.HTTP.CertFile != "" {
			scheme = "https"
		}
		n.apiURL = scheme + "://" + n.httpLn.Addr().String()
	}
	if n.agentLn, err = agentlink.Listen(cfg.Agents.Bind); err != nil {
		return nil, err
	}
	n.agentURL = agentlink.AdvertisedURL(cfg.agentAdvertise(), n.agentLn.Addr())
	if cfg.Federation.Bind != "" {
		if n.fedConn, err = net.ListenPacket("udp", cfg.Federation.Bind); err != nil {
			return nil, fmt.Errorf("federation.bind %s: %w (is another process on that UDP port?)", cfg.Federation.Bind, err)
		}
		n.fedAddr = cmp.Or(cfg.Federation.Advertise, n.fedConn.LocalAddr().String())
	}
	var httpCert tls.Certificate
	if cfg.HTTP.CertFile != "" {
		// Load now: a bad key pair must stop the start, not leave a node
		// without an API.
		if httpCert, err = tls.LoadX509KeyPair(cfg.HTTP.CertFile, cfg.HTTP.KeyFile); err != nil {
			return nil, fmt.Errorf("http.cert_file/http.key_file: %w", err)
		}
	}
	ident, err := pki.NewIdentity(ca, cfg.Region, cfg.NodeID, certIPs(cfg), []string{cfg.NodeID}, 0)
	if err != nil {
		return nil, err
	}
	alog, err := auditlog.NewLog(n.store, cfg.Region, ca.Key)
	if err != nil {
		return nil, err
	}
	plog, err := auditlog.NewProviderLog(n.store, cfg.Region, ca.Key)
	if err != nil {
		return nil, err
	}
	sessions, err := auth.NewSessions(cfg.Region, ca.Key)
	if err != nil {
		return nil, err
	}
	var oidcLogin httpapi.OIDCLogin
	if cfg.Auth.OIDC != nil {
		secret, err := keys.ReadFile(kp, cfg.Auth.OIDC.ClientSecretFile, PurposeOIDCSecret)
		if err != nil {
			return nil, fmt.Errorf("auth.oidc.client_secret_file: %w", err)
		}
		o, err := auth.NewOIDC(*cfg.Auth.OIDC, strings.TrimSpace(string(secret)), sessions, opts.HTTPClient)
		if err != nil {
			return nil, err
		}
		oidcLogin = o
	}
	var serveMetrics func(http.ResponseWriter, *http.Request, agents.Agent)
	n.claimAudits = &auth.RateLimiter{Every: time.Minute, Burst: 3}
	if cfg.Telemetry.Enabled {
		if n.tsdb, err = telemetry.Open(cfg.DataDir, cfg.Telemetry.Config, n.logger, n.reg); err != nil {
			return nil, err
		}
		if cfg.Telemetry.RemoteWrite.Enabled {
			if n.remoteWrite, err = remotewrite.Open(cfg.DataDir, cfg.Telemetry.RemoteWrite, n.logger, n.reg); err != nil {
				return nil, err
			}
			n.tsdb.SetSink(n.remoteWrite)
		}
		if n.query, err = query.New(cfg.Telemetry.Query, n.tsdb, queryRegion{n}, n.reg); err != nil {
			return nil, err
		}
		recv := otlp.New(cfg.Telemetry.OTLP, n.tsdb, n.tenantClaimRefused, n.logger)
		if serveMetrics, err = n.otlpHandler(recv); err != nil {
			return nil, err
		}
	}
	n.hub = lease.NewHub()
	leaseFSM := lease.NewFSM(cfg.NodeID, n.hub, nil)
	// The agent port is built before the Raft group, whose agents FSM
	// tells it of revocations, and the API, which shows its live links; it
	// serves once both exist.
	n.agents, err = agentlink.New(agentlink.Config{
		Region: cfg.Region, NodeID: cfg.NodeID, URL: n.agentURL, CA: ca, Ident: ident, Store: n.store,
		Hub: n.hub, Commit: n.commitAudited, Lifetime: cfg.Agents.CertLifetime, Telemetry: serveMetrics,
		MaxAgents: cfg.Agents.MaxConnections, MaxMessage: cfg.Agents.MaxMessageBytes, Heartbeat: cfg.Agents.Heartbeat,
		RetireGrace: cfg.Agents.RetireGrace, ReadTimeout: cfg.Agents.ReadTimeout, WriteTimeout: cfg.Agents.WriteTimeout,
		IdleTimeout: cfg.Agents.IdleTimeout, MaxUnauthenticated: cfg.Agents.MaxUnauthenticated, MaxHandshakes: cfg.Agents.MaxHandshakes,
		MessageRate: cfg.Agents.MaxMessageRate,
		Logger:      n.logger, Registerer: n.reg,
	})
	if err != nil {
		return nil, err
	}
	handlers, err := commandHandlers(leaseFSM.Handlers(), agents.NewFSM(n.agents.OnAgentsEvent).Handlers())
	if err != nil {
		return nil, err
	}
	var mgr atomic.Pointer[lease.Manager]
	n.region, err = raft.Open(raft.Config{
		Region: cfg.Region, NodeID: cfg.NodeID, DataDir: cfg.DataDir,
		RaftBind: cfg.Raft.Bind, RaftAdvertise: cfg.Raft.Advertise,
		GossipBind: cfg.Gossip.Bind, GossipAdvertise: cfg.Gossip.Advertise,
		Seeds: cfg.Gossip.Seeds, GossipKey: key, BootstrapExpect: cfg.BootstrapExpect,
		TLS: ident.TLS(), PeerID: func(c *x509.Certificate) (string, error) { return pki.NodeID(c, cfg.Region) },
		Meta: raft.NodeMeta{APIURL: n.apiURL, FederationURL: n.fedAddr}, NodeHTTP: n.nodeHTTP(),
		Tuning: cfg.Raft.Tuning, Logger: n.logger, Registerer: n.reg,
		Auditor: auditlog.Append, Handlers: handlers,
		OnLeaderChange: func(id string) {
			n.hub.Publish(lease.Event{Kind: lease.EventLeader, Node: cfg.NodeID, Leader: id})
			if m := mgr.Load(); m != nil {
				m.Wake()
			}
		},
	}, n.store)
	if err != nil {
		return nil, err
	}
	n.lease = lease.NewManager(cfg.Lease, n.region, n.store, leaseFSM, lease.Options{
		Logger: n.logger.With("component", "lease"), Hub: n.hub, Audit: n.auditMeta,
	})
	mgr.Store(n.lease)
	if err := n.lease.RegisterMetrics(n.reg); err != nil {
		return nil, err
	}
	stopping := make(chan struct{})
	// Set before the API starts its background work, so a Kill on a
	// failed start below ends it too.
	n.stopAPI = sync.OnceFunc(func() { close(stopping) })
	var fed httpapi.Federation
	if n.fedConn != nil {
		n.fed = peering.New(peering.Config{Region: cfg.Region, NodeID: cfg.NodeID, Cert: ident.Certificate, Store: n.store, Keys: kp,
			Audit: func(ctx context.Context, action, entity string, detail any) error {
				_, err := n.commitAudited(ctx, "node/"+cfg.NodeID, action, entity, "", detail, nil)
				return err
			},
			Logger: n.logger.With("component", "federation"), PollEvery: cfg.Federation.PollInterval, AuditEvery: cfg.Federation.AuditInterval,
			Timeout: cfg.Federation.Timeout, ServerTap: opts.FederationTap, ClientTap: opts.FederationTap})
		fed = n.fed
	}
	apiHandler, err := httpapi.New(httpapi.Config{Stopping: stopping, Federation: fed, UI: ui.Handler(),
		Region: n.region, Store: n.store, Gatherer: n.reg, Registerer: n.reg, Logger: n.logger, Dev: opts.Dev, Audit: alog,
		ProviderAudit: plog, Sessions: sessions, Lockout: cfg.Auth.Lockout, OIDC: oidcLogin, Keys: kp,
		Lease: n.lease, Events: n.hub, Drills: &drills{n: n},
		DenialWindow: opts.DenialWindow, Go: n.goAPI, Now: opts.Now, InvitationTTL: cfg.Auth.InvitationTTL,
		RegionName: cfg.Region, AgentCA: ca, AgentCertLifetime: cfg.Agents.CertLifetime,
		AgentLinks: n.agents, Query: n.queryAPI(), NodeVersion: n.nodeVersion,
		TokenHint: fmt.Sprintf("send `Authorization: Bearer TOKEN` with an API token (the first region admin's is in %s on the region's first leader; outpostctl reads OUTPOST_TOKEN), or log in: POST /api/v1/login", cfg.AdminTokenFile),
	})
	if err != nil {
		return nil, err
	}
	if err := n.agents.Serve(n.agentLn, n.region, apiHandler); err != nil {
		return nil, err
	}
	proxies, _ := cfg.HTTP.Proxies() // checked by Validate
	n.http = &http.Server{
		// Only the API listener believes trusted proxies' X-Forwarded-For;
		// the agent port serves the same enrollment route to direct peers.
		Handler: proxies.Handler(apiHandler),
		// Bounded so a slow client cannot hold a connection: the slowest
		// handler (a write waiting for an election) takes about 10s.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slogStd(n.logger),
	}
	// Shutdown waits for requests in flight; the event streams never end
	// by themselves, so they are told to.
	n.http.RegisterOnShutdown(n.stopAPI)
	var ctx context.Context
	ctx, n.cancel = context.WithCancel(context.Background())
	if n.fed != nil {
		n.wg.Add(2)
		go func() {
			defer n.wg.Done()
			if err := n.fed.Serve(n.fedConn); err != nil {
				n.logger.Error("federation endpoint stopped", "err", err)
			}
		}()
		go func() {
			defer n.wg.Done()
			n.fed.Run(ctx.Done())
		}()
		n.logger.Info("federation listening", "addr", n.fedAddr)
	}
	n.wg.Add(4)
	go func() {
		defer n.wg.Done()
		n.lease.Run(ctx)
	}()
	go func() {
		defer n.wg.Done()
		var err error
		if cfg.HTTP.CertFile != "" {
			n.http.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{httpCert}}
			err = n.http.ServeTLS(n.httpLn, "", "")
		} else {
			err = n.http.Serve(n.httpLn)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("API server stopped", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		n.bootstrapAdmin(ctx)
	}()
	go func() {
		defer n.wg.Done()
		n.renewCertificate(ctx, ident)
	}()
	n.logger.Info("API listening", "url", n.apiURL)
	return n, nil
}

// auditMeta is the audit metadata of a lease change or dispatch: the
// issuing node is this one.
func (n *Node) auditMeta(ctx context.Context, action, entity, tenant string, detail any) ([]byte, error) {
	d, err := json.Marshal(detail)
	if err != nil {
		return nil, err
	}
	return audit.EncodeMeta(audit.Meta{Time: time.Now().UTC(), Node: n.cfg.NodeID, Actor: lease.Actor(ctx),
		Tenant: tenant, Action: action, Entity: entity, Detail: d})
}

// commitAudited commits inner (nil: only the record) with its audit
// record, as this node (the agent port's audited changes).
func (n *Node) commitAudited(ctx context.Context, actor, action, entity, tenant string, detail any, inner []byte) (raft.Result, error) {
	meta, err := n.auditMeta(lease.WithActor(ctx, actor), action, entity, tenant, detail)
	if err != nil {
		return raft.Result{}, err
	}
	if inner == nil {
		inner = []byte{byte(raft.CmdNoop)}
	}
	cmd, err := raft.Audited(meta, inner)
	if err != nil {
		return raft.Result{}, err
	}
	return n.region.Apply(ctx, cmd)
}

// APIURL is where this node's API is reachable.
func (n *Node) APIURL() string { return n.apiURL }

// Region exposes the node's region membership (tests, dev mode).
func (n *Node) Region() *raft.Region { return n.region }

// Lease is the node's dispatch lease manager (tests, dev mode).
func (n *Node) Lease() *lease.Manager { return n.lease }

// Events is the node's event hub: leader and lease changes, and the
// dispatches this node delivered.
func (n *Node) Events() *lease.Hub { return n.hub }

// AgentURL is the agent port's URL as agents reach it.
func (n *Node) AgentURL() string { return n.agentURL }

// AgentAddr is the agent port's bound address.
func (n *Node) AgentAddr() string { return n.agentLn.Addr().String() }

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Run starts the node and serves until ctx is done, then shuts it down
// gracefully within 30 seconds.
func Run(ctx context.Context, cfg Config, opts Options) error {
	n, err := Start(cfg, opts)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-n.drillStopped:
		return ErrStoppedByDrill
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Shutdown(sctx)
}

// FederationAddr is where peers reach this node's federation endpoint
// ("" when federation is off).
func (n *Node) FederationAddr() string { return n.fedAddr }
