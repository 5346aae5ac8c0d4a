package export

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// batchFiles lists dir's batch files.
func batchFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), fileSuffix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// drain takes every batch from sp, oldest first.
func drain(t *testing.T, sp *Spool) (seqs []uint64, payloads [][]byte) {
	t.Helper()
	for {
		seq, b, ok, err := sp.Oldest()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return seqs, payloads
		}
		seqs, payloads = append(seqs, seq), append(payloads, b)
		if err := sp.Remove(seq); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSpoolFIFO(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	sp := openSpool(t, dir, 1<<20)
	if _, _, ok, err := sp.Oldest(); ok || err != nil {
		t.Fatalf("empty spool: ok %v, err %v", ok, err)
	}
	put(t, sp, 1, 2, 3)
	if sp.Len() != 3 || sp.Bytes() != int64(3*headerLen)+int64(sizeOf(t, []int{1, 2, 3})) {
		t.Errorf("Len %d, Bytes %d", sp.Len(), sp.Bytes())
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("spool directory: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
	for _, name := range batchFiles(t, dir) {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", name, err, fi.Mode().Perm())
		}
	}
	if err := sp.Remove(99); err != nil {
		t.Errorf("removing a batch not there: %v", err)
	}
	seqs, payloads := drain(t, sp)
	if !slices.Equal(seqs, []uint64{1, 2, 3}) {
		t.Fatalf("sequence numbers %v, want 1 2 3", seqs)
	}
	for i, p := range payloads {
		if !bytes.Equal(p, batch(t, i+1)) {
			t.Errorf("batch %d came back changed", i+1)
		}
	}
	if sp.Len() != 0 || sp.Bytes() != 0 || len(batchFiles(t, dir)) != 0 {
		t.Errorf("drained spool: Len %d, Bytes %d, files %v", sp.Len(), sp.Bytes(), batchFiles(t, dir))
	}
}

// TestSpoolBound: a full spool drops its oldest batches for a new one and
// counts them; a batch that could never fit is refused; a spool reopened
// with a lower bound sheds down to it.
func TestSpoolBound(t *testing.T) {
	dir := t.TempDir()
	file := int64(headerLen + len(batch(t, 1)))
	sp := openSpool(t, dir, 3*file)
	put(t, sp, span(1, 5)...)
	st := sp.Stats()
	if st.Queued != 3 || st.QueuedBytes != 3*file || st.DroppedBatches != 2 || st.DroppedBytes != uint64(2*file) {
		t.Errorf("stats %+v, want 3 queued, 2 dropped (%d bytes each)", st, file)
	}
	if got := batchFiles(t, dir); !slices.Equal(got, []string{batchName(3), batchName(4), batchName(5)}) {
		t.Errorf("files %v, want batches 3 to 5", got)
	}
	if seq, b, _, _ := sp.Oldest(); seq != 3 || !bytes.Equal(b, batch(t, 3)) {
		t.Errorf("oldest is batch %d, want 3", seq)
	}

	err := sp.Put(make([]byte, 3*file-headerLen+1))
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized batch: %v, want ErrTooLarge", err)
	}
	if st := sp.Stats(); st.Queued != 3 || st.DroppedBatches != 2 {
		t.Errorf("an oversized batch dropped others: %+v", st)
	}

	sp = openSpool(t, dir, 2*file)
	if st := sp.Stats(); st.Queued != 2 || st.DroppedBatches != 1 {
		t.Errorf("reopened with room for 2: %+v, want 2 queued, 1 dropped", st)
	}
	if seqs, _ := drain(t, sp); !slices.Equal(seqs, []uint64{4, 5}) {
		t.Errorf("after reopening: %v, want 4 5", seqs)
	}
}

// TestSpoolReopenAfterCrash: a spool reopened after a crash removes the
// temporary file of a write cut short and the batch files that fail
// their checks (counted as corrupt), keeps the good batches in order,
// leaves files not its own, and numbers new batches after every one it
// found.
func TestSpoolReopenAfterCrash(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, dir, 1<<20)
	put(t, sp, span(1, 5)...)
	path := func(seq uint64) string { return filepath.Join(dir, batchName(seq)) }

	// A write of batch 6 cut short, as syncfile.Replace names it.
	tmp, err := os.CreateTemp(dir, "."+batchName(6)+".*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tmp.Write(encodeBatchFile(6, batch(t, 6))[:30])
	tmp.Close()
	// Batch 2 cut short, batch 3 with a flipped bit, and batch 7 holding
	// batch 1's contents (a header that does not match the name).
	if err := os.Truncate(path(2), 30); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path(3))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0x10
	if err := os.WriteFile(path(3), b, 0o600); err != nil {
		t.Fatal(err)
	}
	one, err := os.ReadFile(path(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path(7), one, 0o600); err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(dir, "NOTES")
	if err := os.WriteFile(notes, []byte("not a batch"), 0o600); err != nil {
		t.Fatal(err)
	}

	sp = openSpool(t, dir, 1<<20)
	if st := sp.Stats(); st.Queued != 3 || st.Corrupt != 3 || st.DroppedBatches != 0 {
		t.Errorf("reopened: %+v, want 3 queued (1, 4, 5) and 3 corrupt (2, 3, 7)", st)
	}
	if _, err := os.Stat(tmp.Name()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the partial write is still there: %v", err)
	}
	if _, err := os.Stat(notes); err != nil {
		t.Errorf("a file not the spool's was touched: %v", err)
	}
	put(t, sp, 8)
	seqs, payloads := drain(t, sp)
	if !slices.Equal(seqs, []uint64{1, 4, 5, 8}) {
		t.Fatalf("sequence numbers %v, want 1 4 5 8", seqs)
	}
	for i, want := range []int{1, 4, 5, 8} {
		if !bytes.Equal(payloads[i], batch(t, want)) {
			t.Errorf("batch %d came back changed", want)
		}
	}
}

// TestSpoolCorruptedWhileOpen: a batch file damaged or deleted after
// OpenSpool checked it is skipped and counted when it comes up.
func TestSpoolCorruptedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, dir, 1<<20)
	put(t, sp, 1, 2, 3)
	if err := os.Truncate(filepath.Join(dir, batchName(1)), 5); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, batchName(2))); err != nil {
		t.Fatal(err)
	}
	seqs, _ := drain(t, sp)
	if st := sp.Stats(); !slices.Equal(seqs, []uint64{3}) || st.Corrupt != 2 {
		t.Errorf("got %v, corrupt %d; want [3], 2", seqs, st.Corrupt)
	}
}

// TestSpoolConcurrent: writers and a reader at once lose nothing and
// keep each writer's order (run with -race).
func TestSpoolConcurrent(t *testing.T) {
	const writers, each = 4, 25
	sp := openSpool(t, t.TempDir(), 1<<20)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := sp.Put(fmt.Appendf(nil, "%d/%d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	defer wg.Wait() // also when a check below fails
	next := make([]int, writers)
	for seen := 0; seen < writers*each; {
		seq, b, ok, err := sp.Oldest()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			runtime.Gosched()
			continue
		}
		var w, i int
		if _, err := fmt.Sscanf(string(b), "%d/%d", &w, &i); err != nil {
			t.Fatalf("batch %d: %q: %v", seq, b, err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: batch %d came after %d", w, i, next[w]-1)
		}
		next[w]++
		seen++
		if err := sp.Remove(seq); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if sp.Len() != 0 {
		t.Errorf("%d batches left", sp.Len())
	}
}

func TestOpenSpoolRefusesTinyBound(t *testing.T) {
	if _, err := OpenSpool(t.TempDir(), headerLen); err == nil {
		t.Error("a bound no batch fits in was accepted")
	}
}
