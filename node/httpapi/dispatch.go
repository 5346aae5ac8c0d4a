package httpapi

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/lease"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Lease is the node's dispatch lease (lease.Manager).
type Lease interface {
	Status() lease.Status
	Config() lease.Config
	Dispatch(ctx context.Context, tenant storage.Tenant, d lease.Dispatch) (lease.Dispatch, error)
}

// Events is the node's event hub (lease.Hub).
type Events interface {
	Subscribe(buf int) *lease.Sub
}

func leaseView(st lease.Status, cfg lease.Config) *api.Lease {
	l := &api.Lease{Token: st.Token, ExpiresInMs: st.ExpiresIn.Milliseconds(), Released: st.Released,
		DurationMs: cfg.Duration.Milliseconds(), DriftMarginMs: cfg.DriftMargin.Milliseconds(), StaleRefused: st.Refused}
	if st.Held() {
		l.Holder = st.Holder
	}
	return l
}

// dispatchView converts a committed dispatch; withPayload is for the
// owner's views (the tenant's, or a region admin's region-wide one).
func dispatchView(d lease.Dispatch, withPayload bool) *api.Dispatch {
	v := &api.Dispatch{ID: d.ID, Tenant: d.Tenant, Selector: d.Selector, Kind: d.Kind, PayloadBytes: len(d.Payload),
		Token: d.Token, Node: d.Node, Issued: d.Issued, Index: d.Index}
	if withPayload {
		v.Payload = d.Payload
	} else if len(d.Payload) > 0 {
		sum := sha256.Sum256(d.Payload)
		v.PayloadSHA256 = hex.EncodeToString(sum[:])
	}
	return v
}

func (s *server) dispatchCreate(w http.ResponseWriter, r *http.Request, c *call) {
	s.dispatch(w, r, c, storage.Tenant{})
}

func (s *server) tenantDispatchCreate(w http.ResponseWriter, r *http.Request, c *call) {
	s.dispatch(w, r, c, c.h)
}

