package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// applyBatch runs fn through ApplyBatch and fails the test on an error.
func applyBatch(t *testing.T, s *Store, fn func(*Tx) error) {
	t.Helper()
	if err := s.ApplyBatch(fn); err != nil {
		t.Fatalf("ApplyBatch: %v", err)
	}
}

// inFile reads key straight from the file's last commit, past the
// published delta: what a killed process would leave behind.
func inFile(t *testing.T, s *Store, bucket []byte, key string) []byte {
	t.Helper()
	var v []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucket); b != nil {
			v = bytes.Clone(b.Get([]byte(key)))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// walk lists bucket's keys and values as the four iterators see them.
type walk struct{ forward, from, reverse, tenant []string }

func pairs(dst *[]string) func(k, v []byte) bool {
	return func(k, v []byte) bool { *dst = append(*dst, string(k)+"="+string(v)); return true }
}

func TestBatchReadYourWritesBeforeFlush(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), "eu")
	put(t, s, 1, "a", "old")
	put(t, s, 2, "c", "old")
	ten, _ := Scope("acme")
	applyBatch(t, s, func(tx *Tx) error {
		for _, kv := range [][2]string{{"a", "new"}, {"b", "1"}, {"d", "1"}} {
			if err := tx.Put(BucketKV, []byte(kv[0]), []byte(kv[1])); err != nil {
				return err
			}
		}
		if err := tx.Tenant(ten).Put([]byte("kv"), []byte("x"), []byte("t")); err != nil {
			return err
		}
		return tx.SetLastApplied(3)
	})
	if got := s.Pending(); got != 1 {
		t.Fatalf("Pending = %d, want 1", got)
	}
	if v := inFile(t, s, BucketKV, "b"); v != nil {
		t.Fatalf("the file holds b=%q before a flush: the batch was committed", v)
	}
	check := func(stage string) {
		t.Helper()
		var w walk
		var last uint64
		var a, x string
		if err := s.View(func(tx *Tx) error {
			a = string(tx.Get(BucketKV, []byte("a")))
			x = string(tx.Tenant(ten).Get([]byte("kv"), []byte("x")))
			last = tx.LastApplied()
			tx.ForEach(BucketKV, nil, pairs(&w.forward))
			tx.ForEachFrom(BucketKV, nil, []byte("b"), pairs(&w.from))
			tx.ForEachReverse(BucketKV, pairs(&w.reverse))
			tx.Tenant(ten).ForEach([]byte("kv"), nil, pairs(&w.tenant))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		want := walk{
			forward: []string{"a=new", "b=1", "c=old", "d=1"},
			from:    []string{"b=1", "c=old", "d=1"},
			reverse: []string{"d=1", "c=old", "b=1", "a=new"},
			tenant:  []string{"x=t"},
		}
		if a != "new" || x != "t" || last != 3 || fmt.Sprint(w) != fmt.Sprint(want) {
			t.Fatalf("%s: a=%q x=%q last=%d walks=%v, want a=new x=t last=3 walks=%v", stage, a, x, last, w, want)
		}
	}
	check("before the flush")
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if v := inFile(t, s, BucketKV, "b"); string(v) != "1" {
		t.Fatalf("the file holds b=%q after the flush, want 1", v)
	}
	if got := s.Pending(); got != 0 {
		t.Fatalf("Pending after Flush = %d, want 0", got)
	}
	check("after the flush")
}

func TestBatchDeletesAndPutsAgain(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), "eu")
	put(t, s, 1, "a", "1")
	put(t, s, 2, "b", "1")
	put(t, s, 3, "c", "1")
	kv := func(tx *Tx, op, k, v string) error {
		if op == "del" {
			return tx.Delete(BucketKV, []byte(k))
		}
		return tx.Put(BucketKV, []byte(k), []byte(v))
	}
	// Batch 1: delete a flushed key, delete and put again in one batch,
	// put a new key and delete it again in the same batch.
	applyBatch(t, s, func(tx *Tx) error {
		return errors.Join(kv(tx, "del", "a", ""), kv(tx, "del", "b", ""), kv(tx, "put", "b", "2"),
			kv(tx, "put", "z", "1"), kv(tx, "del", "z", ""))
	})
	want := func(stage string, absent []string, wantKeys ...string) {
		t.Helper()
		var fwd, rev, found []string
		_ = s.View(func(tx *Tx) error {
			tx.ForEach(BucketKV, nil, pairs(&fwd))
			tx.ForEachReverse(BucketKV, pairs(&rev))
			for _, k := range absent {
				if v := tx.Get(BucketKV, []byte(k)); v != nil {
					found = append(found, k+"="+string(v))
				}
			}
			return nil
		})
		slices.Reverse(rev)
		if fmt.Sprint(fwd) != fmt.Sprint(wantKeys) || fmt.Sprint(rev) != fmt.Sprint(wantKeys) || found != nil {
			t.Fatalf("%s: forward %v, reverse (turned) %v, Get found %v; want %v and none of %v", stage, fwd, rev, found, wantKeys, absent)
		}
	}
	want("batch 1", []string{"a", "z"}, "b=2", "c=1")
	// Batch 2: put a again across batches; delete c, which is in the file.
	applyBatch(t, s, func(tx *Tx) error { return errors.Join(kv(tx, "put", "a", "3"), kv(tx, "del", "c", "")) })
	want("batch 2", []string{"c", "z"}, "a=3", "b=2")
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	want("flushed", []string{"c", "z"}, "a=3", "b=2")
	if v := inFile(t, s, BucketKV, "c"); v != nil {
		t.Fatalf("c still in the file after the flush: %q", v)
	}
}

