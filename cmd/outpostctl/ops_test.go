package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/outpost-mesh/outpost/api"
)

// TestOpsUsageErrors: malformed dispatch and drill command lines are
// usage errors (exit 2) that say what is wrong, and send nothing.
func TestOpsUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"dispatches without subcommand", []string{"dispatches"}, "outpostctl dispatches: missing subcommand"},
		{"drill without subcommand", []string{"drill", "--json"}, "outpostctl drill: missing subcommand"},
		{"unknown drill", []string{"drill", "chaos"}, `unknown command "drill chaos"`},
		{"create without kind", []string{"dispatches", "create", "--selector", "os=linux"}, "--kind is required"},
		{"create with both payloads", []string{"dispatches", "create", "--kind", "config", "--payload", "{}", "--payload-file", "-"}, "give --payload or --payload-file, not both"},
		{"create with a payload that is not JSON", []string{"dispatches", "create", "--kind", "config", "--payload", "{oops"}, "--payload is not valid JSON"},
		{"create with a positional", []string{"dispatches", "create", "config", "--kind", "config"}, "usage: outpostctl dispatches create --kind K"},
		{"create with a drill flag", []string{"dispatches", "create", "--kind", "config", "--mode", "stop"}, "--mode does not apply to this command"},
		{"list with a positional", []string{"dispatches", "list", "7"}, "usage: outpostctl dispatches list [--tenant T] [--after INDEX]"},
		{"list with a bad index", []string{"dispatches", "list", "--after", "-1"}, `invalid value "-1" for --after: use a whole number, 0 or more`},
		{"watch with an unknown kind", []string{"dispatches", "watch", "--kinds", "lease,heartbeat"}, `--kinds: unknown kind "heartbeat"`},
		{"failover with an unknown mode", []string{"drill", "failover", "--mode", "crash"}, `--mode "crash": use transfer, isolate or stop`},
		{"failover with no rounds", []string{"drill", "failover", "--rounds", "0"}, "Rounds 0 must be in 1..1000"},
		{"failover isolating too briefly", []string{"drill", "failover", "--mode", "isolate", "--isolate-for", "200ms"}, "IsolateFor 200ms must be in [1s, 1h0m0s]"},
		{"isolate-for without isolate", []string{"drill", "failover", "--isolate-for", "10s"}, "--isolate-for applies to --mode isolate only"},
		{"restart-after without stop", []string{"drill", "failover", "--mode", "isolate", "--restart-after", "1s"}, "--restart-after applies to --mode stop only"},
		{"failover with a positional", []string{"drill", "failover", "n1"}, "usage: outpostctl drill failover"},
		{"partition without node", []string{"drill", "partition", "--duration", "5s"}, "--node is required"},
		{"partition with a bad duration", []string{"drill", "partition", "--node", "n1", "--duration", "soon"}, `--duration "soon"`},
		{"partition too brief", []string{"drill", "partition", "--node", "n1", "--duration", "10ms"}, `--duration "10ms"`},
		{"partition too long", []string{"drill", "partition", "--node", "n1", "--duration", "9223372036s"}, `--duration "9223372036s"`},
		{"partition past the cap", []string{"drill", "partition", "--node", "n1", "--duration", "2h"}, `--duration "2h": use a duration in [1s, 1h0m0s]`},
		{"partition with a failover flag", []string{"drill", "partition", "--node", "n1", "--rounds", "2"}, "--rounds does not apply to this command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, seen := fakeNode(t, nil)
			_, stderr, err := runCLI(t, addr, "", tt.args...)
			if !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want a usage error (exit 2)\nstderr: %s", err, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.want)
			}
			if n := len(seen()); n != 0 {
				t.Errorf("a usage error sent %d requests: %v", n, seen())
			}
		})
	}
}

const dispatchJSON = `{"id":"d1","selector":"os=linux","kind":"config","payload":{"a":1},"payload_bytes":7,"token":4,"node":"n2","issued":"2025-01-02T03:04:05Z","index":42}`

