package storage

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/btree"
	bolt "go.etcd.io/bbolt"
)

// The batch transaction (issue 20; ARCHITECTURE.md, "The batch
// transaction"). Committing a bbolt transaction writes every page it
// dirtied, its freelist and a meta page: for the Raft FSM, whose batches
// are a few entries each, that was most of the cost of an apply, paid on
// every node for every batch. ApplyBatch instead applies into one
// long-lived write transaction, as etcd's backend does, and Flush commits
// it (the FSM flushes on its sync interval, 100 ms by default, and before
// every snapshot). The Raft log holds every applied entry durably, and the
// file's last applied index is written in the same transaction as the
// entries, so an unflushed batch lost with the process is replayed from
// the log at the next start.
//
// Readers must still see every batch as soon as it is applied (a write is
// acknowledged after its apply, and the next request may read it). The
// writer records each change of the open transaction in an ordered delta
// (puts, and tombstones for deletes), and after each batch publishes a
// copy-on-write clone of it. A reader opens an ordinary bbolt read
// transaction, which sees the file as of the last flush, and the clone
// published at that moment, and merges the two: the delta wins where it
// holds the key. The file a reader pairs with a delta is never older than
// the delta's base (the delta is cleared, under the lock readers take to
// pair the two, only after its commit), and a file that already holds
// the delta reads the same under it (flushLocked).

// ErrFailed means a batch failed part way: its transaction was rolled back
// with the batches before it that had not been flushed, so the store no
// longer holds what its readers were shown. Only a restart, which replays
// the Raft log, can bring it back.
var ErrFailed = errors.New("state store failed; the node must restart")

// change is one key's latest change in the open batch transaction.
type change struct {
	bucket, key, value []byte
	deleted            bool
}

func changeLess(a, b change) bool {
	if c := bytes.Compare(a.bucket, b.bucket); c != 0 {
		return c < 0
	}
	return bytes.Compare(a.key, b.key) < 0
}

// delta is the set of changes not yet flushed, ordered by bucket and key.
type delta = btree.BTreeG[change]

// batch is the open batch transaction. Only the writer (holding wmu)
// touches it.
type batch struct {
	tx      *bolt.Tx
	changes *delta
	entries int // ApplyBatch calls since the last flush
}

// ApplyBatch runs fn in the open batch transaction, beginning one if
// there is none, and publishes its changes to readers when fn returns. It
// is not durable, nor even in the file, until Flush (or Sync, Snapshot,
// Update, Close). Hooks registered with Tx.OnCommit run once the changes
// are published, after the store's locks are released (a hook may read
// the store). An error from fn, or a panic, rolls back every unflushed
// batch and fails the store (ErrFailed): the caller must restart and
// replay. Only one goroutine (the FSM's) should call ApplyBatch, so that
// hooks run in the order of their batches.
//
// bbolt keeps the key and value slices a Put is given until the
// transaction commits, now at the next flush: fn must not reuse them.
func (s *Store) ApplyBatch(fn func(*Tx) error) error {
	hooks, err := s.applyBatch(fn)
	if err != nil {
		return err
	}
	for _, h := range hooks {
		h()
	}
	return nil
}

func (s *Store) applyBatch(fn func(*Tx) error) (hooks []func(), err error) {
	unlock, err := s.lockWriter()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if s.failed != nil {
		return nil, s.failed
	}
	if s.batch == nil {
		tx, err := s.db.Begin(true)
		if err != nil {
			return nil, fmt.Errorf("begin batch transaction: %w", err)
		}
		s.batch = &batch{tx: tx, changes: btree.NewG(32, changeLess)}
	}
	b := s.batch
	t := &Tx{tx: b.tx, batch: b}
	defer func() {
		// bbolt's Update rolls back on a panic; here the half-applied
		// batch would be committed by the next flush.
		if p := recover(); p != nil {
			s.failLocked(fmt.Errorf("%w: a batch panicked: %v", ErrFailed, p))
			panic(p)
		}
	}()
	if err := fn(t); err != nil {
		s.failLocked(fmt.Errorf("%w: a batch failed: %v", ErrFailed, err))
		return nil, err
	}
	b.entries++
	published := b.changes.Clone()
	s.vmu.Lock()
	s.unflushed = published
	s.vmu.Unlock()
	return t.hooks, nil
}

// Pending reports how many ApplyBatch calls are applied but not flushed.
func (s *Store) Pending() int {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.batch == nil {
		return 0
	}
	return s.batch.entries
}

// Flush commits the open batch transaction, without fsync (Sync makes it
// durable). Nothing to flush is not an error.
func (s *Store) Flush() error {
	unlock, err := s.lockWriter()
	if err != nil {
		return err
	}
	defer unlock()
	return s.flushLocked()
}

// lockWriter holds the store open (mu, shared: Restore and Close wait)
// and takes the writers' lock, or returns ErrClosed.
func (s *Store) lockWriter() (unlock func(), err error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	s.wmu.Lock()
	return func() { s.wmu.Unlock(); s.mu.RUnlock() }, nil
}

