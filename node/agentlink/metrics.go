package agentlink

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/internal/promreg"
)

type metrics struct {
	connects          prometheus.Counter
	refused           *prometheus.CounterVec
	shed              *prometheus.CounterVec
	violations        *prometheus.CounterVec
	badMessages       prometheus.Counter
	messages          prometheus.Counter
	pushes            prometheus.Counter
	fanOut            prometheus.Histogram
	flags             *prometheus.CounterVec
	presenceWrites    prometheus.Counter
	presenceDropped   prometheus.Counter
	presenceCoalesced prometheus.Counter
	messagesShed      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		connects: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_agent_connections_total", Help: "Agent control links accepted."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_agent_connections_refused_total",
			Help: "Agent connections refused, by reason (revoked, retired, unknown_certificate, no_certificate, not_websocket, full, no_leader; in the TLS handshake: foreign_ca, invalid_certificate, handshake_timeout, handshake_failed)."}, []string{"reason"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_agent_port_shed_total",
			Help: "Connections to the agent port closed unserved because a cap was reached: handshakes (TLS handshakes in flight) or unauthenticated (open connections without a client certificate)."}, []string{"reason"}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_agent_protocol_violations_total",
			Help: "Agent connections closed for a protocol violation, by kind."}, []string{"violation"}),
		badMessages: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_agent_bad_messages_total", Help: "Undecodable OpAMP messages from agents."}),
		messages:    prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_agent_messages_total", Help: "OpAMP messages received from agents."}),
		pushes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_agent_config_pushes_total", Help: "Dispatches pushed to agents as remote config."}),
		fanOut: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "outpost_agent_dispatch_fanout_seconds",
			Help: "Time to push one committed dispatch to every selected agent attached here.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		flags: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_agent_flags_total",
			Help: "Agent certificates flagged (two_addresses, new_address)."}, []string{"flag"}),
		presenceWrites:  prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_agent_presence_changes_total", Help: "Presence changes recorded through Raft."}),
		presenceDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_agent_presence_dropped_total", Help: "Presence changes dropped because the queue was full."}),
		presenceCoalesced: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_agent_presence_coalesced_total",
			Help: "Agent reports folded into a report of the same link still queued (only the latest is recorded)."}),
		messagesShed: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_agent_messages_shed_total",
			Help: "OpAMP messages not processed because their agent exceeded agents.max_message_rate."}),
	}
	if reg == nil {
		return m, nil
	}
	all := []prometheus.Collector{m.connects, m.refused, m.shed, m.violations, m.badMessages, m.messages, m.pushes, m.fanOut, m.flags, m.presenceWrites, m.presenceDropped, m.presenceCoalesced, m.messagesShed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outpost_agents_connected", Help: "Agent control links open on this node."},
			func() float64 { return float64(s.Count()) })}
	if err := promreg.Register(reg, "agent port's", all...); err != nil {
		return nil, err
	}
	return m, nil
}
