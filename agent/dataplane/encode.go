package dataplane

import (
	"slices"
	"strconv"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-mesh/outpost/agent/probe"
)

// Export metrics. Their Prometheus names (the node's translator adds the
// unit and _total suffixes) are in docs/telemetry.md.
const (
	mConnections    = "outpost.flow.connections"
	mFailed         = "outpost.flow.failed_connects"
	mClosed         = "outpost.flow.closed"
	mSent           = "outpost.flow.sent"
	mReceived       = "outpost.flow.received"
	mRetransmits    = "outpost.flow.retransmits"
	mDuration       = "outpost.flow.duration"
	mRTT            = "outpost.flow.rtt"
	mSRTT           = "outpost.flow.srtt"
	mConnectLatency = "outpost.flow.connect_latency"
	mEstablished    = "outpost.flow.established"
)

// builder collects the metrics of one export.
type builder struct {
	now, start uint64
	metrics    map[string]*metricspb.Metric
	order      []string
}

func newBuilder(now, start time.Time) *builder {
	return &builder{now: uint64(now.UnixNano()), start: uint64(start.UnixNano()), metrics: map[string]*metricspb.Metric{}}
}

func (b *builder) metric(name, unit, desc string, data func() *metricspb.Metric) *metricspb.Metric {
	m := b.metrics[name]
	if m == nil {
		m = data()
		m.Name, m.Unit, m.Description = name, unit, desc
		b.metrics[name] = m
		b.order = append(b.order, name)
	}
	return m
}

// attrs are string attributes; a value that is not valid UTF-8 (it may
// come from the host: a process name, a probe's error) is repaired, since
// one such string would fail the whole export's encoding.
func attrs(kv ...string) []*commonpb.KeyValue {
	out := make([]*commonpb.KeyValue, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		v := strings.ToValidUTF8(kv[i+1], "?")
		out = append(out, &commonpb.KeyValue{Key: kv[i], Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}})
	}
	return out
}

// counter adds a cumulative monotonic sum point.
func (b *builder) counter(name, unit, desc string, start time.Time, v float64, kv []*commonpb.KeyValue) {
	m := b.metric(name, unit, desc, func() *metricspb.Metric {
		return &metricspb.Metric{Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{IsMonotonic: true,
			AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE}}}
	})
	s := m.GetSum()
	s.DataPoints = append(s.DataPoints, &metricspb.NumberDataPoint{Attributes: kv, StartTimeUnixNano: b.startOf(start),
		TimeUnixNano: b.now, Value: &metricspb.NumberDataPoint_AsDouble{AsDouble: v}})
}

// gauge adds a gauge point.
func (b *builder) gauge(name, unit, desc string, v float64, kv []*commonpb.KeyValue) {
	m := b.metric(name, unit, desc, func() *metricspb.Metric {
		return &metricspb.Metric{Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{}}}
	})
	g := m.GetGauge()
	g.DataPoints = append(g.DataPoints, &metricspb.NumberDataPoint{Attributes: kv, TimeUnixNano: b.now,
		Value: &metricspb.NumberDataPoint_AsDouble{AsDouble: v}})
}

// histogram adds a cumulative histogram point.
func (b *builder) histogram(name, unit, desc string, start time.Time, bounds []float64, h histogram, kv []*commonpb.KeyValue) {
	if h.Count == 0 {
		return
	}
	m := b.metric(name, unit, desc, func() *metricspb.Metric {
		return &metricspb.Metric{Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{
			AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE}}}
	})
	hp := m.GetHistogram()
	sum := h.Sum
	hp.DataPoints = append(hp.DataPoints, &metricspb.HistogramDataPoint{Attributes: kv, StartTimeUnixNano: b.startOf(start),
		TimeUnixNano: b.now, Count: h.Count, Sum: &sum, BucketCounts: slices.Clone(h.Counts), ExplicitBounds: bounds})
}

func (b *builder) startOf(t time.Time) uint64 {
	if t.IsZero() {
		return b.start
	}
	return uint64(t.UnixNano())
}

// flowAttrs are a flow's labels.
func flowAttrs(k FlowKey) []*commonpb.KeyValue {
	addr := func(a interface{ String() string }, valid bool) string {
		if !valid {
			return k.Dir // other | unknown
		}
		return a.String()
	}
	port := ""
	if k.Port != 0 {
		port = strconv.Itoa(int(k.Port))
	}
	return attrs("local_addr", addr(k.Local, k.Local.IsValid()), "remote_addr", addr(k.Remote, k.Remote.IsValid()),
		"port", port, "direction", k.Dir, "comm", k.Comm)
}