func (s *server) dispatch(w http.ResponseWriter, r *http.Request, c *call, h storage.Tenant) {
	var req api.DispatchRequest
	const example = `{"kind":"config","selector":"os=linux","payload":{…}}`
	if !decodeBodyLimit(w, r, &req, lease.MaxPayload+16<<10, example) {
		return
	}
	if req.Kind == "" {
		writeError(w, http.StatusBadRequest, "kind is required", "send "+example)
		return
	}
	if _, err := agents.ParseSelector(req.Selector); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "send "+example)
		return
	}
	// A config the agents cannot read would be committed and then fail
	// on every agent: check it with the agent's own parser first.
	if req.Kind == agentwire.DispatchKind {
		cfg, err := agentwire.ParseConfig(req.Payload)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error(),
				`send a config such as {"export_interval":"10s","sample_rate":1,"probes":[{"kind":"tcp","target":"db-1:5432","interval":"30s"}]}`)
			return
		}
		// probe_allow is the tenant's setting, which the node adds below;
		// a request that carried its own would lift the guard on agents.
		if cfg.ProbeAllow != nil {
			writeError(w, http.StatusBadRequest, "payload sets probe_allow, which comes from the tenant's settings, never from a dispatch",
				"remove probe_allow from the payload; a tenant Admin allows a range with PUT /api/v1/tenants/{tenant}/settings {\"probe_allow\":[…]}")
			return
		}
		// The tenant's own ranges only; a region dispatch has none.
		allow, _ := agentwire.ParseProbeAllow(c.tenant.ProbeAllow)
		if h == (storage.Tenant{}) {
			allow = nil
		}
		if err := cfg.GuardTargets(allow); err != nil {
			writeError(w, http.StatusBadRequest, err.Error(), "probe hosts on the network, not metadata services or this host; a tenant Admin allows a range with PUT /api/v1/tenants/{tenant}/settings {\"probe_allow\":[…]}")
			return
		}
		// Agents resolve names the node could not check: they apply the
		// same allowance to the addresses those names resolve to.
		if len(allow) > 0 {
			for _, p := range allow {
				cfg.ProbeAllow = append(cfg.ProbeAllow, p.String())
			}
			payload, err := json.Marshal(cfg)
			if err != nil {
				writeError(w, http.StatusInternalServerError, "encoding the config: "+err.Error(), "retry; if it persists report a bug")
				return
			}
			req.Payload = payload
		}
	}
	ctx, cancel := context.WithTimeout(lease.WithActor(r.Context(), c.p.Actor), 10*time.Second)
	defer cancel()
	d, err := s.cfg.Lease.Dispatch(ctx, h, lease.Dispatch{ID: req.ID, Selector: req.Selector, Kind: req.Kind, Payload: req.Payload})
	switch {
	case errors.Is(err, lease.ErrNotHolder):
		st := s.cfg.Lease.Status()
		// The record may still name this node after it restarted or was
		// deposed (it no longer holds the lease, and nobody else does
		// yet): sending the caller here again would loop, so it waits.
		if !st.Held() || st.ExpiresIn == 0 || st.Holder == s.cfg.Region.NodeID() {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "no node holds the dispatch lease right now (a failover is under way)", "retry in a second; `outpostctl status` shows the lease")
			return
		}
		url := s.apiURLOf(st.Holder)
		w.Header().Set("X-Outpost-Lease-Holder", st.Holder)
		w.Header().Set("X-Outpost-Lease-Holder-URL", url)
		writeError(w, http.StatusConflict, fmt.Sprintf("this node does not hold the dispatch lease; %s does", st.Holder),
			fmt.Sprintf("send the dispatch to %s (%s); outpostctl follows the lease holder itself", st.Holder, url))
	case errors.Is(err, lease.ErrBadCommand):
		writeError(w, http.StatusBadRequest, err.Error(), "send "+example)
	case lease.IsStale(err):
		writeError(w, http.StatusConflict, "refused: "+err.Error(), "this node lost the lease while dispatching; retry with the same id")
	case errors.Is(err, raft.ErrOutcomeUnknown):
		writeError(w, http.StatusServiceUnavailable, err.Error(), "retry with the same id: a dispatch id is applied once")
	case errors.Is(err, raft.ErrNoLeader), errors.Is(err, raft.ErrShutdown), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, err.Error(), "the region could not commit it; retry with the same id")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "dispatch failed: "+err.Error(), "retry with the same id; if it persists check `outpostctl status`")
	default:
		writeJSON(w, http.StatusCreated, dispatchView(d, true))
	}
}

// apiURLOf is a node's advertised API URL, from gossip.
func (s *server) apiURLOf(id string) string {
	for _, m := range s.cfg.Region.Members() {
		if m.ID == id {
			return m.Meta.APIURL
		}
	}
	return ""
}

func (s *server) dispatchList(w http.ResponseWriter, r *http.Request, c *call) {
	s.listDispatches(w, r, storage.Tenant{})
}

func (s *server) tenantDispatchList(w http.ResponseWriter, r *http.Request, c *call) {
	s.listDispatches(w, r, c.h)
}

