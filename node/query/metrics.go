package query

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/internal/promreg"
)

type metrics struct {
	duration *prometheus.HistogramVec
	refused  *prometheus.CounterVec
	// nodeReads counts remote-reads this node served to other nodes;
	// peerReads those it made, by node and status.
	nodeReads *prometheus.CounterVec
	peerReads *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "outpost_query_duration_seconds",
			Help:    "Time to answer a query API request, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"endpoint"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_query_errors_total",
			Help: "Query API requests answered with an error, by endpoint and type (bad_data, timeout, execution, unavailable)."}, []string{"endpoint", "type"}),
		nodeReads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_query_node_reads_served_total",
			Help: "Remote-reads served to the region's other nodes, by result (ok, bad_request, refused, busy, failed)."}, []string{"result"}),
		peerReads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_query_peer_reads_total",
			Help: "Remote-reads of other nodes' stores for region-wide queries, by node and status (ok, timeout, unreachable, failed)."}, []string{"node", "status"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := promreg.Register(reg, "query API's", m.duration, m.refused, m.nodeReads, m.peerReads); err != nil {
		return nil, err
	}
	return m, nil
}
