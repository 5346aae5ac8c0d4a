package peering

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/federation"
	"github.com/outpost-mesh/outpost/storage"
)

// Unsealer opens a sealed secret (the KeyProtector).
type Unsealer interface {
	Unwrap(bucket, key string, sealed []byte) ([]byte, error)
}

// Config configures a node's federation runtime.
type Config struct {
	Region string
	NodeID string
	Cert   func() *tls.Certificate
	Store  interface {
		View(fn func(*storage.Tx) error) error
	}
	Keys Unsealer
	// Audit records an aggregated audit entry (outbound calls by status,
	// inbound refusals by reason).
	Audit  func(ctx context.Context, action, entity string, detail any) error
	Logger *slog.Logger
	// PollEvery is how often each peer's health is asked, to keep the
	// peers' states current (default 10 s); AuditEvery how often the
	// counted calls and refusals are written (default 1 min).
	PollEvery  time.Duration
	AuditEvery time.Duration
	// Timeout bounds a call to one peer (default federation.DefaultTimeout).
	Timeout time.Duration
	// ServerTap and ClientTap see every federation request and answer
	// (tests only).
	ServerTap, ClientTap func(r *http.Request, status int, body []byte)
}

// Runtime is a node's federation: its server, its client, the peers'
// states and the audit of both directions.
type Runtime struct {
	cfg    Config
	server *federation.Server
	client *federation.Client

	view atomicView

	mu     sync.Mutex
	cache  map[string]cachedPeer // by name
	states map[string]api.PeerState
	counts map[[3]string]int // {direction, peer, status or reason} -> calls since the last record
	first  map[[2]string]bool
}

type cachedPeer struct {
	sum  [32]byte
	peer federation.Peer
}

type atomicView struct {
	mu sync.RWMutex
	v  federation.View
}

func (a *atomicView) get() federation.View { a.mu.RLock(); defer a.mu.RUnlock(); return a.v }

// New returns a node's federation runtime; SetView must be called before
// Serve.
func New(cfg Config) *Runtime {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.PollEvery = cmp.Or(cfg.PollEvery, 10*time.Second)
	cfg.AuditEvery = cmp.Or(cfg.AuditEvery, time.Minute)
	rt := &Runtime{cfg: cfg, cache: map[string]cachedPeer{}, states: map[string]api.PeerState{}, counts: map[[3]string]int{}, first: map[[2]string]bool{}}
	rt.client = &federation.Client{Self: cfg.Region, Cert: cfg.Cert, Timeout: cfg.Timeout, Observe: rt.observe, Tap: cfg.ClientTap}
	rt.server = federation.NewServer(federation.ServerConfig{
		Cert: cfg.Cert, Peer: rt.Peer, View: viewFunc{rt}, Refused: rt.refused, Logger: cfg.Logger, Tap: cfg.ServerTap,
	})
	return rt
}

// SetView hands the runtime the region's read view (the API builds it).
func (rt *Runtime) SetView(v federation.View) {
	rt.view.mu.Lock()
	defer rt.view.mu.Unlock()
	rt.view.v = v
}

// errNoView: the node is still starting.
var errNoView = errors.New("federation view not ready: the node is starting")

// viewFunc defers to the view set by SetView.
type viewFunc struct{ rt *Runtime }

func (v viewFunc) Health(ctx context.Context) (federation.Health, error) {
	if w := v.rt.view.get(); w != nil {
		return w.Health(ctx)
	}
	return federation.Health{}, errNoView
}

func (v viewFunc) LinkTenant(peer, link string) (string, bool) {
	var l Link
	var ok bool
	_ = v.rt.cfg.Store.View(func(tx *storage.Tx) error { l, ok = Reader{Tx: tx}.Link(peer, link); return nil })
	return l.Tenant, ok
}

func (v viewFunc) Agents(ctx context.Context, tenantID string) (federation.Agents, error) {
	if w := v.rt.view.get(); w != nil {
		return w.Agents(ctx, tenantID)
	}
	return federation.Agents{}, errNoView
}

func (v viewFunc) Query(ctx context.Context, tenantID, q string, ts time.Time) (federation.Query, error) {
	if w := v.rt.view.get(); w != nil {
		return w.Query(ctx, tenantID, q, ts)
	}
	return federation.Query{}, errNoView
}