func (s *server) listDispatches(w http.ResponseWriter, r *http.Request, h storage.Tenant) {
	q := r.URL.Query()
	after, err1 := strconv.ParseUint(cmp.Or(q.Get("after"), "0"), 10, 64)
	limit, err2 := strconv.Atoi(cmp.Or(q.Get("limit"), "100"))
	if err1 != nil || err2 != nil || limit < 1 {
		writeError(w, http.StatusBadRequest, "after must be a Raft index and limit a positive integer", "GET …/dispatches?after=0&limit=100")
		return
	}
	if !s.readConsistency(w, r) {
		return
	}
	limit = min(limit, 1000)
	out := []*api.Dispatch{}
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		for _, d := range lease.List(tx, h, after, limit) {
			out = append(out, dispatchView(d, true))
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *server) dispatchLookup(w http.ResponseWriter, r *http.Request, c *call) {
	s.lookupDispatch(w, r, storage.Tenant{})
}

func (s *server) tenantDispatchLookup(w http.ResponseWriter, r *http.Request, c *call) {
	s.lookupDispatch(w, r, c.h)
}

// lookupDispatch answers whether id committed in the scope of h (the
// region-wide dispatches for the zero handle). It looks nowhere else, so
// the answer is the same whether or not another tenant used the id.
func (s *server) lookupDispatch(w http.ResponseWriter, r *http.Request, h storage.Tenant) {
	if !s.readConsistency(w, r) {
		return
	}
	v := api.DispatchLookup{ID: r.PathValue("id")}
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		v.Index, v.Committed = lease.Lookup(tx, h, v.ID)
		return nil
	})
	if v.Committed {
		v.Tenant = h.ID()
	}
	writeJSON(w, http.StatusOK, v)
}

var eventKinds = map[string]bool{lease.EventLeader: true, lease.EventLease: true, lease.EventDispatch: true, lease.EventFenced: true}

// events streams what this node sees, one JSON object per line: first
// the current leader and lease, then changes as they happen, and a
// heartbeat every 5s. Dispatch payloads are shown as digests: this is the
// region admin's view, and the payload is tenant data.
func (s *server) events(w http.ResponseWriter, r *http.Request, c *call) {
	want := map[string]bool{}
	if k := r.URL.Query().Get("kinds"); k != "" {
		for _, kind := range strings.Split(k, ",") {
			if !eventKinds[kind] {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown event kind %q", kind), "kinds is a comma-separated list of leader, lease, dispatch, fenced")
				return
			}
			want[kind] = true
		}
	}
	sub := s.cfg.Events.Subscribe(4096)
	defer sub.Close()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's write timeout
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	node := s.cfg.Region.NodeID()
	send := func(e api.Event) bool {
		if len(want) > 0 && !want[e.Kind] && e.Kind != "heartbeat" && e.Kind != lease.EventLagged {
			return true
		}
		if enc.Encode(e) != nil {
			return false
		}
		return rc.Flush() == nil
	}
	leader, _ := s.cfg.Region.Leader()
	now := s.cfg.Now()
	st := s.cfg.Lease.Status()
	if !send(api.Event{Kind: lease.EventLeader, At: now, Node: node, Leader: leader, Initial: true}) ||
		!send(api.Event{Kind: lease.EventLease, At: now, Node: node, Lease: leaseView(st, s.cfg.Lease.Config()), Index: st.State.Index, Initial: true}) {
		return
	}
	beat := time.NewTicker(5 * time.Second)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.cfg.Stopping:
			return // the node is shutting down; the client watches another
		case <-beat.C:
			if !send(api.Event{Kind: "heartbeat", At: s.cfg.Now(), Node: node}) {
				return
			}
		case e, ok := <-sub.C:
			if !ok {
				send(api.Event{Kind: lease.EventLagged, At: s.cfg.Now(), Node: node, Reason: "this stream fell behind and ends here; re-read GET /api/v1/dispatches?after=INDEX and watch again"})
				return
			}
			v := api.Event{Kind: e.Kind, At: e.At, Node: e.Node, Leader: e.Leader, Reason: e.Reason}
			if e.Lease != nil {
				v.Index = e.Lease.Index
				v.Lease = leaseView(lease.Status{State: *e.Lease}, s.cfg.Lease.Config())
				v.Lease.ExpiresInMs = e.Lease.DurationMs
				if !e.Lease.Held() {
					v.Lease.ExpiresInMs = 0
				}
			}
			if e.Dispatch != nil {
				v.Index = e.Dispatch.Index
				v.Dispatch = dispatchView(*e.Dispatch, false)
			}
			if !send(v) {
				return
			}
		}
	}
}
