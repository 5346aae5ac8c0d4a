package raft

import (
	"strings"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/internal/promreg"
)

// metrics are the region's self-metrics, registered on the injected
// registerer and removed again on Close.
type metrics struct {
	reg           prometheus.Registerer
	collectors    []prometheus.Collector
	applyDuration prometheus.Histogram
	batchSize     prometheus.Histogram
	syncDuration  prometheus.Histogram
	applied       prometheus.Counter
	leaderChanges prometheus.Counter
	tlsFailures   prometheus.Counter
	// autopilot's last verdict, exported only while this node leads
	// (autopilot runs on the leader alone; a follower's value would be a
	// stale or zero one that an alert would fire on).
	apMu        sync.Mutex
	apKnown     bool
	apHealthy   bool
	apTolerance int
}

func newMetrics(reg prometheus.Registerer, r *Region) (*metrics, error) {
	m := &metrics{reg: reg}
	m.applyDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "outpost_raft_apply_duration_seconds", Help: "Time from a write's submission to its result (commit on a quorum and FSM apply on the leader).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "outpost_raft_fsm_batch_entries", Help: "Entries applied per FSM batch (one ApplyBatch into the state file's batch transaction each).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 10),
	})
	m.syncDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "outpost_raft_fsm_sync_duration_seconds", Help: "Time to sync the state file to disk (every raft.fsm_sync_interval under writes, and before each snapshot).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	m.applied = prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_raft_fsm_applied_entries_total", Help: "Log entries applied to the FSM."})
	m.leaderChanges = prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_raft_leader_changes_total", Help: "Leader changes this node observed (including loss of a leader)."})
	m.tlsFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_raft_tls_handshake_failures_total", Help: "Node-to-node TLS handshakes that failed (peers without this region's CA)."})
	states := []hraft.RaftState{hraft.Follower, hraft.Candidate, hraft.Leader, hraft.Shutdown}
	stateGauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "outpost_raft_state", Help: "1 for this node's current Raft state."}, []string{"state"})
	m.collectors = append(m.collectors, m.applyDuration, m.batchSize, m.syncDuration, m.applied, m.leaderChanges, m.tlsFailures,
		&autopilotCollector{m: m, r: r,
			healthy: prometheus.NewDesc("outpost_autopilot_healthy",
				"1 when autopilot judges every server healthy. Exported by the leader only: alert on max() over the region's nodes.", nil, nil),
			tolerance: prometheus.NewDesc("outpost_autopilot_failure_tolerance",
				"Voters the region can lose and keep quorum. Exported by the leader only.", nil, nil)},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outpost_raft_applied_index", Help: "Last log index applied to this node's FSM."},
			func() float64 { return float64(r.fsm.applied.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outpost_raft_durable_index", Help: "Last log index whose effect on this node's state file is synced to disk."},
			func() float64 { return float64(r.fsm.durable.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outpost_fsm_size_bytes", Help: "Size of the bbolt state file."},
			func() float64 { return float64(r.store.Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outpost_gossip_members", Help: "Live gossip members this node sees, itself included."},
			func() float64 {
				if r.ml == nil {
					return 0
				}
				return float64(r.ml.NumMembers())
			}),
		&stateCollector{vec: stateGauge, states: states, r: r},
	)
	if err := promreg.Register(reg, "region's", m.collectors...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) observeBatch(_ uint64, n int) {
	m.batchSize.Observe(float64(n))
	m.applied.Add(float64(n))
}

func (m *metrics) observeSync(d time.Duration) { m.syncDuration.Observe(d.Seconds()) }

func (m *metrics) setAutopilot(healthy bool, tolerance int) {
	m.apMu.Lock()
	defer m.apMu.Unlock()
	m.apKnown, m.apHealthy, m.apTolerance = true, healthy, tolerance
}

// autopilotCollector exports autopilot's verdict while this node leads.
type autopilotCollector struct {
	m                  *metrics
	r                  *Region
	healthy, tolerance *prometheus.Desc
}

func (c *autopilotCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.healthy; ch <- c.tolerance }
func (c *autopilotCollector) Collect(ch chan<- prometheus.Metric) {
	if c.r.raft == nil || c.r.raft.State() != hraft.Leader {
		return
	}
	c.m.apMu.Lock()
	known, healthy, tol := c.m.apKnown, c.m.apHealthy, c.m.apTolerance
	c.m.apMu.Unlock()
	if !known {
		return
	}
	v := 0.0
	if healthy {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, v)
	ch <- prometheus.MustNewConstMetric(c.tolerance, prometheus.GaugeValue, float64(tol))
}

func (m *metrics) unregister() { promreg.Unregister(m.reg, m.collectors...) }

// stateCollector sets outpost_raft_state at scrape time.
type stateCollector struct {
	vec    *prometheus.GaugeVec
	states []hraft.RaftState
	r      *Region
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	cur := hraft.Shutdown
	if c.r.raft != nil {
		cur = c.r.raft.State()
	}
	for _, s := range c.states {
		v := 0.0
		if s == cur {
			v = 1
		}
		c.vec.WithLabelValues(strings.ToLower(s.String())).Set(v)
	}
	c.vec.Collect(ch)
}
