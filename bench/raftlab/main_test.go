package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the lab briefly (the baseline variant with the stage trace),
// so a change to raft.Open, storage or the tuning knobs that breaks it
// fails `make test` rather than the next investigation.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node raft cluster; run without -short")
	}
	vs, err := pickVariants("baseline")
	if err != nil {
		t.Fatal(err)
	}
	// A smoke test checks that it runs, not how fast: no waiting for a
	// quiet machine.
	saved := guard
	guard.Attempts, guard.QuietWait = 1, 0
	t.Cleanup(func() { guard = saved })
	o := options{variants: vs, writers: []int{1, 4}, warmup: 50 * time.Millisecond, duration: 300 * time.Millisecond, repeat: 1, trace: true}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, o, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"| baseline | 1 |", "| baseline | 4 |", "Where a single writer's commit goes: baseline"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())
}
