package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

func newReceiver(t testing.TB, cfg Config) *Receiver {
	db, err := telemetry.Open(t.TempDir(), telemetry.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return New(cfg, db, nil, nil)
}

var acme = Sender{TenantID: "t1", TenantName: "acme", AgentID: "a1", Host: "h1"}

func post(rc *Receiver, body []byte, header map[string]string) *httptest.ResponseRecorder {
	return postAs(context.Background(), rc, acme, body, header)
}

func postAs(ctx context.Context, rc *Receiver, s Sender, body []byte, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequestWithContext(ctx, "POST", Path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/x-protobuf")
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	rc.Serve(w, r, s)
	return w
}

// partial is a 200 answer's partial success.
func partial(t *testing.T, w *httptest.ResponseRecorder) pmetricotlp.ExportPartialSuccess {
	t.Helper()
	resp := pmetricotlp.NewExportResponse()
	if w.Code != 200 || resp.UnmarshalProto(w.Body.Bytes()) != nil {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	return resp.PartialSuccess()
}

func gauge(n int) []byte { return gaugeAt(n, time.Now()) }

func gaugeAt(n int, at time.Time) []byte {
	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	for i := 0; i < n; i++ {
		m := sm.Metrics().AppendEmpty()
		m.SetName("g")
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.Attributes().PutInt("i", int64(i))
		dp.SetTimestamp(pcommon.NewTimestampFromTime(at))
		dp.SetDoubleValue(1)
	}
	b, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	return b
}

// TestReceiverBounds: bodies over the limit, compressed or not, and a
// gzip bomb are 400; other encodings and content types are refused with
// what to send; a request nested deeper than the bound, malformed wire
// data and a string that is not UTF-8 are 400 before they are decoded.
func TestReceiverBounds(t *testing.T) {
	rc := newReceiver(t, Config{MaxBodyBytes: 4096})
	if w := post(rc, gauge(1), nil); w.Code != 200 {
		t.Fatalf("a small export: %d %s", w.Code, w.Body)
	}
	if w := post(rc, gauge(500), nil); w.Code != 400 || !strings.Contains(w.Body.String(), "max_body_bytes") {
		t.Fatalf("an export over the limit: %d %s", w.Code, w.Body)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(bytes.Repeat([]byte{0}, 1<<20)) // 1 MiB of zeros: a few KiB gzipped
	_ = zw.Close()
	if w := post(rc, z.Bytes(), map[string]string{"Content-Encoding": "gzip"}); w.Code != 400 || !strings.Contains(w.Body.String(), "max_body_bytes") {
		t.Fatalf("a gzip bomb: %d %s", w.Code, w.Body)
	}
	if w := post(rc, gauge(1), map[string]string{"Content-Encoding": "br"}); w.Code != 400 {
		t.Fatalf("brotli: %d", w.Code)
	}
	if w := post(rc, gauge(1), map[string]string{"Content-Type": "application/json"}); w.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("JSON: %d", w.Code)
	}
	// An attribute value nested 40 deep (kvlist in kvlist …).
	md := pmetric.NewMetrics()
	attrs := md.ResourceMetrics().AppendEmpty().Resource().Attributes()
	for range 40 {
		attrs = attrs.PutEmptyMap("k")
	}
	b, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if w := post(newReceiver(t, Config{}), b, nil); w.Code != 400 {
		t.Fatalf("a request nested 40 deep: %d %s", w.Code, w.Body)
	}
	for _, tc := range []struct {
		name string
		body []byte
		code int
	}{
		{"nested 32 deep", nested(32), 200},
		{"nested 33 deep", nested(33), 400},
		{"truncated", gauge(2)[:40], 400},
		{"not UTF-8", append([]byte{0x0a, 0x0a, 0x0a, 0x08, 0x0a, 0x06, 0x0a, 0x04}, 0xff, 0xfe, 0xfd, 0xfc), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if w := post(rc, tc.body, nil); w.Code != tc.code {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.code)
			}
		})
	}
}

// TestReceiverOverloadIs429: with every conversion slot taken, an export
// is answered 429 with Retry-After, as OTLP exporters expect.
func TestReceiverOverloadIs429(t *testing.T) {
	rc := newReceiver(t, Config{MaxInFlight: 1})
	if why := rc.gate.enter("t2", 0); why != "" {
		t.Fatal(why)
	}
	w := post(rc, gauge(1), nil)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("overloaded: %d %v", w.Code, w.Header())
	}
	rc.gate.leave("t2", 0)
	if w := post(rc, gauge(1), nil); w.Code != 200 {
		t.Fatalf("after the slot is free: %d %s", w.Code, w.Body)
	}
}

// TestReceiverPartialSuccess: samples shed by the agent's series budget
// are reported in the OTLP partial-success answer.
func TestReceiverPartialSuccess(t *testing.T) {
	db, err := telemetry.Open(t.TempDir(), telemetry.Config{MaxSeriesPerAgent: 3}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rc := New(Config{}, db, nil, nil)
	if ps := partial(t, post(rc, gauge(5), nil)); ps.RejectedDataPoints() != 2 || !strings.Contains(ps.ErrorMessage(), "agent_series_limit=2") {
		t.Fatalf("partial success %d %q, want 2 rejected for agent_series_limit", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
}

// TestReceiverTimeWindow: points far in the future or the past are not
// stored (they would move the store's head for every tenant, and make
// the translator write target_info for every 2.5 minutes of the span);
// they are reported, and a current point still lands afterwards.
func TestReceiverTimeWindow(t *testing.T) {
	rc := newReceiver(t, Config{})
	for _, at := range []time.Time{time.Now().Add(24 * time.Hour), time.Unix(0, 1), time.Now().AddDate(200, 0, 0)} {
		start := time.Now()
		w := post(rc, gaugeAt(1, at), nil)
		resp := pmetricotlp.NewExportResponse()
		if w.Code != 200 || resp.UnmarshalProto(w.Body.Bytes()) != nil || resp.PartialSuccess().RejectedDataPoints() != 1 ||
			!strings.Contains(resp.PartialSuccess().ErrorMessage(), "out_of_window=1") {
			t.Fatalf("a point at %v: %d %q", at, w.Code, resp.PartialSuccess().ErrorMessage())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("a point at %v took %v", at, d)
		}
	}
	w := post(rc, gauge(1), nil)
	resp := pmetricotlp.NewExportResponse()
	if w.Code != 200 || resp.UnmarshalProto(w.Body.Bytes()) != nil || resp.PartialSuccess().RejectedDataPoints() != 0 {
		t.Fatalf("a current point after them: %d %q", w.Code, resp.PartialSuccess().ErrorMessage())
	}
}

// FuzzOTLPBody: hostile bytes, gzipped or not, never panic the receiver.
func FuzzOTLPBody(f *testing.F) {
	f.Add(gauge(2), false)
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00}, false)
	f.Add([]byte{0x1f, 0x8b, 0x08}, true)
	rc := newReceiver(f, Config{MaxBodyBytes: 64 << 10})
	f.Fuzz(func(t *testing.T, body []byte, gz bool) {
		h := map[string]string{}
		if gz {
			h["Content-Encoding"] = "gzip"
		}
		if w := post(rc, body, h); w.Code >= 500 && w.Code != 503 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}
