package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Region is what the API needs from the node's region membership.
type Region interface {
	Status(ctx context.Context) raft.Status
	Members() []raft.Member
	Apply(ctx context.Context, cmd []byte) (raft.Result, error)
	ReadBarrier(ctx context.Context) error
	AppliedIndex() uint64
	IsLeader() bool
	Leader() (id, addr string)
	NodeID() string
}

// Store is the read side of the state store.
type Store interface {
	View(fn func(*storage.Tx) error) error
}

// AuditLog is the read side of an audit log (the region's, or the
// provider stream).
type AuditLog interface {
	Entries(from, n int64, limit int) ([]audit.Entry, error)
	// TenantEntries is Entries of one tenant's records, from an index.
	TenantEntries(tenant string, from, n int64, limit int) ([]audit.Entry, error)
	Size() (int64, error)
	Checkpoint() ([]byte, error)
	VerifierKey() string
	ProveRecord(seq, size int64) (audit.InclusionProof, error)
	ProveTree(old, size int64) (audit.ConsistencyProof, error)
}

// DevControl stops and starts nodes of an `outpost dev` region. Nil
// outside dev mode, and then its routes do not exist.
type DevControl interface {
	StopNode(id string) error
	StartNode(id string) error
}

// Config wires the API.
type Config struct {
	// Stopping closes when the node begins to shut down: long-lived
	// streams end then, so a graceful shutdown does not wait on them.
	Stopping <-chan struct{}
	Region   Region
	Store    Store
	Gatherer prometheus.Gatherer
	// Registerer takes the API's metrics (nil: not exported).
	Registerer prometheus.Registerer
	// Query serves the Prometheus-compatible query API under
	// /api/v1/tenants/{tenant}/prometheus/api/v1/ (nil: telemetry is off).
	Query  QueryAPI
	Logger *slog.Logger
	Dev    DevControl
	Audit  AuditLog
	// ProviderAudit is the provider stream (break-glass records).
	ProviderAudit AuditLog
	Sessions      *auth.Sessions
	Lockout       auth.LockoutPolicy
	// OIDC is the OIDC login, nil when not configured.
	OIDC OIDCLogin
	// Keys is the node's KeyProtector.
	Keys Keys
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// TokenHint tells a caller without credentials where the token is.
	TokenHint string
	// Lease is the dispatch lease; Events the node's event stream.
	Lease  Lease
	Events Events
	// Drills runs failover drills (refused unless Drills.Enabled).
	Drills Drills
	// RegionName names the region in agent certificates.
	RegionName string
	// AgentCA signs agent certificates at enrollment (nil: this node
	// refuses enrollments); AgentCertLifetime is their validity.
	AgentCA           AgentCA
	AgentCertLifetime time.Duration
	// AgentLinks is the agent port's live view (nil until it runs).
	AgentLinks AgentLinks
	// InvitationTTL is how long a tenant invitation can be accepted;
	// default DefaultInvitationTTL.
	InvitationTTL time.Duration
	// DenialWindow is how long one identity's refusals are counted into
	// one audit record after the first; default DefaultDenialWindow.
	DenialWindow time.Duration
	// UI serves the web UI at / and /ui/ (nil: those paths answer 404).
	UI http.Handler
	// Federation is the node's federation runtime (nil: federation off:
	// adding peers or links and the global routes answer 404 saying so).
	Federation Federation
	// NodeVersion is the build version of a node of the region, given its
	// id and Raft address, or "" when it does not say; nil leaves the
	// versions out of the region answer.
	NodeVersion func(ctx context.Context, id, addr string) string
	// Go runs the API's background work (writing aggregated refusal
	// records until Stopping closes) on a goroutine its caller owns and
	// waits for. Nil (or a nil Stopping): nothing runs in the background
	// and every refusal is recorded on its own.
	Go func(run func())
}

// Role is what a route requires of its caller.
type Role int