// TestOpsRequests: the dispatch commands send what the API expects and
// print the answer.
func TestOpsRequests(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		stdin       string
		method, uri string
		body        string // "" = not checked
		answer      string
		want        string // in stdout
	}{
		{"create", []string{"dispatches", "create", "--kind", "config", "--selector", "os=linux", "--payload", `{"a":1}`, "--id", "d1"}, "",
			"POST", "/api/v1/dispatches", `{"id":"d1","selector":"os=linux","kind":"config","payload":{"a":1}}`, dispatchJSON,
			"dispatch d1 committed at index 42 under lease token 4 (issued by n2)"},
		{"create for a tenant from stdin", []string{"dispatches", "create", "--kind", "config", "--tenant", "acme", "--payload-file", "-", "--id", "d1"}, `{"a":1}`,
			"POST", "/api/v1/tenants/acme/dispatches", `{"id":"d1","selector":"","kind":"config","payload":{"a":1}}`, dispatchJSON, "dispatch d1 committed"},
		{"create --json", []string{"dispatches", "create", "--kind", "config", "--id", "d1", "--json"}, "",
			"POST", "/api/v1/dispatches", `{"id":"d1","selector":"","kind":"config"}`, dispatchJSON, `"token": 4`},
		{"list", []string{"dispatches", "list", "--after", "41"}, "", "GET", "/api/v1/dispatches?after=41", "", "[" + dispatchJSON + "]",
			"42     d1  -       config  os=linux  4      n2         2025-01-02T03:04:05Z  7"},
		{"list a tenant's, consistently", []string{"dispatches", "list", "--tenant", "acme", "--consistent"}, "", "GET", "/api/v1/tenants/acme/dispatches?after=0&consistent=true", "", "[]",
			"no dispatches after index 0"},
		{"list --json", []string{"dispatches", "list", "--json"}, "", "GET", "/api/v1/dispatches?after=0", "", "[]", "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, seen := fakeNode(t, func(*http.Request) (int, string) { return http.StatusOK, tt.answer })
			stdout, stderr, err := runCLI(t, addr, tt.stdin, tt.args...)
			if err != nil {
				t.Fatalf("err = %v\nstderr: %s", err, stderr)
			}
			reqs := seen()
			if len(reqs) != 1 {
				t.Fatalf("sent %d requests, want 1: %v", len(reqs), reqs)
			}
			if got := reqs[0]; got.method != tt.method || got.uri != tt.uri || (tt.body != "" && got.body != tt.body) {
				t.Errorf("sent %s %s %s\nwant %s %s %s", got.method, got.uri, got.body, tt.method, tt.uri, tt.body)
			}
			if !strings.Contains(stdout, tt.want) {
				t.Errorf("stdout = %q, want it to contain %q", stdout, tt.want)
			}
		})
	}
}

// TestDispatchCreateGetsAnID: without --id the CLI picks one, so its own
// retries are applied once.
func TestDispatchCreateGetsAnID(t *testing.T) {
	addr, seen := fakeNode(t, func(*http.Request) (int, string) { return http.StatusCreated, dispatchJSON })
	if _, _, err := runCLI(t, addr, "", "dispatches", "create", "--kind", "config"); err != nil {
		t.Fatal(err)
	}
	if body := seen()[0].body; !strings.Contains(body, `"id":"ctl-`) {
		t.Errorf("body %s has no generated id", body)
	}
}