func TestBatchMergeEdges(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), "eu")
	// The file: p/1, p/3, p/5, q/1; another bucket "kw" sorting right
	// after "kv" in both the file and the delta.
	if err := s.Update(func(tx *Tx) error {
		for _, k := range []string{"a/1", "a/2", "p/1", "p/3", "p/5", "q/1", "q/2"} {
			if err := tx.Put(BucketKV, []byte(k), []byte("f")); err != nil {
				return err
			}
		}
		return tx.Put([]byte("kw"), []byte("p/0"), []byte("other"))
	}); err != nil {
		t.Fatal(err)
	}
	applyBatch(t, s, func(tx *Tx) error {
		return errors.Join(
			tx.Put(BucketKV, []byte("o/9"), []byte("d")), // before the prefix
			tx.Put(BucketKV, []byte("p/2"), []byte("d")),
			tx.Put(BucketKV, []byte("p/5"), []byte("d")), // shadows the file
			tx.Put(BucketKV, []byte("p/6"), []byte("d")),
			tx.Delete(BucketKV, []byte("p/3")),
			tx.Put(BucketKV, []byte("p0"), []byte("d")), // past the prefix "p/"
			tx.Put([]byte("kw"), []byte("p/4"), []byte("other")),
			tx.Put([]byte("ku"), []byte("p/4"), []byte("other")),
		)
	})
	cases := []struct {
		name string
		run  func(tx *Tx, out *[]string)
		want []string
	}{
		{"prefix", func(tx *Tx, out *[]string) { tx.ForEach(BucketKV, []byte("p/"), pairs(out)) },
			[]string{"p/1=f", "p/2=d", "p/5=d", "p/6=d"}},
		{"from a deleted key", func(tx *Tx, out *[]string) { tx.ForEachFrom(BucketKV, []byte("p/"), []byte("p/3"), pairs(out)) },
			[]string{"p/5=d", "p/6=d"}},
		{"from past every key", func(tx *Tx, out *[]string) { tx.ForEachFrom(BucketKV, []byte("p/"), []byte("p/7"), pairs(out)) },
			nil},
		{"stop inside the file's run", func(tx *Tx, out *[]string) {
			tx.ForEach(BucketKV, []byte("p/"), func(k, v []byte) bool { *out = append(*out, string(k)); return false })
		}, []string{"p/1"}},
		{"stop on the delta's key", func(tx *Tx, out *[]string) {
			tx.ForEach(BucketKV, []byte("p/"), func(k, v []byte) bool { *out = append(*out, string(k)); return string(k) != "p/2" })
		}, []string{"p/1", "p/2"}},
		{"stop on the delta's last key", func(tx *Tx, out *[]string) {
			tx.ForEach(BucketKV, nil, func(k, v []byte) bool { *out = append(*out, string(k)); return string(k) != "p0" })
		}, []string{"a/1", "a/2", "o/9", "p/1", "p/2", "p/5", "p/6", "p0"}},
		{"stop in the file's tail, past the delta", func(tx *Tx, out *[]string) {
			tx.ForEach(BucketKV, nil, func(k, v []byte) bool { *out = append(*out, string(k)); return string(k) != "q/1" })
		}, []string{"a/1", "a/2", "o/9", "p/1", "p/2", "p/5", "p/6", "p0", "q/1"}},
		{"reverse", func(tx *Tx, out *[]string) { tx.ForEachReverse(BucketKV, pairs(out)) },
			[]string{"q/2=f", "q/1=f", "p0=d", "p/6=d", "p/5=d", "p/2=d", "p/1=f", "o/9=d", "a/2=f", "a/1=f"}},
		{"reverse stops", func(tx *Tx, out *[]string) {
			tx.ForEachReverse(BucketKV, func(k, v []byte) bool { *out = append(*out, string(k)); return string(k) != "p/5" })
		}, []string{"q/2", "q/1", "p0", "p/6", "p/5"}},
		{"reverse stops in the file's head, past the delta", func(tx *Tx, out *[]string) {
			tx.ForEachReverse(BucketKV, func(k, v []byte) bool { *out = append(*out, string(k)); return string(k) != "a/2" })
		}, []string{"q/2", "q/1", "p0", "p/6", "p/5", "p/2", "p/1", "o/9", "a/2"}},
		{"reverse of a bucket only in the delta", func(tx *Tx, out *[]string) { tx.ForEachReverse([]byte("ku"), pairs(out)) },
			[]string{"p/4=other"}},
		{"neighbouring bucket", func(tx *Tx, out *[]string) { tx.ForEach([]byte("kw"), nil, pairs(out)) },
			[]string{"p/0=other", "p/4=other"}},
		{"missing bucket", func(tx *Tx, out *[]string) { tx.ForEach([]byte("kx"), nil, pairs(out)) }, nil},
	}
	for _, c := range cases {
		var got []string
		_ = s.View(func(tx *Tx) error { c.run(tx, &got); return nil })
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// TestBatchModel applies random batches of puts and deletes over a small
// key space, flushing at random, and after every batch compares what a
// reader sees through each iterator with a plain map. Meanwhile readers
// check that every batch appears whole: each batch sets every "x/" key
// and the "n" key to its number, which no reader may see go back. 300
// batches here, 5000 under OUTPOST_TEST_LONG=1 (make test-long).
func TestBatchModel(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), "eu")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(1, seed))
	model := map[string]string{}
	buckets := [][]byte{BucketKV, []byte("kw")}
	const xs = 5

	stop := make(chan struct{})
	var readers sync.WaitGroup
	var reads atomic.Int64
	var torn atomic.Value
	for range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			lastN := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = s.View(func(tx *Tx) error {
					n := string(tx.Get(BucketKV, []byte("n")))
					if i, _ := strconv.Atoi(n); i < lastN {
						torn.Store(fmt.Sprintf("n went back from %d to %d: a reader was paired with an older file", lastN, i))
					} else {
						lastN = i
					}
					var seen []string
					tx.ForEach(BucketKV, []byte("x/"), func(k, v []byte) bool { seen = append(seen, string(v)); return true })
					for _, v := range seen {
						if v != n {
							torn.Store(fmt.Sprintf("n=%s but x/ holds %v", n, seen))
						}
					}
					if n != "" && len(seen) != xs {
						torn.Store(fmt.Sprintf("n=%s but %d x/ keys, want %d", n, len(seen), xs))
					}
					return nil
				})
				reads.Add(1)
			}
		}()
	}

	batches := 300
	if os.Getenv("OUTPOST_TEST_LONG") != "" {
		batches = 5000
	}
	for batch := 1; batch <= batches; batch++ {
		var ops []func(tx *Tx) error
		for range 1 + rng.IntN(8) {
			b := buckets[rng.IntN(len(buckets))]
			k := fmt.Sprintf("k%02d", rng.IntN(30))
			mk := string(b) + "|" + k
			if rng.IntN(3) == 0 {
				delete(model, mk)
				ops = append(ops, func(tx *Tx) error { return tx.Delete(b, []byte(k)) })
			} else {
				v := fmt.Sprintf("v%d", batch)
				model[mk] = v
				ops = append(ops, func(tx *Tx) error { return tx.Put(b, []byte(k), []byte(v)) })
			}
		}
		n := fmt.Sprint(batch)
		applyBatch(t, s, func(tx *Tx) error {
			for _, op := range ops {
				if err := op(tx); err != nil {
					return err
				}
			}
			for i := range xs {
				if err := tx.Put(BucketKV, fmt.Appendf(nil, "x/%d", i), []byte(n)); err != nil {
					return err
				}
			}
			return tx.Put(BucketKV, []byte("n"), []byte(n))
		})
		if rng.IntN(10) == 0 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		for _, b := range buckets {
			var want []string
			for mk, v := range model {
				if name, k, _ := strings.Cut(mk, "|"); name == string(b) {
					want = append(want, k+"="+v)
				}
			}
			slices.Sort(want)
			start := fmt.Sprintf("k%02d", rng.IntN(30))
			var wantFrom []string
			for _, kv := range want {
				if kv >= start {
					wantFrom = append(wantFrom, kv)
				}
			}
			var fwd, from, rev []string
			_ = s.View(func(tx *Tx) error {
				tx.ForEach(b, []byte("k"), pairs(&fwd))
				tx.ForEachFrom(b, []byte("k"), []byte(start), pairs(&from))
				tx.ForEachReverse(b, func(k, v []byte) bool {
					if bytes.HasPrefix(k, []byte("k")) {
						rev = append(rev, string(k)+"="+string(v))
					}
					return true
				})
				for _, kv := range want {
					k, v, _ := strings.Cut(kv, "=")
					if got := string(tx.Get(b, []byte(k))); got != v {
						t.Errorf("batch %d: Get(%s, %s) = %q, want %q", batch, b, k, got, v)
					}
				}
				return nil
			})
			slices.Reverse(rev)
			if fmt.Sprint(fwd) != fmt.Sprint(want) || fmt.Sprint(rev) != fmt.Sprint(want) || fmt.Sprint(from) != fmt.Sprint(wantFrom) {
				t.Fatalf("batch %d, bucket %s:\n forward %v\n reverse %v\n from %s %v\nwant %v", batch, b, fwd, rev, start, from, want)
			}
		}
	}
	close(stop)
	readers.Wait()
	if msg := torn.Load(); msg != nil {
		t.Fatalf("a reader saw a batch in part: %v", msg)
	}
	if reads.Load() == 0 {
		t.Fatal("the concurrent readers never read")
	}
}