const (
	// Public routes need no credentials: liveness, self-metrics, login.
	Public Role = iota
	// Authenticated routes need any valid credentials and act only on the
	// caller itself (whoami, logout).
	Authenticated
	// RegionAdmin routes run the region's infrastructure.
	RegionAdmin
	// TenantViewer, TenantOperator and TenantAdmin routes act in the
	// tenant named by the route's {tenant}, needing at least that role.
	TenantViewer
	TenantOperator
	TenantAdmin
)

func (r Role) String() string {
	return [...]string{"public", "authenticated", "region-admin", "tenant-viewer", "tenant-operator", "tenant-admin"}[r]
}

// tenantRole is the auth.Role a tenant route needs.
func (r Role) tenantRole() auth.Role {
	switch r {
	case TenantViewer:
		return auth.Viewer
	case TenantOperator:
		return auth.Operator
	case TenantAdmin:
		return auth.Admin
	}
	return auth.NoRole
}

// Route is one entry of the route table.
type Route struct {
	Method  string
	Pattern string
	Role    Role
	handler handlerFunc
}

// call is what the middleware learned about a request.
type call struct {
	p      *auth.Principal
	tenant auth.Tenant    // tenant routes
	h      storage.Tenant // tenant routes with access
	via    auth.Via
}

type handlerFunc func(*server, http.ResponseWriter, *http.Request, *call)

// QueryAPI answers a query endpoint for a tenant (node/query).
type QueryAPI interface {
	Serve(w http.ResponseWriter, r *http.Request, endpoint, tenantID string)
}

// PrometheusPrefix is where a tenant's Prometheus-compatible API is:
// Grafana's Prometheus data source takes
// https://NODE/api/v1/tenants/TENANT/prometheus as its URL.
const PrometheusPrefix = "/api/v1/tenants/{tenant}/prometheus/api/v1/"

// prometheusRoutes are the query API's routes: every endpoint by GET, and
// those Prometheus also accepts by POST (Grafana's default) by POST. The
// POSTs read; ReadOnlyPOST names them.
func prometheusRoutes() []Route {
	var rs []Route
	for _, ep := range []string{"query", "query_range", "series", "labels", "label/{name}/values", "metadata"} {
		h := func(s *server, w http.ResponseWriter, r *http.Request, c *call) {
			if s.cfg.Query == nil {
				writeError(w, http.StatusServiceUnavailable, "telemetry is off on this node", "set telemetry.enabled: true in the node's config")
				return
			}
			s.cfg.Query.Serve(w, r, ep, c.tenant.ID)
		}
		rs = append(rs, Route{"GET", PrometheusPrefix + ep, TenantViewer, h})
		if ep != "metadata" && ep != "label/{name}/values" {
			rs = append(rs, Route{"POST", PrometheusPrefix + ep, TenantViewer, h})
		}
	}
	return rs
}

// ReadOnlyPOST reports whether a POST route only reads (the query API's,
// which Grafana sends by POST).
func ReadOnlyPOST(pattern string) bool { return strings.HasPrefix(pattern, PrometheusPrefix) }

