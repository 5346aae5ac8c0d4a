package query

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// Region-wide answers. An agent's samples land on the node it is
// attached to, so a query reads every node: this node's store directly
// and each other node's through Prometheus remote-read over the node
// port's mutual TLS (raft.Region.DialNode), merged by Prometheus's merge
// querier. The other nodes are its secondaries: one that fails or does
// not answer within query.node_timeout turns into a warning naming it
// and a per-node status in the response, never an error for the whole
// query and never a silent gap. Series carry no node label, so an
// agent's series read from two nodes (it failed over) merge into one.

// Peer is another node of the region.
type Peer struct {
	ID   string // node ID
	Addr string // node port (Raft) address
}

// Region is what the query API needs of the region: this node's ID, the
// other nodes and a way to reach them. Peers may return nil (a one-node
// region, or none known yet).
type Region interface {
	NodeID() string
	Peers() []Peer
	DialNode(ctx context.Context, addr string) (net.Conn, error)
}

// ReadPath is the node-port HTTP path of the remote-read endpoint.
const ReadPath = "/internal/v1/telemetry/read"

// Node statuses in a response's nodes block.
const (
	NodeOK          = "ok"
	NodeTimeout     = "timeout"     // no answer within query.node_timeout
	NodeUnreachable = "unreachable" // no connection to it
	NodeFailed      = "failed"      // it answered with an error
)

// NodeStatus is how one node contributed to an answer.
type NodeStatus struct {
	Node      string  `json:"node"`
	Status    string  `json:"status"`
	LatencyMs float64 `json:"latency_ms"`
	Series    int     `json:"series"`
	Error     string  `json:"error,omitempty"`
}

// readStatus collects the nodes' statuses of one request.
type readStatus struct {
	mu    sync.Mutex
	nodes map[string]*NodeStatus
}

func newReadStatus() *readStatus { return &readStatus{nodes: map[string]*NodeStatus{}} }

// note records one read from node: the worst outcome and the slowest
// latency of its reads win.
func (s *readStatus) note(node string, d time.Duration, series int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.nodes[node]
	if st == nil {
		st = &NodeStatus{Node: node, Status: NodeOK}
		s.nodes[node] = st
	}
	st.LatencyMs = max(st.LatencyMs, float64(d.Microseconds())/1000)
	st.Series += series
	if err != nil && st.Status == NodeOK {
		st.Status, st.Error = classify(err), err.Error()
	}
}

func (s *readStatus) list() []NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NodeStatus, 0, len(s.nodes))
	for _, st := range s.nodes {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b NodeStatus) int { return cmpString(a.Node, b.Node) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, new(*dialError)):
		return NodeUnreachable
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return NodeTimeout
	}
	return NodeFailed
}

// dialError is a failure to connect to a node at all.
type dialError struct{ err error }

func (e *dialError) Error() string { return "cannot connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// readers caches one remote-read client per node address.
type readers struct {
	region  Region
	timeout time.Duration
	mu      sync.Mutex
	clients map[string]remote.ReadClient
}

func (rs *readers) client(p Peer) (remote.ReadClient, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if c, ok := rs.clients[p.Addr]; ok {
		return c, nil
	}
	// The URL's host is the node port; DialNode does the mutual TLS, so
	// the scheme is http.
	u, err := url.Parse("http://" + p.Addr + ReadPath)
	if err != nil {
		return nil, err
	}
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		c, err := rs.region.DialNode(ctx, addr)
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}
	c, err := remote.NewReadClient("node-"+p.ID, &remote.ClientConfig{
		URL: &config.URL{URL: u}, Timeout: model.Duration(rs.timeout),
		AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{prompb.ReadRequest_SAMPLES},
	}, config.WithDialContextFunc(dial))
	if err != nil {
		return nil, err
	}
	if rs.clients == nil {
		rs.clients = map[string]remote.ReadClient{}
	}
	if len(rs.clients) > 64 { // nodes come and go: start over rather than grow
		clear(rs.clients)
	}
	rs.clients[p.Addr] = c
	return c, nil
}

// source is the queryable a request reads: the tenant's series on this
// node, and with region true on every other node too.
func (a *API) source(tenantID string, region bool, st *readStatus) storage.Queryable {
	local := a.db.Tenant(tenantID)
	if !region || a.region == nil {
		return local
	}
	peers := a.region.Peers()
	if len(peers) == 0 {
		return local
	}
	return regionQueryable{a: a, local: local, tenant: tenantID, peers: peers, st: st}
}