// flushLocked commits the open batch transaction, if any. Called with wmu
// held. Readers go on during the commit: one that pairs the file as it
// was before the commit with the published delta sees the batches, and so
// does one that pairs the committed file with it, because the delta holds
// exactly what the commit adds (a put over the same put, a tombstone over
// a key already deleted). Only clearing the delta waits for vmu, after
// the commit. Read transactions end without any of the store's locks, so
// a commit that must remap the file (bbolt waits for them) cannot
// deadlock with them.
func (s *Store) flushLocked() error {
	if s.failed != nil {
		return s.failed
	}
	b := s.batch
	if b == nil {
		return nil
	}
	sync := s.markLocked()
	s.db.NoSync = !sync
	err := b.tx.Commit()
	s.batch = nil
	s.vmu.Lock()
	defer s.vmu.Unlock()
	if err != nil {
		// The commit was rolled back; what readers were shown is gone.
		s.failed = fmt.Errorf("%w: committing the batch transaction failed: %v", ErrFailed, err)
		return s.failed
	}
	s.unflushed = nil
	s.unsynced = !sync
	return nil
}

// markLocked writes the marker before the first commit that a power loss
// could lose, and reports whether the commit must be fsynced instead
// because the marker could not be written (the next one tries again).
func (s *Store) markLocked() (sync bool) {
	if s.marked {
		return false
	}
	if err := writeMarker(s.path, bootID()); err != nil {
		return true
	}
	s.marked = true
	return false
}

// failLocked rolls back the open batch transaction and fails the store.
func (s *Store) failLocked(err error) { s.rollbackLocked(err) }

// dropBatchLocked rolls back the open batch transaction without failing
// the store: Restore replaces the whole file, unflushed batches included.
func (s *Store) dropBatchLocked() { s.rollbackLocked(nil) }

// rollbackLocked rolls back the open batch transaction and withdraws its
// published delta; a non-nil failed fails the store (readers get it
// instead of the older file).
func (s *Store) rollbackLocked(failed error) {
	s.vmu.Lock()
	defer s.vmu.Unlock()
	if s.batch != nil {
		_ = s.batch.tx.Rollback()
		s.batch = nil
	}
	s.unflushed = nil
	if failed != nil {
		s.failed = failed
	}
}

// beginRead opens a read transaction and pairs it with the delta
// published at the same moment (nil when everything is flushed).
func (s *Store) beginRead() (*Tx, error) {
	s.vmu.RLock()
	defer s.vmu.RUnlock()
	if s.failed != nil {
		return nil, s.failed
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, err
	}
	return &Tx{tx: tx, over: s.unflushed}, nil
}

// record notes a change made in the batch transaction. Keys and values
// are copied: the caller's slices may be reused, and bbolt's are only
// valid in the transaction.
func (b *batch) record(bucket, key, value []byte, deleted bool) {
	c := change{bucket: bytes.Clone(bucket), key: bytes.Clone(key), deleted: deleted}
	if !deleted {
		c.value = bytes.Clone(value)
		if c.value == nil {
			c.value = []byte{}
		}
	}
	b.changes.ReplaceOrInsert(c)
}

// overGet looks key up in the reader's delta: found says the delta decides
// (v is nil for a deleted key).
func (t *Tx) overGet(bucket, key []byte) (v []byte, found bool) {
	c, ok := t.over.Get(change{bucket: bucket, key: key})
	if !ok {
		return nil, false
	}
	if c.deleted {
		return nil, true
	}
	return c.value, true
}

// mergeForward calls fn for the keys of bucket at or after start that
// carry prefix, merging the delta over the file's cursor c (which may be
// nil when the file lacks the bucket).
func (t *Tx) mergeForward(bucket, prefix, start []byte, c *bolt.Cursor, fn func(k, v []byte) bool) {
	var k, v []byte
	if c != nil {
		k, v = c.Seek(start)
	}
	walk := func(visit func(change) bool) { t.over.AscendGreaterOrEqual(change{bucket: bucket, key: start}, visit) }
	t.merge(bucket, k, v, c.Next, walk, func(key []byte) bool { return key != nil && bytes.HasPrefix(key, prefix) }, 1, fn)
}

// mergeReverse is mergeForward over the whole bucket, last key first.
func (t *Tx) mergeReverse(bucket []byte, c *bolt.Cursor, fn func(k, v []byte) bool) {
	var k, v []byte
	if c != nil {
		k, v = c.Last()
	}
	// Every change of bucket sorts below (bucket+"\x00", nil), and nothing
	// of another bucket sorts between them.
	pivot := change{bucket: append(bytes.Clone(bucket), 0)}
	walk := func(visit func(change) bool) { t.over.DescendLessOrEqual(pivot, visit) }
	t.merge(bucket, k, v, c.Prev, walk, func(key []byte) bool { return key != nil }, -1, fn)
}

// merge walks the file's keys from (k, v), stepping with step while
// inRange holds, and the delta's changes of bucket as walk visits them
// (in the same direction), calling fn in order: dir is 1 when keys go
// up, -1 when they go down. A change shadows the file's key it equals;
// a deleted one hides it. It stops when fn returns false.
func (t *Tx) merge(bucket, k, v []byte, step func() ([]byte, []byte), walk func(func(change) bool), inRange func([]byte) bool, dir int, fn func(k, v []byte) bool) {
	stopped := false
	walk(func(ch change) bool {
		if !bytes.Equal(ch.bucket, bucket) || !inRange(ch.key) {
			return false
		}
		for inRange(k) && bytes.Compare(k, ch.key)*dir < 0 {
			if !fn(k, v) {
				stopped = true
				return false
			}
			k, v = step()
		}
		if inRange(k) && bytes.Equal(k, ch.key) {
			k, v = step() // the delta's change shadows the file's value
		}
		if !ch.deleted && !fn(ch.key, ch.value) {
			stopped = true
			return false
		}
		return true
	})
	if stopped {
		return
	}
	for ; inRange(k); k, v = step() {
		if !fn(k, v) {
			return
		}
	}
}