// Serve serves the federation endpoint on pc until Close.
func (rt *Runtime) Serve(pc net.PacketConn) error { return rt.server.Serve(pc) }

// Close stops the server and closes the client's connections.
func (rt *Runtime) Close() {
	_ = rt.server.Close()
	rt.client.Close()
}

// Peer returns the configured peer name with its secret unsealed (false:
// no such peer, or its secret cannot be opened on this node, which is
// logged).
func (rt *Runtime) Peer(name string) (federation.Peer, bool) {
	var p Peer
	var sealed, raw []byte
	var ok bool
	_ = rt.cfg.Store.View(func(tx *storage.Tx) error {
		p, sealed, ok = Reader{Tx: tx}.Peer(name)
		raw = Reader{Tx: tx}.PeerRaw(name)
		return nil
	})
	if !ok {
		return federation.Peer{}, false
	}
	h := sha256.New()
	h.Write(raw)
	h.Write(sealed)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	rt.mu.Lock()
	c, hit := rt.cache[name]
	rt.mu.Unlock()
	if hit && c.sum == sum {
		return c.peer, true
	}
	ca, err := ParseCA([]byte(p.CAPEM))
	if err != nil {
		rt.cfg.Logger.Error("federation peer has a bad CA", "peer", name, "err", err)
		return federation.Peer{}, false
	}
	secret, err := rt.cfg.Keys.Unwrap(string(BucketSecrets), name, sealed)
	if err != nil {
		rt.cfg.Logger.Error("federation peer's secret cannot be opened on this node: check keys.master_key_file", "peer", name, "err", err)
		return federation.Peer{}, false
	}
	fp := federation.Peer{Name: p.Name, Addr: p.Addr, CA: ca, Secret: secret}
	rt.mu.Lock()
	rt.cache[name] = cachedPeer{sum: sum, peer: fp}
	rt.mu.Unlock()
	return fp, true
}

// Peers returns every configured peer, unsealed, by name.
func (rt *Runtime) Peers() []federation.Peer {
	var names []string
	_ = rt.cfg.Store.View(func(tx *storage.Tx) error {
		for _, p := range (Reader{Tx: tx}).Peers() {
			names = append(names, p.Name)
		}
		return nil
	})
	var out []federation.Peer
	keep := map[string]bool{}
	for _, n := range names {
		// A peer this node cannot open (its CA or secret; logged) is
		// still asked, so that its call fails and says so: a global view
		// without it is not complete, and peers list shows the error.
		p, _ := rt.Peer(n)
		p.Name = n
		out = append(out, p)
		keep[n] = true
	}
	rt.mu.Lock()
	for n := range rt.cache {
		if !keep[n] {
			delete(rt.cache, n)
			delete(rt.states, n)
		}
	}
	rt.mu.Unlock()
	rt.client.Forget(keep)
	return out
}

// State is peer's last known state on this node.
func (rt *Runtime) State(peer string) api.PeerState {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	st, ok := rt.states[peer]
	if !ok {
		st = api.PeerState{State: "unknown"}
	}
	st.Node = rt.cfg.NodeID
	if st.State == federation.StatusOK && time.Since(st.Checked) > 3*rt.cfg.PollEvery {
		// No answer for three polls: whatever it said is not current.
		st.State = federation.StatusStale
	}
	return st
}

func (rt *Runtime) observe(s federation.PeerStatus) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.counts[[3]string{"out", s.Peer, s.Status}]++
	if s.Call != "health" {
		// A tenant's call (an unknown link, a query the peer refused)
		// says nothing of the peer itself: its state comes from health.
		return
	}
	st := rt.states[s.Peer]
	st.State, st.Checked, st.RTTMs = s.Status, s.At, s.LatencyMs
	if s.OK() {
		st.LastOK, st.DataAgeMs = s.At, s.DataAgeMs
	}
	if s.Error != "" {
		st.LastError, st.LastErrorAt = s.Error, s.At
	}
	if !s.CertExpires.IsZero() {
		st.CertExpires = s.CertExpires
	}
	rt.states[s.Peer] = st
}

