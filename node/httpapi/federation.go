package httpapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/federation"
	"github.com/outpost-mesh/outpost/internal/meshid"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/node/peering"
	"github.com/outpost-mesh/outpost/node/query"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Federation is the node's federation runtime (nil: federation is off).
type Federation interface {
	SetView(federation.View)
	State(peer string) api.PeerState
	GlobalHealth(ctx context.Context, local api.RegionHealth) api.GlobalHealth
	GlobalAgents(ctx context.Context, tenantID string, local []api.GlobalAgent) api.GlobalAgents
	GlobalQuery(ctx context.Context, tenantID, q string, ts time.Time, local federation.Query) api.GlobalQuery
}

// InstantQuery is the query engine's instant evaluation for global views.
type InstantQuery interface {
	Instant(ctx context.Context, tenantID, q string, ts time.Time) (query.InstantResult, error)
}

// fedView is the region as a peer may read it: the federation server's
// View. Reads only.
type fedView struct{ s *server }

func (v fedView) Health(ctx context.Context) (federation.Health, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st := v.s.cfg.Region.Status(ctx)
	h := federation.Health{Region: st.Region, Node: st.Node, Leader: st.Leader, Nodes: []federation.NodeHealth{}}
	attached := v.s.attachedPerNode(st)
	for _, n := range st.Nodes {
		h.Nodes = append(h.Nodes, federation.NodeHealth{ID: n.ID, RaftState: n.RaftState, LastContactMs: max(n.LastContactMs, 0), Agents: attached[n.ID]})
		if n.ID == st.Node && n.RaftState != "Leader" {
			h.AgeMs = max(n.LastContactMs, 0)
			if st.Leader == "" {
				// No leader known: how long is not known either; say a
				// full stale period at least.
				h.AgeMs = max(h.AgeMs, federation.DefaultStaleAfter.Milliseconds()+1)
			}
		}
	}
	if v.s.cfg.Lease != nil {
		l := leaseView(v.s.cfg.Lease.Status(), v.s.cfg.Lease.Config())
		h.Lease = federation.LeaseHealth{Holder: l.Holder, Token: l.Token, ExpiresInMs: l.ExpiresInMs}
	}
	return h, nil
}

// LinkTenant is answered by the runtime (it reads the links itself).
func (v fedView) LinkTenant(string, string) (string, bool) { return "", false }

func (v fedView) Agents(_ context.Context, tenantID string) (federation.Agents, error) {
	out := federation.Agents{Agents: []federation.AgentRow{}, AgeMs: v.age()}
	err := v.s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := agents.Reader{Tx: tx}
		for _, a := range rd.Agents(tenantID) {
			p, _ := rd.Presence(a.ID)
			g := v.s.agentView(a, p, "")
			out.Agents = append(out.Agents, federation.AgentRow{ID: g.ID, Host: g.Host, Version: g.Version, Node: g.Node, RTTMs: g.RTTMs,
				Mode: g.Mode, ModeReason: g.ModeReason, Health: g.Health, LastSeen: g.LastSeen, CertExpires: g.CertExpires})
			if len(out.Agents) >= federation.MaxAgents {
				break
			}
		}
		return nil
	})
	return out, err
}

