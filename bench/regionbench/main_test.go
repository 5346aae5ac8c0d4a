package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the benchmark binary when the
// smoke test starts node processes (os.Executable is the test binary).
func TestMain(m *testing.M) {
	if path := os.Getenv(nodeEnv); path != "" {
		nodeMain(path)
	}
	os.Exit(m.Run())
}

// TestSmoke runs the whole benchmark briefly, so a change to raft.Open or
// the etcd client that breaks it fails here rather than in `make bench`.
// The etcd half runs when an etcd binary is installed.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes and three etcd members; run without -short")
	}
	cfg := config{
		writers: []int{1, 4}, warmup: 100 * time.Millisecond, duration: 300 * time.Millisecond,
		failoverRounds: 1, failoverAttempt: 100 * time.Millisecond,
		etcd:        etcdOptions{Heartbeat: 100 * time.Millisecond, Election: time.Second, PeerTLS: true},
		etcdClients: 1, dir: t.TempDir(),
		guard: defaultGuard,
	}
	cfg.guard.Attempts, cfg.guard.QuietWait = 1, 0 // a smoke test checks that it runs, not how fast
	if _, _, err := findEtcd(""); err != nil {
		t.Logf("checking the Outpost half only: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, cfg, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"| writers |", "|       1 |", "|       4 |", "| new leader elected |", "| first write acknowledged |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(out.String(), "| writers | outpost in-process, nodes |") || strings.Contains(out.String(), "|       1 | – |") {
		t.Errorf("no CPU per write for the in-process nodes:\n%s", out.String())
	}
	if strings.Contains(out.String(), "WARNING: ") && strings.Contains(out.String(), "failed writes") {
		t.Errorf("writes failed:\n%s", out.String())
	}
	t.Log(out.String())
}
