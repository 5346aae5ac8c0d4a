package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// fakeNode is a node's API as the drill's read-back, stale probes and
// stop use it, with what the region holds set by the test.
type fakeNode struct {
	mu        sync.Mutex
	kv        map[string]string // what a linearizable read finds
	committed map[string]bool   // dispatch ids in the log
	broken    map[string]bool   // keys or ids that cannot be read (500)
	busy      map[string]int    // 503s to answer for a key or id before the value
	reads     map[string]int    // reads per key or id, consistent ones only
	inconsist int               // reads without ?consistent=true

	// stale answers a stale probe with this id, or fails the call when
	// it returns false (called with mu held); nil answers every probe
	// refused.
	stale      func(id string) (api.StaleProbe, bool)
	staleIDs   []string
	onStop     func(w http.ResponseWriter) // nil answers 202
	stopped    bool
	healthDie  bool          // once stopped, health calls fail as a dead node's would
	healthSlow time.Duration // once stopped, health calls answer this late
}

func newFakeNode(t *testing.T) (*fakeNode, *httptest.Server) {
	t.Helper()
	f := &fakeNode{kv: map[string]string{}, committed: map[string]bool{}, broken: map[string]bool{}, busy: map[string]int{}, reads: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/kv/{key...}", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("key")
		if f.read(w, r, key) {
			return
		}
		f.mu.Lock()
		v, ok := f.kv[key]
		f.mu.Unlock()
		if !ok {
			http.Error(w, `{"error":"no such key"}`, http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(v))
	})
	mux.HandleFunc("GET /api/v1/dispatches/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if f.read(w, r, id) {
			return
		}
		f.mu.Lock()
		l := api.DispatchLookup{ID: id, Committed: f.committed[id]}
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(l)
	})
	mux.HandleFunc("POST /api/v1/drills/stale", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		f.mu.Lock()
		f.staleIDs = append(f.staleIDs, id)
		p, ok := api.StaleProbe{ID: id, Token: 5, Outcome: api.StaleOutcomeRefused}, true
		if f.stale != nil {
			p, ok = f.stale(id)
		}
		f.mu.Unlock()
		if !ok {
			http.Error(w, `{"error":"write failed"}`, http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(p)
	})
	mux.HandleFunc("POST /api/v1/drills/stop", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.stopped = true
		onStop := f.onStop
		f.mu.Unlock()
		if onStop != nil {
			onStop(w)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"node":"n1"}`))
	})
	mux.HandleFunc("GET /api/v1/health", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		die := f.stopped && f.healthDie
		slow := time.Duration(0)
		if f.stopped {
			slow = f.healthSlow
		}
		f.mu.Unlock()
		time.Sleep(slow)
		if die {
			hangUp(w)
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok","node":"n1"}`))
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return f, ts
}

// read counts a read of name and answers it when it is broken or busy.
func (f *fakeNode) read(w http.ResponseWriter, r *http.Request, name string) (answered bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Query().Get("consistent") != "true" {
		f.inconsist++
	}
	f.reads[name]++
	switch {
	case f.broken[name]:
		http.Error(w, `{"error":"disk on fire"}`, http.StatusInternalServerError)
		return true
	case f.busy[name] > 0:
		f.busy[name]--
		http.Error(w, `{"error":"no leader"}`, http.StatusServiceUnavailable)
		return true
	}
	return false
}

// hangUp drops the connection without an answer, as a dead node does.
func hangUp(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		c.Close()
	}
}

func testDrill(t *testing.T, addr string) *drill {
	t.Helper()
	d := newDrill(Config{Addr: addr, Progress: tlog{t}}.withDefaults())
	t.Cleanup(d.close)
	return d
}

