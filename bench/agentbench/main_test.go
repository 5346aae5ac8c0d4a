package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmoke runs the benchmark briefly against a freshly built outpost
// binary, so a change that breaks it (an enrollment limit that refuses a
// burst of 64 from one address, a changed route) fails `make test` rather
// than `make bench` weeks later.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds outpost and starts a dev region; run without -short")
	}
	bin := filepath.Join(t.TempDir(), "outpost")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/outpost-mesh/outpost/cmd/outpost").CombinedOutput(); err != nil {
		t.Fatalf("building outpost: %v\n%s", err, out)
	}
	var out bytes.Buffer
	// 128 agents, 64 enrolling at a time from one address: the burst the
	// enrollment limiter refused.
	if err := run(128, 2, 64, bin, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"| agents connected to one node | 128 |", "| node Go heap + stacks per agent |", "| full fan-out"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())
}
