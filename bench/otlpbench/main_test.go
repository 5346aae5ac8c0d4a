package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOTLPBenchRuns: the benchmark runs end to end and prints its
// figures (small, so the suite stays fast); with Debian's prometheus
// installed it compares too.
func TestOTLPBenchRuns(t *testing.T) {
	prom, _ := exec.LookPath("prometheus")
	if prom == "" {
		t.Log("prometheus is not installed (apt-get install prometheus): the comparison is not run")
	}
	var out strings.Builder
	if err := run(300, 2, 100, prom, &out); err != nil {
		t.Fatal(err)
	}
	want := []string{"samples/s per core", "heap per active series"}
	if prom != "" {
		want = append(want, "ratio outpost/prometheus")
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Fatalf("output lacks %q:\n%s", w, out.String())
		}
	}
}