// TestDrillReadBackFindsLostWrites: the read-back reads every write the
// region acknowledged and every probe dispatch answered as committed,
// each with a linearizable read, and reports as lost each one missing
// (or, for a write, holding another value): an acknowledged write lost.
func TestDrillReadBackFindsLostWrites(t *testing.T) {
	f, ts := newFakeNode(t)
	rs := &roundState{n: 1}
	for i := range 40 {
		key, val := fmt.Sprintf("drill/run/1/%d", i), fmt.Sprintf("run round 1 write %d", i)
		rs.acked = append(rs.acked, ackedWrite{key: key, value: val})
		f.kv[key] = val
		id := fmt.Sprintf("drill-run-1-%d", i)
		rs.committed = append(rs.committed, id)
		f.committed[id] = true
	}
	delete(f.kv, "drill/run/1/7")            // acknowledged, then gone
	f.kv["drill/run/1/21"] = "another value" // acknowledged, then overwritten
	delete(f.committed, "drill-run-1-13")    // answered committed, not in the log
	f.busy["drill/run/1/3"] = 2              // an election under way: retried
	f.busy["drill-run-1-30"] = 1             //
	var res api.DrillRound
	if err := testDrill(t, ts.URL).readBack(context.Background(), ts.URL, rs, &res); err != nil {
		t.Fatal(err)
	}
	if res.AckedWrites != 40 || res.AckedWritesLost != 2 || !slices.Equal(res.LostKeys, []string{"drill/run/1/21", "drill/run/1/7"}) {
		t.Errorf("writes: %d acknowledged, %d lost %v; want 40, 2 [drill/run/1/21 drill/run/1/7]", res.AckedWrites, res.AckedWritesLost, res.LostKeys)
	}
	if res.ProbesCommitted != 40 || res.ProbesLost != 1 || !slices.Equal(res.LostProbeIDs, []string{"drill-run-1-13"}) {
		t.Errorf("probes: %d committed, %d lost %v; want 40, 1 [drill-run-1-13]", res.ProbesCommitted, res.ProbesLost, res.LostProbeIDs)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range rs.acked {
		if f.reads[a.key] == 0 {
			t.Errorf("write %s was never read back", a.key)
		}
	}
	for _, id := range rs.committed {
		if f.reads[id] == 0 {
			t.Errorf("probe %s was never looked up", id)
		}
	}
	if f.inconsist > 0 {
		t.Errorf("%d read-backs were not linearizable (no ?consistent=true): a lagging follower could hide a loss", f.inconsist)
	}
}

// TestDrillReadBackAllThere: nothing lost is reported as nothing lost,
// and the lists stay empty.
func TestDrillReadBackAllThere(t *testing.T) {
	f, ts := newFakeNode(t)
	rs := &roundState{n: 1, acked: []ackedWrite{{key: "drill/r/1/1", value: "v1"}, {key: "drill/r/1/2", value: "v2"}}, committed: []string{"drill-r-1-1"}}
	f.kv["drill/r/1/1"], f.kv["drill/r/1/2"], f.committed["drill-r-1-1"] = "v1", "v2", true
	var res api.DrillRound
	if err := testDrill(t, ts.URL).readBack(context.Background(), ts.URL, rs, &res); err != nil {
		t.Fatal(err)
	}
	if res.AckedWrites != 2 || res.AckedWritesLost != 0 || len(res.LostKeys) != 0 || res.ProbesCommitted != 1 || res.ProbesLost != 0 || len(res.LostProbeIDs) != 0 {
		t.Errorf("round %+v; want 2 writes and 1 probe, none lost", res)
	}
}

// TestDrillReadBackUnreadable: a key or id that cannot be read fails the
// read-back instead of passing for present.
func TestDrillReadBackUnreadable(t *testing.T) {
	for _, tc := range []struct{ name, broken string }{{"write", "drill/r/1/2"}, {"probe", "drill-r-1-1"}} {
		t.Run(tc.name, func(t *testing.T) {
			f, ts := newFakeNode(t)
			rs := &roundState{n: 1, acked: []ackedWrite{{key: "drill/r/1/1", value: "v1"}, {key: "drill/r/1/2", value: "v2"}}, committed: []string{"drill-r-1-1"}}
			f.kv["drill/r/1/1"], f.kv["drill/r/1/2"], f.committed["drill-r-1-1"] = "v1", "v2", true
			f.broken[tc.broken] = true
			var res api.DrillRound
			err := testDrill(t, ts.URL).readBack(context.Background(), ts.URL, rs, &res)
			if statusOf(err) != http.StatusInternalServerError || !strings.Contains(err.Error(), tc.broken) {
				t.Fatalf("read-back with %s unreadable: %v; want the 500 on it", tc.broken, err)
			}
		})
	}
}

// TestDrillStaleClassified: each stale probe is looked up by its id; one
// that committed is a fencing failure whatever its answer (or its failed
// call) said; only the FSM's refusal counts as refused.
func TestDrillStaleClassified(t *testing.T) {
	f, ts := newFakeNode(t)
	answers := []api.StaleProbe{
		{ID: "stale-r-1-1", Outcome: api.StaleOutcomeRefused},
		{ID: "stale-r-1-2", Outcome: api.StaleOutcomeRefused},
		{ID: "stale-r-1-3", Outcome: api.StaleOutcomeNotAppended},
		{ID: "stale-r-1-4", Outcome: api.StaleOutcomeBadCommand},
		{ID: "stale-r-1-5", Outcome: api.StaleOutcomeUnknown},               // not committed
		{ID: "stale-r-1-6", Outcome: api.StaleOutcomeUnknown, Error: "EOF"}, // a failed call, committed
		{ID: "stale-r-1-7", Outcome: api.StaleOutcomeRefused},               // said refused, yet committed
		{ID: "stale-r-1-8", Outcome: api.StaleOutcomeAccepted},              // said so
	}
	f.committed["stale-r-1-6"], f.committed["stale-r-1-7"], f.committed["stale-r-1-8"] = true, true, true
	var res api.DrillRound
	stale := map[string]bool{}
	if err := testDrill(t, ts.URL).classifyStale(context.Background(), ts.URL, answers, stale, &res); err != nil {
		t.Fatal(err)
	}
	want := api.DrillRound{StaleAttempted: 8, StaleRefused: 2, StaleNotAppended: 1, StaleBadCommand: 1, StaleUnknown: 1}
	if res.StaleAttempted != want.StaleAttempted || res.StaleRefused != want.StaleRefused || res.StaleNotAppended != want.StaleNotAppended ||
		res.StaleBadCommand != want.StaleBadCommand || res.StaleUnknown != want.StaleUnknown {
		t.Errorf("counts %+v, want %+v", res, want)
	}
	if got := slices.Sorted(maps.Keys(stale)); !slices.Equal(got, []string{"stale-r-1-6", "stale-r-1-7", "stale-r-1-8"}) {
		t.Errorf("stale accepted %v, want stale-r-1-6, -7, -8", got)
	}
}

// TestDrillStaleProbeIDsFromTheDrill: the drill makes each stale probe's
// id and sends it, so a probe whose call failed keeps its id and is
// looked up later: committed, it is caught as accepted.
func TestDrillStaleProbeIDsFromTheDrill(t *testing.T) {
	f, ts := newFakeNode(t)
	var calls int
	f.stale = func(id string) (api.StaleProbe, bool) {
		calls++
		if calls%2 == 0 {
			f.committed[id] = true // committed, but the answer is lost
			return api.StaleProbe{}, false
		}
		return api.StaleProbe{ID: id, Token: 5, Outcome: api.StaleOutcomeRefused}, true
	}
	d := testDrill(t, ts.URL)
	rs := &roundState{n: 3}
	sp := d.startStale(context.Background(), ts.URL, rs)
	deadline := time.Now().Add(30 * time.Second)
	for {
		launched, _ := sp.counts()
		if errs, _ := sp.failures(); launched >= 6 && errs >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stale prober did not launch 6 probes within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := sp.finish()
	f.mu.Lock()
	sent := slices.Clone(f.staleIDs)
	f.mu.Unlock()
	if len(out) != len(sent) {
		t.Fatalf("%d outcomes for %d probes sent: a failed call was dropped", len(out), len(sent))
	}
	seen := map[string]bool{}
	for _, id := range sent {
		if !strings.HasPrefix(id, "stale-"+d.runID+"-3-") || len(id) > 64 || seen[id] {
			t.Errorf("probe id %q: want a fresh stale-%s-3-N", id, d.runID)
		}
		seen[id] = true
	}
	var res api.DrillRound
	stale := map[string]bool{}
	if err := d.classifyStale(context.Background(), ts.URL, out, stale, &res); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var want []string
	for id := range f.committed {
		want = append(want, id)
	}
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(stale)); len(want) < 2 || !slices.Equal(got, want) {
		t.Errorf("stale accepted %v, want the committed ids of the failed calls %v", got, want)
	}
}

// TestDrillStopAnswerLost: when the stop's answer is cut short (the node
// died writing it), the drill confirms the stop another way: the node
// no longer answers. If it still answers, the stop is not confirmed.
func TestDrillStopAnswerLost(t *testing.T) {
	cutShort := func(w http.ResponseWriter) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"node\":"))
		c.Close()
	}
	t.Run("the node is gone", func(t *testing.T) {
		f, ts := newFakeNode(t)
		f.onStop, f.healthDie = cutShort, true
		d := testDrill(t, ts.URL)
		d.cfg.Mode = ModeStop
		if _, err := d.inject(context.Background(), "n1", ts.URL); err != nil {
			t.Fatalf("stop with its answer cut short, node gone: %v; want it confirmed", err)
		}
	})
	t.Run("the node still answers", func(t *testing.T) {
		f, ts := newFakeNode(t)
		f.onStop = cutShort
		d := testDrill(t, ts.URL)
		d.cfg.Mode = ModeStop
		d.stopConfirm = 500 * time.Millisecond
		if _, err := d.inject(context.Background(), "n1", ts.URL); !errors.Is(err, errNotStopped) {
			t.Fatalf("stop with its answer cut short, node alive: %v; want errNotStopped", err)
		}
	})
	t.Run("the node's port refuses connections", func(t *testing.T) {
		f, ts := newFakeNode(t)
		f.onStop = func(w http.ResponseWriter) {
			cutShort(w)
			// A stopped node refuses new connections and has closed its
			// open ones: an idle keep-alive connection left open would
			// still answer health checks (the flake CI found).
			ts.Listener.Close()
			ts.CloseClientConnections()
		}
		d := testDrill(t, ts.URL)
		d.cfg.Mode = ModeStop
		d.stopConfirm = 5 * time.Second
		if _, err := d.inject(context.Background(), "n1", ts.URL); err != nil {
			t.Fatalf("stop with its answer cut short, port closed: %v; want it confirmed", err)
		}
	})
	t.Run("the node answers too slowly to tell", func(t *testing.T) {
		f, ts := newFakeNode(t)
		f.onStop, f.healthSlow = cutShort, 1500*time.Millisecond
		d := testDrill(t, ts.URL)
		d.cfg.Mode = ModeStop
		d.stopConfirm = 2 * time.Second
		if _, err := d.inject(context.Background(), "n1", ts.URL); !errors.Is(err, errNotStopped) {
			t.Fatalf("stop with its answer cut short, node alive but slower than the check: %v; want errNotStopped", err)
		}
	})
	t.Run("a whole answer", func(t *testing.T) {
		_, ts := newFakeNode(t)
		d := testDrill(t, ts.URL)
		d.cfg.Mode = ModeStop
		if _, err := d.inject(context.Background(), "n1", ts.URL); err != nil {
			t.Fatal(err)
		}
	})
}
