package raft

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/outpost-mesh/outpost/storage"
)

// HandlerFunc applies the payload of one committed command (the bytes after
// its type byte) inside the batch's transaction. It must be deterministic:
// every node applies the same entries to the same state. A returned error
// is the entry's result, not a failure of the batch: the entry is recorded
// as applied and the error is reported to the writer.
type HandlerFunc func(tx *storage.Tx, index uint64, payload []byte) ([]byte, error)

// Auditor appends the audit record of an applied audited command inside
// the same transaction. It is first called with a nil tx to validate meta,
// before the change is made; then with the transaction, after it. before
// and after are the KV value before and after the change (nil when absent
// or when the inner command is not KV). An error fails the entry.
type Auditor func(tx *storage.Tx, index uint64, meta, before, after []byte) error

// Result is what Apply returns for one entry.
type Result struct {
	Index uint64
	Value []byte
	Err   error
}

// fsm applies committed entries to the bbolt state store, one transaction
// per batch (hraft.BatchingFSM). Apply and Snapshot are called from Raft's
// FSM goroutine; Persist may run concurrently with later batches because
// it reads a pinned bbolt read transaction. Restore is never concurrent
// with ApplyBatch. sync runs on any goroutine.
//
// A batch is applied into the store's open batch transaction (storage
// ApplyBatch: readers see it at once, the file only at the next flush;
// the Raft log holds it durably) unless syncEvery is 0, when each batch
// commits with fsync. The state file is flushed and synced by syncLoop, by
// a batch that leaves syncEntries or more entries unsynced, and before
// every snapshot (durability.go).
type fsm struct {
	store    *storage.Store
	auditor  Auditor
	handlers map[CommandType]HandlerFunc
	logger   *slog.Logger
	// applied is the last index applied to the file; durable the last one
	// synced to disk (durable <= applied).
	applied atomic.Uint64
	durable atomic.Uint64
	// appliedCh, made when someone waits, is closed when applied moves:
	// a forwarded write's read-your-writes wait and a follower's
	// consistent read wake at once instead of polling.
	appliedMu sync.Mutex
	appliedCh chan struct{}
	onApply   func(lastIndex uint64, n int)
	onSync    func(time.Duration)

	syncEvery   time.Duration // 0: fsync every batch
	syncEntries uint64
	syncNow     chan struct{} // a batch asks syncLoop for a sync now
}

var (
	_ hraft.BatchingFSM = (*fsm)(nil)
	_ hraft.FSMSnapshot = (*fsmSnapshot)(nil)
)

func newFSM(store *storage.Store, handlers map[CommandType]HandlerFunc, auditor Auditor, logger *slog.Logger, t Tuning) *fsm {
	f := &fsm{store: store, auditor: auditor, handlers: map[CommandType]HandlerFunc{CmdKV: applyKV, CmdTenantKV: applyTenantKV, CmdBatch: applyBatch, CmdNoop: applyNoop}, logger: logger,
		syncEvery: t.FSMSyncInterval, syncEntries: uint64(max(t.FSMSyncEntries, 1)), syncNow: make(chan struct{}, 1)}
	f.handlers[CmdAudited] = f.applyAudited
	for t, h := range handlers {
		f.handlers[t] = h
	}
	// What the file holds at open counts as durable: a file left unsynced
	// by a crash of this boot is synced before anything depends on it
	// (the first sync, snapshot or close), and one from an earlier boot
	// was rebuilt by storage.Open.
	f.applied.Store(store.LastApplied())
	f.durable.Store(f.applied.Load())
	return f
}

func (f *fsm) Apply(l *hraft.Log) interface{} { return f.ApplyBatch([]*hraft.Log{l})[0] }

