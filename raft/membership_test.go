package raft_test

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/outpost-mesh/outpost/internal/testcluster"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/raft"
)

func suffrage(t *testing.T, tr *testcluster.Cluster, id string) (hraft.ServerSuffrage, bool) {
	t.Helper()
	leader := tr.Leader(5 * time.Second)
	conf, err := leader.Raft.Configuration()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range conf {
		if string(s.ID) == id {
			return s.Suffrage, true
		}
	}
	return 0, false
}

// A node that joins a running region by gossip is added as a non-voter,
// promoted by autopilot once stable, and removed after the dead-server
// grace period once it dies.
func TestJoinPromoteAndRemoveDead(t *testing.T) {
	tr := newRegion(t, 3)
	leader := tr.Leader(time.Second)
	for i := 0; i < 10; i++ {
		put(t, leader.Raft, fmt.Sprintf("k%d", i), "v")
	}
	n4 := tr.Start("n4")
	testcluster.WaitFor(t, 10*time.Second, "n4 in the configuration", func() bool {
		_, ok := suffrage(t, tr, "n4")
		return ok
	})
	testcluster.WaitFor(t, 20*time.Second, "n4 promoted to voter", func() bool {
		s, _ := suffrage(t, tr, "n4")
		return s == hraft.Voter
	})
	tr.WaitApplied(leader.Raft.AppliedIndex())
	if got, want := dumpKV(t, n4.Store), dumpKV(t, leader.Store); !reflect.DeepEqual(got, want) {
		t.Fatalf("joined node has %d keys, leader %d", len(got), len(want))
	}
	tr.Kill("n4")
	// Gossip marks it failed after a few seconds; the grace is 2s.
	testcluster.WaitFor(t, 45*time.Second, "dead n4 removed", func() bool {
		_, ok := suffrage(t, tr, "n4")
		return !ok
	})
	// min_quorum 3: the three remaining voters are never removed.
	conf, _ := tr.Leader(time.Second).Raft.Configuration()
	if len(conf) != 3 {
		t.Fatalf("configuration has %d servers after removal, want 3", len(conf))
	}
}

// A node with another region's CA but the right gossip key is seen by
// gossip, refused at the TLS handshake, never added, and the refusal is
// logged once rather than on every retry.
func TestForeignCANodeCannotJoin(t *testing.T) {
	tr := newRegion(t, 3)
	foreignCA, err := pki.NewCA(region)
	if err != nil {
		t.Fatal(err)
	}
	intruder := tr.StartWith("intruder", foreignCA)
	leader := tr.Leader(time.Second)
	testcluster.WaitFor(t, 10*time.Second, "gossip to see the intruder", func() bool {
		for _, m := range leader.Raft.Members() {
			if m.ID == "intruder" {
				return true
			}
		}
		return false
	})
	// Give the leader many discovery rounds (every 500ms) to try.
	time.Sleep(4 * time.Second)
	if _, ok := suffrage(t, tr, "intruder"); ok {
		t.Fatal("node with a foreign CA was added to the Raft configuration")
	}
	if n := leader.Logs.Count(slog.LevelWarn, "failed the mutual-TLS check"); n != 1 {
		t.Fatalf("leader logged the refusal %d times at warn level, want exactly 1", n)
	}
	if n := intruder.Logs.Count(slog.LevelWarn, "TLS handshake failed"); n < 1 {
		t.Fatalf("intruder never logged its failed handshakes at warn level")
	}
	// And it stays out of the region's data path: a write still commits
	// and the intruder applies nothing.
	put(t, leader.Raft, "still", "fine")
	if intruder.Raft.AppliedIndex() != 0 {
		t.Fatalf("intruder applied index %d, want 0", intruder.Raft.AppliedIndex())
	}
}

