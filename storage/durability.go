package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-mesh/outpost/internal/syncfile"
)

// The state file's durability (issue 20). The Raft FSM's batches are
// flushed (committed) without fsync, as UpdateNoSync commits: the change
// is in the file, and in the OS page cache, at once, so it survives the
// process being killed, but it reaches the disk only at the next Sync. A machine that loses power before then can leave
// the file torn (bbolt orders its page and meta writes only by fsyncing
// between them), and nothing inside the file can tell: bbolt checksums its
// meta pages, not its data pages. So the store keeps a marker beside the
// file, written and fsynced before the first unsynced commit and removed
// after the final sync of a clean Close, naming the boot it was written in.
// At Open a marker from an earlier boot means the file may be torn, and
// Open moves the file aside (Recovered says so) for the caller to rebuild
// from its snapshot and the Raft log; a marker from this boot means only
// the process died, and the file is checked before it is used.

// markerSuffix names the marker beside the state file.
const markerSuffix = ".unsynced"

// damagedSuffix names where a damaged state file is moved (one kept).
const damagedSuffix = ".damaged"

// Recovery says why Open moved a damaged state file aside and started an
// empty one in its place. The caller must rebuild the state (the raft
// package restores the newest snapshot and replays its log) and say so.
type Recovery struct {
	// Reason is what was wrong with the file.
	Reason error
	// MovedTo is where the damaged file now lies, for inspection.
	MovedTo string
}

// Recovered reports the damaged file Open replaced, or nil.
func (s *Store) Recovered() *Recovery { return s.recovered }

// UpdateNoSync runs fn in a read-write transaction committed without fsync:
// every later transaction sees the change, and it survives the process
// dying, but not the machine losing power before the next Sync. (The Raft
// FSM uses ApplyBatch, which does not even commit each batch.)
func (s *Store) UpdateNoSync(fn func(*Tx) error) error { return s.update(fn, false) }

// Sync makes every committed transaction durable and returns the last
// applied index recorded in the file, which is now on disk. A failed sync
// leaves the file's durability unknown (the kernel may have dropped the
// pages it could not write), so the marker is made to say so and the next
// Open rebuilds the file; the caller should stop.
func (s *Store) Sync() (uint64, error) {
	// Holding the writers' lock, no commit is half written while the file
	// syncs: the index read here is exactly what the sync covers.
	unlock, err := s.lockWriter()
	if err != nil {
		return 0, err
	}
	defer unlock()
	if err := s.flushLocked(); err != nil {
		return 0, err
	}
	var idx uint64
	if err := s.db.View(func(tx *bolt.Tx) error { idx = (&Tx{tx: tx}).LastApplied(); return nil }); err != nil {
		return 0, err
	}
	if !s.unsynced {
		return idx, nil
	}
	if err := s.db.Sync(); err != nil {
		_ = writeMarker(s.path, "sync-failed")
		return 0, fmt.Errorf("sync state file %s: %w", s.path, err)
	}
	s.unsynced = false
	return idx, nil
}

// update commits fn's transaction, with fsync when sync is set. Writers
// are serialised by wmu, so db.NoSync is set for exactly this commit.
func (s *Store) update(fn func(*Tx) error, sync bool) error {
	unlock, err := s.lockWriter()
	if err != nil {
		return err
	}
	defer unlock()
	// Batches applied before this transaction are committed before it.
	if err := s.flushLocked(); err != nil {
		return err
	}
	if !sync {
		// Before the first commit that can be lost with the machine. If
		// the marker cannot be written, this commit is fsynced instead
		// (and the next one tries again): slower, never unmarked.
		sync = s.markLocked()
	}
	s.db.NoSync = !sync
	// Readers pair the file with no delta now; the commit needs no vmu.
	err = s.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
	if err == nil {
		// bbolt's fsynced commit flushes the whole file, earlier unsynced
		// commits included.
		s.unsynced = !sync
	}
	return err
}

