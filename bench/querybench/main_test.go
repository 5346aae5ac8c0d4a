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

// TestQueryBenchOneNodeOnly: -nodes other than 1 is refused with the
// reason, not measured as if local.
func TestQueryBenchOneNodeOnly(t *testing.T) {
	c := config{series: 40, agents: 4, span: 4 * time.Hour, interval: time.Minute, runs: 2, nodes: 3}
	if err := run(context.Background(), c, new(strings.Builder)); err == nil || !strings.Contains(err.Error(), "-nodes 3") {
		t.Fatalf("run with -nodes 3: %v, want a refusal naming it", err)
	}
}
