package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/node"
)

// waitLease waits until GET /api/v1/region shows a held lease.
func waitLease(t *testing.T, tn *testNode) api.Lease {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var reg api.Region
		_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/region", tn.token, "")), &reg)
		if reg.Lease != nil && reg.Lease.Holder != "" && reg.Lease.ExpiresInMs > 0 {
			return *reg.Lease
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no node acquired the dispatch lease")
	return api.Lease{}
}

// TestDispatchesThroughTheAPI: on a real node, a region admin and a
// tenant operator dispatch under the lease; bad input is refused with a
// clear error; each dispatch is delivered once on the event stream (as a
// digest in the region-wide view), stored once per id, and audited with
// the issuing node.
func TestDispatchesThroughTheAPI(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	l := waitLease(t, tn)
	if l.Holder != "n1" || l.Token < 1 || l.DurationMs != 1000 || l.DriftMarginMs != 100 {
		t.Fatalf("lease %+v, want n1 holding with the default timings", l)
	}
	alice, bob := twoTenants(t, tn)
	viewer := tn.tenantToken(t, alice, "acme", "viewer")

	// Watch the delivery stream.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", tn.url+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+tn.token)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	events := make(chan api.Event, 64)
	opening := make(chan []api.Event, 1)
	go func() {
		sc := bufio.NewScanner(stream.Body)
		var first []api.Event
		for sc.Scan() {
			var e api.Event
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			if len(first) < 2 {
				if first = append(first, e); len(first) == 2 {
					opening <- first
				}
				continue
			}
			if e.Initial {
				t.Errorf("event %+v after the opening two is marked initial", e)
			}
			if e.Kind == "dispatch" {
				events <- e
			}
		}
	}()
	select {
	case first := <-opening:
		if first[0].Kind != "leader" || !first[0].Initial || first[0].Leader != "n1" ||
			first[1].Kind != "lease" || !first[1].Initial || first[1].Index == 0 || first[1].Lease == nil || first[1].Lease.Token != l.Token {
			t.Fatalf("opening events %+v %+v, want the leader and the lease (with its Raft index), marked initial", first[0], first[1])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event stream sent no opening events")
	}

	var d api.Dispatch
	body := `{"id":"cfg-1","kind":"config","selector":"os=linux","payload":{"export_interval":"10s"}}`
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/dispatches", tn.token, body)), &d)
	var payload bytes.Buffer
	_ = json.Compact(&payload, d.Payload)
	if d.ID != "cfg-1" || d.Node != "n1" || d.Token != l.Token || d.Index == 0 || payload.String() != `{"export_interval":"10s"}` {
		t.Fatalf("dispatch %+v", d)
	}
	var again api.Dispatch
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/dispatches", tn.token, body)), &again)
	if again.Index != d.Index {
		t.Fatalf("a retry with the same id was applied again: index %d, first %d", again.Index, d.Index)
	}
	for name, bad := range map[string]string{
		"no kind":       `{"selector":"x"}`,
		"bad id":        `{"id":"../x","kind":"config"}`,
		"bad kind":      `{"kind":"Config!"}`,
		"payload":       `{"kind":"config","payload":{oops}}`,
		"unknown field": `{"kind":"config","token":99}`,
		"oversized":     `{"kind":"config","payload":"` + strings.Repeat("x", 300<<10) + `"}`,
	} {
		if r := tn.do(t, "POST", "/api/v1/dispatches", tn.token, bad); r.code != 400 && r.code != 413 {
			t.Errorf("%s: %d %s, want 400", name, r.code, r.body)
		} else if !strings.Contains(r.body, `"error"`) {
			t.Errorf("%s: no error message: %s", name, r.body)
		}
	}

	// A tenant operator dispatches in its tenant; others cannot.
	var td api.Dispatch
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants/acme/dispatches", alice, `{"kind":"probe_set","payload":{"secret":"acme-only"}}`)), &td)
	if td.Tenant == "" || td.Token != l.Token {
		t.Fatalf("tenant dispatch %+v", td)
	}
	tn.must(t, 403, "POST", "/api/v1/tenants/acme/dispatches", viewer, `{"kind":"config"}`)
	tn.must(t, 404, "POST", "/api/v1/tenants/acme/dispatches", bob, `{"kind":"config"}`)
	if list := tn.must(t, 200, "GET", "/api/v1/tenants/acme/dispatches", viewer, ""); !strings.Contains(list, "acme-only") {
		t.Fatalf("tenant list lacks its dispatch: %s", list)
	}
	if list := tn.must(t, 200, "GET", "/api/v1/dispatches", tn.token, ""); strings.Contains(list, td.ID) || !strings.Contains(list, "cfg-1") {
		t.Fatalf("region list: %s", list)
	}
	var look api.DispatchLookup
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/dispatches/cfg-1?consistent=true", tn.token, "")), &look)
	if !look.Committed || look.Index != d.Index {
		t.Fatalf("lookup %+v", look)
	}

	// Delivered once each, the tenant's as a digest only.
	got := map[string]api.Event{}
	for len(got) < 2 {
		select {
		case e := <-events:
			if _, dup := got[e.Dispatch.ID]; dup {
				t.Fatalf("dispatch %s delivered twice", e.Dispatch.ID)
			}
			got[e.Dispatch.ID] = e
		case <-time.After(10 * time.Second):
			t.Fatalf("delivered %d of 2 dispatches", len(got))
		}
	}
	if e := got[td.ID]; len(e.Dispatch.Payload) != 0 || e.Dispatch.PayloadSHA256 == "" {
		t.Fatalf("region-wide stream shows the tenant's payload: %+v", e.Dispatch)
	}
	if e := got["cfg-1"]; e.Index != d.Index {
		t.Fatalf("dispatch event index %d, want the dispatch's Raft index %d", e.Index, d.Index)
	}

	// Audited with the issuing node.
	var page audit.Page
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/audit", tn.token, "")), &page)
	issued := 0
	for _, e := range page.Entries {
		var rec audit.Record
		_ = json.Unmarshal(e.Data, &rec)
		if rec.Action == "dispatch.issue" {
			issued++
			if rec.Node != "n1" || !strings.HasPrefix(rec.Entity, "dispatch/") {
				t.Errorf("dispatch record %+v lacks the issuing node", rec)
			}
		}
	}
	if issued != 2 {
		t.Errorf("%d dispatch.issue records, want 2 (the retry is not a new dispatch)", issued)
	}

	// Drills are off unless the config enables them, and the refusal is
	// recorded.
	r := tn.do(t, "POST", "/api/v1/drills/isolate", tn.token, `{"duration_ms":1000}`)
	if r.code != 403 || !strings.Contains(r.body, "drills.enabled") && !strings.Contains(r.body, "enabled: true") {
		t.Fatalf("drill on a node without drills: %d %s", r.code, r.body)
	}
	if a := strings.Join(auditActions(t, tn, tn.token, "/api/v1/audit"), ","); !strings.Contains(a, "drill.refused") {
		t.Fatal("the refused drill is not in the audit log")
	}
}

// TestDispatchIDsPerTenantThroughTheAPI: dispatch ids are scoped per
// tenant. Two tenants (and the region) using the same id each get a
// dispatch of their own and see only it; a retry in one tenant is applied
// once; and every answer tenant B gets about an id is the same whether or
// not tenant A used it.
func TestDispatchIDsPerTenantThroughTheAPI(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	waitLease(t, tn)
	alice, bob := twoTenants(t, tn)
	const acmeDispatches, globexDispatches = "/api/v1/tenants/acme/dispatches", "/api/v1/tenants/globex/dispatches"

	// What bob is told about "deploy-1" before acme uses it…
	before := tn.must(t, 200, "GET", globexDispatches+"/deploy-1?consistent=true", bob, "")
	tn.must(t, 404, "GET", acmeDispatches+"/deploy-1", bob, "")

	var a, b, retry api.Dispatch
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", acmeDispatches, alice, `{"id":"deploy-1","kind":"probe_set","payload":{"owner":"acme"}}`)), &a)

	// …is what he is told after.
	if after := tn.must(t, 200, "GET", globexDispatches+"/deploy-1?consistent=true", bob, ""); after != before {
		t.Fatalf("globex's lookup of deploy-1 changed when acme used the id:\nbefore %s\nafter  %s", before, after)
	}
	if r := tn.do(t, "GET", "/api/v1/dispatches/deploy-1?consistent=true", tn.token, ""); r.code != 200 || strings.Contains(r.body, `"committed": true`) {
		t.Fatalf("the region-wide lookup sees acme's id: %d %s", r.code, r.body)
	}

	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", globexDispatches, bob, `{"id":"deploy-1","kind":"probe_set","payload":{"owner":"globex"}}`)), &b)
	if b.Index == 0 || b.Index == a.Index || b.Tenant == "" || b.Tenant == a.Tenant || !strings.Contains(string(b.Payload), "globex") {
		t.Fatalf("globex's deploy-1 %+v, want a dispatch of its own (acme's is %+v)", b, a)
	}
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", globexDispatches, bob, `{"id":"deploy-1","kind":"probe_set","payload":{"owner":"globex"}}`)), &retry)
	if retry.Index != b.Index {
		t.Fatalf("globex's retry was applied again: index %d, first %d", retry.Index, b.Index)
	}

	for name, c := range map[string]struct {
		path, cred, owner string
		index             uint64
	}{"acme": {acmeDispatches, alice, "acme", a.Index}, "globex": {globexDispatches, bob, "globex", b.Index}} {
		var list []api.Dispatch
		_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", c.path+"?consistent=true", c.cred, "")), &list)
		if len(list) != 1 || list[0].Index != c.index || !strings.Contains(string(list[0].Payload), c.owner) {
			t.Errorf("%s lists %+v, want only its own deploy-1 at %d", name, list, c.index)
		}
		var look api.DispatchLookup
		_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", c.path+"/deploy-1?consistent=true", c.cred, "")), &look)
		if !look.Committed || look.Index != c.index {
			t.Errorf("%s looks deploy-1 up as %+v, want its own at %d", name, look, c.index)
		}
	}
	// The region's scope is its own too.
	var rd api.Dispatch
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/dispatches", tn.token, `{"id":"deploy-1","kind":"probe_set"}`)), &rd)
	if rd.Tenant != "" || rd.Index == a.Index || rd.Index == b.Index {
		t.Fatalf("region-wide deploy-1 %+v, want one of its own", rd)
	}
}

// TestDrillRequestsValidated: with drills enabled, a second isolation of
// a node that is already cut off is refused at once with 409 (it could
// not record the drill), a heal ends it, and a stale probe's timeout is
// validated.
func TestDrillRequestsValidated(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.Drills.Enabled = true
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	waitLease(t, tn)

	tn.must(t, 200, "POST", "/api/v1/drills/isolate", tn.token, `{"duration_ms":60000}`)
	r := tn.do(t, "POST", "/api/v1/drills/isolate", tn.token, `{"duration_ms":60000}`)
	if r.code != 409 || !strings.Contains(r.body, "already cut off") || !strings.Contains(r.body, "heal it first") {
		t.Fatalf("second isolation: %d %s, want 409 naming the heal", r.code, r.body)
	}
	var st api.DrillState
	if err := json.Unmarshal([]byte(tn.must(t, 200, "POST", "/api/v1/drills/heal", tn.token, "")), &st); err != nil || st.Isolated {
		t.Fatalf("after heal: %+v %v, want not isolated", st, err)
	}
	tn.must(t, 200, "POST", "/api/v1/drills/isolate", tn.token, `{"duration_ms":1000}`)
	tn.must(t, 200, "POST", "/api/v1/drills/heal", tn.token, "")

	for _, bad := range []string{"0", "-5", "10001", "soon"} {
		if r := tn.do(t, "POST", "/api/v1/drills/stale?timeout_ms="+bad, tn.token, ""); r.code != 400 || !strings.Contains(r.body, "timeout_ms") {
			t.Errorf("stale probe with timeout_ms=%s: %d %s, want 400 naming timeout_ms", bad, r.code, r.body)
		}
	}
	var p api.StaleProbe
	if err := json.Unmarshal([]byte(tn.must(t, 200, "POST", "/api/v1/drills/stale?timeout_ms=5000", tn.token, "")), &p); err != nil {
		t.Fatal(err)
	}
	if p.Outcome != "refused" && p.Outcome != "accepted" {
		t.Fatalf("stale probe on the holder: %+v", p)
	}
}

// TestDrillNumbersRangeChecked: every number a drill route takes is
// checked as a count of milliseconds before it becomes a time.Duration.
// 9223372036855 ms overflows int64 nanoseconds; 18446744073710 ms wraps
// to 448µs, which a check of the converted duration let through (and the
// audit record showed the value sent). Each is a 400 naming the field and
// its range, nothing is isolated or stopped, and nothing is audited.
func TestDrillNumbersRangeChecked(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.Drills.Enabled = true
	cfg.Drills.MaxDuration = time.Minute
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	waitLease(t, tn)
	before := len(auditActions(t, tn, tn.token, "/api/v1/audit"))

	cases := []struct {
		name, path, body, field, rng string
	}{
		{"isolate overflowing", "/api/v1/drills/isolate", `{"duration_ms":9223372036855}`, "duration_ms", "1..60000"},
		{"isolate wrapping into range", "/api/v1/drills/isolate", `{"duration_ms":18446744073710}`, "duration_ms", "1..60000"},
		{"isolate beyond int64", "/api/v1/drills/isolate", `{"duration_ms":9223372036854775808}`, "duration_ms", "1..60000"},
		{"isolate negative", "/api/v1/drills/isolate", `{"duration_ms":-1}`, "duration_ms", "1..60000"},
		{"isolate zero", "/api/v1/drills/isolate", `{"duration_ms":0}`, "duration_ms", "1..60000"},
		{"isolate above max_duration", "/api/v1/drills/isolate", `{"duration_ms":60001}`, "duration_ms", "1..60000"},
		{"isolate fraction", "/api/v1/drills/isolate", `{"duration_ms":1.5}`, "duration_ms", "1..60000"},
		{"isolate string", "/api/v1/drills/isolate", `{"duration_ms":"10s"}`, "duration_ms", "1..60000"},
		{"stop overflowing", "/api/v1/drills/stop", `{"restart_after_ms":9223372036855}`, "restart_after_ms", "0..60000"},
		{"stop wrapping into range", "/api/v1/drills/stop", `{"restart_after_ms":18446744073710}`, "restart_after_ms", "0..60000"},
		{"stop negative", "/api/v1/drills/stop", `{"restart_after_ms":-1}`, "restart_after_ms", "0..60000"},
		{"stop above max_duration", "/api/v1/drills/stop", `{"restart_after_ms":60001}`, "restart_after_ms", "0..60000"},
		{"stop fraction", "/api/v1/drills/stop", `{"restart_after_ms":0.5}`, "restart_after_ms", "0..60000"},
		{"stale overflowing", "/api/v1/drills/stale?timeout_ms=9223372036855", "", "timeout_ms", "1..10000"},
		{"stale beyond int64", "/api/v1/drills/stale?timeout_ms=9223372036854775808", "", "timeout_ms", "1..10000"},
		{"stale negative", "/api/v1/drills/stale?timeout_ms=-1", "", "timeout_ms", "1..10000"},
		{"stale zero", "/api/v1/drills/stale?timeout_ms=0", "", "timeout_ms", "1..10000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := tn.do(t, "POST", c.path, tn.token, c.body)
			var e api.Error
			_ = json.Unmarshal([]byte(r.body), &e)
			if r.code != 400 || !strings.HasPrefix(e.Error, c.field+" ") || !strings.Contains(e.Error, c.rng) {
				t.Fatalf("%d %s, want 400 naming %s and its range %s", r.code, r.body, c.field, c.rng)
			}
		})
	}
	var st api.DrillState
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/drills", tn.token, "")), &st)
	if st.Isolated || len(st.Blocked) > 0 {
		t.Fatalf("a refused drill isolated the node: %+v", st)
	}
	if after := auditActions(t, tn, tn.token, "/api/v1/audit"); len(after) != before {
		t.Fatalf("refused drills were audited as run: %v", after[before:])
	}
	// The bounds themselves are accepted.
	tn.must(t, 200, "POST", "/api/v1/drills/isolate", tn.token, `{"duration_ms":60000}`)
	tn.must(t, 200, "POST", "/api/v1/drills/heal", tn.token, "")
}
