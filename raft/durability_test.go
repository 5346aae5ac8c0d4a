package raft

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// TestCompactionNeverPassesTheDurableIndex: the log store Raft compacts
// keeps every entry the FSM applied but has not synced, and lets through
// what is durable and a follower's truncation of an unapplied suffix.
func TestCompactionNeverPassesTheDurableIndex(t *testing.T) {
	cases := []struct {
		name             string
		durable, applied uint64
		lo, hi           uint64
		first, last      uint64 // the log's range afterwards
	}{
		{"compaction below the durable index", 40, 80, 1, 30, 31, 100},
		{"compaction into unsynced entries stops at the durable index", 40, 80, 1, 60, 41, 100},
		{"compaction of unsynced entries only is refused", 0, 80, 1, 60, 1, 100},
		{"everything applied is durable", 80, 80, 1, 60, 61, 100},
		{"a follower truncates an unapplied suffix", 40, 80, 90, 100, 1, 89},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := hraft.NewInmemStore()
			var logs []*hraft.Log
			for i := uint64(1); i <= 100; i++ {
				logs = append(logs, &hraft.Log{Index: i, Term: 1, Type: hraft.LogCommand})
			}
			if err := store.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			f := &fsm{}
			f.durable.Store(tc.durable)
			f.applied.Store(tc.applied)
			g := &logGuard{LogStore: store, fsm: f, logger: slog.New(slog.DiscardHandler)}
			if err := g.DeleteRange(tc.lo, tc.hi); err != nil {
				t.Fatal(err)
			}
			first, _ := store.FirstIndex()
			last, _ := store.LastIndex()
			if first != tc.first || last != tc.last {
				t.Fatalf("log is %d..%d after DeleteRange(%d, %d), want %d..%d", first, last, tc.lo, tc.hi, tc.first, tc.last)
			}
		})
	}
}

// TestCheckCoverage: a start is refused only when some index is in none
// of the state file, the newest snapshot and the log.
func TestCheckCoverage(t *testing.T) {
	cases := []struct {
		name                 string
		file, snap, firstLog uint64
		gap                  bool
	}{
		{"new node, empty log", 0, 0, 0, false},
		{"log from the start", 0, 0, 1, false},
		{"file reaches the log", 99, 0, 100, false},
		{"snapshot reaches the log", 0, 120, 100, false},
		{"rebuilt file, snapshot before the log", 0, 50, 100, true},
		{"file and snapshot before the log", 60, 70, 100, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCoverage(tc.file, tc.snap, tc.firstLog)
			if got := errors.Is(err, ErrStateGap); got != tc.gap {
				t.Fatalf("checkCoverage(%d, %d, %d) = %v, want gap %v", tc.file, tc.snap, tc.firstLog, err, tc.gap)
			}
		})
	}
}

// TestWaitAppliedWakesOnApply: a waiter for an index wakes when the FSM
// reaches it (not on a poll), and gives up with its context or the stop.
func TestWaitAppliedWakesOnApply(t *testing.T) {
	f := &fsm{}
	f.setApplied(5)
	stop := make(chan struct{})
	if err := f.waitApplied(context.Background(), stop, 5); err != nil {
		t.Fatalf("an index already applied: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- f.waitApplied(context.Background(), stop, 7) }()
	f.setApplied(6)
	select {
	case err := <-done:
		t.Fatalf("woke at index 6 waiting for 7: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	f.setApplied(7)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not wake when index 7 was applied")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := f.waitApplied(ctx, stop, 9); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with its context ended: %v", err)
	}
	close(stop)
	if err := f.waitApplied(context.Background(), stop, 9); !errors.Is(err, ErrShutdown) {
		t.Fatalf("with the region stopping: %v", err)
	}
}