// refused counts an inbound refusal; the first of a (peer, reason) in an
// audit period is recorded at once, the rest with the period's counts.
// A caller that is no configured peer names whatever region it likes in
// its certificate: its refusals are counted as "unknown" (the first
// one's record says what it claimed), so made-up names cannot each cost
// an audit entry.
func (rt *Runtime) refused(f federation.Refusal) {
	peer := f.Peer
	if errors.Is(f.Err, federation.ErrUnknownPeer) {
		peer = ""
	}
	rt.mu.Lock()
	k := [2]string{peer, f.Reason}
	firstOne := !rt.first[k]
	rt.first[k] = true
	if !firstOne {
		rt.counts[[3]string{"in", peer, f.Reason}]++
	}
	rt.mu.Unlock()
	if firstOne && rt.cfg.Audit != nil {
		// Written before the refusal is answered: the next ones of the
		// period are counted, so this costs one entry per period.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		detail := map[string]any{"reason": f.Reason, "remote": f.Remote, "error": fmt.Sprint(f.Err), "count": 1}
		if peer != f.Peer {
			detail["claimed"] = f.Peer
		}
		if err := rt.cfg.Audit(ctx, "federation.refused", "peer/"+cmp.Or(peer, "unknown"), detail); err != nil {
			rt.cfg.Logger.Warn("federation refusal not audited", "peer", f.Peer, "err", err)
		}
	}
}

// Run polls the peers' health and writes the aggregated audit records
// until stop closes.
func (rt *Runtime) Run(stop <-chan struct{}) {
	poll := time.NewTicker(rt.cfg.PollEvery)
	defer poll.Stop()
	flush := time.NewTicker(rt.cfg.AuditEvery)
	defer flush.Stop()
	rt.poll(stop)
	for {
		select {
		case <-stop:
			rt.flush()
			return
		case <-poll.C:
			rt.poll(stop)
		case <-flush.C:
			rt.flush()
		}
	}
}

func (rt *Runtime) poll(stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	federation.Each(ctx, rt.Peers(), func(ctx context.Context, p federation.Peer) (federation.Health, federation.PeerStatus) {
		return rt.client.Health(ctx, p)
	})
}

