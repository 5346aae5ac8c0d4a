package node_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/node"
)

// TestDrillIsolationHealsItself: an isolation ends by itself after its
// duration (capped by drills.max_duration) when nobody calls heal, so a
// drill whose client vanished cannot leave a node cut off; a longer
// duration is refused. The isolation and a heal are in the audit log.
func TestDrillIsolationHealsItself(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.Drills.Enabled = true
	cfg.Drills.MaxDuration = 2 * time.Second
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	waitLease(t, tn)
	state := func() api.DrillState {
		t.Helper()
		var st api.DrillState
		if err := json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/drills", tn.token, "")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}

	if r := tn.do(t, "POST", "/api/v1/drills/isolate", tn.token, `{"duration_ms":2001}`); r.code != 400 {
		t.Fatalf("isolation longer than drills.max_duration: %d %s, want 400", r.code, r.body)
	}
	start := time.Now()
	tn.must(t, 200, "POST", "/api/v1/drills/isolate", tn.token, `{"duration_ms":2000}`)
	if st := state(); !st.Isolated || st.HealsInMs <= 0 {
		t.Fatalf("right after the isolation: %+v, want isolated and healing by itself", st)
	}
	for state().Isolated {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the isolation did not heal by itself within 10s of a 2s drill")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Fatalf("healed after %v, before its 2s duration", took)
	}
	tn.must(t, 200, "PUT", "/api/v1/kv/after-heal", tn.token, "ok")

	tn.must(t, 200, "POST", "/api/v1/drills/isolate", tn.token, `{"duration_ms":2000}`)
	tn.must(t, 200, "POST", "/api/v1/drills/heal", tn.token, "")
	eventually(t, 5*time.Second, "the drills in the audit log", func() bool {
		acts := auditActions(t, tn, tn.token, "/api/v1/audit")
		n := 0
		for _, a := range acts {
			if a == "drill.isolate" {
				n++
			}
		}
		return n == 2 && slices.Contains(acts, "drill.heal")
	})
}

// TestCutOffFollowerRefusesConsistentRead: a follower isolated by a
// drill still answers a default (stale) read from its own copy, and
// says so, but a consistent read (?consistent=true) is 503 with
// Retry-After and a hint, within the 5 s budget, not its stale value
// and not a hang; the region has moved on meanwhile. Healed, its
// consistent read returns the newer value.
func TestCutOffFollowerRefusesConsistentRead(t *testing.T) {
	nodes := startRegion3(t, []*delayProxy{newDelayProxy(t, 0), newDelayProxy(t, 0), newDelayProxy(t, 0)}, func(c *node.Config) {
		c.Drills.Enabled, c.Drills.MaxDuration = true, time.Minute
	})
	leaderID, _ := nodes[0].n.Region().Leader()
	var leader, f *testNode
	for _, tn := range nodes {
		switch {
		case tn.n.ID() == leaderID:
			leader = tn
		case f == nil:
			f = tn
		}
	}
	if leader == nil || f == nil {
		t.Fatalf("no leader (%q) among %d nodes", leaderID, len(nodes))
	}
	alice, _ := twoTenants(t, leader)
	paths := map[string]string{"region": "/api/v1/kv/k", "tenant": "/api/v1/tenants/acme/kv/k"}
	creds := map[string]string{"region": leader.token, "tenant": alice}
	for space, p := range paths {
		leader.must(t, 200, "PUT", p, creds[space], "stale-value")
		eventually(t, 10*time.Second, "the follower has the first "+space+" value", func() bool {
			return f.do(t, "GET", p, creds[space], "").body == "stale-value"
		})
	}

	f.must(t, 200, "POST", "/api/v1/drills/isolate", f.token, `{"duration_ms":60000}`)
	for space, p := range paths {
		leader.must(t, 200, "PUT", p, creds[space], "fresh-value")
	}
	refused := func(t *testing.T, space string) {
		t.Helper()
		p := paths[space]
		r := f.do(t, "GET", p, creds[space], "")
		if r.code != 200 || r.body != "stale-value" || r.header.Get("X-Outpost-Consistency") != "stale" {
			t.Fatalf("default read on the cut-off follower: %d %q %v, want its own stale copy, marked stale", r.code, r.body, r.header)
		}
		t.Logf("the follower's known leader: %q", r.header.Get("X-Outpost-Known-Leader"))
		start := time.Now()
		r = f.do(t, "GET", p+"?consistent=true", creds[space], "")
		took := time.Since(start)
		var e api.Error
		_ = json.Unmarshal([]byte(r.body), &e)
		if r.code != 503 || r.header.Get("Retry-After") != "1" || !strings.HasPrefix(e.Error, "consistent read failed") || e.Hint == "" {
			t.Fatalf("consistent read on the cut-off follower: %d %v %s, want 503 with Retry-After: 1, the error and a hint", r.code, r.header, r.body)
		}
		if took > 8*time.Second {
			t.Fatalf("the refusal took %v; the consistent read's budget is 5s", took)
		}
	}
	// At first the follower still believes in its leader, whom it
	// cannot reach; later it knows no leader at all. Both refuse.
	for space := range paths {
		t.Run("leader unreachable/"+space, func(t *testing.T) { refused(t, space) })
	}
	eventually(t, 20*time.Second, "the cut-off follower forgets its leader", func() bool {
		r := f.do(t, "GET", paths["region"], leader.token, "")
		return r.code == 200 && r.header.Get("X-Outpost-Known-Leader") == ""
	})
	for space := range paths {
		t.Run("no leader/"+space, func(t *testing.T) { refused(t, space) })
	}

	f.must(t, 200, "POST", "/api/v1/drills/heal", f.token, "")
	for space, p := range paths {
		eventually(t, 30*time.Second, "a consistent "+space+" read on the healed follower", func() bool {
			r := f.do(t, "GET", p+"?consistent=true", creds[space], "")
			return r.code == 200 && r.header.Get("X-Outpost-Consistency") == "linearizable" && r.body == "fresh-value"
		})
	}
}
