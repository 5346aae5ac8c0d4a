package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/testcluster/nodes"
	"github.com/outpost-mesh/outpost/node"
)

// TestConsistentViews runs a 3-node region and checks that what the
// operator reads does not depend on the node that answers: break-glass
// grants name accounts (an API token's actor as its owner), an agent's
// capabilities show on every node, the region status counts an agent
// once, also after its node died and it failed over, and listing the
// region's keys leaves out the failover drills' writes unless asked.
//
//	go test -race -run TestConsistentViews ./node
func TestConsistentViews(t *testing.T) {
	region := nodes.StartRegion(t, nodes.RegionConfig{Nodes: 3, Options: node.Options{Keys: mustKeys(t, newMasterKey(t), nil)}})
	var tns []*testNode
	for _, n := range region {
		tns = append(tns, fromShared(n))
	}
	tn := tns[0]
	alice, _ := twoTenants(t, tn)

	t.Run("breakglass names accounts", func(t *testing.T) {
		// The first admin asks with its API token; alice approves with hers.
		var g api.Grant
		_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants/acme/breakglass", tn.token, `{"reason":"INC-42: agents flapping","duration":"1h"}`)), &g)
		aliceTok := tn.tenantToken(t, alice, "acme", "admin")
		tn.must(t, 200, "POST", "/api/v1/tenants/acme/breakglass/"+g.ID+"/approve", aliceTok, "")
		want := func(who string) func(string) bool {
			return func(s string) bool { return strings.HasPrefix(s, "user:"+who+" (API token ") }
		}
		for i, n := range tns {
			for _, c := range []struct{ path, cred string }{{"/api/v1/breakglass", tn.token}, {"/api/v1/tenants/acme/breakglass", aliceTok}} {
				var gs []api.Grant
				eventually(t, 5*time.Second, "the grant on every node", func() bool {
					_ = json.Unmarshal([]byte(n.must(t, 200, "GET", c.path, c.cred, "")), &gs)
					return len(gs) == 1 && gs[0].Approved
				})
				if !want(node.AdminUser)(gs[0].Requester) || !want("alice")(gs[0].ApprovedBy) {
					t.Errorf("n%d %s: requested by %q, approved by %q; want the accounts (user:%s, user:alice) and their tokens",
						i+1, c.path, gs[0].Requester, gs[0].ApprovedBy, node.AdminUser)
				}
			}
		}
	})

	t.Run("drill keys are left out of the list", func(t *testing.T) {
		op := tn.tenantToken(t, alice, "acme", "operator")
		tn.must(t, 200, "PUT", "/api/v1/kv/app/replicas", tn.token, "3")
		tn.must(t, 200, "PUT", "/api/v1/kv/drill/run1/1/1", tn.token, "run1 round 1 write 1") // as drill/load.go writes them
		tn.must(t, 200, "PUT", "/api/v1/tenants/acme/kv/drill/x", op, "tenant data")
		keys := func(path, cred string) []string {
			var es []api.KVEntry
			_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", path, cred, "")), &es)
			var out []string
			for _, e := range es {
				out = append(out, e.Key)
			}
			return out
		}
		for _, c := range []struct {
			path, cred string
			want       []string
		}{
			{"/api/v1/kv?consistent=true", tn.token, []string{"app/replicas"}},
			{"/api/v1/kv?all=true", tn.token, []string{"app/replicas", "drill/run1/1/1"}},
			{"/api/v1/kv?prefix=drill/", tn.token, []string{"drill/run1/1/1"}},
			{"/api/v1/tenants/acme/kv", op, []string{"drill/x"}}, // a tenant's keys are its own
		} {
			if got := keys(c.path, c.cred); !slices.Equal(got, c.want) {
				t.Errorf("GET %s: %v, want %v", c.path, got, c.want)
			}
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bt := newToken(t, tn, alice, "acme")
	a, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: t.TempDir(), CAPin: bt.CAPin, Host: "web-1",
		Heartbeat: time.Second, Reevaluate: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	id := a.Status().AgentID
	var on string
	eventually(t, 15*time.Second, "the agent attached", func() bool {
		st := a.Status()
		on = st.Node
		return st.Connected && on != ""
	})

	// views checks every live node's agents list and region status.
	views := func(t *testing.T, live []*testNode, attached string) {
		t.Helper()
		for _, n := range live {
			var caps []string
			eventually(t, 10*time.Second, fmt.Sprintf("%s shows the agent on %s with its capabilities", n.cfg.NodeID, attached), func() bool {
				ag := agentsList(t, n, tn.token, "/api/v1/agents")[id]
				caps = ag.Capabilities
				return ag.Node == attached && len(caps) > 0
			})
			if !slices.Contains(caps, "ReportsStatus") || !slices.Contains(caps, "AcceptsRemoteConfig") {
				t.Errorf("%s: capabilities %v", n.cfg.NodeID, caps)
			}
			var counts map[string]int
			eventually(t, 10*time.Second, fmt.Sprintf("%s counts the agent once, on %s", n.cfg.NodeID, attached), func() bool {
				var reg api.Region
				_ = json.Unmarshal([]byte(n.must(t, 200, "GET", "/api/v1/region", tn.token, "")), &reg)
				counts = map[string]int{}
				total := 0
				for _, m := range reg.Nodes {
					counts[m.ID] = m.Agents
					total += m.Agents
				}
				return total == 1 && counts[attached] == 1
			})
		}
	}
	t.Run("before a failover", func(t *testing.T) { views(t, tns, on) })

	var live []*testNode
	for _, n := range tns {
		if n.cfg.NodeID == on {
			n.n.Kill()
		} else {
			live = append(live, n)
		}
	}
	var moved string
	eventually(t, 30*time.Second, "the agent failed over", func() bool {
		st := a.Status()
		moved = st.Node
		return st.Connected && moved != "" && moved != on
	})
	t.Run("after a failover", func(t *testing.T) { views(t, live, moved) })
}