// TestDispatchFollowsTheLease: a 409 naming the holder sends the same
// request (same id) there, once; a 503 is retried.
// notHolder serves a node that does not hold the dispatch lease. Its
// n-th request (from 1) gets refer(n): a 503 while no node holds the
// lease (unavailable), else a 409 naming the holder's id and URL.
func notHolder(t *testing.T, refer func(n int) (id, url string, unavailable bool)) string {
	t.Helper()
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		id, url, unavailable := refer(n)
		mu.Unlock()
		if unavailable {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"no node holds the dispatch lease right now (a failover is under way)"}`)
			return
		}
		if id != "" {
			w.Header().Set("X-Outpost-Lease-Holder", id)
		}
		w.Header().Set("X-Outpost-Lease-Holder-URL", url)
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":"this node does not hold the dispatch lease"}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDispatchFollowsTheLease(t *testing.T) {
	holder, holderSeen := fakeNode(t, func(*http.Request) (int, string) { return http.StatusCreated, dispatchJSON })
	follower := notHolder(t, func(n int) (string, string, bool) { return "n2", holder, n <= 2 })
	stdout, stderr, err := runCLI(t, follower, "", "dispatches", "create", "--kind", "config", "--id", "d1")
	if err != nil {
		t.Fatalf("err = %v\nstderr: %s", err, stderr)
	}
	for _, want := range []string{"no node holds the dispatch lease right now (a failover is under way) (HTTP 503); retrying for up to 10s with id d1",
		"n2 holds the dispatch lease; sending to " + holder} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr = %q, want it to contain %q", stderr, want)
		}
	}
	if !strings.Contains(stdout, "dispatch d1 committed") {
		t.Errorf("stdout = %q", stdout)
	}
	if reqs := holderSeen(); len(reqs) != 1 || !strings.Contains(reqs[0].body, `"id":"d1"`) {
		t.Errorf("the holder saw %v, want the same dispatch once", reqs)
	}

	t.Run("only once", func(t *testing.T) {
		// A holder that also refuses is not followed further: exit 1.
		var self string
		self = notHolder(t, func(int) (string, string, bool) { return "", self, false })
		_, _, err := runCLI(t, self, "", "dispatches", "create", "--kind", "config", "--id", "d1")
		if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "HTTP 409") {
			t.Errorf("err = %v, want the 409 (exit 1)", err)
		}
	})
}

// streamNode serves lines as the event stream, then ends it.
func streamNode(t *testing.T, lines ...string) (addr string, uri func() string) {
	t.Helper()
	var mu sync.Mutex
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.RequestURI
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, l := range lines {
			io.WriteString(w, l+"\n")
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() string {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

var events = []string{
	`{"kind":"leader","at":"2025-01-02T03:04:05.1Z","node":"n1","leader":"n1"}`,
	`{"kind":"lease","at":"2025-01-02T03:04:05.1Z","node":"n1","lease":{"holder":"n1","token":4,"expires_in_ms":900,"duration_ms":1000,"drift_margin_ms":100,"stale_refused":0}}`,
	`{"kind":"heartbeat","at":"2025-01-02T03:04:10.1Z","node":"n1"}`,
	`{"kind":"dispatch","at":"2025-01-02T03:04:11.25Z","node":"n1","dispatch":{"id":"d1","selector":"os=linux","kind":"config","payload_bytes":7,"token":4,"node":"n1","issued":"2025-01-02T03:04:11Z","index":42}}`,
	`{"kind":"leader","at":"2025-01-02T03:04:12Z","node":"n1"}`,
	`{"kind":"fenced","at":"2025-01-02T03:04:12Z","node":"n1","reason":"this node is no longer the Raft leader"}`,
}

// TestWatchEvents: one line per event (heartbeats hidden) in text, the
// raw objects with --json; a stream the node ends is exit 1.
func TestWatchEvents(t *testing.T) {
	addr, uri := streamNode(t, events...)
	stdout, _, err := runCLI(t, addr, "", "dispatches", "watch", "--kinds", "lease,dispatch")
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "ended the event stream") {
		t.Errorf("err = %v, want the end of the stream as a failure", err)
	}
	if uri() != "/api/v1/events?kinds=lease%2Cdispatch" {
		t.Errorf("asked for %s", uri())
	}
	want := []string{
		"03:04:05.100  n1   leader    n1",
		"03:04:05.100  n1   lease     holder n1, token 4, 900ms left",
		"03:04:11.250  n1   dispatch  d1 kind=config selector=os=linux token=4 from n1 index 42",
		"03:04:12.000  n1   leader    no leader (election under way)",
		"03:04:12.000  n1   fenced    this node is no longer the Raft leader",
	}
	if got := strings.Split(strings.TrimSpace(stdout), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, strings.Join(want, "\n"))
	}

	stdout, _, _ = runCLI(t, addr, "", "dispatches", "watch", "--json")
	if strings.TrimSpace(stdout) != strings.Join(events, "\n") {
		t.Errorf("--json stdout:\n%s\nwant the objects as sent", stdout)
	}

	lagged, _ := streamNode(t, events[0], `{"kind":"lagged","at":"2025-01-02T03:04:05Z","node":"n1","reason":"this stream fell behind"}`)
	_, _, err = runCLI(t, lagged, "", "dispatches", "watch")
	if err == nil || !strings.Contains(err.Error(), "dispatches list --after INDEX") {
		t.Errorf("lagged: err = %v, want the hint to read what was missed", err)
	}
}

// TestWatchEndsOnInterrupt: Ctrl-C (ctx cancelled) ends a watch with
// exit 0.
func TestWatchEndsOnInterrupt(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, events[0]+"\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Setenv("OUTPOST_TOKEN", "")
	out := &cancelOnWrite{cancel: cancel}
	if err := run(ctx, []string{"dispatches", "watch", "--addr", srv.URL}, strings.NewReader(""), out, io.Discard); err != nil {
		t.Errorf("err = %v, want nil after an interrupt", err)
	}
	if !strings.Contains(out.String(), "leader    n1") {
		t.Errorf("stdout = %q", out.String())
	}
}

// cancelOnWrite interrupts the command once it printed something.
type cancelOnWrite struct {
	bytes.Buffer
	cancel context.CancelFunc
}

func (w *cancelOnWrite) Write(p []byte) (int, error) {
	defer w.cancel()
	return w.Buffer.Write(p)
}

// TestStatusLease: the status header shows the lease, and says so when
// nobody holds it.
func TestStatusLease(t *testing.T) {
	tests := []struct {
		lease string
		want  string
	}{
		{`{"holder":"n2","token":7,"expires_in_ms":650,"duration_ms":1000,"drift_margin_ms":100,"stale_refused":3}`,
			"Lease:  holder n2, token 7, 650ms left (duration 1000ms, drift margin 100ms)\n        3 stale dispatch(es) refused by the fencing so far"},
		{`{"holder":"","token":7,"expires_in_ms":0,"released":true,"duration_ms":1000,"drift_margin_ms":100}`,
			"Lease:  nobody holds it (token 7 released for a handoff)"},
		{`{"holder":"","token":7,"expires_in_ms":0,"duration_ms":1000,"drift_margin_ms":100}`,
			"Lease:  nobody holds it (token 7; a failover is under way)"},
	}
	for _, tt := range tests {
		addr, _ := fakeNode(t, func(*http.Request) (int, string) {
			return http.StatusOK, `{"region":"dev","node":"n1","leader":"n2","nodes":[],"lease":` + tt.lease + `}`
		})
		stdout, _, err := runCLI(t, addr, "", "status")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stdout, tt.want) {
			t.Errorf("stdout = %q, want it to contain %q", stdout, tt.want)
		}
	}
}

// TestDrillReportText: the text report shows each round, the
// percentiles, the safety counts, the timings and a verdict.
func TestDrillReportText(t *testing.T) {
	rep := api.DrillReport{Mode: "isolate", Rounds: 2,
		LeaderElectedMs: api.DrillStat{P50: 900, P99: 1100, Max: 1100},
		LeaseAcquiredMs: api.DrillStat{P50: 1200, P99: 1300, Max: 1300},
		FirstDispatchMs: api.DrillStat{P50: 1210, P99: 1320, Max: 1320},
		StaleAttempted:  20, StaleRefused: 20, AckedWrites: 150,
		PerRound: []api.DrillRound{
			{Round: 1, Node: "n1", Token: 4, NewLeader: "n2", NewHolder: "n2", NewToken: 5, LeaderElectedMs: 900, LeaseAcquiredMs: 1200, FirstDispatchMs: 1210, StaleAttempted: 10, StaleRefused: 10, AckedWrites: 70},
			{Round: 2, Node: "n2", Token: 5, NewLeader: "n3", NewHolder: "n3", NewToken: 6, LeaderElectedMs: 1100, LeaseAcquiredMs: 1300, FirstDispatchMs: 1320, StaleAttempted: 10, StaleRefused: 10, AckedWrites: 80},
		},
		Timings: api.DrillTimings{Node: "n1", LeaseDurationMs: 1000, LeaseDriftMarginMs: 100, HeartbeatTimeoutMs: 500, ElectionTimeoutMs: 500, IsolateForMs: 5000},
	}
	var b bytes.Buffer
	if err := printDrillReport(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Failover drill: mode isolate, 2 round(s)",
		"1      n1        4      n2          n2          5          900ms    1200ms  1210ms          10/10          70            0",
		"new lease          1200ms  1300ms  1300ms",
		"Stale dispatches:    20 attempted, 20 refused by the fence, 0 not appended (no leader reached), 0 accepted",
		"Acknowledged writes: 150, lost 0",
		"lease 1000ms, drift margin 100ms, Raft heartbeat timeout 500ms, election timeout 500ms; isolated for 5000ms",
		"PASS: no stale dispatch accepted, no acknowledged write lost",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	rep.StaleAccepted = 1
	b.Reset()
	_ = printDrillReport(&b, rep)
	if !strings.Contains(b.String(), "FAIL: the fencing or the log lost something") {
		t.Errorf("a stale dispatch accepted must FAIL:\n%s", b.String())
	}
}

// TestDrillNeedsAccess: a drill without a region-admin token is exit 1
// with the node's reason, and prints no report.
func TestDrillNeedsAccess(t *testing.T) {
	addr, _ := fakeNode(t, func(*http.Request) (int, string) {
		return http.StatusUnauthorized, `{"error":"missing API token","hint":"send Authorization: Bearer TOKEN"}`
	})
	stdout, _, err := runCLI(t, addr, "", "drill", "failover", "--json")
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "region-admin token") {
		t.Errorf("err = %v, want a refusal naming the token", err)
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing (no round ran)", stdout)
	}
}

// TestDispatchHolderGoneAsksAgain: a named holder that does not answer
// (killed; the lease not yet run out) sends the same dispatch back to the
// first node, which then names the new holder; it is applied there once.
func TestDispatchHolderGoneAsksAgain(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close() // connection refused from now on
	holder, holderSeen := fakeNode(t, func(*http.Request) (int, string) { return http.StatusCreated, dispatchJSON })
	first := notHolder(t, func(n int) (string, string, bool) {
		if n == 1 {
			return "n2", goneURL, false
		}
		return "n3", holder, false
	})
	stdout, stderr, err := runCLI(t, first, "", "dispatches", "create", "--kind", "config", "--id", "d9")
	if err != nil {
		t.Fatalf("err = %v\nstderr: %s", err, stderr)
	}
	for _, want := range []string{"n2 holds the dispatch lease; sending to " + goneURL,
		"the lease holder does not answer (a failover under way?); asking " + first + " again, with id d9",
		"n3 holds the dispatch lease; sending to " + holder} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr = %q, want it to contain %q", stderr, want)
		}
	}
	if !strings.Contains(stdout, " committed at index ") {
		t.Errorf("stdout = %q", stdout)
	}
	if reqs := holderSeen(); len(reqs) != 1 || !strings.Contains(reqs[0].body, `"id":"d9"`) {
		t.Errorf("the new holder saw %v, want the same dispatch once", reqs)
	}
}