func TestBatchSnapshotHoldsUnflushedBatches(t *testing.T) {
	dir := t.TempDir()
	s := open(t, filepath.Join(dir, "state.db"), "eu")
	applyBatch(t, s, func(tx *Tx) error {
		return errors.Join(tx.Put(BucketKV, []byte("a"), []byte("1")), tx.SetLastApplied(7))
	})
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	if sn.Index() != 7 {
		t.Fatalf("snapshot index %d, want 7", sn.Index())
	}
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	other := open(t, filepath.Join(dir, "other.db"), "eu")
	if err := other.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got := get(t, other, "a"); got != "1" || other.LastApplied() != 7 {
		t.Fatalf("restored a=%q last applied %d, want 1 and 7", got, other.LastApplied())
	}
}

func TestBatchUpdateAndSyncFlushFirst(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), "eu")
	applyBatch(t, s, func(tx *Tx) error {
		return errors.Join(tx.Put(BucketKV, []byte("a"), []byte("batch")), tx.SetLastApplied(4))
	})
	// An Update after a batch sees it and lands after it.
	if err := s.Update(func(tx *Tx) error {
		if got := string(tx.Get(BucketKV, []byte("a"))); got != "batch" {
			return fmt.Errorf("Update sees a=%q, want the batch's value", got)
		}
		return tx.Put(BucketKV, []byte("b"), []byte("update"))
	}); err != nil {
		t.Fatal(err)
	}
	if a, b := inFile(t, s, BucketKV, "a"), inFile(t, s, BucketKV, "b"); string(a) != "batch" || string(b) != "update" {
		t.Fatalf("file after Update: a=%q b=%q", a, b)
	}
	applyBatch(t, s, func(tx *Tx) error { return tx.SetLastApplied(5) })
	idx, err := s.Sync()
	if err != nil || idx != 5 {
		t.Fatalf("Sync = %d, %v; want the batch's index 5", idx, err)
	}
}

