package node_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/apitypes"
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
	var viaTok apitypes.APIToken
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants/acme/tokens", carolTok, `{"name":"ci","role":"operator"}`)), &viaTok)
	var list []apitypes.APIToken
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
