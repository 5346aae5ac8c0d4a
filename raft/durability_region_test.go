package raft_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/testcluster"
	"github.com/outpost-mesh/outpost/internal/testfault"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// fileIndex reads the last applied index of a state file not in use.
func fileIndex(t *testing.T, path, region string) uint64 {
	t.Helper()
	s, err := storage.Open(path, storage.Options{Region: region})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.LastApplied()
}

// TestStateFileSyncsOnIntervalAndSize: batches commit without fsync, and
// the state file catches up on disk within the interval, or at once when
// the entries since the last sync reach fsm_sync_entries.
func TestStateFileSyncsOnIntervalAndSize(t *testing.T) {
	t.Run("interval", func(t *testing.T) {
		tuning := testcluster.FastTuning()
		tuning.FSMSyncInterval = 50 * time.Millisecond
		tr := testcluster.New(t, testcluster.Config{Nodes: 1, Tuning: &tuning})
		n := tr.Leader(10 * time.Second)
		last := put(t, n.Raft, "a", "1").Index
		testcluster.WaitFor(t, 5*time.Second, "the state file to be synced", func() bool { return raft.DurableIndex(n.Raft) >= last })
	})
	t.Run("entries", func(t *testing.T) {
		tuning := testcluster.FastTuning()
		tuning.FSMSyncInterval = time.Minute
		tuning.FSMSyncEntries = 10
		tr := testcluster.New(t, testcluster.Config{Nodes: 1, Tuning: &tuning})
		n := tr.Leader(10 * time.Second)
		start := raft.DurableIndex(n.Raft)
		for i := 0; i < 25; i++ {
			put(t, n.Raft, fmt.Sprintf("k%02d", i), "v")
		}
		testcluster.WaitFor(t, 5*time.Second, "a sync by size", func() bool { return raft.DurableIndex(n.Raft) >= start+10 })
	})
}

// unsyncedWrites starts a one-node region whose state file is neither
// flushed nor synced by its interval during the test (a minute), and
// writes 20 keys; it returns the last one's index.
func unsyncedWrites(t *testing.T) (*testcluster.Cluster, *testcluster.Node, uint64) {
	t.Helper()
	tuning := testcluster.FastTuning()
	tuning.FSMSyncInterval = time.Minute
	tr := testcluster.New(t, testcluster.Config{Nodes: 1, Tuning: &tuning})
	n := tr.Leader(10 * time.Second)
	var last uint64
	for i := 0; i < 20; i++ {
		last = put(t, n.Raft, fmt.Sprintf("k%02d", i), "v").Index
	}
	return tr, n, last
}

// TestSnapshotIsTakenFromDurableState: with a sync interval longer than
// the test, a snapshot still finds the state file synced up to its own
// index, so compacting the log up to that index loses nothing a crash
// would need.
func TestSnapshotIsTakenFromDurableState(t *testing.T) {
	_, n, last := unsyncedWrites(t)
	if d := raft.DurableIndex(n.Raft); d >= last {
		t.Fatalf("durable index %d already at %d before the snapshot: the test proves nothing", d, last)
	}
	if err := n.Raft.Snapshot(); err != nil {
		t.Fatal(err)
	}
	snap, durable := raft.SnapshotIndex(n.Raft), raft.DurableIndex(n.Raft)
	if snap < last || durable < snap {
		t.Fatalf("snapshot at %d, state file durable to %d, last write %d: the snapshot is ahead of the disk", snap, durable, last)
	}
}

