package remotewrite

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/internal/promreg"
)

// Why samples left the queue unsent, the reason label of
// outpost_remote_write_samples_dropped_total.
const (
	DropQueueFull  = "queue_full"  // the oldest segment dropped to make room
	DropRejected   = "rejected"    // the store answered 4xx (not 429)
	DropCorrupt    = "corrupt"     // a record that read back undecodable
	DropWriteError = "write_error" // the queue could not write (disk full, closed)
)

// Why a send failed and will be retried, the kind label of
// outpost_remote_write_send_failures_total; "rejected" is not retried.
const (
	FailNetwork  = "network"
	FailServer   = "server_error" // 5xx
	FailThrottle = "throttled"    // 429
	FailRejected = "rejected"     // other 4xx
)

var (
	dropReasons = []string{DropQueueFull, DropRejected, DropCorrupt, DropWriteError}
	failKinds   = []string{FailNetwork, FailServer, FailThrottle, FailRejected}
)

type metrics struct {
	reg          prometheus.Registerer
	queueBytes   prometheus.Gauge
	queueSamples prometheus.Gauge
	sent         prometheus.Counter
	dropped      *prometheus.CounterVec
	failures     *prometheus.CounterVec
	lastSuccess  prometheus.Gauge
	duration     prometheus.Histogram
	all          []prometheus.Collector
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{reg: reg,
		queueBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "outpost_remote_write_queue_bytes",
			Help: "Bytes of the remote_write queue's segments on disk."}),
		queueSamples: prometheus.NewGauge(prometheus.GaugeOpts{Name: "outpost_remote_write_queue_samples",
			Help: "Samples in the remote_write queue not yet sent."}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_remote_write_samples_sent_total",
			Help: "Samples the remote_write store accepted (2xx)."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_remote_write_samples_dropped_total",
			Help: "Samples that left the remote_write queue unsent, by reason (queue_full, rejected, corrupt, write_error)."}, []string{"reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_remote_write_send_failures_total",
			Help: "Failed remote_write requests, by kind (network, server_error, throttled: retried; rejected: dropped)."}, []string{"kind"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "outpost_remote_write_last_success_timestamp_seconds",
			Help: "Unix time of the last request the remote_write store accepted (0: none since start)."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "outpost_remote_write_send_duration_seconds",
			Help: "Duration of one remote_write request, whatever its outcome.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}
	for _, r := range dropReasons {
		m.dropped.WithLabelValues(r)
	}
	for _, k := range failKinds {
		m.failures.WithLabelValues(k)
	}
	m.all = []prometheus.Collector{m.queueBytes, m.queueSamples, m.sent, m.dropped, m.failures, m.lastSuccess, m.duration}
	if reg == nil {
		return m, nil
	}
	if err := promreg.Register(reg, "remote_write queue's", m.all...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) drop(reason string, samples int64) {
	if samples > 0 {
		m.dropped.WithLabelValues(reason).Add(float64(samples))
	}
}

func (m *metrics) unregister() {
	if m.reg != nil {
		promreg.Unregister(m.reg, m.all...)
	}
}
