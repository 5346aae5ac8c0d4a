package storage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func open(t *testing.T, path, region string) *Store {
	t.Helper()
	s, err := Open(path, Options{Region: region, LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t *testing.T, s *Store, idx uint64, k, v string) {
	t.Helper()
	if err := s.Update(func(tx *Tx) error {
		if err := tx.Put(BucketKV, []byte(k), []byte(v)); err != nil {
			return err
		}
		return tx.SetLastApplied(idx)
	}); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, s *Store, k string) string {
	t.Helper()
	var v string
	_ = s.View(func(tx *Tx) error { v = string(tx.Get(BucketKV, []byte(k))); return nil })
	return v
}

func TestOpenRefusals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s := open(t, path, "eu")
	put(t, s, 1, "a", "1")

	t.Run("locked by another opener", func(t *testing.T) {
		_, err := Open(path, Options{Region: "eu", LockTimeout: 100 * time.Millisecond})
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("err = %v, want ErrLocked", err)
		}
	})
	s.Close()
	t.Run("another region", func(t *testing.T) {
		_, err := Open(path, Options{Region: "us"})
		if !errors.Is(err, ErrForeign) {
			t.Fatalf("err = %v, want ErrForeign", err)
		}
	})
	t.Run("corrupt file moved aside", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.db")
		if err := os.WriteFile(bad, bytes.Repeat([]byte("garbage!"), 4096), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(bad, Options{Region: "eu"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if rec := s.Recovered(); rec == nil || !errors.Is(rec.Reason, ErrCorrupt) {
			t.Fatalf("recovered = %+v, want the garbage file replaced as corrupt", rec)
		}
	})
	t.Run("reopen keeps data", func(t *testing.T) {
		s2 := open(t, path, "eu")
		if got := get(t, s2, "a"); got != "1" {
			t.Fatalf("a = %q after reopen", got)
		}
		if s2.LastApplied() != 1 {
			t.Fatalf("last applied %d, want 1", s2.LastApplied())
		}
	})
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	src := open(t, filepath.Join(dir, "src.db"), "eu")
	for i, k := range []string{"a", "b", "c"} {
		put(t, src, uint64(i+1), k, k+"-v")
	}
	sn, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot began are not in it.
	put(t, src, 4, "d", "late")
	var img bytes.Buffer
	if _, err := sn.WriteTo(&img); err != nil {
		t.Fatal(err)
	}
	sn.Release()

	dst := open(t, filepath.Join(dir, "dst.db"), "eu")
	put(t, dst, 9, "stale", "x")
	if err := dst.Restore(bytes.NewReader(img.Bytes())); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if got := get(t, dst, k); got != k+"-v" {
			t.Fatalf("%s = %q after restore", k, got)
		}
	}
	if got := get(t, dst, "d"); got != "" {
		t.Fatalf("write after the snapshot leaked into it: d = %q", got)
	}
	if got := get(t, dst, "stale"); got != "" {
		t.Fatalf("restore kept pre-restore data: stale = %q", got)
	}
	if dst.LastApplied() != 3 {
		t.Fatalf("last applied after restore = %d, want 3", dst.LastApplied())
	}

	t.Run("foreign image refused and state kept", func(t *testing.T) {
		other := open(t, filepath.Join(dir, "other.db"), "us")
		sn, _ := other.Snapshot()
		var img bytes.Buffer
		sn.WriteTo(&img)
		sn.Release()
		if err := dst.Restore(&img); !errors.Is(err, ErrForeign) {
			t.Fatalf("err = %v, want ErrForeign", err)
		}
		if get(t, dst, "a") != "a-v" {
			t.Fatal("failed restore damaged the current state")
		}
	})
	t.Run("garbage image refused", func(t *testing.T) {
		if err := dst.Restore(bytes.NewReader([]byte("not a bbolt file"))); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("err = %v, want ErrCorrupt", err)
		}
		if get(t, dst, "a") != "a-v" {
			t.Fatal("failed restore damaged the current state")
		}
	})
}