// flush writes one record per peer and direction with the period's counts.
func (rt *Runtime) flush() {
	rt.mu.Lock()
	counts := rt.counts
	rt.counts = map[[3]string]int{}
	rt.first = map[[2]string]bool{}
	rt.mu.Unlock()
	if rt.cfg.Audit == nil || len(counts) == 0 {
		return
	}
	type key struct{ dir, peer string }
	by := map[key]map[string]int{}
	for k, n := range counts {
		kk := key{k[0], k[1]}
		if by[kk] == nil {
			by[kk] = map[string]int{}
		}
		by[kk][k[2]] += n
	}
	keys := slices.SortedFunc(maps.Keys(by), func(a, b key) int { return cmp.Or(cmp.Compare(a.dir, b.dir), cmp.Compare(a.peer, b.peer)) })
	for _, k := range keys {
		action := "federation.calls"
		if k.dir == "in" {
			action = "federation.refused"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := rt.cfg.Audit(ctx, action, "peer/"+cmp.Or(k.peer, "unknown"), map[string]any{"period": rt.cfg.AuditEvery.String(), "counts": by[k]})
		cancel()
		if err != nil {
			rt.cfg.Logger.Warn("federation audit record not written", "peer", k.peer, "err", err)
		}
	}
}

// Linked returns the tenant's links with their peers (unsealed), by peer.
func (rt *Runtime) Linked(tenantID string) ([]federation.Peer, []string) {
	var links []Link
	_ = rt.cfg.Store.View(func(tx *storage.Tx) error { links = Reader{Tx: tx}.Links(tenantID, ""); return nil })
	slices.SortFunc(links, func(a, b Link) int { return cmp.Compare(a.Peer, b.Peer) })
	var peers []federation.Peer
	var ids []string
	for _, l := range links {
		p, _ := rt.Peer(l.Peer) // one it cannot open fails its call, as in Peers
		p.Name = l.Peer
		peers, ids = append(peers, p), append(ids, l.ID)
	}
	return peers, ids
}

func status(s federation.PeerStatus) api.PeerStatus {
	return api.PeerStatus{Peer: s.Peer, Status: s.Status, LatencyMs: s.LatencyMs, DataAgeMs: s.DataAgeMs, Rows: s.Rows, Error: s.Error, At: s.At, CertExpires: s.CertExpires}
}

// GlobalHealth is local's health and every peer's.
func (rt *Runtime) GlobalHealth(ctx context.Context, local api.RegionHealth) api.GlobalHealth {
	peers := rt.Peers()
	hs, sts := federation.Each(ctx, peers, rt.client.Health)
	out := api.GlobalHealth{Global: api.Global{Complete: federation.Complete(sts), Peers: []api.PeerStatus{}}, Regions: []api.RegionHealth{local}}
	for i, h := range hs {
		out.Peers = append(out.Peers, status(sts[i]))
		if !sts[i].OK() {
			continue
		}
		rh := api.RegionHealth{Source: "peer:" + peers[i].Name, Region: h.Region, Node: h.Node, Leader: h.Leader, DataAgeMs: h.AgeMs,
			Lease: api.RegionLease{Holder: h.Lease.Holder, Token: h.Lease.Token, ExpiresInMs: h.Lease.ExpiresInMs}, Nodes: []api.RegionMember{}}
		for _, n := range h.Nodes {
			rh.Nodes = append(rh.Nodes, api.RegionMember{ID: n.ID, RaftState: n.RaftState, LastContactMs: n.LastContactMs, Agents: n.Agents})
		}
		out.Regions = append(out.Regions, rh)
	}
	return out
}

// GlobalAgents is the tenant's local agents and its linked peers'.
func (rt *Runtime) GlobalAgents(ctx context.Context, tenantID string, local []api.GlobalAgent) api.GlobalAgents {
	peers, links := rt.Linked(tenantID)
	as, sts := federation.EachN(ctx, len(peers), func(ctx context.Context, i int) (federation.Agents, federation.PeerStatus) {
		return rt.client.Agents(ctx, peers[i], links[i])
	})
	out := api.GlobalAgents{Global: api.Global{Complete: federation.Complete(sts), Peers: []api.PeerStatus{}}, Agents: local}
	for i, a := range as {
		out.Peers = append(out.Peers, status(sts[i]))
		if !sts[i].OK() {
			continue
		}
		for _, r := range a.Agents {
			out.Agents = append(out.Agents, api.GlobalAgent{Source: "peer:" + peers[i].Name, Region: peers[i].Name, ID: r.ID, Host: r.Host,
				Version: r.Version, Node: r.Node, RTTMs: r.RTTMs, Mode: r.Mode, ModeReason: r.ModeReason, Health: r.Health,
				LastSeen: r.LastSeen, CertExpires: r.CertExpires})
		}
	}
	if out.Agents == nil {
		out.Agents = []api.GlobalAgent{}
	}
	return out
}

// GlobalQuery is the tenant's instant query over this region (local) and
// its linked peers; every remote sample carries federation.PeerLabel.
func (rt *Runtime) GlobalQuery(ctx context.Context, tenantID, q string, ts time.Time, local federation.Query) api.GlobalQuery {
	peers, links := rt.Linked(tenantID)
	qs, sts := federation.EachN(ctx, len(peers), func(ctx context.Context, i int) (federation.Query, federation.PeerStatus) {
		return rt.client.Query(ctx, peers[i], links[i], q, ts)
	})
	out := api.GlobalQuery{Global: api.Global{Complete: federation.Complete(sts) && local.Complete, Peers: []api.PeerStatus{}},
		ResultType: local.ResultType, Samples: []api.GlobalSample{}, Warnings: local.Warnings}
	for _, s := range local.Samples {
		out.Samples = append(out.Samples, api.GlobalSample{Labels: s.Labels, T: s.T, V: s.V})
	}
	for i, r := range qs {
		out.Peers = append(out.Peers, status(sts[i]))
		if !sts[i].OK() {
			out.Warnings = append(out.Warnings, fmt.Sprintf("peer %s: %s: %s", peers[i].Name, sts[i].Status, sts[i].Error))
			continue
		}
		if !r.Complete {
			out.Complete = false
			for _, w := range r.Warnings {
				out.Warnings = append(out.Warnings, "peer "+peers[i].Name+": "+w)
			}
		}
		if r.ResultType != out.ResultType {
			out.Warnings = append(out.Warnings, fmt.Sprintf("peer %s answered a %s, this region a %s; its samples are listed as they are", peers[i].Name, r.ResultType, out.ResultType))
		}
		for _, s := range r.Samples {
			l := maps.Clone(s.Labels)
			if l == nil {
				l = map[string]string{}
			}
			l[federation.PeerLabel] = peers[i].Name
			out.Samples = append(out.Samples, api.GlobalSample{Labels: l, T: s.T, V: s.V})
		}
	}
	return out
}