// ApplyBatch applies the batch in the store's batch transaction. Entries at or
// below the file's last applied index were applied before a restart (the
// node runs with NoSnapshotRestoreOnStart) and are skipped, so replay is
// idempotent whatever the handlers do.
func (f *fsm) ApplyBatch(logs []*hraft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	if n := len(logs); n > 0 && logs[n-1].Index <= f.applied.Load() {
		// All replayed: nothing to write.
		for i, l := range logs {
			out[i] = Result{Index: l.Index}
		}
		return out
	}
	commit := f.store.ApplyBatch
	if f.syncEvery == 0 {
		commit = f.store.Update
	}
	err := commit(func(tx *storage.Tx) error {
		last := tx.LastApplied()
		for i, l := range logs {
			if l.Index <= last {
				out[i] = Result{Index: l.Index}
				continue
			}
			if l.Type == hraft.LogCommand {
				out[i] = f.applyOne(tx, l)
			} else {
				out[i] = Result{Index: l.Index}
			}
			last = l.Index
		}
		return tx.SetLastApplied(last)
	})
	if err != nil {
		// A failed commit leaves this node's state behind the log it has
		// acknowledged; continuing would diverge from the region. Crash so
		// the supervisor restarts it and replay resumes from the file's index.
		panic(fmt.Sprintf("outpost: FSM commit failed, node must restart: %v", err))
	}
	if n := len(logs); n > 0 {
		last := logs[n-1].Index
		f.setApplied(last)
		if f.syncEvery == 0 {
			f.durable.Store(last)
		} else if last-f.durable.Load() >= f.syncEntries {
			select {
			case f.syncNow <- struct{}{}:
			default:
			}
		}
		if f.onApply != nil {
			f.onApply(last, n)
		}
	}
	return out
}

func (f *fsm) applyOne(tx *storage.Tx, l *hraft.Log) Result {
	if len(l.Data) == 0 {
		return Result{Index: l.Index, Err: fmt.Errorf("%w: empty entry", ErrBadCommand)}
	}
	h, ok := f.handlers[CommandType(l.Data[0])]
	if !ok {
		return Result{Index: l.Index, Err: fmt.Errorf("%w: unknown command type %d", ErrBadCommand, l.Data[0])}
	}
	v, err := h(tx, l.Index, l.Data[1:])
	return Result{Index: l.Index, Value: v, Err: err}
}

// setApplied records the last applied index and wakes its waiters.
func (f *fsm) setApplied(index uint64) {
	f.applied.Store(index)
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	if f.appliedCh != nil {
		close(f.appliedCh)
		f.appliedCh = nil
	}
}

// waitApplied returns once index is applied, or with ctx's error, or
// ErrShutdown when stop closes.
func (f *fsm) waitApplied(ctx context.Context, stop <-chan struct{}, index uint64) error {
	for {
		// Take the channel before reading the index: a change after the
		// read closes the channel already taken.
		f.appliedMu.Lock()
		if f.appliedCh == nil {
			f.appliedCh = make(chan struct{})
		}
		ch := f.appliedCh
		f.appliedMu.Unlock()
		if f.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return ErrShutdown
		}
	}
}

func applyNoop(*storage.Tx, uint64, []byte) ([]byte, error) { return nil, nil }

// applyAudited applies the wrapped command and its audit record in the
// batch's transaction: the change is made only after its record validated,
// so no committed change lacks its record.
func (f *fsm) applyAudited(tx *storage.Tx, index uint64, payload []byte) ([]byte, error) {
	if f.auditor == nil {
		return nil, fmt.Errorf("%w: audited command on a node without an audit log", ErrBadCommand)
	}
	meta, inner, err := DecodeAudited(payload)
	if err != nil {
		return nil, err
	}
	h, ok := f.handlers[CommandType(inner[0])]
	if !ok {
		return nil, fmt.Errorf("%w: unknown command type %d", ErrBadCommand, inner[0])
	}
	// before/after of a key/value change, read in the same transaction.
	var read func() []byte
	switch CommandType(inner[0]) {
	case CmdKV:
		kv, err := DecodeKV(inner[1:])
		if err != nil {
			return nil, err
		}
		read = func() []byte { return append([]byte(nil), tx.Get(kv.Bucket, kv.Key)...) }
	case CmdTenantKV:
		c, err := DecodeTenantKV(inner[1:])
		if err != nil {
			return nil, err
		}
		h, err := storage.Scope(c.Tenant)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
		}
		read = func() []byte { return append([]byte(nil), tx.Tenant(h).Get(c.Bucket, c.Key)...) }
	case CmdBatch:
		b, err := DecodeBatch(inner[1:])
		if err != nil {
			return nil, err
		}
		read = func() []byte { return batchState(tx, b) }
	}
	var before, after []byte
	if read != nil {
		before = read()
	}
	// Validate the audit record before changing anything, so a bad record
	// cannot leave an unaudited change behind.
	if err := f.auditor(nil, index, meta, nil, nil); err != nil {
		return nil, err
	}
	v, err := h(tx, index, inner[1:])
	if err != nil {
		return nil, err
	}
	if read != nil {
		after = read()
	}
	if err := f.auditor(tx, index, meta, before, after); err != nil {
		// Validated above, so only a storage failure lands here; the
		// batch's commit would fail the same way.
		return nil, err
	}
	return v, nil
}

