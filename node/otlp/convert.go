package otlp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// convert writes md through app with Prometheus's translator. Points the
// translator cannot convert (an attribute named only with underscores, a
// delta sum, an exponential histogram's scale under -4), and samples the
// store refuses as invalid, are counted as shed (reason translation) and
// described in notes, and the rest is converted; err is only a timeout
// or a cancellation, after which nothing may be committed.
func (rc *Receiver) convert(ctx context.Context, md pmetric.Metrics, app *telemetry.Appender) (notes string, err error) {
	if err := ctx.Err(); err != nil { // the translator looks every 128 points only
		return "", err
	}
	mergeMetrics(md)
	sink := &refusing{Appender: app}
	conv := rc.converters.Get().(*prometheusremotewrite.PrometheusConverter)
	conv.Reset(sink)
	_, cerr := conv.FromMetrics(ctx, md, rc.settings)
	conv.Reset(nil)
	rc.converters.Put(conv)
	if isContext(cerr) {
		return "", cerr
	}
	var described []string
	if cerr != nil {
		n, err := rc.unconverted(ctx, md)
		if err != nil {
			return "", err
		}
		app.ShedN(telemetry.ShedTranslation, n)
		described = append(described, fmt.Sprintf("%d points not converted: %s", n, firstLine(cerr)))
	}
	if sink.refused > 0 {
		app.ShedN(telemetry.ShedTranslation, sink.refused)
		described = append(described, fmt.Sprintf("%d samples refused by the store: %s", sink.refused, firstLine(sink.err)))
	}
	return strings.Join(described, "; "), nil
}

func isContext(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// firstLine is err's first line (errors.Join puts one a line), bounded,
// with how many more there were: it goes back to the sender and into
// the log.
func firstLine(err error) string {
	s := err.Error()
	more := strings.Count(s, "\n")
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	if more > 0 {
		s += fmt.Sprintf(" (and %d more)", more)
	}
	return s
}

// refusing is the appender the translator writes to: a sample the store
// refuses with an error (the telemetry Appender counts the expected
// refusals itself; this is the rest, such as an inconsistent histogram)
// is counted and skipped, where the translator would drop the rest of
// the metric's points.
type refusing struct {
	*telemetry.Appender
	refused int
	err     error
}

func (a *refusing) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	ref, err := a.Appender.Append(ref, ls, st, t, v, h, fh, opts)
	if err != nil {
		if a.refused++; a.err == nil {
			a.err = err
		}
		return 0, nil
	}
	return ref, nil
}

// unconverted counts the points of md the translator did not convert,
// after it reported errors. It goes on past a metric it cannot convert
// and stops within one at the first point it cannot (that point and the
// metric's later points are lost), so each metric is converted alone,
// and a failing one point by point, into an appender that keeps nothing.
// Only an export the translator complained about pays for this, within
// the request's deadline.
func (rc *Receiver) unconverted(ctx context.Context, md pmetric.Metrics) (int, error) {
	settings := rc.settings
	settings.DisableTargetInfo = true // target_info is not a point
	conv := prometheusremotewrite.NewPrometheusConverter(discard{})
	fails := func(one pmetric.Metrics) (bool, error) {
		if err := ctx.Err(); err != nil { // the translator looks every 128 points only
			return false, err
		}
		conv.Reset(discard{})
		_, err := conv.FromMetrics(ctx, one, settings)
		if isContext(err) {
			return false, err
		}
		return err != nil, nil
	}
	lost := 0
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				// one is the metric alone in a copy of its resource and scope.
				one := pmetric.NewMetrics()
				rm := one.ResourceMetrics().AppendEmpty()
				rms.At(i).Resource().CopyTo(rm.Resource())
				sm := rm.ScopeMetrics().AppendEmpty()
				sms.At(j).Scope().CopyTo(sm.Scope())
				m, alone := ms.At(k), sm.Metrics().AppendEmpty()
				m.CopyTo(alone)
				if bad, err := fails(one); err != nil || !bad {
					if err != nil {
						return 0, err
					}
					continue
				}
				for p, n := 0, points(m); p < n; p++ {
					onePoint(m, p, alone)
					bad, err := fails(one)
					if err != nil {
						return 0, err
					}
					if bad {
						lost += n - p
						break
					}
				}
			}
		}
	}
	return lost, nil
}

// identity is what makes two metrics of a scope one for the translator.
type identity struct {
	name, description, unit string
	typ                     pmetric.MetricType
	temporality             pmetric.AggregationTemporality
	monotonic               bool
}

// mergeMetrics moves the points of a metric that repeats an earlier one
// of its scope (same name, description, unit, type and temporality, no
// metadata) into the earlier one. The translator normalizes a metric's
// name and unit per Metric message, 11% of the CPU for an exporter that
// sends one Metric per point (bench/otlpbench does); what it writes is
// the same, in the same order per series.
func mergeMetrics(md pmetric.Metrics) {
	var first map[identity]int // the index of each identity's first metric
	var merged []bool
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			if ms.Len() < 2 {
				continue
			}
			if first == nil {
				first = make(map[identity]int, ms.Len())
			}
			clear(first)
			merged = merged[:0]
			moved := false
			for k := range ms.Len() {
				m := ms.At(k)
				id, ok := identityOf(m)
				merged = append(merged, false)
				if !ok {
					continue
				}
				into, seen := first[id]
				if !seen {
					first[id] = k
					continue
				}
				movePoints(m, ms.At(into))
				merged[k], moved = true, true
			}
			if moved {
				k := 0
				ms.RemoveIf(func(pmetric.Metric) bool { k++; return merged[k-1] })
			}
		}
	}
}

