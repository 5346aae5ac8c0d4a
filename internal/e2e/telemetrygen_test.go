package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/audit"
)

// telemetrygenVersion is the telemetrygen .ci/run installs; keep the two
// equal.
const telemetrygenVersion = "v0.161.0"

const telemetrygenInstall = "go install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@" + telemetrygenVersion

// telemetrygen returns the telemetrygen binary: on PATH or in ~/go/bin. It
// skips without it, except under CI, where .ci/run installs it and its
// absence is a broken install step.
func telemetrygen(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("telemetrygen"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "telemetrygen")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("telemetrygen is not installed, and .ci/run should have installed it: %s", telemetrygenInstall)
	}
	t.Skipf("needs telemetrygen on PATH or in ~/go/bin; install it with `%s`", telemetrygenInstall)
	return ""
}

// TestTelemetrygenOverMTLS: telemetrygen from opentelemetry-collector-contrib
// (an OTLP client nobody here wrote, run as its own process) sends gauges,
// sums, histograms and exponential histograms over OTLP/HTTP with an
// enrolled agent's certificate; an API token's PromQL queries find every
// point, stamped with the certificate's tenant, agent and host. A run whose
// resource claims another tenant is refused with 403 (telemetrygen exits 1),
// lands nowhere and is audited; a run without a client certificate is
// refused with 401 certificate_required (the agent port completes TLS
// without one, for enrollment, and refuses the export itself).
func TestTelemetrygenOverMTLS(t *testing.T) {
	tg := telemetrygen(t)
	_, nd, admin := servedAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var u api.User
	if err := admin.Do(ctx, "POST", "/api/v1/users", api.UserCreate{Name: "alice"}, &u); err != nil {
		t.Fatal(err)
	}
	var acme api.Tenant
	if err := admin.Do(ctx, "POST", "/api/v1/tenants", api.TenantCreate{Name: "acme", Admin: "alice"}, &acme); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "POST", "/api/v1/tenants", api.TenantCreate{Name: "globex", Admin: "alice"}, nil); err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(nd.api, "")
	alice.Retry = admin.Retry
	if err := alice.Login(ctx, "alice", u.Password); err != nil {
		t.Fatal(err)
	}
	// Grafana's way in: a viewer API token per tenant as the bearer token.
	viewer := func(tenant string) *api.Client {
		var tok api.APIToken
		if err := alice.Do(ctx, "POST", "/api/v1/tenants/"+tenant+"/tokens", api.TokenCreate{Name: "grafana", Role: "viewer"}, &tok); err != nil {
			t.Fatal(err)
		}
		c := api.NewClient(nd.api, tok.Token)
		c.Retry = admin.Retry
		return c
	}
	acmeViewer, globexViewer := viewer("acme"), viewer("globex")

	var bt api.BootstrapToken
	if err := alice.Do(ctx, "POST", "/api/v1/tenants/acme/agent-tokens", api.BootstrapTokenCreate{}, &bt); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	a, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: state, CAPin: bt.CAPin, Host: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	agentID := a.Status().AgentID
	// telemetrygen reads PEM files: the agent's certificate and key, and
	// the region CA to verify the node.
	creds := t.TempDir()
	for _, f := range []string{"agent.crt", "agent.key", "ca.crt"} {
		b, err := os.ReadFile(filepath.Join(state, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(creds, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	endpoint := strings.TrimPrefix(bt.Servers[0], "https://")

	// gen runs telemetrygen to completion: 10 points of one metric, 20 a
	// second, each its own export. Not batched: telemetrygen stamps a point
	// before waiting for its rate limiter, so its first two points share a
	// millisecond, and in one request the TSDB drops the second at commit
	// without telling the receiver; in two, the receiver sees it refused
	// (and would answer with a partial success).
	gen := func(name, metricType string, mtls bool, more ...string) (int, string) {
		t.Helper()
		args := []string{"metrics", "--otlp-http", "--otlp-endpoint", endpoint, "--ca-cert", filepath.Join(creds, "ca.crt"),
			"--metrics", "10", "--rate", "20", "--batch=false", "--metric-type", metricType, "--otlp-metric-name", name,
			"--aggregation-temporality", "cumulative", "--telemetry-attributes", `dst="db-1"`, "--timeout", "10s"}
		if mtls {
			args = append(args, "--mtls", "--client-cert", filepath.Join(creds, "agent.crt"), "--client-key", filepath.Join(creds, "agent.key"))
		}
		code, out := run(t, 60*time.Second, tg, append(args, more...)...)
		t.Logf("telemetrygen %s %s (mtls %v): exit %d", metricType, name, mtls, code)
		return code, out
	}
	type sample struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	query := func(c *api.Client, tenant, q string) []sample {
		t.Helper()
		var resp struct {
			Status string
			Data   struct{ Result []sample }
		}
		v := url.Values{"query": {q}, "time": {time.Now().Add(time.Second).Format(time.RFC3339Nano)}}
		if err := c.Do(ctx, "GET", "/api/v1/tenants/"+tenant+"/prometheus/api/v1/query?"+v.Encode(), nil, &resp); err != nil {
			t.Fatalf("query %s: %v", q, err)
		}
		if resp.Status != "success" {
			t.Fatalf("query %s: status %q", q, resp.Status)
		}
		return resp.Data.Result
	}

	for _, tc := range []struct {
		metricType, name string
		// counts is a PromQL expression per series the run must have
		// written, each to count 10 points in the last 10 minutes.
		counts []string
	}{
		{"Gauge", "tg.gauge", []string{`count_over_time(tg_gauge[10m])`}},
		{"Sum", "tg.sum", []string{`count_over_time(tg_sum_total[10m])`}},
		{"Histogram", "tg.histogram", []string{`count_over_time(tg_histogram_count[10m])`, `count_over_time(tg_histogram_bucket{le="+Inf"}[10m])`}},
		{"ExponentialHistogram", "tg.exphistogram", []string{`count_over_time(tg_exphistogram[10m])`}},
	} {
		t.Run(tc.metricType, func(t *testing.T) {
			if code, out := gen(tc.name, tc.metricType, true); code != 0 {
				t.Fatalf("telemetrygen exited %d:\n%s", code, out)
			}
			for _, q := range tc.counts {
				got := query(acmeViewer, "acme", q)
				if len(got) != 1 {
					t.Fatalf("%s: %d series, want 1: %v", q, len(got), got)
				}
				m := got[0].Metric
				if m["tenant"] != acme.ID || m["agent"] != agentID || m["host"] != "web-1" || m["dst"] != "db-1" {
					t.Errorf("%s labels %v: want tenant %s, agent %s, host web-1 from the certificate and dst db-1", q, m, acme.ID, agentID)
				}
				if got[0].Value[1] != "10" {
					t.Errorf("%s = %v, want all 10 points", q, got[0].Value[1])
				}
			}
			if got := query(globexViewer, "globex", `{__name__=~"tg_.+"}`); len(got) != 0 {
				t.Errorf("globex sees acme's telemetrygen series: %v", got)
			}
		})
	}

	t.Run("ClaimsAnotherTenant", func(t *testing.T) {
		code, out := gen("tg.claim", "Gauge", true, "--otlp-attributes", `tenant="globex"`)
		if code != 1 {
			t.Fatalf("telemetrygen claiming tenant globex exited %d, want 1 (a refused export):\n%s", code, out)
		}
		if !strings.Contains(out, "403") {
			t.Errorf("telemetrygen exited %d without the node's 403 in its output:\n%s", code, out)
		}
		for _, tenant := range []struct {
			name string
			c    *api.Client
		}{{"acme", acmeViewer}, {"globex", globexViewer}} {
			if got := query(tenant.c, tenant.name, `{__name__=~"tg_claim.*"}`); len(got) != 0 {
				t.Errorf("the refused run landed in %s: %v", tenant.name, got)
			}
		}
		waitFor(t, 10*time.Second, "telemetry.tenant_claim_refused in the audit log", func() bool {
			var page audit.Page
			if err := admin.Do(ctx, "GET", "/api/v1/audit", nil, &page); err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Entries {
				var rec audit.Record
				if json.Unmarshal(e.Data, &rec) == nil && rec.Action == "telemetry.tenant_claim_refused" {
					return rec.Entity == "agent/"+agentID && strings.Contains(string(rec.Detail), `"claimed":"globex"`)
				}
			}
			return false
		})
	})

	t.Run("NoClientCertificate", func(t *testing.T) {
		code, out := gen("tg.anonymous", "Gauge", false)
		if code != 1 {
			t.Fatalf("telemetrygen without a client certificate exited %d, want 1 (a refused export):\n%s", code, out)
		}
		if !strings.Contains(out, "401 Unauthorized") || !strings.Contains(out, "certificate_required") {
			t.Errorf("telemetrygen exited %d, but not for the missing client certificate:\n%s", code, out)
		}
		if got := query(acmeViewer, "acme", `{__name__=~"tg_anonymous.*"}`); len(got) != 0 {
			t.Errorf("an export without a certificate landed: %v", got)
		}
	})
}
