package dataplane

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
)

// FlowKey is one exported flow: this host's address, the peer's, the
// server port (the peer's for a connection this host made, this host's
// for one it accepted), the direction and the process. The client's
// ephemeral port is not part of it, so repeated connections between the
// same endpoints add up in one flow.
type FlowKey struct {
	Local, Remote netip.Addr
	Port          uint16
	Dir           string // out | in | other | unknown
	Comm          string
}

// otherKey is the bucket that flows outside the top-K fold into.
var otherKey = FlowKey{Dir: "other", Comm: "other"}

// unknownKey takes counters of connections whose identity was lost (the
// kernel's close event was dropped before the agent saw the connection).
var unknownKey = FlowKey{Dir: "unknown", Comm: "unknown"}

// Histogram bounds, in seconds.
var (
	rttBounds     = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}
	connectBounds = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3}
)

// histogram is a fixed-bucket histogram (counts per bucket, the last
// one +Inf).
type histogram struct {
	Counts []uint64
	Sum    float64
	Count  uint64
}

func (h *histogram) observe(bounds []float64, v float64) {
	if h.Counts == nil {
		h.Counts = make([]uint64, len(bounds)+1)
	}
	i, _ := slices.BinarySearch(bounds, v)
	h.Counts[i]++
	h.Sum += v
	h.Count++
}

func (h *histogram) add(o histogram) {
	if o.Count == 0 {
		return
	}
	if h.Counts == nil {
		h.Counts = make([]uint64, len(o.Counts))
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.Sum += o.Sum
	h.Count += o.Count
}

// counters are one flow's counts: deltas while pending, cumulative once
// exported.
type counters struct {
	Connections, Failed, Closed uint64
	Sent, Recv, Retransmits     uint64
	Established                 int64 // procfs mode: connections open now (a gauge)
	DurationSum                 float64
	RTT, Connect                histogram
	SrttSeconds                 float64 // latest smoothed RTT seen (a gauge)
	srttAt                      time.Time
}

func (c *counters) add(o *counters) {
	c.Connections += o.Connections
	c.Failed += o.Failed
	c.Closed += o.Closed
	c.Sent += o.Sent
	c.Recv += o.Recv
	c.Established += o.Established
	c.Retransmits += o.Retransmits
	c.DurationSum += o.DurationSum
	c.RTT.add(o.RTT)
	c.Connect.add(o.Connect)
	if o.srttAt.After(c.srttAt) {
		c.SrttSeconds, c.srttAt = o.SrttSeconds, o.srttAt
	}
}

// score ranks flows for the budget: bytes, or in procfs mode (no bytes)
// open connections.
func (c *counters) score() uint64 { return c.Sent + c.Recv + uint64(max(c.Established, 0)) }

// series is an exported flow: cumulative counters since Start.
type series struct {
	counters
	Start    time.Time
	recent   uint64 // bytes in the last interval it was updated
	lastSeen time.Time
}

// aggregator folds per-interval deltas into at most max exported flows
// plus the other bucket. Each interval the flows are ranked by bytes; the
// top max are kept exactly (a kept flow stays kept while it is among
// them, or while it has room), and the rest add to "other", counted in
// folded. A kept flow that is evicted leaves a tombstone with its
// totals: if it comes back it goes on from them, so its counter never
// goes back (what it carried meanwhile is in other). Totals over all
// series, tombstones and other are exact; only when more than
// tombstoneFactor×max flows were evicted does the oldest tombstone go,
// and that flow, if it returns, starts again from zero with a new start
// time.
type aggregator struct {
	max     int
	pending map[FlowKey]*counters
	series  map[FlowKey]*series
	tombs   map[FlowKey]*series
	other   *series
	folded  uint64 // flow-intervals folded into other
	start   time.Time
}

// tombstoneFactor bounds the tombstones: max×tombstoneFactor flows.
const tombstoneFactor = 4

func newAggregator(max int, now time.Time) *aggregator {
	return &aggregator{max: max, pending: map[FlowKey]*counters{}, series: map[FlowKey]*series{},
		tombs: map[FlowKey]*series{}, other: &series{Start: now}, start: now}
}

// at returns the pending counters of k.
func (g *aggregator) at(k FlowKey) *counters {
	c := g.pending[k]
	if c == nil {
		c = &counters{}
		g.pending[k] = c
	}
	return c
}

// flush moves the pending deltas into the exported series.
func (g *aggregator) flush(now time.Time) {
	keys := make([]FlowKey, 0, len(g.pending))
	for k := range g.pending {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b FlowKey) int {
		return cmp.Or(cmp.Compare(g.pending[b].score(), g.pending[a].score()), compareKeys(a, b))
	})
	g.other.Established = 0 // a gauge: this interval's folded flows
	top := keys[:min(len(keys), g.max)]
	inTop := make(map[FlowKey]bool, len(top))
	for _, k := range top {
		inTop[k] = true
	}
	for _, k := range keys {
		d := g.pending[k]
		s := g.series[k]
		if s == nil && inTop[k] {
			if len(g.series) >= g.max {
				g.evict(inTop)
			}
			if s = g.tombs[k]; s != nil {
				delete(g.tombs, k)
			} else {
				s = &series{Start: now}
			}
			g.series[k] = s
		}
		if s == nil {
			g.other.add(d)
			g.other.lastSeen = now
			g.folded++
			continue
		}
		s.add(d)
		s.Established = d.Established
		s.recent, s.lastSeen = d.score(), now
	}
	// A procfs gauge of a flow with no open connection now is zero.
	for k, s := range g.series {
		if _, ok := g.pending[k]; !ok {
			s.Established, s.recent = 0, 0
		}
	}
	clear(g.pending)
}

// evict drops the kept flow outside this interval's top with the least
// recent traffic, the least recently updated first among equals.
func (g *aggregator) evict(inTop map[FlowKey]bool) {
	var victim FlowKey
	var vs *series
	for k, s := range g.series {
		if inTop[k] {
			continue
		}
		if vs == nil || s.recent < vs.recent || s.recent == vs.recent && s.lastSeen.Before(vs.lastSeen) ||
			s.recent == vs.recent && s.lastSeen.Equal(vs.lastSeen) && compareKeys(k, victim) < 0 {
			victim, vs = k, s
		}
	}
	if vs == nil {
		return
	}
	delete(g.series, victim)
	vs.Established, vs.recent = 0, 0
	g.tombs[victim] = vs
	if len(g.tombs) > tombstoneFactor*g.max {
		var oldest FlowKey
		var os *series
		for k, s := range g.tombs {
			if os == nil || s.lastSeen.Before(os.lastSeen) || s.lastSeen.Equal(os.lastSeen) && compareKeys(k, oldest) < 0 {
				oldest, os = k, s
			}
		}
		delete(g.tombs, oldest)
	}
}

func compareKeys(a, b FlowKey) int {
	return cmp.Or(a.Local.Compare(b.Local), a.Remote.Compare(b.Remote), cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.Dir, b.Dir), cmp.Compare(a.Comm, b.Comm))
}
