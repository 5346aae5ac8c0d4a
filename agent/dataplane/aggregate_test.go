package dataplane

import (
	"net/netip"
	"testing"
	"time"
)

func flowTo(i int) FlowKey {
	return FlowKey{Local: netip.MustParseAddr("10.0.0.1"), Remote: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Port: 443, Dir: "out", Comm: "curl"}
}

// TestTopKKeptExactlyRestFolded: with a budget of K flows, the K largest
// by bytes are exported with their exact counts, the rest add up in the
// other flow, every fold is counted, and nothing is lost overall.
func TestTopKKeptExactlyRestFolded(t *testing.T) {
	const k, n = 5, 50
	now := time.Unix(1000, 0)
	g := newAggregator(k, now)
	var total uint64
	for i := 1; i <= n; i++ {
		c := g.at(flowTo(i))
		c.Sent = uint64(i * 1000)
		c.Connections = 1
		total += c.Sent
	}
	g.flush(now)
	if len(g.series) != k {
		t.Fatalf("%d flows kept, want %d", len(g.series), k)
	}
	for i := n; i > n-k; i-- {
		s := g.series[flowTo(i)]
		if s == nil || s.Sent != uint64(i*1000) {
			t.Fatalf("flow %d (one of the top %d) not kept exactly: %+v", i, k, s)
		}
	}
	if g.folded != n-k || g.other.Connections != n-k {
		t.Fatalf("folded %d, other has %d connections; want %d", g.folded, g.other.Connections, n-k)
	}
	sum := g.other.Sent
	for _, s := range g.series {
		sum += s.Sent
	}
	if sum != total {
		t.Fatalf("kept + other = %d bytes, want %d", sum, total)
	}

	// Next interval: a new flow outgrows a kept one, which makes room
	// for it; kept flows that stay busy keep their cumulative counts.
	g.at(flowTo(n)).Sent = 1
	g.at(flowTo(1000)).Sent = 1 << 30
	g.flush(now.Add(time.Second))
	if s := g.series[flowTo(1000)]; s == nil || s.Sent != 1<<30 {
		t.Fatalf("a new top flow was not kept: %+v", s)
	}
	if s := g.series[flowTo(n)]; s == nil || s.Sent != n*1000+1 {
		t.Fatalf("a kept flow lost its cumulative count: %+v", s)
	}
	if len(g.series) != k {
		t.Fatalf("%d flows kept after eviction, want %d", len(g.series), k)
	}
	total += 1 + 1<<30

	// The evicted flow comes back on top: it goes on from its totals
	// (its counter never goes back), and everything still adds up.
	var evicted FlowKey
	for k := range g.tombs {
		evicted = k
	}
	before := g.tombs[evicted].Sent
	g.at(evicted).Sent = 1 << 40
	g.flush(now.Add(2 * time.Second))
	total += 1 << 40
	if s := g.series[evicted]; s == nil || s.Sent != before+1<<40 {
		t.Fatalf("a returning flow restarted: %+v, want %d", s, before+1<<40)
	}
	sum = g.other.Sent
	for _, s := range g.series {
		sum += s.Sent
	}
	for _, s := range g.tombs {
		sum += s.Sent
	}
	if sum != total {
		t.Fatalf("series + tombstones + other = %d bytes, want %d", sum, total)
	}
}

// TestProcfsFlowsRankedByOpenConnections: in procfs mode (no bytes) the
// budget keeps the flows with most open connections, and other reports
// the folded flows' open connections of this interval, not a sum over
// intervals.
func TestProcfsFlowsRankedByOpenConnections(t *testing.T) {
	now := time.Unix(1000, 0)
	g := newAggregator(2, now)
	for round := range 2 {
		for i := 1; i <= 5; i++ {
			g.at(flowTo(i)).Established = int64(i)
		}
		g.flush(now.Add(time.Duration(round) * time.Second))
		if g.series[flowTo(5)] == nil || g.series[flowTo(4)] == nil || g.series[flowTo(5)].Established != 5 {
			t.Fatalf("round %d: kept %v, want the flows with 5 and 4 connections", round, g.series)
		}
		if g.other.Established != 1+2+3 {
			t.Fatalf("round %d: other has %d open connections, want 6", round, g.other.Established)
		}
	}
}

func TestHistogramBuckets(t *testing.T) {
	var h histogram
	for _, v := range []float64{0.00005, 0.0001, 0.002, 5} {
		h.observe(rttBounds, v)
	}
	if h.Counts[0] != 2 || h.Counts[3] != 1 || h.Counts[len(rttBounds)] != 1 || h.Count != 4 {
		t.Fatalf("buckets %v", h.Counts)
	}
}
