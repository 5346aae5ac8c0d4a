package query

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// fakeRegion reaches peers over plain TCP on loopback; the node port's
// mutual TLS is tested with whole nodes (node/regionquery_test.go).
type fakeRegion struct{ peers []Peer }

func (f fakeRegion) NodeID() string { return "self" }
func (f fakeRegion) Peers() []Peer  { return f.peers }
func (f fakeRegion) DialNode(ctx context.Context, addr string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
}

func openDB(t *testing.T) *telemetry.DB {
	t.Helper()
	db, err := telemetry.Open(t.TempDir(), telemetry.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// put writes samples of series ls for src at the given minutes ago, the
// value being the minute's index.
func put(t *testing.T, db *telemetry.DB, src telemetry.Source, ls labels.Labels, minutesAgo ...int) {
	t.Helper()
	app := db.Ingest(context.Background(), src)
	now := time.Now()
	for _, m := range minutesAgo {
		if _, err := app.Append(0, ls, 0, now.Add(-time.Duration(m)*time.Minute).UnixMilli(), float64(m), nil, nil, storage.AppendV2Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// serveNode serves db's remote-read on loopback as a node would.
func serveNode(t *testing.T, id string, db *telemetry.DB) Peer {
	t.Helper()
	a, err := New(Config{}, db, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(a.ServeRemoteRead))
	t.Cleanup(srv.Close)
	return Peer{ID: id, Addr: strings.TrimPrefix(srv.URL, "http://")}
}

type answer struct {
	Status   string
	Data     json.RawMessage
	Warnings []string
	Nodes    []NodeStatus
}

func askRegion(t *testing.T, a *API, endpoint string, params url.Values) answer {
	t.Helper()
	code, body := ask(t, a, "GET", endpoint, params)
	var ans answer
	if err := json.Unmarshal([]byte(body), &ans); err != nil || code != 200 || ans.Status != "success" {
		t.Fatalf("%s %v: %d %s (%v)", endpoint, params, code, body, err)
	}
	return ans
}

func statusOf(ans answer, node string) NodeStatus {
	for _, s := range ans.Nodes {
		if s.Node == node {
			return s
		}
	}
	return NodeStatus{}
}

// TestRegionWideQueryMergesNodes: an agent's series written half on this
// node and half on another (it failed over) is one continuous series in
// a region-wide answer; scope=node reads this node alone; the series,
// labels and label values endpoints see the other nodes' series too; a
// third node's series of another tenant never appear; every node is
// reported ok.
func TestRegionWideQueryMergesNodes(t *testing.T) {
	local, b, c := openDB(t), openDB(t), openDB(t)
	src := telemetry.Source{TenantID: "own", Agent: "a1", Host: "web-1"}
	rtt := labels.FromStrings("__name__", "tcp_rtt_seconds", "dst", "db-1")
	put(t, local, src, rtt, 9, 8, 7, 6, 5)
	put(t, b, src, rtt, 4, 3, 2, 1, 0)
	put(t, b, src, labels.FromStrings("__name__", "tcp_retransmits_total", "dst", "db-2", "only_on_b", "yes"), 1)
	put(t, c, telemetry.Source{TenantID: "other", Agent: "a9", Host: "secret-host"}, labels.FromStrings("__name__", "tcp_rtt_seconds", "dst", "db-x"), 1)
	a, err := New(Config{}, local, fakeRegion{peers: []Peer{serveNode(t, "n-b", b), serveNode(t, "n-c", c)}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	count := func(scope string) string {
		ans := askRegion(t, a, "query", url.Values{"query": {`count_over_time(tcp_rtt_seconds[20m])`}, "scope": {scope}})
		var d struct{ Result []struct{ Value []any } }
		if err := json.Unmarshal(ans.Data, &d); err != nil || len(d.Result) != 1 {
			t.Fatalf("scope %q: %s (%v), want one series", scope, ans.Data, err)
		}
		return fmt.Sprint(d.Result[0].Value[1])
	}
	if got := count("region"); got != "10" {
		t.Errorf("region-wide: %s samples, want the 10 of both nodes in one series", got)
	}
	if got := count("node"); got != "5" {
		t.Errorf("scope=node: %s samples, want this node's 5", got)
	}

	ans := askRegion(t, a, "query", url.Values{"query": {`{__name__=~".+"}`}})
	if strings.Contains(string(ans.Data), "secret-host") || strings.Contains(string(ans.Data), `"other"`) {
		t.Errorf("another tenant's series in the region-wide answer: %s", ans.Data)
	}
	for _, n := range []string{"self", "n-b", "n-c"} {
		if s := statusOf(ans, n); s.Status != NodeOK {
			t.Errorf("node %s: %+v, want ok (all: %+v)", n, s, ans.Nodes)
		}
	}
	if len(ans.Warnings) != 0 {
		t.Errorf("warnings with every node answering: %v", ans.Warnings)
	}

	if ans := askRegion(t, a, "series", url.Values{"match[]": {`tcp_retransmits_total`}}); !strings.Contains(string(ans.Data), "only_on_b") {
		t.Errorf("series: %s, want the other node's series", ans.Data)
	}
	if ans := askRegion(t, a, "labels", nil); !strings.Contains(string(ans.Data), "only_on_b") {
		t.Errorf("labels: %s, want the other node's label names", ans.Data)
	}
	ans = askRegion(t, a, "label/dst/values", nil)
	if !strings.Contains(string(ans.Data), "db-2") || strings.Contains(string(ans.Data), "db-x") {
		t.Errorf("dst values: %s, want db-2 (the other node's) and not db-x (another tenant's)", ans.Data)
	}
}

// TestRegionWideQueryReportsMissingNodes: a node that does not answer
// within node_timeout and one that cannot be reached are named in the
// warnings and in the nodes block; the answer still holds what the
// others had.
func TestRegionWideQueryReportsMissingNodes(t *testing.T) {
	local, b := openDB(t), openDB(t)
	src := telemetry.Source{TenantID: "own", Agent: "a1", Host: "web-1"}
	rtt := labels.FromStrings("__name__", "tcp_rtt_seconds", "dst", "db-1")
	put(t, local, src, rtt, 3)
	put(t, b, src, rtt, 1)
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) }) // runs first: the handler returns, then Close
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()
	peers := []Peer{serveNode(t, "n-b", b), {ID: "n-slow", Addr: strings.TrimPrefix(hang.URL, "http://")}, {ID: "n-gone", Addr: goneAddr}}
	a, err := New(Config{Timeout: 10 * time.Second, NodeTimeout: 300 * time.Millisecond}, local, fakeRegion{peers: peers}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ans := askRegion(t, a, "query", url.Values{"query": {`count_over_time(tcp_rtt_seconds[10m])`}})
	if !strings.Contains(string(ans.Data), `"2"`) {
		t.Errorf("answer %s: want the 2 samples of the nodes that answered", ans.Data)
	}
	for node, want := range map[string]string{"n-b": NodeOK, "n-slow": NodeTimeout, "n-gone": NodeUnreachable, "self": NodeOK} {
		if s := statusOf(ans, node); s.Status != want || (want != NodeOK) != (s.Error != "") {
			t.Errorf("node %s: %+v, want status %s", node, s, want)
		}
	}
	w := strings.Join(ans.Warnings, "\n")
	if !strings.Contains(w, "n-slow") || !strings.Contains(w, "n-gone") || strings.Contains(w, "n-b ") {
		t.Errorf("warnings %q: want n-slow and n-gone named, n-b not", w)
	}
}

// TestRemoteReadNamesOneTenant: a node's remote-read must name exactly
// one tenant with tenant="ID" and reads only that tenant's series,
// whatever else it asks; other methods and undecodable bodies are
// refused.
func TestRemoteReadNamesOneTenant(t *testing.T) {
	db, a := twoTenants(t)
	_ = db
	read := func(ms ...*prompb.LabelMatcher) (int, *prompb.ReadResponse) {
		t.Helper()
		req := &prompb.ReadRequest{Queries: []*prompb.Query{{StartTimestampMs: 0, EndTimestampMs: time.Now().Add(time.Hour).UnixMilli(), Matchers: ms}}}
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		a.ServeRemoteRead(w, httptest.NewRequest("POST", ReadPath, bytes.NewReader(snappy.Encode(nil, b))))
		if w.Code != 200 {
			return w.Code, nil
		}
		raw, err := snappy.Decode(nil, w.Body.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		var resp prompb.ReadResponse
		if err := proto.Unmarshal(raw, &resp); err != nil {
			t.Fatal(err)
		}
		return w.Code, &resp
	}
	eq := func(n, v string) *prompb.LabelMatcher {
		return &prompb.LabelMatcher{Type: prompb.LabelMatcher_EQ, Name: n, Value: v}
	}
	re := func(n, v string) *prompb.LabelMatcher {
		return &prompb.LabelMatcher{Type: prompb.LabelMatcher_RE, Name: n, Value: v}
	}
	for name, ms := range map[string][]*prompb.LabelMatcher{
		"no tenant":         {re("__name__", ".+")},
		"a tenant regex":    {re("__name__", ".+"), re("tenant", ".+")},
		"two tenants":       {re("__name__", ".+"), eq("tenant", "own"), eq("tenant", "other")},
		"an empty tenant":   {re("__name__", ".+"), eq("tenant", "")},
		"a negative tenant": {re("__name__", ".+"), {Type: prompb.LabelMatcher_NEQ, Name: "tenant", Value: "own"}},
	} {
		if code, _ := read(ms...); code != 400 {
			t.Errorf("%s: %d, want 400", name, code)
		}
	}
	code, resp := read(re("__name__", ".+"), eq("tenant", "own"))
	if code != 200 || len(resp.Results) != 1 || len(resp.Results[0].Timeseries) != 2 {
		t.Fatalf("own's read: %d %v, want its 2 series", code, resp)
	}
	for _, ts := range resp.Results[0].Timeseries {
		for _, l := range ts.Labels {
			if l.Name == "tenant" && l.Value != "own" || l.Value == "s-other" {
				t.Errorf("own's read returned %v", ts.Labels)
			}
		}
	}
	if code, resp := read(eq("secret", "s-other"), eq("tenant", "own")); code != 200 || len(resp.Results[0].Timeseries) != 0 {
		t.Errorf("own asking for other's secret label: %d %v, want nothing", code, resp)
	}
	w := httptest.NewRecorder()
	a.ServeRemoteRead(w, httptest.NewRequest("GET", ReadPath, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", w.Code)
	}
	w = httptest.NewRecorder()
	a.ServeRemoteRead(w, httptest.NewRequest("POST", ReadPath, strings.NewReader("not snappy")))
	if w.Code != http.StatusBadRequest {
		t.Errorf("garbage: %d, want 400", w.Code)
	}
}

// TestTenantShareOfQuerySlots: a tenant holding its share of the query
// slots waits (503 after the timeout, naming the option) while another
// tenant's query still gets a slot.
func TestTenantShareOfQuerySlots(t *testing.T) {
	_, a := twoTenants(t)
	a.cfg.Timeout = 300 * time.Millisecond
	own := a.tenants.of("own", a.cfg.MaxConcurrentPerTenant)
	for range a.cfg.MaxConcurrentPerTenant {
		own <- struct{}{}
	}
	code, body := ask(t, a, "GET", "query", url.Values{"query": {"tcp_rtt_seconds"}})
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "max_concurrent_per_tenant") {
		t.Errorf("own over its share: %d %s, want 503 naming max_concurrent_per_tenant", code, body)
	}
	w := httptest.NewRecorder()
	a.Serve(w, httptest.NewRequest("GET", "/x?query=tcp_rtt_seconds", nil), "query", "other")
	if w.Code != 200 {
		t.Errorf("another tenant: %d %s, want an answer", w.Code, w.Body.String())
	}
}
