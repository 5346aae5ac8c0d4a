package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/outpost-mesh/outpost/internal/syncfile"
)

// FormatVersion is the on-disk layout version of the state file. A file
// with a newer version is refused rather than misread.
const FormatVersion = 1

// Errors callers match with errors.Is.
var (
	// ErrLocked means another process holds the state file's lock.
	ErrLocked = errors.New("state file is in use by another process")
	// ErrForeign means the state file belongs to another region or node.
	ErrForeign = errors.New("state file belongs to another region")
	// ErrCorrupt means the state file cannot be read as a state store.
	ErrCorrupt = errors.New("state file is corrupt")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("state store is closed")
	// ErrNewerFormat means the state file was written by a newer Outpost.
	ErrNewerFormat = errors.New("state file format is newer than this binary")
)

var (
	bucketMeta = []byte("meta")
	// BucketKV holds the region's operator key/value entries.
	BucketKV = []byte("kv")
	// BucketSystem holds entries the node itself maintains (admin token hash).
	BucketSystem = []byte("system")

	keyFormat      = []byte("format")
	keyRegion      = []byte("region")
	keyLastApplied = []byte("last_applied")
)

// InitialMmapSize is the address space reserved for the state file (not
// memory: pages are only resident once used).
const InitialMmapSize = 1 << 30

// initialMmapSize is InitialMmapSize, smaller in tests that make the file
// outgrow its mapping.
var initialMmapSize = InitialMmapSize

// Options controls how a Store is opened.
type Options struct {
	// Region is the region this file belongs to. A file stamped with
	// another region is refused with ErrForeign. Required.
	Region string
	// LockTimeout bounds the wait for the file lock. Default 1s.
	LockTimeout time.Duration
}

// Store is the bbolt state file. Its methods are safe for concurrent use;
// Restore swaps the underlying file while readers wait.
type Store struct {
	path   string
	opts   Options
	mu     sync.RWMutex // guards db against Restore's swap
	db     *bolt.DB
	closed bool

	// wmu serialises writers (bbolt does too), so that db.NoSync, the
	// marker and unsynced change with the commit they belong to.
	wmu sync.Mutex
	// unsynced: a commit since the last sync is not yet on disk.
	unsynced bool
	// marked: the marker beside the file says it may hold such commits.
	marked bool
	// recovered is set when Open replaced a damaged file.
	recovered *Recovery

	// batch is the open batch transaction (batch.go), guarded by wmu.
	batch *batch
	// failed is set, under wmu and vmu, when a batch failed.
	failed error
	// vmu pairs a reader's read transaction with unflushed: readers hold
	// it shared; a publish, and a flush clearing unflushed after its
	// commit, hold it exclusively.
	vmu sync.RWMutex
	// unflushed is the published delta of the open batch transaction.
	unflushed *delta
}

// Open opens or creates the state file at path. A file that is damaged,
// or that a power loss may have torn (see UpdateNoSync), is moved aside
// and an empty one started: Recovered says so, and the caller rebuilds the
// state. Another process's lock, another region's file and a newer format
// are refused (ErrLocked, ErrForeign, ErrNewerFormat) and the file left
// alone.
func Open(path string, opts Options) (*Store, error) {
	if opts.Region == "" {
		return nil, errors.New("storage: Options.Region is required")
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	return openChecked(path, opts)
}

// openDB opens the bbolt file and checks its stamps and size. A panic or
// memory fault while bbolt reads a damaged file (a page pointer past its
// end) comes back as ErrCorrupt.
func openDB(path string, opts Options) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("open %s: %w: reading the file failed: %v", path, ErrCorrupt, p)
		}
	}()
	// A write that grows the file must remap it, and bbolt's remap waits
	// for every open read transaction, including a snapshot being
	// persisted. Reserving address space up front (as etcd does) keeps
	// writes from stalling behind a snapshot until the file outgrows it.
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, InitialMmapSize: initialMmapSize})
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("open %s: %w (stop the other outpost process or choose another data dir)", path, ErrLocked)
		case isSystemError(err):
			// The file could not be opened, locked or mapped: not its
			// content's fault.
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		// bbolt refused what it read: ErrInvalid, ErrChecksum,
		// ErrVersionMismatch, "file size too small", a short read.
		return nil, fmt.Errorf("open %s: %w: %v", path, ErrCorrupt, err)
	}
	if err := checkSize(db, path); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := initMeta(db, opts.Region); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// isSystemError reports an error of the operating system (opening,
// locking or mapping the file) rather than of the file's content.
func isSystemError(err error) bool {
	var pe *fs.PathError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &errno)
}

