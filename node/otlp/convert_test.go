package otlp

import (
	"context"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// series counts tenant t1's series named name in db.
func series(t *testing.T, db *telemetry.DB, name string) int {
	t.Helper()
	q, err := db.Tenant("t1").Querier(0, time.Now().Add(time.Hour).UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", name))
	n := 0
	for ss.Next() {
		n++
	}
	if err := ss.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// shedCount reads outpost_telemetry_samples_shed_total{reason}.
func shedCount(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "outpost_telemetry_samples_shed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no shed counter for %q", reason)
	return 0
}

// TestReceiverTranslationErrors: the points Prometheus's translator
// cannot convert are reported as OTLP partial success, named in the
// message and counted as shed (translation), and the rest of the export
// is stored: a metric it refuses whole (a delta sum), the points of a
// metric from the first one it refuses (an empty attribute name), and
// samples the store refuses (a histogram whose count is below its
// buckets') do not take the export down with them.
func TestReceiverTranslationErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	db, err := telemetry.Open(t.TempDir(), telemetry.Config{}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rc := New(Config{}, db, nil, nil)

	now := pcommon.NewTimestampFromTime(time.Now())
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	good := ms.AppendEmpty()
	good.SetName("good")
	p := good.SetEmptyGauge().DataPoints().AppendEmpty()
	p.SetTimestamp(now)
	p.SetDoubleValue(1)
	delta := ms.AppendEmpty()
	delta.SetName("delta")
	sum := delta.SetEmptySum()
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	for range 2 {
		p := sum.DataPoints().AppendEmpty()
		p.SetTimestamp(now)
		p.SetIntValue(3)
	}
	mixed := ms.AppendEmpty()
	mixed.SetName("mixed")
	dps := mixed.SetEmptyGauge().DataPoints()
	for i, key := range []string{"a", "", "c"} { // the second point's attribute has no name
		p := dps.AppendEmpty()
		p.SetTimestamp(now)
		p.SetIntValue(int64(i))
		p.Attributes().PutStr(key, "x")
	}
	inconsistent := ms.AppendEmpty()
	inconsistent.SetName("inconsistent")
	eh := inconsistent.SetEmptyExponentialHistogram()
	eh.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for i, count := range []uint64{1, 5} { // the first point's count is below its buckets' 5
		p := eh.DataPoints().AppendEmpty()
		p.Attributes().PutInt("i", int64(i))
		p.SetTimestamp(now)
		p.SetCount(count)
		p.Positive().BucketCounts().FromRaw([]uint64{2, 3})
	}
	body, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()

	ps := partial(t, post(rc, body, nil))
	// 2 delta points, the mixed metric's last 2, 1 histogram sample.
	if ps.RejectedDataPoints() != 5 || !strings.Contains(ps.ErrorMessage(), "translation=5") ||
		!strings.Contains(ps.ErrorMessage(), `4 points not converted: invalid temporality and type combination for metric "delta" (and 1 more)`) ||
		!strings.Contains(ps.ErrorMessage(), "1 samples refused by the store") {
		t.Fatalf("partial success %d %q", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	if got := shedCount(t, reg, telemetry.ShedTranslation); got != 5 {
		t.Fatalf("shed for translation: %v, want 5", got)
	}
	for name, want := range map[string]int{"good": 1, "mixed": 1, "delta_total": 0, "delta": 0, "inconsistent": 1} {
		if got := series(t, db, name); got != want {
			t.Errorf("%s: %d series stored, want %d", name, got, want)
		}
	}
}

// cancelAfter is a context that reports itself cancelled from its n'th
// Err call on: a request whose client goes away during the conversion.
type cancelAfter struct {
	context.Context
	n int
}

func (c *cancelAfter) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

// TestReceiverCancelledIs503: a request cancelled or timed out is
// answered 503 with Retry-After (the exporter retries) and nothing of it
// is stored.
func TestReceiverCancelledIs503(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  func() context.Context
	}{
		{"cancelled before", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}},
		{"timed out before", func() context.Context {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			t.Cleanup(cancel)
			return ctx
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := telemetry.Open(t.TempDir(), telemetry.Config{}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			rc := New(Config{}, db, nil, nil)
			w := postAs(tc.ctx(), rc, acme, gauge(3), nil) // too few points for the translator to look at the context
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
				t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
			}
			if n := series(t, db, "g"); n != 0 {
				t.Fatalf("%d series stored", n)
			}
		})
	}
}

// TestConvertCancelledHalfway: a cancellation the translator notices
// halfway through an export (it looks every 128 metrics and points) is
// a context error of the conversion, not a complaint about the points.
func TestConvertCancelledHalfway(t *testing.T) {
	db, err := telemetry.Open(t.TempDir(), telemetry.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rc := New(Config{}, db, nil, nil)
	// 300 metrics of a point each, which merging leaves apart.
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	for i := range 300 {
		m := ms.AppendEmpty()
		m.SetName("g" + strconv.Itoa(i))
		p := m.SetEmptyGauge().DataPoints().AppendEmpty()
		p.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	}
	req := pmetricotlp.NewExportRequestFromMetrics(md)
	// Our check, then the translator's every 128 points.
	ctx := &cancelAfter{Context: context.Background(), n: 1}
	app := db.Ingest(ctx, telemetry.Source{TenantID: "t1", Agent: "a1", Host: "h1"})
	defer app.Rollback()
	if notes, err := rc.convert(ctx, req.Metrics(), app); !isContext(err) || notes != "" {
		t.Fatalf("notes %q, err %v", notes, err)
	}
}

// recorder keeps what the translator appends, per series in order.
type recorder struct {
	discard
	samples map[string][]float64
}

func (r *recorder) Append(_ storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, _ *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	if h != nil {
		v = float64(h.Count)
	}
	r.samples[ls.String()] = append(r.samples[ls.String()], float64(t), v)
	return 1, nil
}

// TestMergeMetricsConvertsTheSame: merging the repeated metrics of a
// scope changes nothing the translator writes, series by series and in
// order, and merges only metrics of one identity.
func TestMergeMetricsConvertsTheSame(t *testing.T) {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	ts := pcommon.NewTimestampFromTime(time.Now())
	gaugeOf := func(name, unit string, v float64, at pcommon.Timestamp) pmetric.Metric {
		m := ms.AppendEmpty()
		m.SetName(name)
		m.SetUnit(unit)
		p := m.SetEmptyGauge().DataPoints().AppendEmpty()
		p.SetTimestamp(at)
		p.SetDoubleValue(v)
		return m
	}
	sumOf := func(name string, monotonic bool, v float64) {
		m := ms.AppendEmpty()
		m.SetName(name)
		s := m.SetEmptySum()
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		s.SetIsMonotonic(monotonic)
		p := s.DataPoints().AppendEmpty()
		p.SetTimestamp(ts)
		p.SetDoubleValue(v)
	}
	gaugeOf("a", "s", 1, ts)
	gaugeOf("b", "s", 2, ts)
	gaugeOf("a", "s", 3, ts+1) // merged into the first
	gaugeOf("a", "s", 4, ts)   // the same series again, earlier: the order must hold
	gaugeOf("a", "ms", 5, ts)  // another unit: not merged
	gaugeOf("a", "s", 6, ts+2).Metadata().PutStr("k", "v")
	sumOf("c", true, 7)
	sumOf("c", false, 8)
	sumOf("c", true, 9)
	h := ms.AppendEmpty()
	h.SetName("a") // a histogram of a gauge's name: not merged
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	hp := hist.DataPoints().AppendEmpty()
	hp.SetTimestamp(ts)
	hp.SetCount(1)

	convert := func(md pmetric.Metrics) map[string][]float64 {
		r := &recorder{samples: map[string][]float64{}}
		rc := New(Config{}, nil, nil, nil)
		if _, err := prometheusremotewrite.NewPrometheusConverter(r).FromMetrics(context.Background(), md, rc.settings); err != nil {
			t.Fatal(err)
		}
		return r.samples
	}
	want := convert(md)
	merged := pmetric.NewMetrics()
	md.CopyTo(merged)
	mergeMetrics(merged)
	if n := merged.MetricCount(); n != 7 {
		t.Errorf("%d metrics after merging, want 7 (a/s, b, a/ms, a with metadata, c, c non-monotonic, histogram a)", n)
	}
	if got := convert(merged); !reflect.DeepEqual(got, want) {
		t.Fatalf("merged, the translator writes\n%v\nnot\n%v", got, want)
	}
}
