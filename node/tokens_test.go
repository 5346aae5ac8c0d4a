package node_test

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/node"
)

// TestTokensFollowTheirOwnersAccess: an API token never has more access
// than the account it was made for has at the moment of the request. A
// demoted member's Admin token acts as a Viewer; a removed member's
// token reads nothing and cannot re-add its owner. Tokens record the
// account that made them, also when made with another token.
func TestTokensFollowTheirOwnersAccess(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	carolPW := tn.newUser(t, "carol")
	carol := tn.login(t, "carol", carolPW)
	join(t, tn, alice, "acme", "carol", carol, "admin")
	carolTok := tn.tenantToken(t, carol, "acme", "admin")
	// A token made with carol's token acts for carol, and says so.
	var viaTok api.APIToken
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants/acme/tokens", carolTok, `{"name":"ci","role":"operator"}`)), &viaTok)
	var list []api.APIToken
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/tenants/acme/tokens", alice, "")), &list)
	found := 0
	for _, tk := range list {
		if tk.ID == viaTok.ID || strings.HasPrefix(carolTok, "opt_"+tk.ID) {
			found++
			if tk.CreatedBy != "user:carol" || tk.Owner != "carol" {
				t.Errorf("token %s: created_by %q owner %q, want user:carol and carol", tk.ID, tk.CreatedBy, tk.Owner)
			}
		}
	}
	if found != 2 {
		t.Fatalf("found %d of carol's two tokens in %v", found, list)
	}

	tn.must(t, 200, "GET", "/api/v1/tenants/acme/members", carolTok, "")
	tn.must(t, 202, "PUT", "/api/v1/tenants/acme/members/bob", carolTok, `{"role":"viewer"}`)

	// Demoted to Viewer: the Admin token reads but no longer writes.
	tn.must(t, 200, "PUT", "/api/v1/tenants/acme/members/carol", alice, `{"role":"viewer"}`)
	tn.must(t, 200, "GET", "/api/v1/tenants/acme/members", carolTok, "")
	tn.must(t, 403, "PUT", "/api/v1/tenants/acme/members/carol", carolTok, `{"role":"admin"}`)
	tn.must(t, 403, "DELETE", "/api/v1/tenants/acme/members/bob", viaTok.Token, "")

	// Removed: every token of carol's is as good as none in acme.
	tn.must(t, 200, "DELETE", "/api/v1/tenants/acme/members/carol", alice, "")
	for _, tok := range []string{carolTok, viaTok.Token} {
		tn.must(t, 404, "GET", "/api/v1/tenants/acme/members", tok, "")
		tn.must(t, 404, "PUT", "/api/v1/tenants/acme/members/carol", tok, `{"role":"admin"}`)
	}
	if _, ok := members(t, tn, alice, "acme")["carol"]; ok {
		t.Fatal("the removed member re-added herself")
	}
}

// testClock is the API's clock in a test: real time plus an offset the
// test moves forward.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// TestExpiredAndRevokedAPITokens: an API token past its expiry, and a
// revoked one, are refused 401 on every kind of route, and the error
// says which (docs/api.md, Errors). Expiry is told only to a caller
// holding the token's secret: the same id with another secret is just
// invalid. A revoked token is as invalid as one that never existed.
func TestExpiredAndRevokedAPITokens(t *testing.T) {
	clock := &testClock{}
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{Now: clock.Now})
	alice, _ := twoTenants(t, tn)
	create := func(cred, path, body string) api.APIToken {
		t.Helper()
		var tok api.APIToken
		if err := json.Unmarshal([]byte(tn.must(t, 201, "POST", path, cred, body)), &tok); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tenantExp := create(alice, "/api/v1/tenants/acme/tokens", `{"name":"ci","role":"admin","ttl":"1h"}`)
	regionExp := create(tn.token, "/api/v1/tokens", `{"name":"ops","ttl":"1h"}`)
	tenantRev := create(alice, "/api/v1/tenants/acme/tokens", `{"name":"old","role":"admin"}`)
	regionRev := create(tn.token, "/api/v1/tokens", `{"name":"old-ops"}`)

	// Each token's routes: a tenant read, a tenant write, a region read.
	tenantRoutes := [][3]string{{"GET", "/api/v1/tenants/acme/kv", ""}, {"PUT", "/api/v1/tenants/acme/kv/k", "v"}}
	regionRoutes := [][3]string{{"GET", "/api/v1/region", ""}, {"POST", "/api/v1/users", `{"name":"mallory"}`}}
	for _, tok := range []api.APIToken{tenantExp, tenantRev} {
		tn.must(t, 200, "GET", "/api/v1/tenants/acme/kv", tok.Token, "")
	}
	for _, tok := range []api.APIToken{regionExp, regionRev} {
		tn.must(t, 200, "GET", "/api/v1/region", tok.Token, "")
	}
	tn.must(t, 200, "DELETE", "/api/v1/tenants/acme/tokens/"+tenantRev.ID, alice, "")
	tn.must(t, 200, "DELETE", "/api/v1/tokens/"+regionRev.ID, tn.token, "")
	clock.advance(time.Hour)

	// Another secret under an expired token's id: invalid, not expired.
	forged := "opt_" + tenantExp.ID + "_" + strings.Repeat("A", 43)
	for _, c := range []struct {
		name, token, want string
		routes            [][3]string
	}{
		{"tenant token expired", tenantExp.Token, "API token expired", tenantRoutes},
		{"region token expired", regionExp.Token, "API token expired", regionRoutes},
		{"tenant token revoked", tenantRev.Token, "invalid API token", tenantRoutes},
		{"region token revoked", regionRev.Token, "invalid API token", regionRoutes},
		{"expired id, other secret", forged, "invalid API token", tenantRoutes},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, rt := range c.routes {
				r := tn.do(t, rt[0], rt[1], c.token, rt[2])
				if r.code != 401 || !strings.Contains(r.body, c.want) {
					t.Errorf("%s %s: %d %s, want 401 saying %q", rt[0], rt[1], r.code, r.body, c.want)
				}
			}
		})
	}
	// The other tokens of the same accounts still work.
	tn.must(t, 200, "GET", "/api/v1/tenants/acme/kv", alice, "")
	tn.must(t, 200, "GET", "/api/v1/region", tn.token, "")
	if r := tn.do(t, "GET", "/api/v1/users", tn.token, ""); strings.Contains(r.body, "mallory") {
		t.Fatal("a refused token created an account")
	}
}