// Routes is the API's route table. Every route names its role explicitly.
func Routes(dev bool) []Route {
	const t = "/api/v1/tenants/{tenant}"
	rs := []Route{
		{"GET", "/{$}", Public, (*server).ui},
		{"GET", "/ui/{file...}", Public, (*server).ui},
		{"GET", "/api/v1/health", Public, (*server).health},
		{"GET", "/metrics", Public, nil}, // served by promhttp
		{"POST", "/api/v1/login", Public, (*server).login},
		{"GET", "/api/v1/auth/oidc/login", Public, (*server).oidcLogin},
		{"GET", "/api/v1/auth/oidc/callback", Public, (*server).oidcCallback},
		{"POST", "/api/v1/agents/enroll", Public, (*server).agentEnroll},
		{"POST", "/api/v1/logout", Authenticated, (*server).logout},
		{"GET", "/api/v1/whoami", Authenticated, (*server).whoami},
		{"GET", "/api/v1/tenants", Authenticated, (*server).tenantsList},
		{"GET", "/api/v1/invitations", Authenticated, (*server).invitationsList},
		{"POST", "/api/v1/invitations/{tenant}/accept", Authenticated, (*server).invitationAccept},
		{"POST", "/api/v1/invitations/{tenant}/decline", Authenticated, (*server).invitationDecline},

		{"GET", "/api/v1/region", RegionAdmin, (*server).region},
		{"GET", "/api/v1/members", RegionAdmin, (*server).members},
		{"GET", "/api/v1/kv", RegionAdmin, (*server).kvList},
		{"GET", "/api/v1/kv/{key...}", RegionAdmin, (*server).kvGet},
		{"PUT", "/api/v1/kv/{key...}", RegionAdmin, (*server).kvPut},
		{"DELETE", "/api/v1/kv/{key...}", RegionAdmin, (*server).kvDelete},
		{"POST", "/api/v1/tenants", RegionAdmin, (*server).tenantCreate},
		{"GET", "/api/v1/users", RegionAdmin, (*server).usersList},
		{"POST", "/api/v1/users", RegionAdmin, (*server).userCreate},
		{"POST", "/api/v1/users/{user}/unlock", RegionAdmin, (*server).userUnlock},
		{"GET", "/api/v1/tokens", RegionAdmin, (*server).tokensList},
		{"POST", "/api/v1/tokens", RegionAdmin, (*server).tokenCreate},
		{"DELETE", "/api/v1/tokens/{id}", RegionAdmin, (*server).tokenRevoke},
		{"GET", "/api/v1/breakglass", RegionAdmin, (*server).grantsAll},
		{"GET", "/api/v1/keys", RegionAdmin, (*server).keysGet},
		{"POST", "/api/v1/keys/rotate", RegionAdmin, (*server).keysRotate},
		{"POST", t + "/breakglass", RegionAdmin, (*server).grantRequest},
		{"GET", "/api/v1/events", RegionAdmin, (*server).events},
		{"GET", "/api/v1/dispatches", RegionAdmin, (*server).dispatchList},
		{"POST", "/api/v1/dispatches", RegionAdmin, (*server).dispatchCreate},
		{"GET", "/api/v1/dispatches/{id}", RegionAdmin, (*server).dispatchLookup},
		{"GET", "/api/v1/agents", RegionAdmin, (*server).agentsList},
		{"POST", "/api/v1/agents/{id}/revoke", RegionAdmin, (*server).agentRevoke},
		{"POST", "/api/v1/agents/{id}/clear-flags", RegionAdmin, (*server).agentClearFlags},
		{"GET", "/api/v1/peers", RegionAdmin, (*server).peersList},
		{"POST", "/api/v1/peers", RegionAdmin, (*server).peerCreate},
		{"DELETE", "/api/v1/peers/{name}", RegionAdmin, (*server).peerDelete},
		{"GET", "/api/v1/global/health", RegionAdmin, (*server).globalHealth},
		{"GET", "/api/v1/drills", RegionAdmin, (*server).drillsGet},
		{"POST", "/api/v1/drills/isolate", RegionAdmin, (*server).drillIsolate},
		{"POST", "/api/v1/drills/heal", RegionAdmin, (*server).drillHeal},
		{"POST", "/api/v1/drills/transfer", RegionAdmin, (*server).drillTransfer},
		{"POST", "/api/v1/drills/stop", RegionAdmin, (*server).drillStop},
		{"POST", "/api/v1/drills/stale", RegionAdmin, (*server).drillStale},

		{"GET", t + "/kv", TenantViewer, (*server).tkvList},
		{"GET", t + "/kv/{key...}", TenantViewer, (*server).tkvGet},
		{"PUT", t + "/kv/{key...}", TenantOperator, (*server).tkvPut},
		{"DELETE", t + "/kv/{key...}", TenantOperator, (*server).tkvDelete},
		{"GET", t + "/dispatches", TenantViewer, (*server).tenantDispatchList},
		{"POST", t + "/dispatches", TenantOperator, (*server).tenantDispatchCreate},
		{"GET", t + "/dispatches/{id}", TenantViewer, (*server).tenantDispatchLookup},
		{"GET", t + "/members", TenantViewer, (*server).membersList},
		{"PUT", t + "/members/{user}", TenantAdmin, (*server).memberSet},
		{"DELETE", t + "/members/{user}", TenantAdmin, (*server).memberRemove},
		{"GET", t + "/tokens", TenantAdmin, (*server).tokensList},
		{"POST", t + "/tokens", TenantAdmin, (*server).tokenCreate},
		{"DELETE", t + "/tokens/{id}", TenantAdmin, (*server).tokenRevoke},
		{"GET", t + "/agents", TenantViewer, (*server).agentsList},
		{"POST", t + "/agents/{id}/revoke", TenantAdmin, (*server).agentRevoke},
		{"POST", t + "/agents/{id}/clear-flags", TenantAdmin, (*server).agentClearFlags},
		{"GET", t + "/agent-tokens", TenantAdmin, (*server).agentTokenList},
		{"POST", t + "/agent-tokens", TenantAdmin, (*server).agentTokenCreate},
		{"DELETE", t + "/agent-tokens/{id}", TenantAdmin, (*server).agentTokenRevoke},
		{"GET", t + "/links", TenantViewer, (*server).linksList},
		{"POST", t + "/links", TenantAdmin, (*server).linkCreate},
		{"DELETE", t + "/links/{peer}/{id}", TenantAdmin, (*server).linkDelete},
		{"GET", t + "/global/agents", TenantViewer, (*server).globalAgents},
		{"GET", t + "/global/query", TenantViewer, (*server).globalQuery},
		{"GET", t + "/settings", TenantViewer, (*server).settingsGet},
		{"PUT", t + "/settings", TenantAdmin, (*server).settingsPut},
		{"GET", t + "/breakglass", TenantAdmin, (*server).grantsList},
		{"POST", t + "/breakglass/{id}/approve", TenantAdmin, (*server).grantApprove},
	}
	rs = append(rs, auditRoutes("/api/v1/audit", RegionAdmin)...)
	rs = append(rs, auditRoutes(t+"/audit", TenantAdmin)...)
	rs = append(rs, prometheusRoutes()...)
	if dev {
		rs = append(rs,
			Route{"POST", "/api/v1/dev/nodes/{id}/stop", RegionAdmin, (*server).devStop},
			Route{"POST", "/api/v1/dev/nodes/{id}/start", RegionAdmin, (*server).devStart},
		)
	}
	return rs
}

