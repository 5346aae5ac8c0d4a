package node_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/httpapi"
)

// TestWrongMethodIs405: every path of the route table answers a method
// it does not have with 405 and an Allow header naming exactly the
// methods it has (so the audit routes, GET only, refuse DELETE), on a
// real node, for an authenticated region admin and for no credential.
func TestWrongMethodIs405(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	allowed := map[string][]string{}
	for _, rt := range httpapi.Routes(false) {
		allowed[rt.Pattern] = append(allowed[rt.Pattern], rt.Method)
	}
	if len(allowed) < 20 {
		t.Fatalf("only %d paths in the route table", len(allowed))
	}
	vals := map[string]string{"tenant": "acme", "user": "alice", "id": "x1", "key": "a/b", "name": "n", "peer": "eu-west", "file": "app.js"}
	for pattern, methods := range allowed {
		path := strings.ReplaceAll(fill(pattern, vals), "{$}", "")
		if strings.Contains(path, "{") {
			t.Fatalf("pattern %s has a parameter this test does not fill", pattern)
		}
		slices.Sort(methods)
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
			if slices.Contains(methods, m) {
				continue
			}
			for _, cred := range []string{tn.token, ""} {
				r := tn.do(t, m, path, cred, "")
				if r.code != 405 {
					t.Errorf("%s %s: %d, want 405 (allowed: %v)", m, path, r.code, methods)
					continue
				}
				got := strings.Split(r.header.Get("Allow"), ", ")
				slices.Sort(got)
				if !slices.Equal(got, methods) {
					t.Errorf("%s %s: Allow %q, want %v", m, path, r.header.Get("Allow"), methods)
				}
			}
		}
	}
	if r := tn.do(t, "DELETE", "/api/v1/audit", tn.token, ""); r.code != 405 {
		t.Errorf("DELETE /api/v1/audit: %d, want 405 (no route changes or deletes audit records)", r.code)
	}
}
