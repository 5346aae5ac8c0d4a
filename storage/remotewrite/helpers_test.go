package remotewrite

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"

	"github.com/outpost-mesh/outpost/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// request is one remote_write request a fakeStore took.
type request struct {
	orgID  string
	series []prompb.TimeSeries
	at     time.Time
	status int
}

// fakeStore is a remote_write endpoint that decodes what it gets and
// answers what respond says (200 when nil).
type fakeStore struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []request
	respond func(n int, wr *prompb.WriteRequest, w http.ResponseWriter) int // n counts requests from 0
}

func newFakeStore(t *testing.T) *fakeStore {
	t.Helper()
	s := &fakeStore{t: t}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *fakeStore) url() string { return s.srv.URL + "/api/v1/write" }

func (s *fakeStore) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Content-Encoding") != "snappy" || r.Header.Get("Content-Type") != "application/x-protobuf" ||
		r.Header.Get("X-Prometheus-Remote-Write-Version") != "0.1.0" || r.Method != http.MethodPost {
		s.t.Errorf("request without the remote_write 1.0 method and headers: %s %v", r.Method, r.Header)
		w.WriteHeader(http.StatusUnsupportedMediaType)
		return
	}
	body, _ := io.ReadAll(r.Body)
	raw, err := snappy.Decode(nil, body)
	var wr prompb.WriteRequest
	if err == nil {
		err = wr.Unmarshal(raw)
	}
	if err != nil {
		s.t.Errorf("undecodable request: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	n := len(s.reqs)
	respond := s.respond
	s.mu.Unlock()
	status := http.StatusOK
	if respond != nil {
		status = respond(n, &wr, w)
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, request{orgID: r.Header.Get("X-Scope-OrgID"), series: wr.Timeseries, at: time.Now(), status: status})
	s.mu.Unlock()
	w.WriteHeader(status)
	if status != http.StatusOK {
		_, _ = io.WriteString(w, "refused by the fake store")
	}
}

func (s *fakeStore) setRespond(f func(n int, wr *prompb.WriteRequest, w http.ResponseWriter) int) {
	s.mu.Lock()
	s.respond = f
	s.mu.Unlock()
}

func (s *fakeStore) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// accepted counts the samples of each batch label the store answered
// 200 for.
func (s *fakeStore) accepted() map[string]int {
	out := map[string]int{}
	for _, r := range s.requests() {
		if r.status != http.StatusOK {
			continue
		}
		for _, ts := range r.series {
			for _, l := range ts.Labels {
				if l.Name == "batch" {
					out[l.Value] += len(ts.Samples) + len(ts.Histograms)
				}
			}
		}
	}
	return out
}

// batch builds n one-sample series of tenant labelled batch=b.
func batch(tenant string, b, n int) []prompb.TimeSeries {
	now := time.Now().UnixMilli()
	out := make([]prompb.TimeSeries, n)
	for i := range out {
		out[i] = prompb.TimeSeries{
			Labels: []prompb.Label{{Name: "__name__", Value: "rw_test"}, {Name: "batch", Value: strconv.Itoa(b)},
				{Name: "i", Value: strconv.Itoa(i)}, {Name: "tenant", Value: tenant}},
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: now}},
		}
	}
	return out
}

// testConfig is a queue config for tests: fast retries.
func testConfig(url string) Config {
	return Config{URL: url, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Timeout: 5 * time.Second}
}

// openQueue opens a queue in dir with its own registry, closed at the
// end of the test (closing twice is harmless).
func openQueue(t *testing.T, dir string, cfg Config) *Queue {
	t.Helper()
	q, err := Open(dir, cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// testWriter sends logs to t.Log, shown only on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(b))
	return len(b), nil
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pending(q *Queue) float64 { return testutil.ToFloat64(q.m.queueSamples) }

func dropped(q *Queue, reason string) float64 {
	return testutil.ToFloat64(q.m.dropped.WithLabelValues(reason))
}

func failures(q *Queue, kind string) float64 {
	return testutil.ToFloat64(q.m.failures.WithLabelValues(kind))
}
