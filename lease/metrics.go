package lease

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/internal/promreg"
)

// Why a holder stopped dispatching, the reason label of
// outpost_lease_self_fences_total.
const (
	fenceStopping  = "stopping"
	fenceDeposed   = "deposed"
	fenceExpired   = "expired"
	fenceTakenOver = "taken_over"
	fenceRenewal   = "renewal_timeout"
)

// metrics are the lease's: what an operator alerts on when dispatching
// stops, or when two holders would be possible.
type metrics struct {
	acquisitions prometheus.Counter
	renewals     *prometheus.CounterVec
	fences       *prometheus.CounterVec
	stale        prometheus.Counter
	wait         prometheus.Histogram
	all          []prometheus.Collector
}

func newMetrics(m *Manager) *metrics {
	mt := &metrics{
		acquisitions: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_lease_acquisitions_total",
			Help: "Dispatch leases this node acquired (each with a new fencing token)."}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_lease_renewals_total",
			Help: "Lease renewals this node sent, by result (ok, failed: retried or fenced)."}, []string{"result"}),
		fences: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_lease_self_fences_total",
			Help: "Times this node stopped dispatching on its own, by reason (deposed, expired, taken_over, renewal_timeout, stopping)."}, []string{"reason"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_lease_stale_refusals_total",
			Help: "Dispatches this node issued that the region refused for a stale fencing token (a holder that had lost the lease)."}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "outpost_lease_wait_seconds",
			Help:    "How long a new leader waited out the previous holder's lease before acquiring it.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 10)}),
	}
	for _, r := range []string{"ok", "failed"} {
		mt.renewals.WithLabelValues(r)
	}
	for _, r := range []string{fenceStopping, fenceDeposed, fenceExpired, fenceTakenOver, fenceRenewal} {
		mt.fences.WithLabelValues(r)
	}
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outpost_lease_held",
		Help: "1 while this node holds the dispatch lease and may dispatch (on its own clock); sum over a region's nodes is 0 or 1."},
		func() float64 {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.held && m.clock.Now().Before(m.validUntil) {
				return 1
			}
			return 0
		})
	token := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outpost_lease_token",
		Help: "The fencing token this node holds, or last held (0: never held)."},
		func() float64 {
			m.mu.Lock()
			defer m.mu.Unlock()
			return float64(m.token)
		})
	mt.all = []prometheus.Collector{mt.acquisitions, mt.renewals, mt.fences, mt.stale, mt.wait, held, token}
	return mt
}

// RegisterMetrics registers the lease's metrics on reg; on an error none
// stays registered.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) error {
	return promreg.Register(reg, "lease", m.m.all...)
}
