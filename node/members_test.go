package node_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// admins lists the tenant's Admins as node tn sees them.
func admins(t *testing.T, tn *testNode, cred, tenant string) []string {
	t.Helper()
	var ms []api.TenantMember
	if err := json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/tenants/"+tenant+"/members", cred, "")), &ms); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		if m.Role == "admin" && m.Status == "member" { // not an invitation to be one
			out = append(out, m.User)
		}
	}
	return out
}

// TestTenantKeepsAnAdmin: the last Admin of a tenant can be neither
// demoted nor removed (409), and two concurrent demotions of a tenant's
// only two Admins, each sent to a different node of a three-node region,
// never both commit: the FSM re-checks that another Admin remains
// (auth.ExpectRole), so exactly one answers 200 and the other 409, and
// the tenant keeps exactly one Admin. Without the check inside the FSM
// both demotions read "two Admins" before either commits and the tenant
// is left with none.
func TestTenantKeepsAnAdmin(t *testing.T) {
	nodes := startRegion3(t, []*delayProxy{newDelayProxy(t, 0), newDelayProxy(t, 0), newDelayProxy(t, 0)})
	a, b := nodes[0], nodes[1]
	pa, pb := a.newUser(t, "alice"), a.newUser(t, "bob")
	a.must(t, 201, "POST", "/api/v1/tenants", a.token, `{"name":"acme","admin":"alice"}`)
	alice := a.login(t, "alice", pa)

	t.Run("last Admin", func(t *testing.T) {
		for _, tc := range []struct{ method, body string }{
			{"PUT", `{"role":"operator"}`},
			{"PUT", `{"role":"viewer"}`},
			{"DELETE", ""},
		} {
			if r := a.do(t, tc.method, "/api/v1/tenants/acme/members/alice", alice, tc.body); r.code != 409 || !strings.Contains(r.body, "keeps at least one Admin") {
				t.Errorf("%s of the last Admin %s: %d %s, want 409 saying a tenant keeps an Admin", tc.method, tc.body, r.code, r.body)
			}
		}
		if got := admins(t, a, alice, "acme"); len(got) != 1 || got[0] != "alice" {
			t.Fatalf("admins after the refusals: %v, want [alice]", got)
		}
	})

	t.Run("concurrent demotions", func(t *testing.T) {
		bobCred := b.login(t, "bob", pb)
		join(t, a, alice, "acme", "bob", bobCred, "admin")
		creds := map[string]string{"alice": alice, "bob": bobCred}
		for round := range 8 {
			eventually(t, 10*time.Second, "both Admins seen by both nodes", func() bool {
				return len(admins(t, a, alice, "acme")) == 2 && len(admins(t, b, alice, "acme")) == 2
			})
			// Each demotes themself, alice through n1, bob through n2, at once.
			var wg sync.WaitGroup
			codes := make([]int, 2)
			start := make(chan struct{})
			for i, u := range []string{"alice", "bob"} {
				tn := []*testNode{a, b}[i]
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					codes[i] = tn.do(t, "PUT", "/api/v1/tenants/acme/members/"+u, creds[u], `{"role":"viewer"}`).code
				}()
			}
			close(start)
			wg.Wait()
			ok, conflict := 0, 0
			for _, c := range codes {
				switch c {
				case 200:
					ok++
				case 409:
					conflict++
				}
			}
			if ok != 1 || conflict != 1 {
				t.Fatalf("round %d: answers %v, want one 200 and one 409", round, codes)
			}
			var left []string
			for _, tn := range nodes {
				eventually(t, 10*time.Second, "every node applied the round", func() bool {
					left = admins(t, tn, alice, "acme")
					return len(left) == 1
				})
			}
			// The remaining Admin promotes the other again.
			winner := left[0]
			loser := map[string]string{"alice": "bob", "bob": "alice"}[winner]
			a.must(t, 200, "PUT", "/api/v1/tenants/acme/members/"+loser, creds[winner], `{"role":"admin"}`)
		}
	})
}