// syncAndUnmarkLocked makes a clean close: the file synced, then the marker
// removed. Called with the store's locks held.
func (s *Store) syncAndUnmarkLocked() error {
	if err := s.flushLocked(); err != nil {
		return err
	}
	if s.unsynced {
		if err := s.db.Sync(); err != nil {
			_ = writeMarker(s.path, "sync-failed")
			return fmt.Errorf("sync state file %s: %w", s.path, err)
		}
		s.unsynced = false
	}
	if !s.marked {
		return nil
	}
	if err := os.Remove(s.path + markerSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.marked = false
	return syncfile.SyncDir(filepath.Dir(s.path))
}

// writeMarker records, durably, that the state file may hold commits not
// yet on disk, written in boot boot.
func writeMarker(path, boot string) error {
	return syncfile.Replace(path+markerSuffix, []byte("boot_id="+boot+"\n"), 0o600)
}

// readMarker returns the boot a marker was written in, and whether there
// is one. An unreadable marker names no boot (the file is suspect).
func readMarker(path string) (boot string, found bool, err error) {
	b, err := os.ReadFile(path + markerSuffix)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", false, nil
	case err != nil:
		return "", false, err
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "boot_id=")
	if !ok {
		return "", true, nil
	}
	return v, true, nil
}

// openChecked opens the state file and decides whether it can be trusted.
// A damaged file (bbolt refuses it, its stamps or size are wrong, or,
// after an unclean stop, bbolt's consistency check fails) or one that
// may be torn (left unsynced by an earlier boot) is moved aside and an
// empty file started; the store's Recovered says why.
func openChecked(path string, opts Options) (*Store, error) {
	boot, marked, err := readMarker(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var damage error
	if marked && (boot == "" || boot != bootID()) {
		// Open it anyway to tell a lock held by a live process (refused
		// below) from a file left behind by a reboot.
		damage = fmt.Errorf("%w: the machine restarted (or a sync failed) while the file held commits not yet synced to disk (marker boot %q, this boot %q), so it may be torn", ErrCorrupt, boot, bootID())
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
		// bbolt would start an empty store in it. A file this node
		// created and never got to initialise has nothing to lose; any
		// other lost its pages.
		damage = fmt.Errorf("%w: the file is empty", ErrCorrupt)
	}
	db, err := openDB(path, opts)
	switch {
	case errors.Is(err, ErrCorrupt):
		damage = err
	case err != nil:
		return nil, err
	case damage == nil && marked:
		// The process died with unsynced commits; the page cache kept
		// them, so the file is whole unless something else broke it.
		if cerr := checkDB(db); cerr != nil {
			damage = fmt.Errorf("%w: consistency check after an unclean stop: %v", ErrCorrupt, cerr)
		}
	}
	if damage == nil {
		// The marker stays: commits from before the crash may still be
		// only in the page cache until this process syncs.
		return &Store{path: path, opts: opts, db: db, marked: marked, unsynced: marked}, nil
	}
	if db != nil {
		db.Close()
	}
	moved := path + damagedSuffix
	if err := os.Rename(path, moved); err != nil {
		return nil, fmt.Errorf("open %s: %w (and moving it aside failed: %v)", path, damage, err)
	}
	if err := os.Remove(path + markerSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syncfile.SyncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if db, err = openDB(path, opts); err != nil {
		return nil, err
	}
	return &Store{path: path, opts: opts, db: db, recovered: &Recovery{Reason: damage, MovedTo: moved}}, nil
}

// checkDB runs bbolt's consistency check (every page reachable or free,
// none twice, keys in order) over the whole file. bbolt recovers a panic
// of its checker itself and reports it as an error.
func checkDB(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		var first error
		for e := range tx.Check() {
			if first == nil {
				first = e
			}
		}
		return first
	})
}

// checkSize refuses a file shorter than the pages its meta page says are
// in use (a truncated file): reading them through the mmap would fault.
func checkSize(db *bolt.DB, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	var want int64
	_ = db.View(func(tx *bolt.Tx) error { want = tx.Size(); return nil })
	if fi.Size() < want {
		return fmt.Errorf("%w: file is %d bytes, its meta page says %d are in use (truncated)", ErrCorrupt, fi.Size(), want)
	}
	return nil
}
