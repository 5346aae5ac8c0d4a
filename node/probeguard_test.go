package node_test

import (
	"strings"
	"testing"

	"github.com/outpost-mesh/outpost/node"
)

// TestProbeTargetsGuarded: a config dispatch whose probes aim at cloud
// metadata or link-local addresses is refused with 400 before it is
// committed, by address or by the metadata service's name, in a tenant
// and region-wide; a tenant Admin can allow a range for the tenant (an
// Operator cannot), and only that tenant's dispatches pass through it.
func TestProbeTargetsGuarded(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	waitLease(t, tn)
	alice, bob := twoTenants(t, tn)
	operator := tn.tenantToken(t, alice, "acme", "operator")
	probe := func(target string) string {
		return `{"kind":"config","payload":{"probes":[{"kind":"http","target":"` + target + `"}]}}`
	}
	tcp := `{"kind":"config","payload":{"probes":[{"kind":"tcp","target":"[fe80::1]:22"}]}}`
	for _, body := range []string{probe("http://169.254.169.254/latest/meta-data/"), probe("http://metadata.google.internal/computeMetadata/v1/"), tcp} {
		for _, route := range []struct{ path, cred string }{{"/api/v1/tenants/acme/dispatches", operator}, {"/api/v1/dispatches", tn.token}} {
			if r := tn.do(t, "POST", route.path, route.cred, body); r.code != 400 || !strings.Contains(r.body, "SSRF guard") {
				t.Errorf("%s %s: %d %s, want 400 from the SSRF guard", route.path, body, r.code, r.body)
			}
		}
	}
	if list := tn.must(t, 200, "GET", "/api/v1/tenants/acme/dispatches", alice, ""); strings.Contains(list, "169.254") {
		t.Fatalf("a refused dispatch was committed: %s", list)
	}
	tn.must(t, 201, "POST", "/api/v1/tenants/acme/dispatches", operator, probe("http://10.0.0.5/health"))

	tn.must(t, 403, "PUT", "/api/v1/tenants/acme/settings", operator, `{"probe_allow":["169.254.0.0/16"]}`)
	tn.must(t, 400, "PUT", "/api/v1/tenants/acme/settings", alice, `{"probe_allow":["169.254.0.1/16"]}`)
	tn.must(t, 200, "PUT", "/api/v1/tenants/acme/settings", alice, `{"probe_allow":["169.254.0.0/16"]}`)
	tn.must(t, 201, "POST", "/api/v1/tenants/acme/dispatches", operator, probe("http://169.254.169.254/latest/meta-data/"))
	// Another tenant's allowance is not this one's.
	if r := tn.do(t, "POST", "/api/v1/tenants/globex/dispatches", bob, probe("http://169.254.169.254/")); r.code != 400 {
		t.Fatalf("globex used acme's allowance: %d %s", r.code, r.body)
	}
	// Still refused outside the allowed range.
	tn.must(t, 400, "POST", "/api/v1/tenants/acme/dispatches", operator, tcp)
}
