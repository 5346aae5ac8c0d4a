package export

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/outpost-mesh/outpost/internal/syncfile"
)

// ErrTooLarge is a batch that would not fit in the spool even if it were
// empty: split it, or give the spool more room.
var ErrTooLarge = errors.New("batch larger than the spool's bound")

// Spool is a bounded on-disk FIFO of export batches; doc.go gives its
// file format. It is safe for concurrent use; one Spool at a time may own
// a directory.
type Spool struct {
	dir      string
	maxBytes int64

	// putMu orders Puts: each evicts, writes its file (the slow, fsynced
	// part, done without mu so Oldest and Remove do not wait on it) and
	// appends, before the next takes a sequence number.
	putMu sync.Mutex

	mu      sync.Mutex
	batches []entry // ascending seq; guarded by mu
	bytes   int64   // sum of batches' sizes
	next    uint64  // the next sequence number
	stats   SpoolStats
}

// entry is a batch in the spool: its sequence number and file size.
type entry struct {
	seq  uint64
	size int64
}

// SpoolStats counts what a spool holds and what it lost. Sizes are of
// the batch files, header included.
type SpoolStats struct {
	Queued      int   // batches queued
	QueuedBytes int64 // their size
	// DroppedBatches and DroppedBytes are the oldest batches dropped to
	// make room for newer ones: samples lost for want of space.
	DroppedBatches uint64
	DroppedBytes   uint64
	// Corrupt counts batch files removed because they failed their
	// checks (or vanished) when read: samples lost to the disk.
	Corrupt uint64
}

// OpenSpool opens the spool in dir, creating it (0700) if need be, that
// holds at most maxBytes of batch files. It removes what a crash left:
// temporary files, and batch files that fail their checks (counted as
// corrupt). If the batches found exceed maxBytes (the bound was lowered)
// the oldest are dropped and counted.
func OpenSpool(dir string, maxBytes int64) (*Spool, error) {
	if maxBytes <= headerLen {
		return nil, fmt.Errorf("spool bound %d bytes: it must exceed the %d-byte file header; a few MiB at least", maxBytes, headerLen)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	// The batches are the host's metrics: no one else reads them.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, next: 1}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// load indexes the directory's batch files, removing temporary and
// corrupt ones and the oldest beyond the bound.
func (s *Spool) load() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("reading the spool: %w", err)
	}
	removed := false
	for _, e := range ents {
		name := e.Name()
		if isTempName(name) {
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("removing a partial batch: %w", err)
			}
			removed = true
			continue
		}
		seq, ok := parseBatchName(name)
		if !ok || !e.Type().IsRegular() {
			continue // not ours: leave it alone
		}
		// Numbering continues after every batch found, corrupt ones
		// included: a number is never given to two batches.
		s.next = max(s.next, seq+1)
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			return fmt.Errorf("reading the spool: %w", err)
		}
		if fseq, _, err := decodeBatchFile(b); err != nil || fseq != seq {
			if err := s.removeFile(seq); err != nil {
				return err
			}
			s.stats.Corrupt++
			removed = true
			continue
		}
		s.batches = append(s.batches, entry{seq: seq, size: int64(len(b))})
		s.bytes += int64(len(b))
	}
	// ReadDir sorts by name, and names sort as sequence numbers do; sort
	// anyway rather than rely on it.
	slices.SortFunc(s.batches, func(a, b entry) int { return cmp.Compare(a.seq, b.seq) })
	for s.bytes > s.maxBytes {
		if err := s.dropOldestLocked(); err != nil {
			return err
		}
		removed = true
	}
	if removed {
		return syncfile.SyncDir(s.dir)
	}
	return nil
}

func (s *Spool) path(seq uint64) string { return filepath.Join(s.dir, batchName(seq)) }

// removeFile removes batch seq's file; one already gone is not an error.
func (s *Spool) removeFile(seq uint64) error {
	if err := os.Remove(s.path(seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing batch %d: %w", seq, err)
	}
	return nil
}

// dropOldestLocked drops the oldest batch for want of space.
func (s *Spool) dropOldestLocked() error {
	e := s.batches[0]
	if err := s.removeFile(e.seq); err != nil {
		return err
	}
	s.batches = s.batches[1:]
	s.bytes -= e.size
	s.stats.DroppedBatches++
	s.stats.DroppedBytes += uint64(e.size)
	return nil
}

// Put appends b durably: when Put returns nil, the batch survives a
// crash. If the spool would exceed its bound, the oldest batches are
// dropped (and counted) first. A batch that could never fit is refused
// with ErrTooLarge.
func (s *Spool) Put(b []byte) error {
	size := int64(headerLen) + int64(len(b))
	if len(b) > maxPayload || size > s.maxBytes {
		return fmt.Errorf("%d-byte batch, spool bound %d bytes: %w", len(b), s.maxBytes, ErrTooLarge)
	}
	s.putMu.Lock()
	defer s.putMu.Unlock()

	s.mu.Lock()
	seq := s.next
	s.next++
	for s.bytes+size > s.maxBytes && len(s.batches) > 0 {
		if err := s.dropOldestLocked(); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("making room in the spool: %w", err)
		}
	}
	s.mu.Unlock()

	// Replace also fsyncs the directory, which makes the drops above
	// durable with the new file.
	if err := syncfile.Replace(s.path(seq), encodeBatchFile(seq, b), 0o600); err != nil {
		return fmt.Errorf("writing batch %d to the spool: %w", seq, err)
	}

	s.mu.Lock()
	s.batches = append(s.batches, entry{seq: seq, size: size})
	s.bytes += size
	s.mu.Unlock()
	return nil
}

// Oldest returns the oldest batch without removing it; ok is false when
// the spool is empty. A batch file found corrupt or missing is removed,
// counted, and the next one returned. An error is a failure to read the
// disk; the batch stays.
func (s *Spool) Oldest() (seq uint64, b []byte, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.batches) > 0 {
		e := s.batches[0]
		file, err := os.ReadFile(s.path(e.seq))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, nil, false, fmt.Errorf("reading batch %d from the spool: %w", e.seq, err)
		}
		if err == nil {
			fseq, payload, derr := decodeBatchFile(file)
			if derr == nil && fseq == e.seq {
				return e.seq, payload, true, nil
			}
		}
		// Damaged or deleted under us since OpenSpool checked it.
		if err := s.removeFile(e.seq); err != nil {
			return 0, nil, false, err
		}
		s.batches = s.batches[1:]
		s.bytes -= e.size
		s.stats.Corrupt++
	}
	return 0, nil, false, nil
}

// Remove deletes batch seq; a batch no longer in the spool (dropped for
// space meanwhile) is not an error. The deletion is not fsynced: after a
// crash the batch may come back and be sent again, which is harmless.
// On an error the batch is out of the queue all the same (a batch that
// cannot be deleted must not be sent forever).
func (s *Spool) Remove(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := slices.BinarySearchFunc(s.batches, seq, func(e entry, seq uint64) int { return cmp.Compare(e.seq, seq) })
	if !found {
		return nil
	}
	s.bytes -= s.batches[i].size
	s.batches = slices.Delete(s.batches, i, i+1)
	return s.removeFile(seq)
}

// Len is the number of batches queued.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.batches)
}

// Bytes is the size of the batch files queued.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Stats returns what the spool holds and what it has lost since it was
// opened.
func (s *Spool) Stats() SpoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Queued = len(s.batches)
	st.QueuedBytes = s.bytes
	return st
}
