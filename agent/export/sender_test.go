package export

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// sizeOf is the payload bytes of batches is.
func sizeOf(t *testing.T, is []int) uint64 {
	var n uint64
	for _, i := range is {
		n += uint64(len(batch(t, i)))
	}
	return n
}

// TestDeliversInOrder: batches queued before Run and put while it runs
// reach the node once each, in order, and leave the spool.
func TestDeliversInOrder(t *testing.T) {
	n := newNode(t, ok)
	sp := openSpool(t, t.TempDir(), 1<<20)
	put(t, sp, span(1, 10)...)
	s := newSender(t, sp, testConfig(t, attachedTo(n)))
	start(t, s)
	for i := 11; i <= 20; i++ {
		put(t, sp, i)
		s.Kick()
	}
	waitFor(t, "20 batches sent", func() bool { return s.Stats().SentBatches == 20 })
	if got, attempts := n.Accepted(), n.Attempts(); !slices.Equal(got, span(1, 20)) || !slices.Equal(attempts, span(1, 20)) {
		t.Fatalf("node accepted %v after attempts %v, want 1..20 once each", got, attempts)
	}
	st := s.Stats()
	if st.SentBytes != sizeOf(t, span(1, 20)) || st.Queued != 0 || st.QueuedBytes != 0 || st.Retries != 0 ||
		st.LastError != nil || st.LastSuccess.IsZero() {
		t.Errorf("stats %+v", st)
	}
}

// TestRetriesUntilAccepted: a node that answers 503 gets the same batch
// again, and nothing is lost or reordered.
func TestRetriesUntilAccepted(t *testing.T) {
	n := newNode(t, func(attempt, _ int) (int, http.Header, []byte) {
		if attempt == 1 {
			return http.StatusServiceUnavailable, nil, []byte("the node could not store the samples: retry\n")
		}
		return http.StatusOK, nil, nil
	})
	sp := openSpool(t, t.TempDir(), 1<<20)
	put(t, sp, 1, 2, 3)
	s := newSender(t, sp, testConfig(t, attachedTo(n)))
	start(t, s)
	waitFor(t, "3 batches sent", func() bool { return s.Stats().SentBatches == 3 })
	if got, attempts := n.Accepted(), n.Attempts(); !slices.Equal(got, []int{1, 2, 3}) || !slices.Equal(attempts, []int{1, 1, 2, 3}) {
		t.Fatalf("node accepted %v after attempts %v, want [1 2 3] after [1 1 2 3]", got, attempts)
	}
	st := s.Stats()
	if st.Retries != 1 || len(st.Rejected) != 0 || st.Queued != 0 {
		t.Errorf("stats %+v, want 1 retry, no rejection, nothing queued", st)
	}
	if st.LastError == nil || !strings.Contains(st.LastError.Error(), "503") || !strings.Contains(st.LastError.Error(), "retry") {
		t.Errorf("last error %v, want the 503 and the node's text", st.LastError)
	}
}