func TestBatchHooksRunOncePublished(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), "eu")
	var seen string
	ran := 0
	applyBatch(t, s, func(tx *Tx) error {
		tx.OnCommit(func() {
			ran++
			seen = get(t, s, "a")
		})
		return tx.Put(BucketKV, []byte("a"), []byte("1"))
	})
	if ran != 1 || seen != "1" {
		t.Fatalf("hook ran %d times and read a=%q; want once, after the batch was visible", ran, seen)
	}
}

func TestBatchFailureFailsTheStore(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), "eu")
	put(t, s, 1, "a", "flushed")
	applyBatch(t, s, func(tx *Tx) error { return tx.Put(BucketKV, []byte("a"), []byte("shown")) })
	hook := false
	boom := errors.New("boom")
	if err := s.ApplyBatch(func(tx *Tx) error {
		tx.OnCommit(func() { hook = true })
		_ = tx.Put(BucketKV, []byte("b"), []byte("1"))
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("ApplyBatch = %v, want the batch's own error", err)
	}
	if hook {
		t.Fatal("a failed batch ran its hook")
	}
	// Readers were shown a=shown, which the file no longer has: no reader
	// may now see the older value.
	if err := s.View(func(*Tx) error { return nil }); !errors.Is(err, ErrFailed) {
		t.Fatalf("View after a failed batch = %v, want ErrFailed", err)
	}
	for name, f := range map[string]func() error{
		"ApplyBatch": func() error { return s.ApplyBatch(func(*Tx) error { return nil }) },
		"Flush":      s.Flush,
		"Sync":       func() error { _, err := s.Sync(); return err },
		"Update":     func() error { return s.Update(func(*Tx) error { return nil }) },
	} {
		if err := f(); !errors.Is(err, ErrFailed) {
			t.Errorf("%s after a failed batch = %v, want ErrFailed", name, err)
		}
	}
}

