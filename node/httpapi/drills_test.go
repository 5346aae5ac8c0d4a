package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/lease"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// drillRegion is the region as the drill handlers use it: a node id and
// an Apply that commits the audit record. Other methods are not called.
type drillRegion struct{ Region }

func (drillRegion) NodeID() string { return "n1" }
func (drillRegion) Apply(context.Context, []byte) (raft.Result, error) {
	return raft.Result{Index: 1}, nil
}

type drillLease struct{ Lease }

func (drillLease) Status() lease.Status { return lease.Status{} }
func (drillLease) Config() lease.Config { return lease.Config{} }

// fakeDrills records what the handlers asked of it.
type fakeDrills struct {
	Drills
	stop     func() // run by Stop, on the handler's goroutine
	probeErr error

	mu      sync.Mutex
	stopped bool

	serving sync.Mutex // held while a request is served
	conn    net.Conn   // the connection of the request being served
	ids     []string   // ids StaleProbe was called with
}

func (*fakeDrills) Enabled() bool                        { return true }
func (*fakeDrills) MaxDuration() time.Duration           { return time.Minute }
func (*fakeDrills) Faults() (raft.Faults, time.Duration) { return raft.Faults{}, 0 }
func (*fakeDrills) Timings() raft.Tuning                 { return raft.Tuning{} }

func (f *fakeDrills) Stop(time.Duration) {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	if f.stop != nil {
		f.stop()
	}
}

func (f *fakeDrills) StaleProbe(_ context.Context, id string) (lease.Dispatch, error) {
	f.mu.Lock()
	f.ids = append(f.ids, id)
	f.mu.Unlock()
	if id == "" {
		id = "stale-n1-made-here"
	}
	return lease.Dispatch{ID: id, Token: 7}, f.probeErr
}

// drillServer serves one drill handler with fakes behind it. The
// request's connection goes to d.conn, for a fake stop to close.
func drillServer(t *testing.T, d *fakeDrills, h handlerFunc) *httptest.Server {
	t.Helper()
	s := &server{cfg: Config{Region: drillRegion{}, Lease: drillLease{}, Drills: d, Now: time.Now, Logger: slog.New(slog.DiscardHandler)}}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// One request at a time: the next one must not replace d.conn
		// before this one's stop closed it.
		d.serving.Lock()
		defer d.serving.Unlock()
		d.conn, _ = r.Context().Value(connKey{}).(net.Conn)
		h(s, w, r, &call{p: &auth.Principal{Actor: "user:admin", RegionAdmin: true}})
	}))
	ts.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) }
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

type connKey struct{}

// TestDrillStopAnswersBeforeStopping: the stop drill's answer reaches the
// caller whole although the stop closes every connection at once, before
// the handler returns (as Node.Kill does). A chunked answer, flushed but
// not ended, was cut short there: "unexpected EOF" in a 30-round drill.
func TestDrillStopAnswersBeforeStopping(t *testing.T) {
	d := &fakeDrills{}
	// The stop closes the connection under the handler at once, as the
	// node's Kill does, before the handler returns.
	d.stop = func() { d.conn.Close() }
	ts := drillServer(t, d, (*server).drillStop)
	for i := range 20 {
		resp, err := http.Post(ts.URL, "application/json", strings.NewReader(`{"restart_after_ms":1000}`))
		if err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("stop %d: reading the answer: %v (the stop cut it short)", i, err)
		}
		if !resp.Close {
			t.Errorf("stop %d: the answer does not close its connection; the caller would send its next request down it", i)
		}
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("stop %d: HTTP %d %s, want 202", i, resp.StatusCode, body)
		}
		var st api.DrillState
		if err := json.Unmarshal(body, &st); err != nil || st.Node != "n1" || !st.Enabled {
			t.Fatalf("stop %d: answer %q (%v), want the drill state of n1", i, body, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stopped {
		t.Fatal("the node was not stopped")
	}
}

// TestDrillStaleOutcomes: only the FSM's refusal of the stale token is
// "refused" (which alone satisfies the drill's fence check); a malformed
// entry and one never appended are told apart, and anything else is
// "unknown" so the drill looks the id up.
func TestDrillStaleOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"committed", nil, api.StaleOutcomeAccepted},
		{"stale token", fmt.Errorf("dispatch: %w", lease.ErrStaleToken), api.StaleOutcomeRefused},
		{"stale token forwarded by the leader", &raft.RemoteError{Code: "lease.stale_token", Msg: "applying: " + lease.ErrStaleToken.Error() + ": n1 sent token 3"}, api.StaleOutcomeRefused},
		{"malformed dispatch", fmt.Errorf("%w: dispatch id already used", lease.ErrBadCommand), api.StaleOutcomeBadCommand},
		{"malformed raft command", fmt.Errorf("%w: bad batch count", raft.ErrBadCommand), api.StaleOutcomeBadCommand},
		{"no leader", fmt.Errorf("apply: %w", raft.ErrNoLeader), api.StaleOutcomeNotAppended},
		{"shutdown", raft.ErrShutdown, api.StaleOutcomeNotAppended},
		{"timeout", context.DeadlineExceeded, api.StaleOutcomeUnknown},
		{"outcome unknown", raft.ErrOutcomeUnknown, api.StaleOutcomeUnknown},
		{"in flight at shutdown", fmt.Errorf("%w: %w", raft.ErrOutcomeUnknown, raft.ErrShutdown), api.StaleOutcomeUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := drillServer(t, &fakeDrills{probeErr: tc.err}, (*server).drillStale)
			p := postStale(t, ts.URL+"?id=stale-run-1-1", http.StatusOK)
			if p.Outcome != tc.want || p.ID != "stale-run-1-1" || p.Token != 7 {
				t.Fatalf("answer %+v, want outcome %q for id stale-run-1-1 token 7", p, tc.want)
			}
			if (tc.err == nil) != (p.Error == "") {
				t.Fatalf("answer error %q for %v", p.Error, tc.err)
			}
		})
	}
}

