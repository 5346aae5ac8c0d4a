package export

import (
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-mesh/outpost/internal/leakcheck"
)

// TestMain fails the package's tests if they leave goroutines running:
// Run must return with nothing of its own left behind.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// batch returns an encoded ExportMetricsServiceRequest whose one gauge
// point has value i, so a node can tell batches apart.
func batch(t testing.TB, i int) []byte {
	t.Helper()
	b, err := proto.Marshal(&colmetrics.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
		ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{{
			Name: "outpost_test_batch",
			Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: []*metricspb.NumberDataPoint{{
				TimeUnixNano: 1_700_000_000_000_000_000, // fixed: every batch is as long
				Value:        &metricspb.NumberDataPoint_AsInt{AsInt: int64(i)},
			}}}},
		}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// span returns from..to.
func span(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// answer is a node's reply to its attempt'th request (from 1), which
// carried batch i; code 0 means 200 with an empty body.
type answer func(attempt, i int) (code int, header http.Header, body []byte)

// ok accepts everything.
func ok(int, int) (int, http.Header, []byte) { return http.StatusOK, nil, nil }

// node is an OTLP/HTTP receiver on an httptest TLS server: it checks
// what the Sender sends is gzipped OTLP protobuf, records the batches of
// every request in order of arrival, and answers with its answer.
type node struct {
	t      *testing.T
	srv    *httptest.Server
	answer answer
	// hold, if set, is called before answering and may block (a node that
	// stores a batch but whose answer is lost).
	hold func(r *http.Request, i int)

	mu       sync.Mutex
	attempts []int       // batch of each request
	at       []time.Time // when each arrived
	accepted []int       // batches answered 2xx
}

func newNode(t *testing.T, a answer) *node {
	t.Helper()
	n := &node{t: t, answer: a}
	n.srv = httptest.NewTLSServer(http.HandlerFunc(n.serve))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *node) serve(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	if r.Method != http.MethodPost || r.URL.Path != "/v1/metrics" {
		n.t.Errorf("%s %s, want POST /v1/metrics", r.Method, r.URL.Path)
	}
	if ct, ce := r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"); ct != "application/x-protobuf" || ce != "gzip" {
		n.t.Errorf("Content-Type %q, Content-Encoding %q; want application/x-protobuf, gzip", ct, ce)
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		n.t.Errorf("body not gzipped: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		n.t.Errorf("reading the body: %v", err)
	}
	var req colmetrics.ExportMetricsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		n.t.Errorf("body not an ExportMetricsServiceRequest: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	i := int(req.GetResourceMetrics()[0].GetScopeMetrics()[0].GetMetrics()[0].GetGauge().GetDataPoints()[0].GetAsInt())
	n.mu.Lock()
	n.attempts = append(n.attempts, i)
	n.at = append(n.at, arrived)
	attempt := len(n.attempts)
	n.mu.Unlock()
	code, hdr, out := n.answer(attempt, i)
	if code == 0 {
		code = http.StatusOK
	}
	if code/100 == 2 {
		n.mu.Lock()
		n.accepted = append(n.accepted, i)
		n.mu.Unlock()
	}
	if n.hold != nil {
		n.hold(r, i)
	}
	for k, vs := range hdr {
		w.Header()[k] = vs
	}
	w.WriteHeader(code)
	_, _ = w.Write(out)
}

func (n *node) url() string { return n.srv.URL + "/v1/metrics" }

// Accepted returns the batches answered 2xx, in order.
func (n *node) Accepted() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.accepted)
}

// Attempts returns the batch of each request, in order of arrival.
func (n *node) Attempts() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.attempts)
}

// Arrivals returns when each request arrived.
func (n *node) Arrivals() []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.at)
}

// attachment is the agent's current node, as Config.Target reports it:
// nil while detached.
type attachment struct{ n atomic.Pointer[node] }

func attachedTo(n *node) *attachment {
	a := &attachment{}
	a.n.Store(n)
	return a
}

func (a *attachment) target() (string, *http.Client, bool) {
	n := a.n.Load()
	if n == nil {
		return "", nil, false
	}
	return n.url(), n.srv.Client(), true
}

// testConfig is a Config for tests: short waits, logs to t.Log.
func testConfig(t *testing.T, a *attachment) Config {
	return Config{
		Target:     a.target,
		Timeout:    5 * time.Second,
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		Poll:       10 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// testWriter sends logs to t.Log, shown only when a test fails.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func openSpool(t *testing.T, dir string, maxBytes int64) *Spool {
	t.Helper()
	s, err := OpenSpool(dir, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newSender(t *testing.T, sp *Spool, cfg Config) *Sender {
	t.Helper()
	s, err := New(sp, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// start runs s until the returned stop is called (or the test ends);
// stop returns once Run has.
func start(t *testing.T, s *Sender) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func put(t *testing.T, sp *Spool, is ...int) {
	t.Helper()
	for _, i := range is {
		if err := sp.Put(batch(t, i)); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// records is a slog handler keeping its records, for tests of what is
// logged.
type records struct {
	mu  sync.Mutex
	got []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// at returns the records at level.
func (r *records) at(level slog.Level) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for _, rec := range r.got {
		if rec.Level == level {
			out = append(out, rec)
		}
	}
	return out
}

// attr returns a record's attribute key.
func attr(rec slog.Record, key string) slog.Value {
	var v slog.Value
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}
