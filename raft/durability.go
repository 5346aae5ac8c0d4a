package raft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/outpost-mesh/outpost/storage"
)

// The durability of the region's state (issue 20; ARCHITECTURE.md, "The
// FSM and restarts"). A write is acknowledged once it is in the fsynced
// Raft logs of a quorum and applied by the leader's FSM. The FSM applies
// its batches into the state file's batch transaction (readers see them at
// once) and flushes and syncs the file every Tuning.FSMSyncInterval or
// FSMSyncEntries entries, as etcd's backend does; the file records its
// applied index in the same transaction as the entries, and a restart
// replays the log from there. Three rules keep the
// log able to replay whatever the file has not made durable:
//
//   - a snapshot is taken only after a sync (fsm.Snapshot), so its index
//     is at or below the durable one;
//   - Raft's log compaction, which stops at the snapshot's index, is also
//     held to the durable index by logGuard, whatever the snapshot did;
//   - at open, the state file, the newest snapshot and the log must meet
//     (checkCoverage): no index may be missing from all three.
//
// A state file that storage.Open finds damaged, or that a power loss may
// have torn, is moved aside and rebuilt from the newest snapshot and the
// log (logRecovery).

// ErrStateGap means the state file and the snapshots end before the Raft
// log begins: the entries between are on no disk of this node.
var ErrStateGap = errors.New("state file and snapshots do not reach the Raft log")

// sync makes the state file durable up to what it has applied.
func (f *fsm) sync() error {
	if f.durable.Load() == f.applied.Load() {
		return nil
	}
	start := time.Now()
	idx, err := f.store.Sync()
	if err != nil {
		return err
	}
	// The sync loop and a snapshot may sync at once: keep the higher.
	for d := f.durable.Load(); idx > d && !f.durable.CompareAndSwap(d, idx); d = f.durable.Load() {
	}
	if f.onSync != nil {
		f.onSync(time.Since(start))
	}
	return nil
}

// syncLoop syncs the state file every interval, and at once when a batch
// asks, until ctx ends. A failed sync stops the node as a failed commit
// does: the file's durability is unknown, and the next start rebuilds it.
func (f *fsm) syncLoop(ctx context.Context) {
	t := time.NewTicker(f.syncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.syncNow:
		}
		if err := f.sync(); err != nil {
			if errors.Is(err, storage.ErrClosed) {
				return
			}
			panic(fmt.Sprintf("outpost: syncing the state file failed, node must restart: %v", err))
		}
	}
}

// logGuard is the Raft log as hashicorp/raft sees it. Removing entries the
// FSM applied but has not synced would leave a crash nothing to replay
// them from, so a deletion reaching into (durable, applied] is cut short
// at the durable index. A deletion above applied (a follower dropping a
// conflicting, uncommitted suffix) passes.
type logGuard struct {
	hraft.LogStore
	fsm    *fsm
	logger *slog.Logger
}

var _ hraft.MonotonicLogStore = (*logGuard)(nil)

// IsMonotonic passes raft-wal's answer on: hashicorp/raft then clears the
// whole log after installing a snapshot instead of leaving a gap.
func (g *logGuard) IsMonotonic() bool {
	m, ok := g.LogStore.(hraft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// DeleteRange deletes [lo, hi] but never an applied entry above the
// durable index.
func (g *logGuard) DeleteRange(lo, hi uint64) error {
	durable, applied := g.fsm.durable.Load(), g.fsm.applied.Load()
	if durable < applied && lo <= applied && hi > durable {
		g.logger.Warn("log compaction held back to the state file's durable index", "from", lo, "to", hi, "durable_index", durable, "applied_index", applied)
		if lo > durable {
			return nil
		}
		hi = durable
	}
	return g.LogStore.DeleteRange(lo, hi)
}

// checkCoverage refuses to start when the state file (at fileIndex), the
// newest snapshot (snapIndex, 0 for none) and the log (from firstLog, 0
// when empty) leave an index in none of them.
func checkCoverage(fileIndex, snapIndex, firstLog uint64) error {
	if firstLog <= 1 || max(fileIndex, snapIndex) >= firstLog-1 {
		return nil
	}
	return fmt.Errorf("%w: the state file is at index %d and the newest snapshot at %d, but the log starts at %d, so entries %d..%d are on no disk of this node (move the data dir aside and restart: the node resyncs from its region)",
		ErrStateGap, fileIndex, snapIndex, firstLog, max(fileIndex, snapIndex)+1, firstLog-1)
}

// logRecovery says, once, that storage.Open replaced a damaged state file
// and how this start rebuilds it.
func logRecovery(logger *slog.Logger, rec *storage.Recovery, snapIndex, firstLog, lastLog uint64) {
	if rec == nil {
		return
	}
	logger.Error("state file was damaged: moved it aside and rebuilding it from the newest snapshot and the Raft log",
		"reason", rec.Reason.Error(), "moved_to", rec.MovedTo, "snapshot_index", snapIndex, "log_first_index", firstLog, "log_last_index", lastLog)
}
