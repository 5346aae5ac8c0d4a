package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestQueryBenchRuns: the benchmark generates, compacts and measures end
// to end and prints its figures (small, so the suite stays fast).
func TestQueryBenchRuns(t *testing.T) {
	var out strings.Builder
	c := config{series: 40, agents: 4, span: 4 * time.Hour, interval: time.Minute, runs: 2, nodes: 1}
	if err := run(context.Background(), c, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, w := range []string{"samples/s", "compacted by the TSDB", "instant: p99 RTT by host", "range: retransmits/s by host", "p99"} {
		if !strings.Contains(out.String(), w) {
			t.Fatalf("output lacks %q:\n%s", w, out.String())
		}
	}
	t.Log(out.String())
}

// TestQueryBenchRegion: with -nodes 3 the benchmark also measures a
// region of three nodes through one node's API, region-wide (every node
// ok, the answers equal the one-node store's) and that node's share
// alone, and says that the region-wide figures leave out the node port's
// TLS.
func TestQueryBenchRegion(t *testing.T) {
	var out strings.Builder
	c := config{series: 40, agents: 4, span: 4 * time.Hour, interval: time.Minute, runs: 2, nodes: 3}
	if err := run(context.Background(), c, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, w := range []string{"local (1 node", "region-wide (3 nodes", "peer read p50", "TLS is NOT included", "check: every region-wide answer listed all nodes ok",
		"node-0's share alone (scope=node", "agent-00 node-0→node-1"} {
		if !strings.Contains(out.String(), w) {
			t.Fatalf("output lacks %q:\n%s", w, out.String())
		}
	}
	t.Log(out.String())
}

// TestQueryBenchNodesBounded: -nodes must be at least 1 and at most
// -agents (a node without agents would hold nothing).
func TestQueryBenchNodesBounded(t *testing.T) {
	for _, n := range []int{0, 5} {
		c := config{series: 40, agents: 4, span: 4 * time.Hour, interval: time.Minute, runs: 2, nodes: n}
		if err := run(context.Background(), c, new(strings.Builder)); err == nil || !strings.Contains(err.Error(), "-nodes") {
			t.Fatalf("run with -nodes %d: %v, want a refusal naming -nodes", n, err)
		}
	}
}

// TestCompareCatchesALostNode: answers that differ from the one-node
// store's (a node's series missing) fail the check.
func TestCompareCatchesALostNode(t *testing.T) {
	qs := []benchQuery{{name: "q"}}
	one := []result{{series: 30, samples: 900, sum: checksum{Series: 3, Values: 90, Sum: 12.5}}}
	if err := compare(new(strings.Builder), qs, one, one); err != nil {
		t.Fatalf("equal results: %v", err)
	}
	for _, region := range [][]result{
		{{series: 20, samples: 600, sum: checksum{Series: 2, Values: 60, Sum: 8}}},
		{{series: 30, samples: 900, sum: checksum{Series: 3, Values: 90, Sum: 8}}},
	} {
		if err := compare(new(strings.Builder), qs, one, region); err == nil {
			t.Errorf("%+v passed as equal to %+v", region, one)
		}
	}
}
