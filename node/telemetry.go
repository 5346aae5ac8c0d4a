package node

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/internal/promreg"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/node/httpapi"
	"github.com/outpost-mesh/outpost/node/otlp"
	"github.com/outpost-mesh/outpost/node/query"
	"github.com/outpost-mesh/outpost/storage"
)

// queryAPI is the query API for the HTTP API, nil when telemetry is off.
func (n *Node) queryAPI() httpapi.QueryAPI {
	if n.query == nil {
		return nil
	}
	return n.query
}

// otlpHandler serves the agent port's /v1/metrics with recv, counting
// every answer by status code (a 429 or 413 is not a shed sample: the
// exporter retries or must split, and operators see it here).
func (n *Node) otlpHandler(recv *otlp.Receiver) (func(http.ResponseWriter, *http.Request, agents.Agent), error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_otlp_requests_total",
		Help: "OTLP exports received on the agent port, by HTTP status code answered."}, []string{"code"})
	if err := promreg.Register(n.reg, "OTLP receiver's", requests); err != nil {
		return nil, err
	}
	names := &tenantNames{n: n, m: map[string]cachedName{}}
	return func(w http.ResponseWriter, r *http.Request, a agents.Agent) {
		cw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
		recv.Serve(cw, r, otlp.Sender{TenantID: a.Tenant, TenantName: names.get(a.Tenant), AgentID: a.ID, Host: a.Host})
		requests.WithLabelValues(strconv.Itoa(cw.code)).Inc()
	}, nil
}

// codeWriter remembers the status code written.
type codeWriter struct {
	http.ResponseWriter
	code int
}

func (c *codeWriter) WriteHeader(code int) {
	c.code = code
	c.ResponseWriter.WriteHeader(code)
}

// tenantNames caches tenant names for the receiver's claim check (an
// export naming its own tenant by name is not a claim), so an export does
// not scan the tenants; a rename is seen within nameTTL.
type tenantNames struct {
	n  *Node
	mu sync.Mutex
	m  map[string]cachedName
}

type cachedName struct {
	name string
	at   time.Time
}

const nameTTL = 30 * time.Second

func (c *tenantNames) get(id string) string {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < nameTTL {
		return e.name
	}
	name := c.n.tenantName(id)
	c.mu.Lock()
	if len(c.m) > 10_000 {
		clear(c.m)
	}
	c.m[id] = cachedName{name: name, at: now}
	c.mu.Unlock()
	return name
}

// tenantName is the name of tenant id ("" if unknown).
func (n *Node) tenantName(id string) string {
	var name string
	_ = n.store.View(func(tx *storage.Tx) error {
		for _, t := range (auth.Reader{Tx: tx}).Tenants() {
			if t.ID == id {
				name = t.Name
			}
		}
		return nil
	})
	return name
}

// tenantClaimRefused records an OTLP export refused for naming another
// tenant than the agent's certificate (rate-aggregated per agent).
func (n *Node) tenantClaimRefused(s otlp.Sender, claimed string) {
	if ok, _ := n.claimAudits.Allow(s.AgentID, time.Now()); !ok {
		n.logger.Warn("telemetry refused: the payload claims another tenant (not audited: this agent's refusals are recorded too often)",
			"agent", s.AgentID, "claimed", claimed)
		return
	}
	n.logger.Warn("telemetry refused: the payload claims another tenant", "agent", s.AgentID, "tenant", n.tenantName(s.TenantID), "tenant_id", s.TenantID, "claimed", claimed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.commitAudited(ctx, "agent/"+s.AgentID, "telemetry.tenant_claim_refused", "agent/"+s.AgentID, s.TenantID,
		map[string]string{"claimed": claimed, "host": s.Host}, nil); err != nil {
		n.logger.Warn("could not record a refused telemetry export in the audit log", "agent", s.AgentID, "err", err)
	}
}

// queryRegion gives the query API the region's other nodes (the Raft
// configuration's servers) and the node port to reach them.
type queryRegion struct{ n *Node }

func (q queryRegion) NodeID() string { return q.n.cfg.NodeID }

func (q queryRegion) Peers() []query.Peer {
	r := q.n.region
	if r == nil {
		return nil
	}
	servers, err := r.Configuration()
	if err != nil {
		return nil
	}
	var out []query.Peer
	for _, s := range servers {
		if string(s.ID) != q.n.cfg.NodeID {
			out = append(out, query.Peer{ID: string(s.ID), Addr: string(s.Address)})
		}
	}
	return out
}

func (q queryRegion) DialNode(ctx context.Context, addr string) (net.Conn, error) {
	r := q.n.region
	if r == nil {
		return nil, errors.New("the node is not part of a region yet")
	}
	return r.DialNode(ctx, addr)
}

// nodeHTTP serves the region's other nodes on the node port: this
// node's version, and the telemetry remote-read (when telemetry is on).
func (n *Node) nodeHTTP() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+nodeVersionPath, serveVersion)
	if n.query != nil {
		mux.HandleFunc(query.ReadPath, n.query.ServeRemoteRead)
	}
	return mux
}
