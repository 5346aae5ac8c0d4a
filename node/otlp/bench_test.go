package otlp

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// BenchmarkServe is bench/otlpbench's ingest in a benchmark, to profile:
// exports of 1,000 gauge points, 10,000 series, a new timestamp per
// round; each point in its own Metric as otlpbench sends them, or all in
// one Metric as the OpenTelemetry SDKs group an instrument's points.
//
//	go test -run XXX -bench Serve -benchtime 300x -cpuprofile cpu.out ./node/otlp/ && go tool pprof -top -cum node/otlp/otlp.test cpu.out
func BenchmarkServe(b *testing.B) {
	for _, grouped := range []bool{false, true} {
		b.Run(map[bool]string{false: "metric-per-point", true: "grouped"}[grouped], func(b *testing.B) { benchmarkServe(b, grouped) })
	}
}

func benchmarkServe(b *testing.B, grouped bool) {
	const series, perReq = 10_000, 1_000
	db, err := telemetry.Open(b.TempDir(), telemetry.Config{MaxSeriesPerAgent: 2 * series, MaxSeriesPerTenant: 2 * series}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rc := New(Config{MaxBodyBytes: 64 << 20}, db, nil, nil)
	base := time.Now().Add(-30 * time.Minute)
	// Each export is built once with a marker timestamp, patched per round.
	marker := pcommon.NewTimestampFromTime(base)
	var bodies [][]byte
	for first := 0; first < series; first += perReq {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "outpost-agent")
		ms := rm.ScopeMetrics().AppendEmpty().Metrics()
		var dps pmetric.NumberDataPointSlice
		for i := first; i < first+perReq; i++ {
			if !grouped || i == first {
				m := ms.AppendEmpty()
				m.SetName("tcp.rtt")
				m.SetUnit("s")
				dps = m.SetEmptyGauge().DataPoints()
			}
			dp := dps.AppendEmpty()
			dp.Attributes().PutStr("dst", "10.0."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250))
			dp.Attributes().PutInt("dport", int64(443+i%7))
			dp.SetTimestamp(marker)
			dp.SetDoubleValue(float64(i%100) / 1000)
		}
		body, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		bodies = append(bodies, body)
	}
	sender := Sender{TenantID: "t1", TenantName: "acme", AgentID: "a1", Host: "h1"}
	old := binary.LittleEndian.AppendUint64(nil, uint64(marker))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		round := i / len(bodies)
		ts := binary.LittleEndian.AppendUint64(nil, uint64(marker)+uint64(round+1)*uint64(time.Millisecond))
		body := bytes.ReplaceAll(bodies[i%len(bodies)], old, ts)
		r := httptest.NewRequest("POST", Path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/x-protobuf")
		w := httptest.NewRecorder()
		rc.Serve(w, r, sender)
		if w.Code != 200 || w.Body.Len() > 0 && bytes.Contains(w.Body.Bytes(), []byte("not stored")) {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.N*perReq)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkValidate is the walk alone over a realistic 1,000-point export.
func BenchmarkValidate(b *testing.B) {
	body := gauge(1000)
	b.SetBytes(int64(len(body)))
	for range b.N {
		if _, err := validate(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode is pdata's decode of the same export, for scale.
func BenchmarkDecode(b *testing.B) {
	body := gauge(1000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for range b.N {
		if err := pmetricotlp.NewExportRequest().UnmarshalProto(body); err != nil {
			b.Fatal(err)
		}
	}
}