func TestBatchRestoreDropsUnflushed(t *testing.T) {
	dir := t.TempDir()
	src := open(t, filepath.Join(dir, "src.db"), "eu")
	put(t, src, 9, "a", "image")
	var img bytes.Buffer
	sn, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.WriteTo(&img); err != nil {
		t.Fatal(err)
	}
	sn.Release()

	s := open(t, filepath.Join(dir, "state.db"), "eu")
	applyBatch(t, s, func(tx *Tx) error {
		return errors.Join(tx.Put(BucketKV, []byte("b"), []byte("unflushed")), tx.SetLastApplied(3))
	})
	if err := s.Restore(&img); err != nil {
		t.Fatal(err)
	}
	if a, b := get(t, s, "a"), get(t, s, "b"); a != "image" || b != "" || s.LastApplied() != 9 {
		t.Fatalf("after Restore a=%q b=%q last %d; want the image alone (a=image, no b, 9)", a, b, s.LastApplied())
	}
	applyBatch(t, s, func(tx *Tx) error { return tx.SetLastApplied(10) })
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestBatchFlushRemapsUnderReaders makes a flush grow the file past its
// mapping while a reader holds a read transaction open: bbolt's remap
// waits for that reader, and the reader, finishing without any lock the
// flush holds, lets it through. A reader arriving during the flush
// finishes too, and sees the batch (liveness: it reads the same value
// before and after the flush).
func TestBatchFlushRemapsUnderReaders(t *testing.T) {
	old := initialMmapSize
	initialMmapSize = 64 << 10
	defer func() { initialMmapSize = old }()
	s := open(t, filepath.Join(t.TempDir(), "state.db"), "eu")

	inside, release := make(chan struct{}), make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		readerDone <- s.View(func(tx *Tx) error {
			close(inside)
			<-release
			if tx.Get(BucketKV, []byte("big/0000")) != nil {
				return errors.New("a reader that began before the batch sees it")
			}
			return nil
		})
	}()
	<-inside
	value := bytes.Repeat([]byte("v"), 1000)
	applyBatch(t, s, func(tx *Tx) error {
		for i := range 2000 { // about 2 MB: far past the 64 KiB mapping
			if err := tx.Put(BucketKV, fmt.Appendf(nil, "big/%04d", i), value); err != nil {
				return err
			}
		}
		return nil
	})
	flushed := make(chan error, 1)
	go func() { flushed <- s.Flush() }()
	select {
	case err := <-flushed:
		t.Fatalf("the flush finished (%v) while a reader held the mapping: it did not need to remap, so this test tests nothing", err)
	case <-time.After(200 * time.Millisecond):
	}
	late := make(chan string, 1)
	go func() {
		var v string
		_ = s.View(func(tx *Tx) error { v = string(tx.Get(BucketKV, []byte("big/1999"))); return nil })
		late <- v
	}()
	close(release)
	for name, ch := range map[string]chan error{"reader": readerDone, "flush": flushed} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not finish: the flush and the reader deadlocked", name)
		}
	}
	select {
	case v := <-late:
		if v != string(value) {
			t.Fatalf("a reader arriving during the flush read %d bytes, want the batch's value", len(v))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a reader arriving during the flush never finished")
	}
}