type regionQueryable struct {
	a      *API
	local  storage.Queryable
	tenant string
	peers  []Peer
	st     *readStatus
}

func (a *API) nodeID() string { return a.region.NodeID() }

func (q regionQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	lq, err := q.local.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	own := labels.MustNewMatcher(labels.MatchEqual, telemetry.LabelTenant, q.tenant)
	var others []storage.Querier
	for _, p := range q.peers {
		others = append(others, &nodeQuerier{rs: q.a.readers, m: q.a.m, peer: p, mint: mint, maxt: maxt, own: own, st: q.st, timeout: q.a.cfg.nodeTimeout()})
	}
	return storage.NewMergeQuerier([]storage.Querier{lq}, others, storage.ChainedSeriesMerge), nil
}

// nodeQuerier reads one other node's store for one tenant over
// remote-read. Every selection is scoped to the tenant here as well as on
// the serving node.
type nodeQuerier struct {
	rs         *readers
	m          *metrics
	peer       Peer
	mint, maxt int64
	own        *labels.Matcher
	st         *readStatus
	timeout    time.Duration
}

func (q *nodeQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	start := time.Now()
	ss, err := q.read(ctx, sortSeries, hints, ms)
	if err != nil {
		return q.failed(start, err)
	}
	// The samples response is whole: count it and hand it on.
	var all []storage.Series
	for ss.Next() {
		all = append(all, ss.At())
	}
	if err := ss.Err(); err != nil {
		return q.failed(start, err)
	}
	q.st.note(q.peer.ID, time.Since(start), len(all), nil)
	q.m.peerReads.WithLabelValues(q.peer.ID, NodeOK).Inc()
	return &sliceSeriesSet{series: all}
}

// failed records a read that failed and answers it as the series set
// the merge querier turns into a warning naming the node.
func (q *nodeQuerier) failed(start time.Time, err error) storage.SeriesSet {
	q.st.note(q.peer.ID, time.Since(start), 0, err)
	q.m.peerReads.WithLabelValues(q.peer.ID, classify(err)).Inc()
	return storage.ErrSeriesSet(fmt.Errorf("node %s (%s) is missing from this answer: %w", q.peer.ID, q.peer.Addr, err))
}

func (q *nodeQuerier) read(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms []*labels.Matcher) (storage.SeriesSet, error) {
	c, err := q.rs.client(q.peer)
	if err != nil {
		return nil, err
	}
	pq, err := remote.ToQuery(q.mint, q.maxt, scopeMatchers(ms, q.own), hints)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	ss, err := c.Read(ctx, pq, sortSeries)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("no answer within query.node_timeout %v: %w", q.timeout, err)
	}
	return ss, err
}

// LabelNames and LabelValues read the node's series (labels only: the
// serving node sends no samples for a "series" read) and collect them;
// remote-read has no label calls of its own.
func (q *nodeQuerier) LabelNames(ctx context.Context, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var names []string
	err := q.eachSeries(ctx, ms, func(ls labels.Labels) {
		ls.Range(func(l labels.Label) { names = append(names, l.Name) })
	})
	slices.Sort(names)
	return slices.Compact(names), nil, err
}

func (q *nodeQuerier) LabelValues(ctx context.Context, name string, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var vals []string
	err := q.eachSeries(ctx, ms, func(ls labels.Labels) {
		if v := ls.Get(name); v != "" {
			vals = append(vals, v)
		}
	})
	slices.Sort(vals)
	return slices.Compact(vals), nil, err
}

func (q *nodeQuerier) eachSeries(ctx context.Context, ms []*labels.Matcher, fn func(labels.Labels)) error {
	ss := q.Select(ctx, false, &storage.SelectHints{Start: q.mint, End: q.maxt, Func: "series"}, ms...)
	for ss.Next() {
		fn(ss.At().Labels())
	}
	return ss.Err()
}

func (q *nodeQuerier) Close() error { return nil }

// sliceSeriesSet hands on series already read.
type sliceSeriesSet struct {
	series []storage.Series
	i      int
}