// age is how stale this node's FSM may be: 0 on the leader.
func (v fedView) age() int64 {
	if v.s.cfg.Region.IsLeader() {
		return 0
	}
	if id, _ := v.s.cfg.Region.Leader(); id == "" {
		return federation.DefaultStaleAfter.Milliseconds() + 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st := v.s.cfg.Region.Status(ctx)
	for _, n := range st.Nodes {
		if n.ID == st.Node {
			return max(n.LastContactMs, 0)
		}
	}
	return 0
}

func (v fedView) Query(ctx context.Context, tenantID, q string, ts time.Time) (federation.Query, error) {
	iq, ok := v.s.cfg.Query.(InstantQuery)
	if !ok || v.s.cfg.Query == nil {
		return federation.Query{}, fmt.Errorf("%w: telemetry is off in this region", federation.ErrBadQuery)
	}
	res, err := iq.Instant(ctx, tenantID, q, ts)
	if errors.Is(err, query.ErrBadQuery) {
		return federation.Query{}, fmt.Errorf("%w: %v", federation.ErrBadQuery, err)
	}
	if err != nil {
		return federation.Query{}, err
	}
	out := federation.Query{ResultType: res.ResultType, Complete: res.Complete, Warnings: res.Warnings, Samples: []federation.Sample{}}
	for _, s := range res.Samples {
		out.Samples = append(out.Samples, federation.Sample{Labels: s.Labels, T: s.T, V: query.FormatValue(s.V)})
	}
	return out, nil
}

func (s *server) fedOff(w http.ResponseWriter) bool {
	if s.cfg.Federation == nil {
		writeError(w, http.StatusNotFound, "federation is off on this node", "set federation.bind in the node's config (see docs/config.md)")
		return true
	}
	return false
}

func (s *server) peerView(p peering.Peer, links int) api.Peer {
	v := api.Peer{Name: p.Name, Addr: p.Addr, Created: p.Created, CreatedBy: p.CreatedBy, Links: links}
	if ca, err := peering.ParseCA([]byte(p.CAPEM)); err == nil {
		v.CAPin, v.CAExpires = meshid.CAPin(ca), ca.NotAfter.UTC()
	}
	if s.cfg.Federation != nil {
		v.State = s.cfg.Federation.State(p.Name)
	}
	return v
}

func (s *server) peersList(w http.ResponseWriter, r *http.Request, c *call) {
	out := []api.Peer{}
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := peering.Reader{Tx: tx}
		for _, p := range rd.Peers() {
			out = append(out, s.peerView(p, len(rd.Links("", p.Name))))
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *server) peerCreate(w http.ResponseWriter, r *http.Request, c *call) {
	if s.fedOff(w) {
		return
	}
	var in api.PeerCreate
	if !decodeBody(w, r, &in, `{"name":"eu-west","addr":"10.0.0.5:7443","ca_pem":"-----BEGIN CERTIFICATE-----…","secret":"<at least 32 bytes>"}`) {
		return
	}
	p := peering.Peer{Name: in.Name, Addr: in.Addr, CAPEM: in.CAPEM, Created: s.cfg.Now().UTC(), CreatedBy: c.p.Actor}
	if err := p.Validate(s.cfg.RegionName, len(in.Secret), federation.MinSecret); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "`outpostctl peers add NAME --peer-addr HOST:PORT --ca PEER-CA.pem --secret-file FILE`")
		return
	}
	sealed, err := s.cfg.Keys.Wrap(string(peering.BucketSecrets), p.Name, []byte(in.Secret))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "sealing the secret: "+err.Error(), "check the node's keys.master_key_file")
		return
	}
	res, ok := s.apply(w, r, change{p: c.p, action: "peer.create", entity: "peer/" + p.Name,
		detail: map[string]string{"addr": p.Addr}}, batch(peering.OpsCreatePeer(p, sealed)))
	if !ok {
		return
	}
	if string(res.Value) != "1" {
		writeError(w, http.StatusConflict, fmt.Sprintf("peer %q already exists", p.Name), "remove it first (`outpostctl peers remove NAME`) to change it")
		return
	}
	writeJSON(w, http.StatusCreated, s.peerView(p, 0))
}

func (s *server) peerDelete(w http.ResponseWriter, r *http.Request, c *call) {
	name := r.PathValue("name")
	var links []peering.Link
	var found bool
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := peering.Reader{Tx: tx}
		_, _, found = rd.Peer(name)
		links = rd.Links("", name)
		return nil
	})
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no peer %q", name), "`outpostctl peers list` shows the peers")
		return
	}
	// The peer, its secret and as many links as fit in one entry; the
	// rest after it (inert already: a link is live only with its peer).
	first := links[:min(len(links), raft.MaxBatchOps-2)]
	if _, ok := s.apply(w, r, change{p: c.p, action: "peer.delete", entity: "peer/" + name,
		detail: map[string]int{"links_removed": len(links)}}, batch(peering.OpsDeletePeer(name, first))); !ok {
		return
	}
	for rest := links[len(first):]; len(rest) > 0; {
		chunk := rest[:min(len(rest), raft.MaxBatchOps)]
		rest = rest[len(chunk):]
		if _, err := s.commit(r.Context(), change{p: c.p, action: "link.delete", entity: "peer/" + name,
			detail: map[string]int{"links_removed": len(chunk)}}, batch(peering.OpsDeleteLinks(chunk))); err != nil {
			s.cfg.Logger.Warn("removing a removed peer's links (inert without it) failed; they stay as records", "peer", name, "err", err)
			break
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"removed": name, "links_removed": len(links)})
}

func linkView(l peering.Link, tenantName string) api.Link {
	return api.Link{ID: l.ID, Peer: l.Peer, Tenant: tenantName, Created: l.Created, CreatedBy: l.CreatedBy}
}

func (s *server) linksList(w http.ResponseWriter, r *http.Request, c *call) {
	out := []api.Link{}
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		for _, l := range (peering.Reader{Tx: tx}).Links(c.tenant.ID, "") {
			out = append(out, linkView(l, c.tenant.Name))
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *server) linkCreate(w http.ResponseWriter, r *http.Request, c *call) {
	if s.fedOff(w) {
		return
	}
	var in api.LinkCreate
	if !decodeBody(w, r, &in, `{"peer":"eu-west"} (first side) or {"peer":"us-east","link_id":"lnk-…"} (the other side)`) {
		return
	}
	id := in.LinkID
	if id == "" {
		id = peering.NewLinkID()
	} else if !peering.LinkID.MatchString(id) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("link_id %q is not a link id", id), "give the id `outpostctl links create` printed in the peer region (lnk-…)")
		return
	}
	var peerRaw []byte
	var peer peering.Peer
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := peering.Reader{Tx: tx}
		peerRaw = rd.PeerRaw(in.Peer)
		peer, _, _ = rd.Peer(in.Peer)
		return nil
	})
	if len(peerRaw) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no peer %q", in.Peer), "a region admin adds it first: `outpostctl peers add`")
		return
	}
	l := peering.Link{ID: id, Peer: in.Peer, Tenant: c.tenant.ID, Created: s.cfg.Now().UTC(), CreatedBy: c.p.Actor, PeerCreated: peer.Created}
	res, ok := s.apply(w, r, change{p: c.p, tenant: c.tenant.ID, action: "link.create", entity: "link/" + in.Peer + "/" + id},
		batch(peering.OpsCreateLink(l, peerRaw)))
	if !ok {
		return
	}
	if string(res.Value) != "1" {
		writeError(w, http.StatusConflict, fmt.Sprintf("peer %q already has link %s here (or the peer changed meanwhile)", in.Peer, id), "`outpostctl links list` shows the links; a link id maps to one tenant per peer")
		return
	}
	writeJSON(w, http.StatusCreated, linkView(l, c.tenant.Name))
}