// TestDrillStaleClientID: the drill chooses the stale probe's id, so it
// can look up a probe whose call failed; the node validates it and
// proposes exactly that id, and makes one only when none is given.
func TestDrillStaleClientID(t *testing.T) {
	d := &fakeDrills{probeErr: lease.ErrStaleToken}
	ts := drillServer(t, d, (*server).drillStale)
	if p := postStale(t, ts.URL+"?id=stale-ab12cd34-3-17", http.StatusOK); p.ID != "stale-ab12cd34-3-17" {
		t.Fatalf("answer id %q, want the client's", p.ID)
	}
	if p := postStale(t, ts.URL, http.StatusOK); p.ID != "stale-n1-made-here" {
		t.Fatalf("answer id %q without a client id, want the node's", p.ID)
	}
	for _, bad := range []string{
		"drill-1-2",                        // another namespace: could name a real dispatch
		"stale-",                           // nothing after the prefix
		"stale-a/b",                        // not an id character
		"stale-a b",                        //
		"stale-" + strings.Repeat("x", 59), // 65 bytes: longer than a dispatch id
	} {
		postStale(t, ts.URL+"?id="+url.QueryEscape(bad), http.StatusBadRequest)
	}
	postStale(t, ts.URL+"?id=stale-"+strings.Repeat("x", 58), http.StatusOK) // 64 bytes: the longest
	d.mu.Lock()
	defer d.mu.Unlock()
	want := []string{"stale-ab12cd34-3-17", "", "stale-" + strings.Repeat("x", 58)}
	if fmt.Sprint(d.ids) != fmt.Sprint(want) {
		t.Fatalf("StaleProbe called with ids %q, want %q (a refused id must not be proposed)", d.ids, want)
	}
}

func postStale(t *testing.T, u string, code int) api.StaleProbe {
	t.Helper()
	resp, err := http.Post(u, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("POST %s: HTTP %d %s, want %d", u, resp.StatusCode, body, code)
	}
	var p api.StaleProbe
	if code == http.StatusOK {
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("POST %s: %q: %v", u, body, err)
		}
	}
	return p
}

// staleSelfLease is a lease whose record still names this node (n1) with
// time left while the node does not hold it: after a restart, before the
// region moves the lease on.
type staleSelfLease struct{ drillLease }

func (staleSelfLease) Status() lease.Status {
	return lease.Status{State: lease.State{Holder: "n1", Token: 4}, ExpiresIn: time.Second}
}
func (staleSelfLease) Dispatch(context.Context, storage.Tenant, lease.Dispatch) (lease.Dispatch, error) {
	return lease.Dispatch{}, lease.ErrNotHolder
}

// TestDispatchNotHolderNamingItself: a node refused as not the holder by
// its lease, whose record names itself, answers 503 with Retry-After (a
// failover is under way), never a 409 sending the caller back to itself
// (outpostctl followed that once and gave up: a README tour failure).
func TestDispatchNotHolderNamingItself(t *testing.T) {
	s := &server{cfg: Config{Region: drillRegion{}, Lease: staleSelfLease{}, Now: time.Now, Logger: slog.New(slog.DiscardHandler)}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.dispatchCreate(w, r, &call{p: &auth.Principal{Actor: "user:admin", RegionAdmin: true}})
	}))
	t.Cleanup(ts.Close)
	resp, err := http.Post(ts.URL, "application/json", strings.NewReader(`{"kind":"note","selector":"all","id":"d1"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Outpost-Lease-Holder-URL") != "" {
		t.Fatalf("%d %v %s; want 503 with Retry-After and no holder to follow", resp.StatusCode, resp.Header, body)
	}
}