func (s *sliceSeriesSet) Next() bool {
	s.i++
	return s.i <= len(s.series)
}
func (s *sliceSeriesSet) At() storage.Series                { return s.series[s.i-1] }
func (s *sliceSeriesSet) Err() error                        { return nil }
func (s *sliceSeriesSet) Warnings() annotations.Annotations { return nil }

// maxReadQueries bounds the queries of one remote-read request.
const maxReadQueries = 64

// ServeRemoteRead answers another node's remote-read (ReadPath, on the
// node port: the caller is a node of this region, checked by mutual
// TLS). Every query must name exactly one tenant (tenant="ID"), and is
// read through that tenant's scoped store; a "series" read gets labels
// without samples.
func (a *API) ServeRemoteRead(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "remote read is POST", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	req, err := remote.DecodeReadRequest(r)
	if err != nil {
		a.m.nodeReads.WithLabelValues("bad_request").Inc()
		http.Error(w, "decoding the read request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(req.Queries) > maxReadQueries {
		a.m.nodeReads.WithLabelValues("bad_request").Inc()
		http.Error(w, fmt.Sprintf("%d queries in one read: at most %d", len(req.Queries), maxReadQueries), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.Timeout)
	defer cancel()
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-ctx.Done():
		a.m.nodeReads.WithLabelValues("busy").Inc()
		http.Error(w, "no query slot: retry later", http.StatusServiceUnavailable)
		return
	}
	resp := &prompb.ReadResponse{}
	for _, pq := range req.Queries {
		res, code, err := a.readOne(ctx, pq)
		if err != nil {
			a.m.nodeReads.WithLabelValues("refused").Inc()
			http.Error(w, err.Error(), code)
			return
		}
		resp.Results = append(resp.Results, res)
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Header().Set("Content-Encoding", "snappy")
	if err := remote.EncodeReadResponse(resp, w); err != nil {
		a.m.nodeReads.WithLabelValues("failed").Inc()
		return
	}
	a.m.nodeReads.WithLabelValues("ok").Inc()
}

// readOne answers one remote-read query for the tenant it names.
func (a *API) readOne(ctx context.Context, pq *prompb.Query) (*prompb.QueryResult, int, error) {
	ms, err := remote.FromLabelMatchers(pq.Matchers)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	tenant, err := namedTenant(ms)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	var hints *storage.SelectHints
	if h := pq.Hints; h != nil {
		hints = &storage.SelectHints{Start: h.StartMs, End: h.EndMs, Step: h.StepMs, Func: h.Func, Grouping: h.Grouping, By: h.By, Range: h.RangeMs}
	}
	q, err := a.db.Tenant(tenant).Querier(pq.StartTimestampMs, pq.EndTimestampMs)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	defer q.Close()
	ss := q.Select(ctx, false, hints, ms...)
	if hints != nil && hints.Func == "series" {
		res := &prompb.QueryResult{}
		for ss.Next() {
			if len(res.Timeseries) >= a.cfg.MaxSamples {
				return nil, http.StatusUnprocessableEntity, fmt.Errorf("over %d series (query.max_samples)", a.cfg.MaxSamples)
			}
			res.Timeseries = append(res.Timeseries, &prompb.TimeSeries{Labels: prompb.FromLabels(ss.At().Labels(), nil)})
		}
		if err := ss.Err(); err != nil {
			return nil, http.StatusInternalServerError, err
		}
		return res, http.StatusOK, nil
	}
	res, _, err := remote.ToQueryResult(ss, a.cfg.MaxSamples)
	if err != nil {
		var he remote.HTTPError
		if errors.As(err, &he) {
			return nil, http.StatusUnprocessableEntity, fmt.Errorf("%s (query.max_samples)", he.Error())
		}
		return nil, http.StatusInternalServerError, err
	}
	return res, http.StatusOK, nil
}

// namedTenant is the one tenant a node read names: exactly one
// tenant="ID" matcher and no other tenant matcher.
func namedTenant(ms []*labels.Matcher) (string, error) {
	var tenant string
	n := 0
	for _, m := range ms {
		if m.Name != telemetry.LabelTenant {
			continue
		}
		n++
		if m.Type != labels.MatchEqual || m.Value == "" {
			return "", fmt.Errorf("a node read names its tenant as tenant=\"ID\", not %s", m)
		}
		tenant = m.Value
	}
	if n != 1 {
		return "", fmt.Errorf("a node read must name exactly one tenant (it named %d)", n)
	}
	return tenant, nil
}
