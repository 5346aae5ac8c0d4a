package drill

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/dev"
)

// tlog is a Progress writer that sends each line to t.Log, so the
// drill's story shows only when a test fails (or with -v).
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestDrillOnDevRegion runs one round of each mode against a real 3-node
// region on loopback and checks the report: a first dispatch under the
// new lease, stale dispatches tried (transfer, isolate) and all refused,
// writes and probe dispatches acknowledged and none lost.
//
//	go test -race -run TestDrillOnDevRegion -v ./drill
func TestDrillOnDevRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node region and injects faults; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addr, token := startRegion(ctx, t)
	for _, mode := range []Mode{ModeTransfer, ModeIsolate, ModeStop} {
		t.Run(string(mode), func(t *testing.T) {
			start := time.Now()
			rep, err := Run(ctx, Config{Addr: addr, Token: token, Mode: mode, Rounds: 1,
				IsolateFor: 4 * time.Second, Progress: tlog{t}})
			if err != nil {
				t.Fatalf("drill: %v\nreport: %+v", err, rep)
			}
			t.Logf("%s drill took %.1fs: %+v", mode, time.Since(start).Seconds(), rep)
			if left := drillGoroutines(); len(left) > 0 {
				t.Errorf("Run returned with %d of its goroutines still running:\n%s", len(left), strings.Join(left, "\n\n"))
			}
			if rep.Mode != string(mode) || rep.Rounds != 1 || len(rep.PerRound) != 1 {
				t.Fatalf("report mode %q rounds %d per_round %d, want %q 1 1", rep.Mode, rep.Rounds, len(rep.PerRound), mode)
			}
			r0 := rep.PerRound[0]
			if rep.FirstDispatchMs.Max <= 0 || r0.FirstDispatchMs <= 0 {
				t.Errorf("first_dispatch_ms = %+v (round %d), want > 0", rep.FirstDispatchMs, r0.FirstDispatchMs)
			}
			if r0.LeaderElectedMs > r0.LeaseAcquiredMs || r0.LeaseAcquiredMs > r0.FirstDispatchMs {
				t.Errorf("times out of order: elected %dms, lease %dms, first dispatch %dms", r0.LeaderElectedMs, r0.LeaseAcquiredMs, r0.FirstDispatchMs)
			}
			if r0.NewToken <= r0.Token || r0.NewHolder == r0.Node || r0.NewHolder == "" {
				t.Errorf("new holder %q token %d after %q token %d", r0.NewHolder, r0.NewToken, r0.Node, r0.Token)
			}
			if rep.StaleAccepted != 0 {
				t.Errorf("stale_accepted = %d (%v): the fencing let a deposed holder's dispatch through", rep.StaleAccepted, r0.StaleAcceptedIDs)
			}
			if mode == ModeStop {
				if rep.StaleAttempted != 0 {
					t.Errorf("stale_attempted = %d in stop mode, want 0 (the holder is down)", rep.StaleAttempted)
				}
			} else if rep.StaleAttempted < minStale || rep.StaleRefused == 0 {
				t.Errorf("stale_attempted = %d, refused %d; want at least %d attempted and some refused", rep.StaleAttempted, rep.StaleRefused, minStale)
			}
			if rep.AckedWrites == 0 || rep.AckedWritesLost != 0 {
				t.Errorf("acked_writes = %d, lost %d (%v); want > 0 and 0", rep.AckedWrites, rep.AckedWritesLost, r0.LostKeys)
			}
			if rep.ProbesCommitted == 0 || rep.ProbesLost != 0 {
				t.Errorf("probes_committed = %d, lost %d (%v); want > 0 and 0", rep.ProbesCommitted, rep.ProbesLost, r0.LostProbeIDs)
			}
			if rep.Timings.LeaseDurationMs <= 0 || rep.Timings.HeartbeatTimeoutMs <= 0 {
				t.Errorf("timings not reported: %+v", rep.Timings)
			}
		})
	}
}

// startRegion starts a 3-node dev region on loopback, stopped when the
// test ends, and returns its first node's API URL and the admin token.
func startRegion(ctx context.Context, t *testing.T) (addr, token string) {
	t.Helper()
	r, err := dev.Start(ctx, dev.Options{Nodes: 3, HTTP: "127.0.0.1:0", Out: tlog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Bounded: a node whose Raft shutdown hangs (a replication
		// goroutine stuck, as in hashicorp/raft#612) must fail the test,
		// not stall it until the test binary's timeout.
		done := make(chan error, 1)
		go func() { done <- r.Stop(context.Background()) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stopping the dev region: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("stopping the dev region hung for 30s: a node's Raft shutdown did not return")
		}
	})
	tok, err := os.ReadFile(r.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	n1, _ := r.Node("n1")
	return n1.APIURL(), strings.TrimSpace(string(tok))
}

// drillGoroutines returns the stacks of goroutines running this
// package's code, other than tests.
func drillGoroutines() []string {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "drill.(*") && !strings.Contains(g, "drill.TestDrill") {
			out = append(out, g)
		}
	}
	return out
}