func (s *server) linkDelete(w http.ResponseWriter, r *http.Request, c *call) {
	var l peering.Link
	var ok bool
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		l, ok = peering.Reader{Tx: tx}.Link(r.PathValue("peer"), r.PathValue("id"))
		return nil
	})
	if !ok || l.Tenant != c.tenant.ID {
		writeError(w, http.StatusNotFound, "no such link in this tenant", "`outpostctl links list --tenant T` shows the tenant's links")
		return
	}
	if _, done := s.apply(w, r, change{p: c.p, tenant: c.tenant.ID, action: "link.delete", entity: "link/" + l.Peer + "/" + l.ID},
		batch(peering.OpsDeleteLink(l))); done {
		writeJSON(w, http.StatusOK, linkView(l, c.tenant.Name))
	}
}

// globalDeadline bounds a global view: every peer's call has its own
// shorter deadline, so this only caps a stuck local read.
const globalDeadline = 10 * time.Second

func (s *server) globalHealth(w http.ResponseWriter, r *http.Request, c *call) {
	if s.fedOff(w) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), globalDeadline)
	defer cancel()
	h, _ := fedView{s}.Health(ctx)
	local := api.RegionHealth{Source: "local", Region: h.Region, Node: h.Node, Leader: h.Leader, DataAgeMs: h.AgeMs,
		Lease: api.RegionLease{Holder: h.Lease.Holder, Token: h.Lease.Token, ExpiresInMs: h.Lease.ExpiresInMs}, Nodes: []api.RegionMember{}}
	for _, n := range h.Nodes {
		local.Nodes = append(local.Nodes, api.RegionMember{ID: n.ID, RaftState: n.RaftState, LastContactMs: n.LastContactMs, Agents: n.Agents})
	}
	writeJSON(w, http.StatusOK, s.cfg.Federation.GlobalHealth(ctx, local))
}

func (s *server) globalAgents(w http.ResponseWriter, r *http.Request, c *call) {
	if s.fedOff(w) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), globalDeadline)
	defer cancel()
	var local []api.GlobalAgent
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := agents.Reader{Tx: tx}
		for _, a := range rd.Agents(c.tenant.ID) {
			p, _ := rd.Presence(a.ID)
			g := s.agentView(a, p, c.tenant.Name)
			local = append(local, api.GlobalAgent{Source: "local", Region: s.cfg.RegionName, ID: g.ID, Host: g.Host, Version: g.Version,
				Node: g.Node, RTTMs: g.RTTMs, Mode: g.Mode, ModeReason: g.ModeReason, Health: g.Health, LastSeen: g.LastSeen, CertExpires: g.CertExpires})
		}
		return nil
	})
	if local == nil {
		local = []api.GlobalAgent{}
	}
	writeJSON(w, http.StatusOK, s.cfg.Federation.GlobalAgents(ctx, c.tenant.ID, local))
}

func (s *server) globalQuery(w http.ResponseWriter, r *http.Request, c *call) {
	if s.fedOff(w) {
		return
	}
	q := r.URL.Query().Get("query")
	if strings.TrimSpace(q) == "" || len(q) > federation.MaxQueryLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("query is required (at most %d bytes)", federation.MaxQueryLen), "GET …/global/query?query=sum(rate(outpost_flow_bytes_total[5m]))")
		return
	}
	ts := s.cfg.Now()
	if v := r.URL.Query().Get("time"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < -1e12 || f > 1e12 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("time %q: give seconds since the epoch", v), "e.g. time=1700000000.5; leave it out for now")
			return
		}
		ts = time.UnixMilli(int64(f * 1000))
	}
	ctx, cancel := context.WithTimeout(r.Context(), globalDeadline)
	defer cancel()
	local, err := fedView{s}.Query(ctx, c.tenant.ID, q, ts)
	if errors.Is(err, federation.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, err.Error(), "a global query is an instant PromQL query answering a vector or a scalar")
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "this region's query failed: "+err.Error(), "retry; if it persists check `outpostctl status`")
		return
	}
	out := s.cfg.Federation.GlobalQuery(ctx, c.tenant.ID, q, ts, local)
	slices.SortStableFunc(out.Samples, func(a, b api.GlobalSample) int {
		return strings.Compare(a.Labels[federation.PeerLabel], b.Labels[federation.PeerLabel])
	})
	writeJSON(w, http.StatusOK, out)
}