// identityOf is m's identity, or false if m is not to be merged.
func identityOf(m pmetric.Metric) (identity, bool) {
	id := identity{name: m.Name(), description: m.Description(), unit: m.Unit(), typ: m.Type()}
	switch m.Type() {
	case pmetric.MetricTypeGauge, pmetric.MetricTypeSummary:
	case pmetric.MetricTypeSum:
		id.temporality, id.monotonic = m.Sum().AggregationTemporality(), m.Sum().IsMonotonic()
	case pmetric.MetricTypeHistogram:
		id.temporality = m.Histogram().AggregationTemporality()
	case pmetric.MetricTypeExponentialHistogram:
		id.temporality = m.ExponentialHistogram().AggregationTemporality()
	default:
		return id, false
	}
	return id, m.Metadata().Len() == 0
}

// movePoints appends from's points to into's (of the same type).
func movePoints(from, into pmetric.Metric) {
	switch from.Type() {
	case pmetric.MetricTypeGauge:
		from.Gauge().DataPoints().MoveAndAppendTo(into.Gauge().DataPoints())
	case pmetric.MetricTypeSum:
		from.Sum().DataPoints().MoveAndAppendTo(into.Sum().DataPoints())
	case pmetric.MetricTypeHistogram:
		from.Histogram().DataPoints().MoveAndAppendTo(into.Histogram().DataPoints())
	case pmetric.MetricTypeExponentialHistogram:
		from.ExponentialHistogram().DataPoints().MoveAndAppendTo(into.ExponentialHistogram().DataPoints())
	case pmetric.MetricTypeSummary:
		from.Summary().DataPoints().MoveAndAppendTo(into.Summary().DataPoints())
	}
}

// points is m's number of data points.
func points(m pmetric.Metric) int {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints().Len()
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints().Len()
	case pmetric.MetricTypeHistogram:
		return m.Histogram().DataPoints().Len()
	case pmetric.MetricTypeExponentialHistogram:
		return m.ExponentialHistogram().DataPoints().Len()
	case pmetric.MetricTypeSummary:
		return m.Summary().DataPoints().Len()
	}
	return 0
}

// onePoint makes dst (a copy of m) hold only m's i'th point.
func onePoint(m pmetric.Metric, i int, dst pmetric.Metric) {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		keepOne(m.Gauge().DataPoints().At(i), dst.Gauge().DataPoints())
	case pmetric.MetricTypeSum:
		keepOne(m.Sum().DataPoints().At(i), dst.Sum().DataPoints())
	case pmetric.MetricTypeHistogram:
		keepOne(m.Histogram().DataPoints().At(i), dst.Histogram().DataPoints())
	case pmetric.MetricTypeExponentialHistogram:
		keepOne(m.ExponentialHistogram().DataPoints().At(i), dst.ExponentialHistogram().DataPoints())
	case pmetric.MetricTypeSummary:
		keepOne(m.Summary().DataPoints().At(i), dst.Summary().DataPoints())
	}
}

// pointSlice is what keepOne needs of pdata's data point slices.
type pointSlice[P any] interface {
	EnsureCapacity(int)
	AppendEmpty() P
	RemoveIf(func(P) bool)
}

func keepOne[P interface{ CopyTo(P) }, S pointSlice[P]](p P, dst S) {
	dst.RemoveIf(func(P) bool { return true })
	p.CopyTo(dst.AppendEmpty())
}

// discard is an appender that keeps nothing.
type discard struct{}

func (discard) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AppendV2Options) (storage.SeriesRef, error) {
	return 1, nil
}
func (discard) Commit() error   { return nil }
func (discard) Rollback() error { return nil }

var (
	_ storage.AppenderV2 = discard{}
	_ storage.AppenderV2 = (*refusing)(nil)
)

// The window of accepted point timestamps around the node's clock.
const (
	maxAge    = time.Hour
	maxFuture = 5 * time.Minute
)

// dropOutOfWindow removes data points older than maxAge or more than
// maxFuture ahead of now, and returns how many it removed.
func dropOutOfWindow(md pmetric.Metrics, now time.Time) int {
	lo, hi := pcommon.NewTimestampFromTime(now.Add(-maxAge)), pcommon.NewTimestampFromTime(now.Add(maxFuture))
	n := 0
	out := func(ts pcommon.Timestamp) bool {
		if ts < lo || ts > hi {
			n++
			return true
		}
		return false
	}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				switch m := ms.At(k); m.Type() {
				case pmetric.MetricTypeGauge:
					m.Gauge().DataPoints().RemoveIf(func(p pmetric.NumberDataPoint) bool { return out(p.Timestamp()) })
				case pmetric.MetricTypeSum:
					m.Sum().DataPoints().RemoveIf(func(p pmetric.NumberDataPoint) bool { return out(p.Timestamp()) })
				case pmetric.MetricTypeHistogram:
					m.Histogram().DataPoints().RemoveIf(func(p pmetric.HistogramDataPoint) bool { return out(p.Timestamp()) })
				case pmetric.MetricTypeExponentialHistogram:
					m.ExponentialHistogram().DataPoints().RemoveIf(func(p pmetric.ExponentialHistogramDataPoint) bool { return out(p.Timestamp()) })
				case pmetric.MetricTypeSummary:
					m.Summary().DataPoints().RemoveIf(func(p pmetric.SummaryDataPoint) bool { return out(p.Timestamp()) })
				}
			}
		}
	}
	return n
}