// TestRestartReplaysFromTheFilesIndex: a state file that is behind the
// log (as a power loss before a sync leaves it) is brought up to date on
// restart by replaying the log from the file's own index; and one behind
// a compacted log by the newest snapshot first.
func TestRestartReplaysFromTheFilesIndex(t *testing.T) {
	t.Run("log holds the entries", func(t *testing.T) {
		tr := newRegion(t, 3)
		leader := tr.Leader(10 * time.Second)
		var victim *testcluster.Node
		for _, n := range tr.Live() {
			if n.ID != leader.ID {
				victim = n
			}
		}
		for i := 0; i < 30; i++ {
			put(t, leader.Raft, fmt.Sprintf("a%02d", i), "1")
		}
		tr.Settle(10 * time.Second)
		state := filepath.Join(victim.Dir, "state.db")
		old := filepath.Join(t.TempDir(), "old.db")
		tr.Kill(victim.ID)
		testfault.Copy(t, state, old, false)
		tr.Restart(victim.ID)
		var last uint64
		for i := 0; i < 30; i++ {
			last = put(t, leader.Raft, fmt.Sprintf("b%02d", i), "2").Index
		}
		tr.WaitApplied(last)
		tr.Kill(victim.ID)
		testfault.Copy(t, old, state, false)
		back := tr.Restart(victim.ID)
		tr.WaitApplied(last)
		if got, want := dumpKV(t, back.Store), dumpKV(t, leader.Store); len(want) != 60 || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s has %d keys after replaying from its old file, the leader %d (want 60)", victim.ID, len(got), len(want))
		}
		if n := back.Logs.Count(slog.LevelInfo, "state restored from snapshot"); n != 0 {
			t.Fatalf("%s restored a snapshot instead of replaying its log", victim.ID)
		}
	})
	t.Run("killed with batches not flushed", func(t *testing.T) {
		// The file a SIGKILL leaves is the file as of the last flush: the
		// batches applied after it exist only in memory and in the log.
		tr, n, last := unsyncedWrites(t)
		want := dumpKV(t, n.Store)
		state, killed := filepath.Join(n.Dir, "state.db"), filepath.Join(t.TempDir(), "killed.db")
		testfault.Copy(t, state, killed, false)
		tr.Kill(n.ID)
		if idx := fileIndex(t, killed, tr.Region); idx >= last {
			t.Fatalf("the file copied while running holds index %d, the last write %d: every batch was flushed, the test proves nothing", idx, last)
		}
		testfault.Copy(t, killed, state, false)
		n = tr.Restart(n.ID)
		tr.Leader(10 * time.Second)
		tr.WaitApplied(last)
		if got := dumpKV(t, n.Store); !reflect.DeepEqual(got, want) {
			t.Fatalf("%d keys after the restart, want %d", len(got), len(want))
		}
		if c := n.Logs.Count(slog.LevelInfo, "state file is behind the Raft log"); c != 1 {
			t.Fatalf("the start logged the replay %d times, want 1", c)
		}
	})
	t.Run("log compacted past the file", func(t *testing.T) {
		tuning := testcluster.FastTuning()
		tuning.TrailingLogs = 0
		tr := testcluster.New(t, testcluster.Config{Nodes: 1, Tuning: &tuning,
			Configure: func(_ *testcluster.Node, cfg *raft.Config) { raft.SetWALSegmentSize(cfg, 4096) }})
		n := tr.Leader(10 * time.Second)
		big := strings.Repeat("v", 1024)
		put(t, n.Raft, "first", "1")
		state, old := filepath.Join(n.Dir, "state.db"), filepath.Join(t.TempDir(), "old.db")
		tr.Kill(n.ID)
		testfault.Copy(t, state, old, false)
		n = tr.Restart(n.ID)
		tr.Leader(10 * time.Second)
		for i := 0; i < 40; i++ {
			put(t, n.Raft, fmt.Sprintf("k%02d", i), big)
		}
		if err := n.Raft.Snapshot(); err != nil {
			t.Fatal(err)
		}
		want := dumpKV(t, n.Store)
		first := raft.FirstLogIndex(n.Raft)
		tr.Kill(n.ID)
		testfault.Copy(t, old, state, false)
		n = tr.Restart(n.ID)
		tr.Settle(10 * time.Second)
		if first != 0 && first <= 4 {
			t.Fatalf("the log still starts at %d, before the writes the old file lacks: the test proves nothing", first)
		}
		if got := dumpKV(t, n.Store); !reflect.DeepEqual(got, want) {
			t.Fatalf("%d keys after the restart, want %d", len(got), len(want))
		}
		if c := n.Logs.Count(slog.LevelInfo, "state restored from snapshot"); c != 1 {
			t.Fatalf("restored from the snapshot %d times, want 1", c)
		}
	})
}

// TestDamagedStateFileIsRebuilt: a one-node region (no leader to send it
// a snapshot) whose state file is damaged while it is down, or left torn
// by a power loss, rebuilds it from its newest snapshot and its log,
// says so, and ends with the state it had.
func TestDamagedStateFileIsRebuilt(t *testing.T) {
	cases := []struct {
		name     string
		snapshot bool
		damage   func(t *testing.T, path string)
	}{
		{"truncated", true, func(t *testing.T, path string) {
			// Below the pages in use (bbolt grows the file ahead of them).
			if err := os.Truncate(path, testfault.InUse(t, path)/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"meta pages overwritten", true, func(t *testing.T, path string) { testfault.Scribble(t, nil, path, 0, 8192) }},
		{"torn by a power loss", true, func(t *testing.T, path string) {
			if err := os.WriteFile(path+".unsynced", []byte("boot_id=an-earlier-boot\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			testfault.Scribble(t, nil, path, 3*4096, 4096)
		}},
		{"truncated, no snapshot yet", false, func(t *testing.T, path string) {
			if err := os.Truncate(path, 4096); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tuning := testcluster.FastTuning()
			tuning.TrailingLogs = 0
			tr := testcluster.New(t, testcluster.Config{Nodes: 1, Tuning: &tuning,
				Configure: func(_ *testcluster.Node, cfg *raft.Config) { raft.SetWALSegmentSize(cfg, 4096) }})
			n := tr.Leader(10 * time.Second)
			big := strings.Repeat("v", 1024)
			for i := 0; i < 40; i++ {
				put(t, n.Raft, fmt.Sprintf("a%02d", i), big)
			}
			if tc.snapshot {
				if err := n.Raft.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 20; i++ {
				put(t, n.Raft, fmt.Sprintf("b%02d", i), "after the snapshot")
			}
			want := dumpKV(t, n.Store)
			tr.Kill(n.ID)
			state := filepath.Join(n.Dir, "state.db")
			tc.damage(t, state)
			n = tr.Restart(n.ID)
			tr.Settle(10 * time.Second)
			if got := dumpKV(t, n.Store); !reflect.DeepEqual(got, want) {
				t.Fatalf("%d keys after the rebuild, want %d", len(got), len(want))
			}
			if c := n.Logs.Count(slog.LevelError, "state file was damaged"); c != 1 {
				t.Fatalf("the rebuild was logged %d times, want once", c)
			}
			if _, err := os.Stat(state + ".damaged"); err != nil {
				t.Fatalf("the damaged file was not kept: %v", err)
			}
		})
	}
}
