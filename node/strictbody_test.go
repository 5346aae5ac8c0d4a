package node_test

import (
	"strings"
	"testing"

	"github.com/outpost-mesh/outpost/node"
)

// TestRequestBodiesDecodedStrictly: a body that a lenient parser and a
// strict one would read differently is refused with 400 and changes
// nothing: a field name in another case, a repeated field (the lenient
// parser keeps the last: "viewer" then "admin" would grant Admin), and
// data after the value. An oversized body is 413.
func TestRequestBodiesDecodedStrictly(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	tn.newUser(t, "carol")
	for _, c := range []struct{ name, body, says string }{
		{"field name in another case", `{"Role":"admin"}`, "case-sensitive"},
		{"repeated field", `{"role":"viewer","role":"admin"}`, "appears twice"},
		{"data after the value", `{"role":"viewer"} {"role":"admin"}`, "after the JSON value"},
		{"unknown field", `{"role":"viewer","tenant":"globex"}`, "unknown field"},
	} {
		r := tn.do(t, "PUT", "/api/v1/tenants/acme/members/carol", alice, c.body)
		if r.code != 400 || !strings.Contains(r.body, c.says) {
			t.Errorf("%s: %d %s, want 400 saying %q", c.name, r.code, r.body, c.says)
		}
	}
	if strings.Contains(tn.must(t, 200, "GET", "/api/v1/tenants/acme/members", alice, ""), "carol") {
		t.Fatal("a refused body added a member")
	}
	big := `{"role":"` + strings.Repeat("x", 70<<10) + `"}`
	if r := tn.do(t, "PUT", "/api/v1/tenants/acme/members/carol", alice, big); r.code != 413 {
		t.Errorf("a 70 KiB body: %d %s, want 413", r.code, r.body)
	}
}
