package telemetry

import (
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// Sink takes the samples of every committed request besides the TSDB: in
// a node with telemetry.remote_write on, the remote_write queue
// (storage/remotewrite, which the node wires; this package does not
// import it).
type Sink interface {
	// Enqueue takes the samples a request of tenantID stored, one series
	// per sample, labels as stored (tenant, agent and host included). It
	// is called after the TSDB commit, from the request's goroutine,
	// possibly from many at once: it must not wait on the network, and
	// it must not keep series after it returns.
	Enqueue(tenantID string, series []prompb.TimeSeries)
}

// SetSink sets where committed samples also go. Call it before the store
// takes requests; without a sink, appends collect nothing.
func (d *DB) SetSink(s Sink) { d.sink = s }

// accept counts a stored sample and, with a sink, keeps it for Commit.
func (a *Appender) accept(ls labels.Labels, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram) {
	a.Accepted++
	if a.d.sink == nil {
		return
	}
	ts := prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil)}
	switch {
	case h != nil:
		ts.Histograms = []prompb.Histogram{prompb.FromIntHistogram(t, h)}
	case fh != nil:
		ts.Histograms = []prompb.Histogram{prompb.FromFloatHistogram(t, fh)}
	default:
		ts.Samples = []prompb.Sample{{Value: v, Timestamp: t}}
	}
	a.sunk = append(a.sunk, ts)
}

// toSink hands the committed request's samples to the sink.
func (a *Appender) toSink() {
	if a.d.sink != nil && len(a.sunk) > 0 {
		a.d.sink.Enqueue(a.src.TenantID, a.sunk)
	}
	a.sunk = nil
}