func initMeta(db *bolt.DB, region string) error {
	return db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		for _, b := range [][]byte{BucketKV, BucketSystem} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return checkMeta(m, region, true)
	})
}

// checkMeta verifies (and, when stamp is set and the file is new, writes)
// the format version and region of a state file.
func checkMeta(m *bolt.Bucket, region string, stamp bool) error {
	if v := m.Get(keyFormat); v != nil {
		if len(v) != 8 || binary.BigEndian.Uint64(v) > FormatVersion {
			return fmt.Errorf("%w: format version %x, this binary supports %d (run a newer outpost)", ErrNewerFormat, v, FormatVersion)
		}
	} else if stamp {
		if err := m.Put(keyFormat, u64(FormatVersion)); err != nil {
			return err
		}
	} else {
		return fmt.Errorf("%w: no format version", ErrCorrupt)
	}
	if r := m.Get(keyRegion); r != nil {
		if !bytes.Equal(r, []byte(region)) {
			return fmt.Errorf("%w: file is for region %q, this node is in %q", ErrForeign, r, region)
		}
	} else if stamp {
		return m.Put(keyRegion, []byte(region))
	} else {
		return fmt.Errorf("%w: no region stamp", ErrCorrupt)
	}
	return nil
}

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// Close syncs and closes the state file. Safe to call twice.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return errors.Join(s.syncAndUnmarkLocked(), s.db.Close())
}

// Tx is a state-store transaction. It is only valid inside the callback
// that received it.
type Tx struct {
	tx *bolt.Tx
	// over is a reader's view of the batches applied since the last flush
	// (batch.go), read over tx; nil when there are none.
	over *delta
	// batch is set in ApplyBatch: changes are recorded for readers, and
	// hooks run when the batch is published.
	batch *batch
	hooks []func()
}

// OnCommit runs fn once the transaction's changes are visible to every
// later reader (not if it fails): effects outside the state file, such
// as telling watchers of a change, must not be seen before the change.
func (t *Tx) OnCommit(fn func()) {
	if t.batch != nil {
		t.hooks = append(t.hooks, fn)
		return
	}
	t.tx.OnCommit(fn)
}

// Get returns the value of key in bucket, or nil. Tenant buckets read as
// empty here: use Tx.Tenant. The slice is only valid
// during the transaction; copy it to keep it.
func (t *Tx) Get(bucket, key []byte) []byte {
	if isTenantBucket(bucket) {
		return nil
	}
	return t.get(bucket, key)
}

func (t *Tx) get(bucket, key []byte) []byte {
	if t.over != nil {
		if v, found := t.overGet(bucket, key); found {
			return v
		}
	}
	b := t.tx.Bucket(bucket)
	if b == nil {
		return nil
	}
	return b.Get(key)
}

// Put sets key in bucket. Only valid in an Update transaction.
func (t *Tx) Put(bucket, key, value []byte) error {
	if isTenantBucket(bucket) {
		return ErrNeedsTenant
	}
	return t.put(bucket, key, value)
}

func (t *Tx) put(bucket, key, value []byte) error {
	b, err := t.tx.CreateBucketIfNotExists(bucket)
	if err != nil {
		return err
	}
	if err := b.Put(key, value); err != nil {
		return err
	}
	if t.batch != nil {
		t.batch.record(bucket, key, value, false)
	}
	return nil
}

// Delete removes key from bucket. Deleting a missing key is not an error.
func (t *Tx) Delete(bucket, key []byte) error {
	if isTenantBucket(bucket) {
		return ErrNeedsTenant
	}
	return t.delete(bucket, key)
}

func (t *Tx) delete(bucket, key []byte) error {
	b := t.tx.Bucket(bucket)
	if b == nil {
		return nil
	}
	if err := b.Delete(key); err != nil {
		return err
	}
	if t.batch != nil {
		t.batch.record(bucket, key, nil, true)
	}
	return nil
}

// ForEach calls fn for each key with the given prefix in bucket, in key
// order, stopping early when fn returns false.
func (t *Tx) ForEach(bucket, prefix []byte, fn func(k, v []byte) bool) {
	if isTenantBucket(bucket) {
		return
	}
	t.forEach(bucket, prefix, fn)
}

func (t *Tx) forEach(bucket, prefix []byte, fn func(k, v []byte) bool) {
	t.forEachFrom(bucket, prefix, prefix, fn)
}

func (t *Tx) forEachFrom(bucket, prefix, start []byte, fn func(k, v []byte) bool) {
	b := t.tx.Bucket(bucket)
	if t.over != nil {
		var c *bolt.Cursor
		if b != nil {
			c = b.Cursor()
		}
		t.mergeForward(bucket, prefix, start, c, fn)
		return
	}
	if b == nil {
		return
	}
	c := b.Cursor()
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if !fn(k, v) {
			return
		}
	}
}

