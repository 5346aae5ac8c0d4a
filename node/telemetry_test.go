package node_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/internal/otlptest"
	"github.com/outpost-mesh/outpost/node"
)

// flows is a batch as the agent will send it: a retransmit counter, an
// RTT gauge, a connect-latency histogram and an exponential histogram.
func flows(res *resource.Resource, now time.Time) *metricdata.ResourceMetrics {
	attrs := attribute.NewSet(attribute.String("dst", "db-1"))
	return &metricdata.ResourceMetrics{Resource: res, ScopeMetrics: []metricdata.ScopeMetrics{{
		Scope: instrumentation.Scope{Name: "outpost-agent"},
		Metrics: []metricdata.Metrics{
			{Name: "tcp.retransmits", Unit: "{segment}", Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true,
				DataPoints: []metricdata.DataPoint[int64]{{Attributes: attrs, StartTime: now.Add(-time.Minute), Time: now, Value: 7}}}},
			{Name: "tcp.rtt", Unit: "s", Data: metricdata.Gauge[float64]{
				DataPoints: []metricdata.DataPoint[float64]{{Attributes: attrs, Time: now, Value: 0.012}}}},
			{Name: "tcp.connect.duration", Unit: "s", Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality,
				DataPoints: []metricdata.HistogramDataPoint[float64]{{Attributes: attrs, StartTime: now.Add(-time.Minute), Time: now,
					Count: 3, Sum: 0.03, Bounds: []float64{0.005, 0.01, 0.05}, BucketCounts: []uint64{0, 1, 2, 0}}}}},
			{Name: "tcp.send.bytes", Unit: "By", Data: metricdata.ExponentialHistogram[int64]{Temporality: metricdata.CumulativeTemporality,
				DataPoints: []metricdata.ExponentialHistogramDataPoint[int64]{{Attributes: attrs, StartTime: now.Add(-time.Minute), Time: now,
					Count: 2, Sum: 3000, Scale: 1, ZeroCount: 0,
					PositiveBucket: metricdata.ExponentialBucket{Offset: 20, Counts: []uint64{1, 1}}}}}},
		}}}}
}

// TestOTLPIntoTheTenantsTSDB: an enrolled agent's certificate sends OTLP
// metrics with the OpenTelemetry SDK's exporter over the agent port's
// mutual TLS; they are queryable through the tenant's Prometheus API
// (counter with _total, gauge with its unit, histogram buckets, a native
// histogram), stamped with the certificate's tenant, agent and host; the
// other tenant sees none of it; a payload that names another tenant is
// refused and audited; no certificate, no export.
func TestOTLPIntoTheTenantsTSDB(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, bob := twoTenants(t, tn)
	waitLease(t, tn)
	bt := newToken(t, tn, alice, "acme")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: dir, CAPin: bt.CAPin, Host: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	agentID := a.Status().AgentID
	exp := otlptest.Exporter(t, bt.Servers[0], dir, otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
	res := resource.NewSchemaless(attribute.String("service.name", "outpost-agent"), attribute.String("host.name", "spoofed"))
	if err := exp.Export(ctx, flows(res, time.Now())); err != nil {
		t.Fatalf("export: %v", err)
	}

	query := func(cred, tenant, q string) []map[string]any {
		t.Helper()
		body := tn.must(t, 200, "GET", "/api/v1/tenants/"+tenant+"/prometheus/api/v1/query?query="+url.QueryEscape(q), cred, "")
		var resp struct {
			Status string
			Data   struct{ Result []map[string]any }
		}
		if err := json.Unmarshal([]byte(body), &resp); err != nil || resp.Status != "success" {
			t.Fatalf("query %s: %v %s", q, err, body)
		}
		return resp.Data.Result
	}
	for _, q := range []string{`tcp_retransmits_total`, `tcp_rtt_seconds`, `tcp_connect_duration_seconds_bucket{le="0.05"}`, `tcp_send_bytes`} {
		got := query(alice, "acme", q)
		if len(got) != 1 {
			t.Fatalf("%s: %d series, want 1: %v", q, len(got), got)
		}
		m := got[0]["metric"].(map[string]any)
		if m["agent"] != agentID || m["host"] != "web-1" || m["tenant"] == "" || m["dst"] != "db-1" {
			t.Errorf("%s labels %v: want the certificate's agent, the registry's host, the tenant and dst", q, m)
		}
	}
	if got := query(alice, "acme", `histogram_count(tcp_send_bytes)`); len(got) != 1 || got[0]["value"].([]any)[1] != "2" {
		t.Errorf("native histogram count: %v", got)
	}
	// Bob's tenant has none of it, even asking for it by name.
	for _, q := range []string{`tcp_retransmits_total`, `{__name__=~".+"}`, `{tenant=~".+"}`} {
		if got := query(bob, "globex", q); len(got) != 0 {
			t.Errorf("globex sees %s: %v", q, got)
		}
	}
	// A payload naming another tenant is refused whole, and audited.
	claim := resource.NewSchemaless(attribute.String("tenant", "globex"))
	if err := exp.Export(ctx, flows(claim, time.Now().Add(time.Second))); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("export claiming globex: %v, want a 403 refusal", err)
	}
	if m := tn.must(t, 200, "GET", "/metrics", "", ""); !strings.Contains(m, `outpost_otlp_requests_total{code="403"} 1`) || !strings.Contains(m, `outpost_otlp_requests_total{code="200"} 1`) {
		t.Errorf("/metrics does not count the stored and the refused export by code")
	}
	eventually(t, 10*time.Second, "the refused claim in the audit log", func() bool {
		return strings.Contains(strings.Join(auditActions(t, tn, tn.token, "/api/v1/audit"), ","), "telemetry.tenant_claim_refused")
	})
	// Without the agent's certificate there is no export at all.
	anon, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(strings.TrimPrefix(bt.Servers[0], "https://")),
		otlpmetrichttp.WithTLSClientConfig(&tls.Config{InsecureSkipVerify: true}), //nolint:gosec // a test client without a certificate
		otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Shutdown(ctx)
	if err := anon.Export(ctx, flows(res, time.Now())); err == nil {
		t.Fatal("an export without a client certificate was accepted")
	}
}