// TestBatchKillLeavesTheLastFlush: what a killed process leaves on disk
// is the file as of the last flush, whole, with the index of that flush;
// the batches applied after it are for the Raft log to replay.
func TestBatchKillLeavesTheLastFlush(t *testing.T) {
	dir := t.TempDir()
	s := open(t, filepath.Join(dir, "state.db"), "eu")
	applyBatch(t, s, func(tx *Tx) error {
		return errors.Join(tx.Put(BucketKV, []byte("a"), []byte("1")), tx.SetLastApplied(5))
	})
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	applyBatch(t, s, func(tx *Tx) error {
		return errors.Join(tx.Put(BucketKV, []byte("b"), []byte("2")), tx.SetLastApplied(6))
	})
	// The file as a SIGKILL now would leave it (the page cache holds
	// every flushed commit).
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	killed := filepath.Join(dir, "killed.db")
	if err := os.WriteFile(killed, b, 0o600); err != nil {
		t.Fatal(err)
	}
	k := open(t, killed, "eu")
	if a, b, idx := get(t, k, "a"), get(t, k, "b"), k.LastApplied(); a != "1" || b != "" || idx != 5 {
		t.Fatalf("the killed file holds a=%q b=%q at index %d; want the last flush alone (a=1, no b, 5)", a, b, idx)
	}
	if s.LastApplied() != 6 {
		t.Fatalf("the live store reads index %d, want 6 (the unflushed batch)", s.LastApplied())
	}
}

func TestBatchPanicFailsTheStore(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), "eu")
	func() {
		defer func() {
			if p := recover(); p != "handler bug" {
				t.Fatalf("recovered %v, want the batch's own panic", p)
			}
		}()
		_ = s.ApplyBatch(func(tx *Tx) error {
			_ = tx.Put(BucketKV, []byte("half"), []byte("1"))
			panic("handler bug")
		})
	}()
	if err := s.Flush(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Flush after a panicked batch = %v, want ErrFailed (it would commit half a batch)", err)
	}
	if v := inFile(t, s, BucketKV, "half"); v != nil {
		t.Fatalf("half a batch reached the file: half=%q", v)
	}
}