// ForEachFrom is ForEach starting at key start (at or after prefix), so
// a reader resumes in the middle of a prefix without walking its head.
func (t *Tx) ForEachFrom(bucket, prefix, start []byte, fn func(k, v []byte) bool) {
	if isTenantBucket(bucket) {
		return
	}
	t.forEachFrom(bucket, prefix, start, fn)
}

// ForEachReverse calls fn for each key of bucket from the last to the
// first, stopping early when fn returns false.
func (t *Tx) ForEachReverse(bucket []byte, fn func(k, v []byte) bool) {
	if isTenantBucket(bucket) {
		return
	}
	t.forEachReverse(bucket, fn)
}

func (t *Tx) forEachReverse(bucket []byte, fn func(k, v []byte) bool) {
	b := t.tx.Bucket(bucket)
	if t.over != nil {
		var c *bolt.Cursor
		if b != nil {
			c = b.Cursor()
		}
		t.mergeReverse(bucket, c, fn)
		return
	}
	if b == nil {
		return
	}
	c := b.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		if !fn(k, v) {
			return
		}
	}
}

// LastApplied returns the index of the last Raft entry applied to this file.
func (t *Tx) LastApplied() uint64 {
	v := t.get(bucketMeta, keyLastApplied)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// SetLastApplied records the last applied Raft index; the FSM writes it in
// the same transaction as the entries it covers, so the file is never
// ahead of or behind its own index.
func (t *Tx) SetLastApplied(index uint64) error {
	return t.put(bucketMeta, keyLastApplied, u64(index))
}

// View runs fn in a read-only transaction. It sees every batch applied
// before it began, flushed or not.
func (s *Store) View(fn func(*Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	t, err := s.beginRead()
	if err != nil {
		return err
	}
	defer func() { _ = t.tx.Rollback() }()
	return fn(t)
}

// Update runs fn in a read-write transaction, committed with fsync (which
// makes every earlier UpdateNoSync durable too).
func (s *Store) Update(fn func(*Tx) error) error { return s.update(fn, true) }

// LastApplied returns the last applied Raft index recorded in the file.
func (s *Store) LastApplied() uint64 {
	var idx uint64
	_ = s.View(func(tx *Tx) error { idx = tx.LastApplied(); return nil })
	return idx
}

// Size returns the state file's size in bytes.
func (s *Store) Size() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n int64
	if !s.closed {
		_ = s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	}
	return n
}

// Snapshot is a consistent, point-in-time copy of the state file.
// WriteTo may run concurrently with Update; Release must be called once.
type Snapshot struct {
	tx   *bolt.Tx
	once sync.Once
}

// Snapshot flushes the open batch transaction and opens a read
// transaction pinning the current state.
func (s *Store) Snapshot() (*Snapshot, error) {
	// Flushing and beginning under wmu: no batch lands in between, so the
	// snapshot holds everything applied when it was asked for.
	unlock, err := s.lockWriter()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.flushLocked(); err != nil {
		return nil, err
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	return &Snapshot{tx: tx}, nil
}

// Index returns the last applied index the snapshot contains.
func (sn *Snapshot) Index() uint64 { return (&Tx{tx: sn.tx}).LastApplied() }

// WriteTo writes the whole bbolt file as of the snapshot.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) { return sn.tx.WriteTo(w) }

// Release ends the snapshot's read transaction.
func (sn *Snapshot) Release() { sn.once.Do(func() { _ = sn.tx.Rollback() }) }

// Restore replaces the state file with the bbolt image read from r. The
// image is written to a temporary file, fsynced and checked (it must be a
// state file of this region) before it atomically replaces the current
// one; on any error the current state is left untouched.
func (s *Store) Restore(r io.Reader) error {
	tmp := s.path + ".restore"
	if err := syncfile.Write(tmp, r, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	if err := verifyImage(tmp, s.opts.Region); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		os.Remove(tmp)
		return ErrClosed
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// The image replaces the file whole and was fsynced: nothing of the
	// old file's unsynced commits, nor of its unflushed batches, matters
	// any more.
	s.dropBatchLocked()
	s.unsynced = false
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("restore: close current: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := syncfile.SyncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	db, err := openDB(s.path, s.opts)
	if err != nil {
		return fmt.Errorf("restore: reopen: %w", err)
	}
	s.db = db
	return nil
}

// verifyImage opens a candidate image read-only and checks its stamp.
func verifyImage(path, region string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return fmt.Errorf("%w: no meta bucket", ErrCorrupt)
		}
		return checkMeta(m, region, false)
	})
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