// A node that joins after the leader compacted its log receives the state
// as a snapshot (a bbolt image) and ends with the same state.
func TestSnapshotInstallOnNewNode(t *testing.T) {
	// Keep almost no log behind a snapshot, so a newcomer cannot replay.
	// Small WAL segments let compaction really drop the early entries.
	tuning := testcluster.FastTuning()
	tuning.TrailingLogs = 5
	tr := testcluster.New(t, testcluster.Config{Nodes: 3, Tuning: &tuning,
		Configure: func(_ *testcluster.Node, cfg *raft.Config) { raft.SetWALSegmentSize(cfg, 4096) }})
	leader := tr.Leader(time.Second)
	big := strings.Repeat("v", 1024) // fill several 4 KiB WAL segments
	for i := 0; i < 50; i++ {
		put(t, leader.Raft, fmt.Sprintf("pre%02d", i), big)
	}
	for _, n := range tr.Live() {
		if err := n.Raft.Snapshot(); err != nil {
			t.Fatalf("snapshot on %s: %v", n.ID, err)
		}
	}
	var last uint64
	for i := 0; i < 10; i++ {
		last = put(t, leader.Raft, fmt.Sprintf("post%02d", i), "w").Index
	}
	n4 := tr.Start("n4")
	testcluster.WaitFor(t, 20*time.Second, "n4 to catch up", func() bool { return n4.Raft.AppliedIndex() >= last })
	if got, want := dumpKV(t, n4.Store), dumpKV(t, leader.Store); !reflect.DeepEqual(got, want) {
		t.Fatalf("n4 has %d keys after snapshot install, leader %d", len(got), len(want))
	}
	if n := n4.Logs.Count(slog.LevelInfo, "state restored from snapshot"); n != 1 {
		t.Fatalf("n4 restored from a snapshot %d times, want 1 (did it replay the log instead?)", n)
	}
}

// A voter stopped gracefully (it leaves gossip and hands off leadership)
// keeps its seat when it comes back within the dead-server grace.
func TestGracefulRestartKeepsSeat(t *testing.T) {
	tuning := testcluster.FastTuning()
	tuning.DeadServerGrace = 15 * time.Second
	tr := testcluster.New(t, testcluster.Config{Nodes: 4, Tuning: &tuning})
	leader := tr.Leader(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.Raft.Shutdown(ctx); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
	leader.Store.Close()
	leader.Raft = nil
	if n := leader.Logs.Count(slog.LevelInfo, "handed leadership to another node"); n != 1 {
		t.Fatalf("the leader did not hand off leadership before stopping")
	}
	next := tr.Leader(10 * time.Second)
	testcluster.WaitFor(t, 10*time.Second, "gossip to report the node as left, not failed", func() bool {
		for _, m := range next.Raft.Members() {
			if m.ID == leader.ID {
				return m.Status == raft.MemberLeft
			}
		}
		return false
	})
	// Autopilot runs every second; give it several rounds to misbehave.
	time.Sleep(5 * time.Second)
	if s, ok := suffrage(t, tr, leader.ID); !ok || s != hraft.Voter {
		t.Fatalf("%s lost its voter seat within the grace period (present %v)", leader.ID, ok)
	}
	last := put(t, next.Raft, "during-restart", "x").Index
	back := tr.Restart(leader.ID)
	testcluster.WaitFor(t, 10*time.Second, "restarted node to catch up", func() bool { return back.Raft.AppliedIndex() >= last })
	if s, ok := suffrage(t, tr, leader.ID); !ok || s != hraft.Voter {
		t.Fatalf("%s is not a voter after its restart", leader.ID)
	}
}

// A node holding a valid certificate of this region for node n2 but
// gossiping as n4 is refused: the leader checks that the certificate at an
// advertised Raft address names the node that advertised it.
func TestImpostorNodeCannotJoin(t *testing.T) {
	tr := newRegion(t, 3)
	tr.CertIDs = map[string]string{"n4": "n2"}
	tr.Start("n4")
	leader := tr.Leader(time.Second)
	testcluster.WaitFor(t, 10*time.Second, "the leader to refuse n4", func() bool {
		return leader.Logs.Count(slog.LevelWarn, "failed the mutual-TLS check") > 0
	})
	time.Sleep(2 * time.Second)
	if _, ok := suffrage(t, tr, "n4"); ok {
		t.Fatal("a node with another node's certificate was added to the region")
	}
	if n := leader.Logs.Count(slog.LevelWarn, "certificate for \"n2\""); n != 1 {
		t.Fatalf("refusal naming the certificate's node logged %d times, want 1", n)
	}
}