type server struct {
	cfg     Config
	limiter *auth.RateLimiter
	// enrollRefusals limits refused agent enrollments per address, and
	// enrollAudits the refusal records per bootstrap token.
	enrollRefusals, enrollAudits *auth.RateLimiter
	// enrollInFlight bounds the enrollments one address has in flight.
	enrollInFlight *auth.Concurrency
	// denials aggregates refusal audit records per identity.
	denials *denials
	m       *metrics
}

// New returns the API handler. State-changing requests from another
// origin (a browser's cross-site form or fetch) are refused before any
// route runs (net/http's CrossOriginProtection: Sec-Fetch-Site, Origin).
func New(cfg Config) (http.Handler, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.InvitationTTL = cmp.Or(cfg.InvitationTTL, DefaultInvitationTTL)
	if cfg.Lockout.MaxFailures == 0 {
		cfg.Lockout = auth.DefaultLockoutPolicy()
	}
	s := &server{cfg: cfg, limiter: &auth.RateLimiter{Every: 6 * time.Second, Burst: 10},
		enrollRefusals: &auth.RateLimiter{Every: 6 * time.Second, Burst: 10},
		enrollAudits:   &auth.RateLimiter{Every: time.Minute, Burst: 5},
		enrollInFlight: &auth.Concurrency{Max: maxEnrollInFlight}, m: newMetrics()}
	if cfg.Registerer != nil {
		if err := s.m.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	if cfg.Federation != nil {
		cfg.Federation.SetView(fedView{s})
	}
	s.denials = &denials{window: cmp.Or(cfg.DenialWindow, DefaultDenialWindow), now: cfg.Now,
		commit: func(ctx context.Context, ch change) error { _, err := s.commit(ctx, ch, nil); return err }}
	if cfg.Stopping == nil || cfg.Go == nil {
		s.denials.window = 0 // no one to write the counts: record each refusal
	} else {
		cfg.Go(func() { s.denials.run(cfg.Stopping, cfg.Logger.Warn) })
	}
	mux := http.NewServeMux()
	for _, rt := range Routes(cfg.Dev != nil) {
		pattern := rt.Method + " " + rt.Pattern
		if rt.handler == nil {
			mux.Handle(pattern, promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
			continue
		}
		h, role := rt.handler, rt.Role
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			c, ok := s.authorize(w, r, role)
			if ok {
				h(s, w, r, c)
			}
		})
	}
	// A known path with the wrong method is a 405 listing the allowed
	// methods; anything else is a 404.
	allowed := map[string][]string{}
	paths := http.NewServeMux()
	for _, rt := range Routes(cfg.Dev != nil) {
		if _, seen := allowed[rt.Pattern]; !seen {
			paths.HandleFunc(rt.Pattern, func(http.ResponseWriter, *http.Request) {})
		}
		allowed[rt.Pattern] = append(allowed[rt.Pattern], rt.Method)
	}
	fallback := func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := paths.Handler(r); pattern != "" {
			w.Header().Set("Allow", strings.Join(allowed[pattern], ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path), "allowed: "+strings.Join(allowed[pattern], ", "))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path), "see docs/api.md for the API's routes")
	}
	mux.HandleFunc("/", fallback)
	// ServeMux redirects "PUT /api/v1/kv" to "/api/v1/kv/" because
	// "PUT /api/v1/kv/{key...}" exists; where the bare path is a route of
	// its own (GET, a listing), a method it lacks is a 405 instead.
	for _, rt := range Routes(cfg.Dev != nil) {
		i := strings.LastIndex(rt.Pattern, "/{")
		if i < 0 || !strings.HasSuffix(rt.Pattern, "...}") {
			continue
		}
		prefix := rt.Pattern[:i]
		if ms, known := allowed[prefix]; known && !slices.Contains(ms, rt.Method) {
			mux.HandleFunc(rt.Method+" "+prefix, fallback)
		}
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused", "state-changing requests must come from this node's own UI or from a non-browser client")
	}))
	return cop.Handler(mux), nil
}

