package query

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/internal/promreg"
)

type metrics struct {
	duration *prometheus.HistogramVec
	refused  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "outpost_query_duration_seconds",
			Help:    "Time to answer a query API request, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"endpoint"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_query_errors_total",
			Help: "Query API requests answered with an error, by endpoint and type (bad_data, timeout, execution, unavailable)."}, []string{"endpoint", "type"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := promreg.Register(reg, "query API's", m.duration, m.refused); err != nil {
		return nil, err
	}
	return m, nil
}