func (b *builder) flow(k FlowKey, s *series, procfsMode bool) {
	kv := flowAttrs(k)
	if procfsMode {
		b.gauge(mEstablished, "{connection}", "TCP connections open now in this flow (procfs mode).", float64(s.Established), kv)
		return
	}
	b.counter(mConnections, "{connection}", "TCP connections established in this flow.", s.Start, float64(s.Connections), kv)
	b.counter(mFailed, "{connection}", "TCP connects that failed (SYN_SENT to CLOSE).", s.Start, float64(s.Failed), kv)
	b.counter(mClosed, "{connection}", "TCP connections closed.", s.Start, float64(s.Closed), kv)
	b.counter(mSent, "By", "Bytes sent on this flow's connections.", s.Start, float64(s.Sent), kv)
	b.counter(mReceived, "By", "Bytes received on this flow's connections.", s.Start, float64(s.Recv), kv)
	b.counter(mRetransmits, "{segment}", "TCP segments retransmitted.", s.Start, float64(s.Retransmits), kv)
	b.counter(mDuration, "s", "Summed lifetime of this flow's closed connections.", s.Start, s.DurationSum, kv)
	b.histogram(mRTT, "s", "Smoothed RTT of this flow's connections, sampled each poll while they live.", s.Start, rttBounds, s.RTT, kv)
	b.histogram(mConnectLatency, "s", "Time from SYN sent to established.", s.Start, connectBounds, s.Connect, kv)
	if !s.srttAt.IsZero() {
		b.gauge(mSRTT, "s", "The latest smoothed RTT seen on this flow.", s.SrttSeconds, kv)
	}
}

func (b *builder) probe(r probe.Result) {
	kv := attrs("kind", r.Kind, "target", r.Target)
	ok := 0.0
	if r.Success {
		ok = 1
	}
	b.gauge("outpost.probe.success", "", "1 when the last run of the probe succeeded, else 0.", ok, kv)
	b.gauge("outpost.probe.duration", "s", "How long the last run of the probe took.", r.Duration.Seconds(), kv)
	if r.Connect > 0 {
		b.gauge("outpost.probe.connect", "s", "Connect time of the last run.", r.Connect.Seconds(), kv)
	}
	if r.HTTPStatus != 0 {
		b.gauge("outpost.probe.http_status", "", "HTTP status code of the last run.", float64(r.HTTPStatus), kv)
		b.gauge("outpost.probe.ttfb", "s", "Time to the first response byte of the last run.", r.TTFB.Seconds(), kv)
	}
	if r.TLSHandshake > 0 {
		b.gauge("outpost.probe.tls_handshake", "s", "TLS handshake time of the last run.", r.TLSHandshake.Seconds(), kv)
	}
	if !r.CertExpiry.IsZero() {
		b.gauge("outpost.probe.cert_expiry", "s", "Unix time the server's certificate expires.", float64(r.CertExpiry.Unix()), kv)
	}
	if r.Kind == "dns" {
		b.gauge("outpost.probe.dns_answers", "", "Addresses the last DNS run returned.", float64(r.DNSAnswers), kv)
	}
	if r.Refused != "" {
		b.gauge("outpost.probe.refused", "", "1 when the SSRF guard refused the probe's target, with the rule.", 1,
			attrs("kind", r.Kind, "target", r.Target, "rule", r.Refused))
	}
}

// encode is the ExportMetricsServiceRequest of one resource, in the
// protobuf wire format (field 1, resource_metrics). It is written by hand
// so the agent does not link the OTLP collector package's gRPC gateway.
func (b *builder) encode(resource []*commonpb.KeyValue) ([]byte, error) {
	sm := &metricspb.ScopeMetrics{Scope: &commonpb.InstrumentationScope{Name: "outpost-agent"}}
	for _, name := range b.order {
		sm.Metrics = append(sm.Metrics, b.metrics[name])
	}
	rm := &metricspb.ResourceMetrics{Resource: &resourcepb.Resource{Attributes: resource}, ScopeMetrics: []*metricspb.ScopeMetrics{sm}}
	inner, err := proto.Marshal(rm)
	if err != nil {
		return nil, err
	}
	out := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(out, inner), nil
}