// ui serves the web UI (public: its files hold no data; every datum it
// shows comes from the API with the caller's session).
func (s *server) ui(w http.ResponseWriter, r *http.Request, c *call) {
	if s.cfg.UI == nil {
		writeError(w, http.StatusNotFound, "this node serves no web UI", "use the API under /api/v1/ or outpostctl")
		return
	}
	s.cfg.UI.ServeHTTP(w, r)
}

func writeError(w http.ResponseWriter, code int, msg, hint string) {
	writeJSON(w, code, api.Error{Error: msg, Hint: hint})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// attachedPerNode is the agents attached to each node of st as the
// registry records them (presence, through Raft): an agent counts once,
// on the node it last attached to, whichever node answers, and not on a
// node gossip no longer sees alive (as the agents list shows it
// disconnected). The count each node advertises in gossip is its own
// live links, which a dead node keeps advertising after a failover.
func (s *server) attachedPerNode(st raft.Status) map[string]int {
	var all map[string]int
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		all = agents.Reader{Tx: tx}.AttachedPerNode()
		return nil
	})
	out := make(map[string]int, len(st.Nodes))
	for _, n := range st.Nodes {
		if n.Gossip == raft.MemberAlive {
			out[n.ID] = all[n.ID]
		}
	}
	return out
}

func (s *server) health(w http.ResponseWriter, r *http.Request, c *call) {
	leader, _ := s.cfg.Region.Leader()
	writeJSON(w, http.StatusOK, api.Health{
		Status: "ok", Node: s.cfg.Region.NodeID(), Leader: leader,
		IsLeader: s.cfg.Region.IsLeader(), AppliedIndex: s.cfg.Region.AppliedIndex(),
	})
}

