package node_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/apitypes"
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
	state := func() apitypes.DrillState {
		t.Helper()
		var st apitypes.DrillState
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