// TestStatusClassification: OTLP/HTTP's retryable statuses (and 401/403,
// which refuse the certificate, not the batch) keep the
// batch and send it again; any other non-2xx drops it, counted by status,
// and the sender goes on with the next.
func TestStatusClassification(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int
		want string // accepted, retried or rejected
	}{
		{"200", http.StatusOK, "accepted"},
		{"202", http.StatusAccepted, "accepted"},
		{"204", http.StatusNoContent, "accepted"},
		{"429", http.StatusTooManyRequests, "retried"},
		{"502", http.StatusBadGateway, "retried"},
		{"503", http.StatusServiceUnavailable, "retried"},
		{"504", http.StatusGatewayTimeout, "retried"},
		{"400", http.StatusBadRequest, "rejected"},
		{"401 (the certificate, not the batch)", http.StatusUnauthorized, "retried"},
		{"403 (the certificate, not the batch)", http.StatusForbidden, "retried"},
		{"404", http.StatusNotFound, "rejected"},
		{"413", http.StatusRequestEntityTooLarge, "rejected"},
		{"415", http.StatusUnsupportedMediaType, "rejected"},
		{"422", http.StatusUnprocessableEntity, "rejected"},
		{"500", http.StatusInternalServerError, "rejected"},
		{"501", http.StatusNotImplemented, "rejected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Batch 1 gets the code on its first attempt; everything else
			// is accepted.
			n := newNode(t, func(attempt, _ int) (int, http.Header, []byte) {
				if attempt == 1 {
					return tc.code, nil, []byte("told by the test\n")
				}
				return http.StatusOK, nil, nil
			})
			sp := openSpool(t, t.TempDir(), 1<<20)
			put(t, sp, 1, 2)
			s := newSender(t, sp, testConfig(t, attachedTo(n)))
			start(t, s)
			waitFor(t, "an empty spool", func() bool { return s.Stats().Queued == 0 })
			waitFor(t, "batch 2 sent", func() bool { return slices.Contains(n.Accepted(), 2) })
			st := s.Stats()
			wantAccepted, wantAttempts, wantRetries, wantRejected := []int{1, 2}, []int{1, 2}, uint64(0), map[int]uint64{}
			switch tc.want {
			case "retried":
				wantAttempts, wantRetries = []int{1, 1, 2}, 1
			case "rejected":
				wantAccepted, wantRejected = []int{2}, map[int]uint64{tc.code: 1}
			}
			if got, attempts := n.Accepted(), n.Attempts(); !slices.Equal(got, wantAccepted) || !slices.Equal(attempts, wantAttempts) {
				t.Errorf("node accepted %v after attempts %v, want %v after %v", got, attempts, wantAccepted, wantAttempts)
			}
			if st.Retries != wantRetries || !mapsEqual(st.Rejected, wantRejected) {
				t.Errorf("retries %d, rejected %v; want %d, %v", st.Retries, st.Rejected, wantRetries, wantRejected)
			}
		})
	}
}

