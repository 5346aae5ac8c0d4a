package e2e

import (
	"context"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/otlptest"
)

// TestSIGKILLDuringIngestLosesNoAcknowledgedSample: an `outpost serve`
// node takes OTLP exports from an enrolled agent's certificate (the
// OpenTelemetry SDK's exporter) and is killed with SIGKILL mid-stream;
// after it restarts, every sample of every export it acknowledged is in
// its tenant's answer to a PromQL query.
func TestSIGKILLDuringIngestLosesNoAcknowledgedSample(t *testing.T) {
	sr, nd, admin := servedAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var u api.User
	if err := admin.Do(ctx, "POST", "/api/v1/users", api.UserCreate{Name: "alice"}, &u); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "POST", "/api/v1/tenants", api.TenantCreate{Name: "acme", Admin: "alice"}, nil); err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(nd.api, "")
	alice.Retry = admin.Retry
	if err := alice.Login(ctx, "alice", u.Password); err != nil {
		t.Fatal(err)
	}
	var bt api.BootstrapToken
	if err := alice.Do(ctx, "POST", "/api/v1/tenants/acme/agent-tokens", api.BootstrapTokenCreate{}, &bt); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: dir, CAPin: bt.CAPin, Host: "web-1"}); err != nil {
		t.Fatal(err)
	}
	exp := otlptest.Exporter(t, bt.Servers[0], dir, otlpmetrichttp.WithTimeout(5*time.Second))

	// Each export carries one sample of the gauge ingest_seq, its value
	// the export's number, 10 ms apart.
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	var mu sync.Mutex
	acked := map[int]bool{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			rm := &metricdata.ResourceMetrics{Resource: resource.NewSchemaless(attribute.String("service.name", "e2e")),
				ScopeMetrics: []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: "e2e"}, Metrics: []metricdata.Metrics{
					{Name: "ingest.seq", Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{
						{Time: start.Add(time.Duration(i) * 10 * time.Millisecond), Value: int64(i)}}}}}}}}
			if exp.Export(ctx, rm) == nil {
				mu.Lock()
				acked[i] = true
				mu.Unlock()
			} else {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	waitFor(t, 30*time.Second, "exports acknowledged", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 50 })
	maxAcked := func() int {
		mu.Lock()
		defer mu.Unlock()
		m := -1
		for i := range acked {
			m = max(m, i)
		}
		return m
	}
	before := maxAcked()
	nd.p.signal(syscall.SIGKILL)
	nd.p.wait(t, 10*time.Second)
	nd.p = nil
	sr.start(t, nd)
	waitFor(t, 60*time.Second, "exports acknowledged after the restart", func() bool { return maxAcked() > before+20 })
	close(stop)
	<-done

	var resp struct {
		Status string
		Data   struct {
			Result []struct {
				Values [][2]any `json:"values"`
			}
		}
	}
	q := url.Values{"query": {`ingest_seq[10m]`}, "time": {time.Now().Format(time.RFC3339)}}
	if err := alice.Do(ctx, "GET", "/api/v1/tenants/acme/prometheus/api/v1/query?"+q.Encode(), nil, &resp); err != nil {
		t.Fatal(err)
	}
	stored := map[int]bool{}
	for _, s := range resp.Data.Result {
		for _, v := range s.Values {
			if n, err := strconv.Atoi(v[1].(string)); err == nil {
				stored[n] = true
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var lost []int
	for i := range acked {
		if !stored[i] {
			lost = append(lost, i)
		}
	}
	t.Logf("%d exports acknowledged, %d samples stored", len(acked), len(stored))
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged samples lost after SIGKILL, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}
}
