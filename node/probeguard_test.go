package node_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/node"
)

// TestProbeTargetsGuarded: a config dispatch whose probes aim at cloud
// metadata or link-local addresses is refused with 400 before it is
// committed, by address or by the metadata service's name, in a tenant
// and region-wide; a tenant Admin can allow a range for the tenant (an
// Operator cannot), and only that tenant's dispatches pass through it.
// Loopback is guarded too, each refusal names its rule, a dispatch
// cannot carry its own probe_allow, and a tenant's committed config
// carries the tenant's ranges for its agents.
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

	// Loopback (the agent's own host) is guarded too, and every refusal
	// names its rule; numeric forms other than dotted decimal are
	// refused whatever is allowed.
	refusals := []struct{ body, rule string }{
		{probe("http://127.0.0.1:8080/health"), "loopback 127.0.0.0/8"},
		{probe("http://[::1]:8080/health"), "loopback ::1/128"},
		{probe("http://localhost:8080/health"), "loopback name localhost"},
		{probe("http://[::ffff:127.0.0.1]/"), "loopback 127.0.0.0/8"},
		{probe("http://2852039166/latest/meta-data/"), "ambiguous IPv4 form (inet_aton reads 169.254.169.254)"},
		{probe("http://0x7f.1/"), "ambiguous IPv4 form (inet_aton reads 127.0.0.1)"},
		{tcp, "link-local fe80::/10"},
	}
	for _, c := range refusals {
		if r := tn.do(t, "POST", "/api/v1/tenants/acme/dispatches", operator, c.body); r.code != 400 || !strings.Contains(r.body, "SSRF guard") || !strings.Contains(r.body, c.rule) {
			t.Errorf("%s: %d %s, want 400 from the SSRF guard naming rule %q", c.body, r.code, r.body, c.rule)
		}
	}

	// A dispatch cannot carry its own allowance: probe_allow comes from
	// the tenant's settings, in a tenant or region-wide, even empty.
	for _, allow := range []string{`["127.0.0.0/8"]`, `["0.0.0.0/0","::/0"]`, `[]`} {
		body := `{"kind":"config","payload":{"probe_allow":` + allow + `,"probes":[{"kind":"http","target":"http://10.0.0.5/health"}]}}`
		for _, route := range []struct{ path, cred string }{{"/api/v1/tenants/acme/dispatches", operator}, {"/api/v1/dispatches", tn.token}} {
			if r := tn.do(t, "POST", route.path, route.cred, body); r.code != 400 || !strings.Contains(r.body, "sets probe_allow") {
				t.Errorf("%s with probe_allow %s: %d %s, want 400", route.path, allow, r.code, r.body)
			}
		}
	}

	// The tenant Admin allows loopback: the dispatch commits, and its
	// payload carries the tenant's ranges so agents allow resolved names
	// the same way.
	tn.must(t, 200, "PUT", "/api/v1/tenants/acme/settings", alice, `{"probe_allow":["169.254.0.0/16","127.0.0.0/8"]}`)
	got := tn.must(t, 201, "POST", "/api/v1/tenants/acme/dispatches", operator, probe("http://127.0.0.1:8080/health"))
	var d struct {
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal([]byte(got), &d); err != nil {
		t.Fatalf("dispatch view: %v: %s", err, got)
	}
	cfg, err := agentwire.ParseConfig(d.Payload) // as the agent reads it
	if err != nil {
		t.Fatalf("agents cannot parse the committed payload: %v: %s", err, d.Payload)
	}
	if want := []string{"169.254.0.0/16", "127.0.0.0/8"}; !slices.Equal(cfg.ProbeAllow, want) || len(cfg.Probes) != 1 {
		t.Errorf("committed payload %s, want the probe and probe_allow %v", d.Payload, want)
	}
	// IPv6 loopback and ambiguous forms stay refused; region-wide
	// dispatches get no tenant's allowance.
	for _, body := range []string{probe("http://[::1]/"), probe("http://2130706433/")} {
		tn.must(t, 400, "POST", "/api/v1/tenants/acme/dispatches", operator, body)
	}
	if r := tn.do(t, "POST", "/api/v1/dispatches", tn.token, probe("http://127.0.0.1:8080/health")); r.code != 400 || !strings.Contains(r.body, "loopback 127.0.0.0/8") {
		t.Errorf("region-wide dispatch used a tenant's allowance: %d %s", r.code, r.body)
	}
	// A tenant with no allowance gets none in its payloads.
	got = tn.must(t, 201, "POST", "/api/v1/tenants/globex/dispatches", bob, probe("http://10.0.0.5/health"))
	if strings.Contains(got, "probe_allow") {
		t.Errorf("globex's payload carries a probe_allow: %s", got)
	}
}
