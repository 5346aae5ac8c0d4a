package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-mesh/outpost/internal/testfault"
)

// putNoSync commits key k and index idx without fsync, as a flush of the
// FSM's batch transaction does.
func putNoSync(t *testing.T, s *Store, idx uint64, k, v string) {
	t.Helper()
	if err := s.UpdateNoSync(func(tx *Tx) error {
		if err := tx.Put(BucketKV, []byte(k), []byte(v)); err != nil {
			return err
		}
		return tx.SetLastApplied(idx)
	}); err != nil {
		t.Fatal(err)
	}
}

// crash abandons s as a killed process would: the file closed without a
// sync and without a clean close, the marker left beside it. The page
// cache keeps what was committed, as it does when a process dies.
func crash(t *testing.T, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
}

func markerBoot(t *testing.T, path string) (string, bool) {
	t.Helper()
	boot, found, err := readMarker(path)
	if err != nil {
		t.Fatal(err)
	}
	return boot, found
}

// fill commits n keys (index 1..n) without fsync and returns the store.
func fill(t *testing.T, path string, n int) *Store {
	t.Helper()
	s, err := Open(path, Options{Region: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		putNoSync(t, s, uint64(i), fmt.Sprintf("k%05d", i), strings.Repeat("v", 100))
	}
	return s
}

// TestUnsyncedCommitsAreMarked: the first unsynced commit leaves a marker
// naming this boot, Sync reports the index it made durable, and a clean
// Close syncs and removes the marker.
func TestUnsyncedCommitsAreMarked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{Region: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	if _, found := markerBoot(t, path); found {
		t.Fatal("a marker before any unsynced commit")
	}
	put(t, s, 1, "a", "1")
	if _, found := markerBoot(t, path); found {
		t.Fatal("an fsynced commit left a marker")
	}
	putNoSync(t, s, 2, "b", "2")
	if boot, found := markerBoot(t, path); !found || boot != bootID() {
		t.Fatalf("marker after an unsynced commit: found %v, boot %q, want %q", found, boot, bootID())
	}
	if got := get(t, s, "b"); got != "2" {
		t.Fatalf("an unsynced commit is not visible: b = %q", got)
	}
	idx, err := s.Sync()
	if err != nil || idx != 2 {
		t.Fatalf("Sync = %d, %v; want 2", idx, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, found := markerBoot(t, path); found {
		t.Fatal("a clean close left the marker")
	}
	s2 := open(t, path, "eu")
	if s2.Recovered() != nil || get(t, s2, "b") != "2" || s2.LastApplied() != 2 {
		t.Fatalf("reopen after a clean close: recovered %v, b %q, index %d", s2.Recovered(), get(t, s2, "b"), s2.LastApplied())
	}
}

// TestOpenAfterAProcessCrashKeepsUnsyncedCommits: a process killed with
// unsynced commits leaves them in the page cache; the next open in the
// same boot checks the file and keeps it, and its first sync makes them
// durable.
func TestOpenAfterAProcessCrashKeepsUnsyncedCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := fill(t, path, 50)
	crash(t, s)
	s2 := open(t, path, "eu")
	if rec := s2.Recovered(); rec != nil {
		t.Fatalf("a crash of the process alone rebuilt the file: %v", rec.Reason)
	}
	if s2.LastApplied() != 50 || get(t, s2, "k00050") == "" {
		t.Fatalf("after the crash: index %d, k00050 %q", s2.LastApplied(), get(t, s2, "k00050"))
	}
	if !s2.unsynced {
		t.Fatal("the crashed process's commits were not counted as unsynced")
	}
	if idx, err := s2.Sync(); err != nil || idx != 50 {
		t.Fatalf("Sync = %d, %v", idx, err)
	}
}

// TestOpenRebuildsDamagedFiles: a file bbolt refuses, a truncated or
// empty file, garbage in a page after an unclean stop, and a file a
// power loss may have torn are moved aside and an empty file started,
// with the reason; errors that are not damage leave the file alone.
func TestOpenRebuildsDamagedFiles(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
		reason string
	}{
		{"power loss: marker from another boot", func(t *testing.T, path string) {
			if err := writeMarker(path, "another-boot"); err != nil {
				t.Fatal(err)
			}
		}, "machine restarted"},
		{"a sync failed", func(t *testing.T, path string) {
			if err := writeMarker(path, "sync-failed"); err != nil {
				t.Fatal(err)
			}
		}, "may be torn"},
		{"meta pages overwritten", func(t *testing.T, path string) {
			testfault.Scribble(t, nil, path, 0, 8192)
		}, "corrupt"},
		{"truncated", func(t *testing.T, path string) {
			// Below the pages in use: bbolt grows the file ahead of them
			// (16 MiB at a time), and cutting off that slack is no damage.
			if err := os.Truncate(path, testfault.InUse(t, path)/2); err != nil {
				t.Fatal(err)
			}
		}, "corrupt"},
		{"empty", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, "empty"},
		{"garbage in a leaf page after an unclean stop", func(t *testing.T, path string) {
			id, size := leafPage(t, path)
			testfault.Scribble(t, nil, path, id*int64(size)+16, size-16)
		}, "consistency check"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			crash(t, fill(t, path, 300))
			tc.damage(t, path)
			s, err := Open(path, Options{Region: "eu"})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer s.Close()
			rec := s.Recovered()
			if rec == nil {
				t.Fatalf("the damaged file was kept (index %d)", s.LastApplied())
			}
			if !errors.Is(rec.Reason, ErrCorrupt) || !strings.Contains(rec.Reason.Error(), tc.reason) {
				t.Fatalf("reason %q, want ErrCorrupt mentioning %q", rec.Reason, tc.reason)
			}
			if s.LastApplied() != 0 || get(t, s, "k00001") != "" {
				t.Fatalf("the new file is not empty: index %d", s.LastApplied())
			}
			if _, err := os.Stat(rec.MovedTo); err != nil {
				t.Fatalf("the damaged file is not at %s: %v", rec.MovedTo, err)
			}
			if _, found := markerBoot(t, path); found {
				t.Fatal("the old marker survived the rebuild")
			}
		})
	}

	t.Run("not damage: the file is left alone", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		s := fill(t, path, 10)
		if _, err := Open(path, Options{Region: "eu", LockTimeout: 100e6}); !errors.Is(err, ErrLocked) {
			t.Fatalf("second opener: %v, want ErrLocked", err)
		}
		crash(t, s)
		if _, err := Open(path, Options{Region: "us"}); !errors.Is(err, ErrForeign) {
			t.Fatalf("another region: %v, want ErrForeign", err)
		}
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, u64(FormatVersion+1)) }); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if _, err := Open(path, Options{Region: "eu"}); !errors.Is(err, ErrNewerFormat) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("newer format: %v, want ErrNewerFormat", err)
		}
		if _, err := os.Stat(path + damagedSuffix); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a file that is not damaged was moved aside: %v", err)
		}
	})
}

// leafPage returns a leaf page of the kv bucket, which opening the file
// does not read, and the page size.
func leafPage(t *testing.T, path string) (int64, int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var id int64 = -1
	err = db.View(func(tx *bolt.Tx) error {
		for p := 2; p < int(tx.Size())/db.Info().PageSize; p++ {
			// A leaf of the kv bucket (the root bucket's leaf holds 3).
			if pi, err := tx.Page(p); err == nil && pi != nil && pi.Type == "leaf" && pi.Count > 5 {
				id = int64(p)
			}
		}
		return nil
	})
	if err != nil || id < 0 {
		t.Fatalf("no leaf page found: %v", err)
	}
	return id, db.Info().PageSize
}
