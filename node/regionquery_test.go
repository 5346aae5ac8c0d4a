package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/internal/otlptest"
	"github.com/outpost-mesh/outpost/internal/testcluster/nodes"
	"github.com/outpost-mesh/outpost/node"
)

// rtt is one RTT gauge point at ts.
func rtt(ts time.Time, v float64) *metricdata.ResourceMetrics {
	return &metricdata.ResourceMetrics{Resource: resource.NewSchemaless(attribute.String("service.name", "outpost-agent")),
		ScopeMetrics: []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: "outpost-agent"},
			Metrics: []metricdata.Metrics{{Name: "tcp.rtt", Unit: "s", Data: metricdata.Gauge[float64]{
				DataPoints: []metricdata.DataPoint[float64]{{Attributes: attribute.NewSet(attribute.String("dst", "db-1")), Time: ts, Value: v}}}}}}}}
}

// TestRegionWideQueryAcrossNodesAndFailover: three whole nodes; an
// agent's samples land half on n1 and half on n2 (it failed over). A
// query on n3, which holds none, answers one continuous series with all
// of them, read over the node port's mutual TLS, and reports every node
// ok. With n2 cut off from its peers, the same query still answers n1's
// half, names n2 in its warnings and gives n2's status.
func TestRegionWideQueryAcrossNodesAndFailover(t *testing.T) {
	shared := nodes.StartRegion(t, nodes.RegionConfig{Nodes: 3, Options: node.Options{Keys: mustKeys(t, newMasterKey(t), nil)},
		Configure: func(_ int, cfg *node.Config) { cfg.Telemetry.Query.NodeTimeout = 2 * time.Second }})
	var ns []*testNode
	for _, n := range shared {
		ns = append(ns, fromShared(n))
	}
	alice, _ := twoTenants(t, ns[0])
	waitLease(t, ns[0])
	bt := newToken(t, ns[0], alice, "acme")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: dir, CAPin: bt.CAPin, Host: "web-1"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, to := range []*testNode{ns[0], ns[0], ns[0], ns[1], ns[1], ns[1]} {
		exp := otlptest.Exporter(t, to.n.AgentURL(), dir)
		if err := exp.Export(ctx, rtt(now.Add(time.Duration(i-6)*time.Minute), float64(i))); err != nil {
			t.Fatalf("export %d to %s: %v", i, to.n.ID(), err)
		}
	}

	type answer struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  []any
			}
		}
		Warnings []string
		Nodes    []struct{ Node, Status, Error string }
	}
	ask := func(tn *testNode, q, scope string) answer {
		t.Helper()
		var a answer
		body := tn.must(t, 200, "GET", "/api/v1/tenants/acme/prometheus/api/v1/query?scope="+scope+"&query="+url.QueryEscape(q), alice, "")
		if err := json.Unmarshal([]byte(body), &a); err != nil || a.Status != "success" {
			t.Fatalf("%s: %v %s", q, err, body)
		}
		return a
	}
	samples := func(a answer) string {
		if len(a.Data.Result) != 1 {
			return fmt.Sprintf("%d series", len(a.Data.Result))
		}
		return fmt.Sprint(a.Data.Result[0].Value[1])
	}
	const q = `count_over_time(tcp_rtt_seconds[10m])`
	if got := samples(ask(ns[2], q, "node")); got != "0 series" {
		t.Fatalf("n3 alone: %s, want nothing (no agent sent to it)", got)
	}
	a := ask(ns[2], q, "region")
	if got := samples(a); got != "6" {
		t.Fatalf("region-wide on n3: %s, want one series of 6 samples (%+v)", got, a)
	}
	if m := a.Data.Result[0].Metric; m["host"] != "web-1" || m["tenant"] == "" {
		t.Errorf("labels %v", m)
	}
	status := func(a answer) map[string]string {
		out := map[string]string{}
		for _, n := range a.Nodes {
			out[n.Node] = n.Status
		}
		return out
	}
	if st := status(a); st["n1"] != "ok" || st["n2"] != "ok" || st["n3"] != "ok" {
		t.Errorf("nodes %+v, want all ok", a.Nodes)
	}

	ns[1].n.Region().Isolate()
	defer ns[1].n.Region().Heal()
	a = ask(ns[2], q, "region")
	if got := samples(a); got != "3" {
		t.Errorf("with n2 cut off: %s, want n1's 3 samples", got)
	}
	if st := status(a); st["n1"] != "ok" || st["n2"] == "ok" || st["n2"] == "" {
		t.Errorf("nodes %+v, want n2 reported missing", a.Nodes)
	}
	if w := strings.Join(a.Warnings, "\n"); !strings.Contains(w, "n2") {
		t.Errorf("warnings %q: want n2 named", w)
	}
}
