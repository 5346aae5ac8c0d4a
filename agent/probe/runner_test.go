package probe

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/internal/leakcheck"
)

// newTestRunner is a Runner logging to t with no start jitter.
func newTestRunner(t *testing.T) *Runner {
	t.Helper()
	r := NewRunner(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	r.jitter = func(time.Duration) time.Duration { return 0 }
	return r
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// start runs r.Start until the test ends or the returned stop is called,
// and waits for it to return.
func start(t *testing.T, r *Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); r.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Start did not return 5s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunner: probes run every interval and keep their latest result in
// the config's order; Set replaces the set, stopping the old probes; a
// refused probe is reported; Start returns, leaving no goroutine, once
// its context ends.
func TestRunner(t *testing.T) {
	a, b := newListener(t), newListener(t)
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	baseline := goleak.IgnoreCurrent()

	r := newTestRunner(t)
	// Set before Start: nothing runs until Start.
	r.Set([]agentwire.Probe{
		{Kind: "tcp", Target: a.Addr().String(), Interval: "1s"},
		{Kind: "http", Target: srv.URL, Interval: "1s"},
		{Kind: "tcp", Target: b.Addr().String(), Interval: "1s"},
	}, allowLoop)
	time.Sleep(50 * time.Millisecond)
	if n := len(r.Results()); n != 0 || a.accepted.Load() != 0 {
		t.Fatalf("%d results before Start", n)
	}
	stop := start(t, r)

	began := time.Now()
	waitFor(t, "three runs of the first probe", func() bool { return a.accepted.Load() >= 3 })
	if took := time.Since(began); took < 1900*time.Millisecond {
		t.Errorf("three runs in %v: the 1s interval was not kept", took)
	}
	// A second Start returns at once; the first keeps running.
	second := make(chan struct{})
	go func() { defer close(second); r.Start(t.Context()) }()
	select {
	case <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("a second Start did not return")
	}
	res := r.Results()
	if len(res) != 3 || res[0].Target != a.Addr().String() || res[1].Target != srv.URL || res[2].Target != b.Addr().String() {
		t.Fatalf("results %+v: want the three probes in config order", res)
	}
	for _, x := range res {
		if !x.Success {
			t.Errorf("probe failed: %+v", x)
		}
	}
	if time.Since(res[0].At) > 2500*time.Millisecond {
		t.Errorf("latest result is from %v, more than an interval ago", res[0].At)
	}

	// Replace the set: a's probe stops; the new probe is refused by the
	// guard (loopback no longer allowed), naming the rule.
	r.Set([]agentwire.Probe{{Kind: "tcp", Target: b.Addr().String(), Interval: "1s"}}, nil)
	waitFor(t, "the new set's result", func() bool { return len(r.Results()) == 1 })
	if got := r.Results()[0]; got.Refused != "loopback 127.0.0.0/8" || got.Success {
		t.Errorf("result %+v: want refused by the loopback rule", got)
	}
	time.Sleep(100 * time.Millisecond) // a run of the old set in flight ends
	stopped := a.accepted.Load()
	time.Sleep(2200 * time.Millisecond)
	if n := a.accepted.Load(); n != stopped {
		t.Errorf("a probe of the replaced set ran %d more times", n-stopped)
	}

	stop()
	goleak.VerifyNone(t, append(leakcheck.Ignored, baseline)...)
	// Set after Start returned starts nothing.
	r.Set([]agentwire.Probe{{Kind: "tcp", Target: a.Addr().String(), Interval: "1s"}}, allowLoop)
	time.Sleep(100 * time.Millisecond)
	if n := a.accepted.Load(); n != stopped {
		t.Errorf("a probe ran after Start returned")
	}
	goleak.VerifyNone(t, append(leakcheck.Ignored, baseline)...)
}

// TestRunnerConcurrency: no more than MaxConcurrent probes run at once.
func TestRunnerConcurrency(t *testing.T) {
	var mu sync.Mutex
	inFlight, most, served := 0, 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		inFlight--
		served++
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	probes := make([]agentwire.Probe, 3*MaxConcurrent)
	for i := range probes {
		probes[i] = agentwire.Probe{Kind: "http", Target: srv.URL, Interval: "1h"}
	}
	r := newTestRunner(t)
	r.Set(probes, allowLoop)
	start(t, r)
	waitFor(t, "every probe's first run", func() bool { return len(r.Results()) == len(probes) })
	mu.Lock()
	defer mu.Unlock()
	if most > MaxConcurrent || most < 2 || served != len(probes) {
		t.Errorf("%d probes ran at once, %d served; want 2..%d at once and %d served", most, served, MaxConcurrent, len(probes))
	}
}

// TestRunnerJitter: a new set's first runs are spread over their interval
// (at most maxJitter).
func TestRunnerJitter(t *testing.T) {
	r := NewRunner(nil)
	for _, every := range []time.Duration{time.Second, time.Hour} {
		for range 100 {
			if j := r.jitter(every); j < 0 || j >= min(every, maxJitter) {
				t.Fatalf("jitter %v for interval %v", j, every)
			}
		}
	}
}