func mapsEqual(a, b map[int]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRejectionLogsOncePerStatusAMinute: a node refusing batch after
// batch makes one line per status per minute, which counts the batches
// dropped in between, not one line per batch.
func TestRejectionLogsOncePerStatusAMinute(t *testing.T) {
	n := newNode(t, func(_, i int) (int, http.Header, []byte) {
		if i == 6 {
			return http.StatusRequestEntityTooLarge, nil, []byte("send smaller batches\n")
		}
		return http.StatusBadRequest, nil, []byte("not an OTLP metrics request\n")
	})
	sp := openSpool(t, t.TempDir(), 1<<20)
	put(t, sp, span(1, 6)...)
	logs := &records{}
	cfg := testConfig(t, attachedTo(n))
	cfg.Logger = slog.New(logs)
	s := newSender(t, sp, cfg)
	var elapsed atomic.Int64
	base := time.Now()
	s.now = func() time.Time { return base.Add(time.Duration(elapsed.Load())) }
	start(t, s)
	waitFor(t, "6 batches refused", func() bool { st := s.Stats(); return st.Rejected[400] == 5 && st.Rejected[413] == 1 })
	if errs := logs.at(slog.LevelError); len(errs) != 2 {
		t.Fatalf("%d error lines for 5 batches refused 400 and 1 refused 413, want 2 (one per status): %v", len(errs), errs)
	}

	elapsed.Store(int64(61 * time.Second))
	put(t, sp, 7, 8)
	s.Kick()
	waitFor(t, "8 batches refused", func() bool { return s.Stats().Rejected[400] == 7 })
	errs := logs.at(slog.LevelError)
	if len(errs) != 3 {
		t.Fatalf("%d error lines, want 3: a minute later, one more for 400", len(errs))
	}
	if st, held := attr(errs[2], "status").Int64(), attr(errs[2], "also_dropped_since_last_log").Int64(); st != 400 || held != 4 {
		t.Errorf("third line: status %d, also_dropped_since_last_log %d; want 400, 4 (batches 2 to 5)", st, held)
	}
	if st := s.Stats(); st.LastError == nil || !strings.Contains(st.LastError.Error(), "400") {
		t.Errorf("last error %v, want the 400", st.LastError)
	}
}

// TestPartialSuccess: an accepted batch is removed whatever its answer's
// body; a partial_success's rejected points are counted and logged.
func TestPartialSuccess(t *testing.T) {
	resp, err := proto.Marshal(&colmetrics.ExportMetricsServiceResponse{PartialSuccess: &colmetrics.ExportMetricsPartialSuccess{
		RejectedDataPoints: 3, ErrorMessage: "samples not stored: out_of_window=3"}})
	if err != nil {
		t.Fatal(err)
	}
	pb := http.Header{"Content-Type": {"application/x-protobuf"}}
	n := newNode(t, func(_, i int) (int, http.Header, []byte) {
		switch i {
		case 1:
			return http.StatusOK, pb, resp
		case 2:
			return http.StatusOK, pb, []byte{0xff, 0xff} // not a response
		case 3:
			return http.StatusOK, http.Header{"Content-Type": {"text/plain"}}, []byte("ok\n")
		}
		return http.StatusOK, nil, nil // empty
	})
	sp := openSpool(t, t.TempDir(), 1<<20)
	put(t, sp, 1, 2, 3, 4)
	logs := &records{}
	cfg := testConfig(t, attachedTo(n))
	cfg.Logger = slog.New(logs)
	s := newSender(t, sp, cfg)
	start(t, s)
	waitFor(t, "4 batches sent", func() bool { return s.Stats().SentBatches == 4 })
	st := s.Stats()
	if st.RejectedDataPoints != 3 || st.Retries != 0 || len(st.Rejected) != 0 || st.Queued != 0 {
		t.Errorf("stats %+v, want 3 rejected points and nothing else", st)
	}
	warns := logs.at(slog.LevelWarn)
	if len(warns) != 1 || attr(warns[0], "rejected_data_points").Int64() != 3 {
		t.Errorf("warnings %v, want one with rejected_data_points=3", warns)
	}
}

// TestRetryAfterHonoured: a 429's Retry-After holds the retry back that
// long, though the backoff alone would retry at once.
func TestRetryAfterHonoured(t *testing.T) {
	n := newNode(t, func(attempt, _ int) (int, http.Header, []byte) {
		if attempt == 1 {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}, []byte("the node is busy\n")
		}
		return http.StatusOK, nil, nil
	})
	sp := openSpool(t, t.TempDir(), 1<<20)
	put(t, sp, 1)
	cfg := testConfig(t, attachedTo(n))
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, time.Millisecond
	s := newSender(t, sp, cfg)
	start(t, s)
	waitFor(t, "batch 1 sent", func() bool { return s.Stats().SentBatches == 1 })
	attempts, at := n.Attempts(), n.Arrivals()
	if len(attempts) != 2 {
		t.Fatalf("attempts %v, want two", attempts)
	}
	if gap := at[1].Sub(at[0]); gap < time.Second {
		t.Errorf("retried after %v, before the Retry-After of 1s", gap)
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name, value string
		want        time.Duration
		ok          bool
	}{
		{"absent", "", 0, false},
		{"seconds", "2", 2 * time.Second, true},
		{"zero", "0", 0, true},
		{"spaces", " 3 ", 3 * time.Second, true},
		{"capped", "86400", maxRetryAfter, true},
		{"negative", "-1", 0, false},
		{"fraction", "1.5", 0, false},
		{"junk", "soon", 0, false},
		{"date", now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"far date", now.Add(48 * time.Hour).Format(http.TimeFormat), maxRetryAfter, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.value != "" {
				h.Set("Retry-After", tc.value)
			}
			got, ok := retryAfter(h, now)
			if got != tc.want || ok != tc.ok {
				t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tc.value, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	for i, ceil := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		ceil *= time.Millisecond
		if d := b.next(); d < ceil/2 || d > ceil {
			t.Errorf("wait %d: %v, want in [%v, %v]", i, d, ceil/2, ceil)
		}
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("after reset: %v, want at most the minimum", d)
	}
}

// TestFailover: while the agent is attached to a dead node the batches
// stay queued; once it attaches to a live one, they are all delivered
// in order, without sitting out the backoff earned on the dead one.
func TestFailover(t *testing.T) {
	dead := newNode(t, ok)
	dead.srv.Close()
	live := newNode(t, ok)
	a := attachedTo(nil)
	sp := openSpool(t, t.TempDir(), 1<<20)
	put(t, sp, span(1, 5)...)
	cfg := testConfig(t, a)
	// Only a change of target can cut this short within the test's wait.
	cfg.MinBackoff, cfg.MaxBackoff = time.Minute, time.Minute
	s := newSender(t, sp, cfg)
	start(t, s)

	a.n.Store(dead)
	s.Kick()
	waitFor(t, "a failed request to the dead node", func() bool { return s.Stats().Retries >= 1 })
	if st := s.Stats(); st.Queued != 5 || st.SentBatches != 0 || st.LastError == nil {
		t.Fatalf("stats %+v, want 5 batches queued, none sent, an error", st)
	}

	a.n.Store(live) // the agent fails over
	waitFor(t, "5 batches sent", func() bool { return s.Stats().SentBatches == 5 })
	if got := live.Accepted(); !slices.Equal(got, span(1, 5)) {
		t.Errorf("live node accepted %v, want 1..5", got)
	}
	if st := s.Stats(); st.Queued != 0 || !st.LastSuccess.After(st.LastErrorTime) {
		t.Errorf("stats %+v", st)
	}
}

// TestDetachedWaits: a Sender with no node sends nothing and counts no
// failures; attaching (and a Kick) starts delivery.
func TestDetachedWaits(t *testing.T) {
	live := newNode(t, ok)
	a := attachedTo(nil)
	asked := make(chan struct{}, 100)
	cfg := testConfig(t, a)
	cfg.Target = func() (string, *http.Client, bool) {
		select {
		case asked <- struct{}{}:
		default:
		}
		return a.target()
	}
	sp := openSpool(t, t.TempDir(), 1<<20)
	put(t, sp, 1, 2)
	s := newSender(t, sp, cfg)
	start(t, s)
	for range 3 { // three looks at the target, detached each time
		<-asked
	}
	if st := s.Stats(); st.Retries != 0 || st.SentBatches != 0 || st.LastError != nil || st.Queued != 2 {
		t.Fatalf("stats while detached %+v, want nothing sent and no error", st)
	}
	a.n.Store(live)
	s.Kick()
	waitFor(t, "2 batches sent", func() bool { return s.Stats().SentBatches == 2 })
}

// TestRestartDeliversTheRest: an agent stopped with a batch in flight,
// and started again on the same spool directory, delivers the rest,
// each once, in order. The batch in flight at the stop is sent again:
// the node stored it but its answer was lost, so the agent cannot know;
// the node's TSDB takes the re-sent samples as duplicates, harmless.
func TestRestartDeliversTheRest(t *testing.T) {
	dir := t.TempDir()
	first := newNode(t, ok)
	inFlight := make(chan struct{})
	first.hold = func(r *http.Request, i int) {
		if i == 3 {
			close(inFlight)
			<-r.Context().Done() // the answer never leaves
		}
	}
	sp := openSpool(t, dir, 1<<20)
	put(t, sp, span(1, 6)...)
	s := newSender(t, sp, testConfig(t, attachedTo(first)))
	stop := start(t, s)
	<-inFlight
	stop()
	if st := s.Stats(); st.SentBatches != 2 || st.Queued != 4 {
		t.Fatalf("at the stop: stats %+v, want 2 sent and 4 queued", st)
	}

	second := newNode(t, ok)
	sp = openSpool(t, dir, 1<<20)
	if sp.Len() != 4 {
		t.Fatalf("reopened spool holds %d batches, want 4 (3 to 6)", sp.Len())
	}
	s = newSender(t, sp, testConfig(t, attachedTo(second)))
	start(t, s)
	waitFor(t, "4 batches sent", func() bool { return s.Stats().SentBatches == 4 })
	all := append(first.Accepted(), second.Accepted()...)
	if want := []int{1, 2, 3, 3, 4, 5, 6}; !slices.Equal(all, want) {
		t.Errorf("nodes accepted %v, want %v (3, in flight at the stop, twice)", all, want)
	}
}

// TestRunOnce: one loop drains a spool.
func TestRunOnce(t *testing.T) {
	sp := openSpool(t, t.TempDir(), 1<<20)
	s := newSender(t, sp, testConfig(t, attachedTo(nil)))
	start(t, s)
	waitFor(t, "Run to start", s.running.Load)
	if err := s.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
}

func TestConfig(t *testing.T) {
	target := func() (string, *http.Client, bool) { return "", nil, false }
	sp := openSpool(t, t.TempDir(), 1<<20)
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string // "" for none
	}{
		{"defaults", Config{Target: target}, ""},
		{"no target", Config{}, "Target"},
		{"negative timeout", Config{Target: target, Timeout: -time.Second}, "Timeout"},
		{"max below min", Config{Target: target, MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff"},
		{"min above default max", Config{Target: target, MinBackoff: time.Minute}, ""},
		{"negative poll", Config{Target: target, Poll: -1}, "Poll"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(sp, tc.cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("New: %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
	if _, err := New(nil, Config{Target: target}); err == nil {
		t.Error("New without a spool succeeded")
	}
}