func (s *server) region(w http.ResponseWriter, r *http.Request, c *call) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	st := s.cfg.Region.Status(ctx)
	v := api.Region{Region: st.Region, Node: st.Node, Leader: st.Leader, Nodes: []api.Node{},
		Lease: leaseView(s.cfg.Lease.Status(), s.cfg.Lease.Config())}
	attached := s.attachedPerNode(st)
	for _, n := range st.Nodes {
		v.Nodes = append(v.Nodes, api.Node{
			ID: n.ID, Address: n.Address, APIURL: n.APIURL, Suffrage: n.Suffrage, RaftState: n.RaftState,
			Gossip: string(n.Gossip), LastContactMs: n.LastContactMs, AppliedIndex: n.AppliedIndex, CommitIndex: n.CommitIndex,
			Agents: attached[n.ID], AgentURL: n.AgentURL, FederationAddr: n.FederationURL, Error: n.Error,
		})
	}
	if s.cfg.NodeVersion != nil {
		var wg sync.WaitGroup
		for i := range v.Nodes {
			if v.Nodes[i].RaftState == "unreachable" {
				continue
			}
			wg.Go(func() { v.Nodes[i].Version = s.cfg.NodeVersion(ctx, v.Nodes[i].ID, v.Nodes[i].Address) })
		}
		wg.Wait()
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) members(w http.ResponseWriter, r *http.Request, c *call) {
	out := []api.Member{}
	for _, m := range s.cfg.Region.Members() {
		out = append(out, api.Member{ID: m.ID, GossipAddr: m.GossipAddr, Status: string(m.Status), Since: m.Since,
			Region: m.Meta.Region, RaftAddr: m.Meta.RaftAddr, APIURL: m.Meta.APIURL, InRegion: m.Meta.InRegion})
	}
	writeJSON(w, http.StatusOK, out)
}

func validKey(w http.ResponseWriter, key string) bool {
	if key == "" || len(key) > raft.MaxKeyLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("key must be 1..%d bytes", raft.MaxKeyLen), "PUT /api/v1/kv/NAME with the value as the body")
		return false
	}
	return true
}

// readConsistency applies ?consistent=true (a linearizable read through
// the leader's read index) and reports staleness in headers otherwise.
func (s *server) readConsistency(w http.ResponseWriter, r *http.Request) bool {
	if c := r.URL.Query().Get("consistent"); c == "true" || c == "1" {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.cfg.Region.ReadBarrier(ctx); err != nil {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "consistent read failed: "+err.Error(), "the region may be electing a leader; retry in a second")
			return false
		}
		w.Header().Set("X-Outpost-Consistency", "linearizable")
	} else {
		w.Header().Set("X-Outpost-Consistency", "stale")
	}
	leader, _ := s.cfg.Region.Leader()
	w.Header().Set("X-Outpost-Known-Leader", leader)
	w.Header().Set("X-Outpost-Applied-Index", strconv.FormatUint(s.cfg.Region.AppliedIndex(), 10))
	return true
}

// maxEnrollInFlight bounds the enrollments one address may have in flight
// at once: generous, since a provisioning burst behind one NAT is normal;
// it caps how many guesses can run before refusals are counted.
const maxEnrollInFlight = 256

func (s *server) devStop(w http.ResponseWriter, r *http.Request, c *call) {
	s.devAction(w, r, c, s.cfg.Dev.StopNode, "dev.node_stop", "stopped")
}

func (s *server) devStart(w http.ResponseWriter, r *http.Request, c *call) {
	s.devAction(w, r, c, s.cfg.Dev.StartNode, "dev.node_start", "started")
}

func (s *server) devAction(w http.ResponseWriter, r *http.Request, c *call, fn func(string) error, action, done string) {
	id := r.PathValue("id")
	// Record the drill before acting: the node stopped may be this one.
	if _, ok := s.apply(w, r, change{p: c.p, action: action, entity: "node/" + id}, nil); !ok {
		return
	}
	if err := fn(id); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "`outpostctl status` lists the nodes")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"node": id, "state": done})
}