// applyTenantKV applies a TenantKV through the tenant's storage handle.
func applyTenantKV(tx *storage.Tx, _ uint64, payload []byte) ([]byte, error) {
	c, err := DecodeTenantKV(payload)
	if err != nil {
		return nil, err
	}
	h, err := storage.Scope(c.Tenant)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return applyKVOp(tx.Tenant(h), c.KVCommand)
}

// kvTarget is a plain or tenant-scoped transaction.
type kvTarget interface {
	Get(bucket, key []byte) []byte
	Put(bucket, key, value []byte) error
	Delete(bucket, key []byte) error
}

// applyKV applies a KVCommand. PutIfAbsent returns "1" when it set the key
// and "0" when the key already had a value.
func applyKV(tx *storage.Tx, _ uint64, payload []byte) ([]byte, error) {
	c, err := DecodeKV(payload)
	if err != nil {
		return nil, err
	}
	return applyKVOp(tx, c)
}

// holds reports whether a KVExpect's key has the expected value in tx.
func (c KVCommand) holds(tx kvTarget) bool {
	v := tx.Get(c.Bucket, c.Key)
	if len(c.Value) == 0 {
		return v == nil
	}
	return bytes.Equal(v, c.Value)
}

func applyKVOp(tx kvTarget, c KVCommand) ([]byte, error) {
	switch c.Op {
	case KVPut:
		return nil, tx.Put(c.Bucket, c.Key, c.Value)
	case KVDelete:
		return nil, tx.Delete(c.Bucket, c.Key)
	case KVExpect:
		if !c.holds(tx) {
			return []byte("0"), nil
		}
		return []byte("1"), nil
	default: // KVPutIfAbsent; Validate rejected anything else
		if tx.Get(c.Bucket, c.Key) != nil {
			return []byte("0"), nil
		}
		return []byte("1"), tx.Put(c.Bucket, c.Key, c.Value)
	}
}

// Snapshot is taken only from durable state: the file is synced first, on
// the FSM goroutine, so the snapshot's index is at or below the durable
// one and Raft's compaction after it (up to that index) never removes an
// entry the file does not hold on disk.
func (f *fsm) Snapshot() (hraft.FSMSnapshot, error) {
	if err := f.sync(); err != nil {
		return nil, fmt.Errorf("sync the state file before a snapshot: %w", err)
	}
	sn, err := f.store.Snapshot()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{sn: sn}, nil
}

// Restore replaces the state file with a snapshot image from the leader
// (or, at start, from the local snapshot store).
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.store.Restore(rc); err != nil {
		return err
	}
	// The image was fsynced before it replaced the file.
	f.setApplied(f.store.LastApplied())
	f.durable.Store(f.applied.Load())
	f.logger.Info("state restored from snapshot", "applied_index", f.applied.Load())
	return nil
}

type fsmSnapshot struct{ sn *storage.Snapshot }

func (s *fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	if _, err := s.sn.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.sn.Release() }
