package otlp

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// flood is a request of one gauge point carrying n empty exemplars: 2n
// bytes on the wire, ~400n bytes once pdata has decoded it.
func flood(n int) []byte {
	b := bytes.Repeat([]byte{5<<3 | byte(protowire.BytesType), 0}, n) // NumberDataPoint.exemplars
	// Gauge.data_points, Metric.gauge, ScopeMetrics.metrics,
	// ResourceMetrics.scope_metrics, request.resource_metrics
	for _, num := range []protowire.Number{1, 5, 2, 2, 1} {
		b = protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	return b
}

// TestReceiverMemoryBudget: requests are admitted by the memory their
// decode will take, estimated before decoding: one that can never fit
// is 413 without being decoded, one that does not fit beside those in
// flight is 429 with Retry-After while a small one still gets in, and
// it is admitted once the memory is free.
func TestReceiverMemoryBudget(t *testing.T) {
	rc := newReceiver(t, Config{MaxBodyBytes: 1 << 20, MaxInFlightBytes: 64 << 20})
	huge := flood(200_000) // 400 KB, ~80 MB decoded
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	w := post(rc, huge, nil)
	runtime.ReadMemStats(&m1)
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "max_in_flight_bytes") {
		t.Fatalf("a 400 KB body decoding to ~80 MB, with 64 MiB for all: %d %s", w.Code, w.Body)
	}
	if got := m1.TotalAlloc - m0.TotalAlloc; got > 8<<20 {
		t.Fatalf("refusing it allocated %d bytes: it was decoded", got)
	}

	big := flood(50_000) // 100 KB, ~20 MB decoded
	if w := post(rc, big, nil); w.Code != 200 {
		t.Fatalf("alone, it fits: %d %s", w.Code, w.Body)
	}
	if why := rc.gate.enter("t2", 50<<20); why != "" { // another tenant's requests hold 50 MiB
		t.Fatal(why)
	}
	w = post(rc, big, nil)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "max_in_flight_bytes") {
		t.Fatalf("beside 50 MiB in flight: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if w := post(rc, gauge(10), nil); w.Code != 200 {
		t.Fatalf("a small export beside them: %d %s", w.Code, w.Body)
	}
	rc.gate.leave("t2", 50<<20)
	if w := post(rc, big, nil); w.Code != 200 {
		t.Fatalf("once they are done: %d %s", w.Code, w.Body)
	}
	if rc.gate.count != 0 || rc.gate.bytes != 0 || len(rc.gate.tenants) != 0 {
		t.Fatalf("the gate holds %d requests, %d bytes, %v after all are answered", rc.gate.count, rc.gate.bytes, rc.gate.tenants)
	}
}

// TestReceiverTenantFairness: a tenant holding its share of the slots
// is answered 429 with Retry-After, while another tenant still gets in,
// until the node's slots are all taken.
func TestReceiverTenantFairness(t *testing.T) {
	rc := newReceiver(t, Config{MaxInFlight: 4}) // 2 per tenant by default
	globex := Sender{TenantID: "t2", TenantName: "globex", AgentID: "a2", Host: "h2"}
	initech := Sender{TenantID: "t3", TenantName: "initech", AgentID: "a3", Host: "h3"}
	for range 2 {
		if why := rc.gate.enter(acme.TenantID, 0); why != "" {
			t.Fatal(why)
		}
	}
	w := post(rc, gauge(1), nil)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "max_in_flight_per_tenant") {
		t.Fatalf("acme over its share: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if w := postAs(context.Background(), rc, globex, gauge(1), nil); w.Code != 200 {
		t.Fatalf("globex beside acme's share: %d %s", w.Code, w.Body)
	}
	for range 2 {
		if why := rc.gate.enter(globex.TenantID, 0); why != "" {
			t.Fatal(why)
		}
	}
	if w := postAs(context.Background(), rc, initech, gauge(1), nil); w.Code != http.StatusTooManyRequests || strings.Contains(w.Body.String(), "per_tenant") {
		t.Fatalf("initech with the node's slots all taken: %d %s", w.Code, w.Body)
	}
	rc.gate.leave(acme.TenantID, 0)
	if w := post(rc, gauge(1), nil); w.Code != 200 {
		t.Fatalf("acme after one of its requests is done: %d %s", w.Code, w.Body)
	}
}

// TestConfigValidate: bounds that would refuse every request are
// rejected, naming the option.
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" valid
	}{
		{"defaults", Config{}.Defaults(), ""},
		{"per tenant at max", Config{MaxInFlight: 4, MaxInFlightPerTenant: 4}.Defaults(), ""},
		{"per tenant over max", Config{MaxInFlight: 4, MaxInFlightPerTenant: 5}.Defaults(), "max_in_flight_per_tenant"},
		{"per tenant negative", Config{MaxInFlightPerTenant: -1}.Defaults(), "max_in_flight_per_tenant"},
		{"budget under a body", Config{MaxBodyBytes: 8 << 20, MaxInFlightBytes: 1 << 20}.Defaults(), "max_in_flight_bytes"},
		{"tiny body", Config{MaxBodyBytes: 10}.Defaults(), "max_body_bytes"},
		{"no slots", Config{MaxInFlight: -1}.Defaults(), "max_in_flight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if got := (Config{MaxInFlight: 1}).perTenant(); got != 1 {
		t.Fatalf("per tenant of 1 slot: %d", got)
	}
	if got := (Config{MaxInFlight: 16}).perTenant(); got != 8 {
		t.Fatalf("per tenant of 16 slots: %d", got)
	}
}
