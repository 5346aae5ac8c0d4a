package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/internal/promreg"
)

type metrics struct {
	reg     prometheus.Registerer
	samples prometheus.Counter
	shed    *prometheus.CounterVec
	all     []prometheus.Collector
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{reg: reg,
		samples: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_telemetry_samples_total",
			Help: "Telemetry samples stored (committed to the TSDB's WAL)."}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_telemetry_samples_shed_total",
			Help: "Telemetry samples not stored, by reason (agent_series_limit, tenant_series_limit, out_of_order, too_old, duplicate, out_of_window, label_limit)."}, []string{"reason"}),
	}
	for _, r := range ShedReasons {
		m.shed.WithLabelValues(r)
	}
	m.all = []prometheus.Collector{m.samples, m.shed}
	if reg == nil {
		return m, nil
	}
	if err := promreg.Register(reg, "telemetry store's", m.all...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) unregister() {
	if m.reg != nil {
		promreg.Unregister(m.reg, m.all...)
	}
}
