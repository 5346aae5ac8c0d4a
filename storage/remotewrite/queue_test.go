package remotewrite

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
)

// copyDir copies the queue's files as they are: what a SIGKILL of the
// process leaves on disk (the page cache keeps every completed write).
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRestartResumesFromCursor: after a crash (the files as a SIGKILL
// leaves them) and after a clean Close, a reopened queue sends what is
// new and nothing the store already acknowledged.
func TestRestartResumesFromCursor(t *testing.T) {
	store := newFakeStore(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	q := openQueue(t, dirA, testConfig(store.url()))
	for b := 1; b <= 3; b++ {
		q.Enqueue("t1", batch("t1", b, 10))
	}
	waitFor(t, "batches 1-3 acknowledged", 10*time.Second, func() bool { return pending(q) == 0 && len(store.accepted()) == 3 })
	copyDir(t, filepath.Join(dirA, DirName), filepath.Join(dirB, DirName)) // the crash image
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	crashed := openQueue(t, dirB, testConfig(store.url()))
	if p := pending(crashed); p != 0 {
		t.Errorf("after the crash the queue holds %v samples, want 0 (all were acknowledged)", p)
	}
	crashed.Enqueue("t1", batch("t1", 4, 10))
	waitFor(t, "batch 4", 10*time.Second, func() bool { return store.accepted()["4"] == 10 })
	if err := crashed.Close(); err != nil {
		t.Fatal(err)
	}

	reopened := openQueue(t, dirA, testConfig(store.url()))
	reopened.Enqueue("t1", batch("t1", 5, 10))
	waitFor(t, "batch 5", 10*time.Second, func() bool { return store.accepted()["5"] == 10 })
	if err := reopened.Close(); err != nil {
		t.Fatal(err)
	}
	for b, n := range store.accepted() {
		if n != 10 {
			t.Errorf("batch %s: the store got %d samples, want 10 (sent once)", b, n)
		}
	}
}

// TestUnsentSurvivesRestart: what the store has not acknowledged is
// sent after a restart.
func TestUnsentSurvivesRestart(t *testing.T) {
	store := newFakeStore(t)
	store.setRespond(func(int, *prompb.WriteRequest, http.ResponseWriter) int { return http.StatusServiceUnavailable })
	dir := t.TempDir()
	q := openQueue(t, dir, testConfig(store.url()))
	q.Enqueue("t1", batch("t1", 1, 10))
	q.Enqueue("t2", batch("t2", 2, 10))
	waitFor(t, "a failed attempt", 10*time.Second, func() bool { return failures(q, FailServer) > 0 })
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, dir, testConfig(store.url()))
	if p := pending(q); p != 20 {
		t.Errorf("reopened queue holds %v samples, want 20", p)
	}
	store.setRespond(nil)
	// At least once, not exactly: a request the first queue gave up on
	// at Close can still reach the store after it turned to 200 (CI13
	// saw batch 1 arrive twice). The reopened queue itself sends both.
	waitFor(t, "both batches", 10*time.Second, func() bool { a := store.accepted(); return a["1"] >= 10 && a["2"] >= 10 })
	waitFor(t, "the reopened queue to send all 20 samples", 10*time.Second, func() bool {
		return testutil.ToFloat64(q.m.sent) == 20 && pending(q) == 0
	})
}

// TestUnreadableAtTheCursorIsSkipped: a record that no longer reads at
// the cursor itself (the disk changed under the queue) is skipped as
// damaged; the reader does not take it for a dropped segment and spin.
func TestUnreadableAtTheCursorIsSkipped(t *testing.T) {
	store := newFakeStore(t)
	store.setRespond(func(int, *prompb.WriteRequest, http.ResponseWriter) int { return http.StatusServiceUnavailable })
	dir := t.TempDir()
	q := openQueue(t, dir, testConfig(store.url()))
	q.Enqueue("t1", batch("t1", 1, 10))
	// The sender holds the record in its window and retries; the file
	// under it is then damaged where the cursor points.
	waitFor(t, "a failed attempt", 10*time.Second, func() bool { return failures(q, FailServer) > 0 })
	f, err := os.OpenFile(q.segPath(1), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, headerLen), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	done := make(chan bool, 1)
	go func() {
		r := &reader{}
		defer r.close()
		_, ok := q.next(r)
		done <- ok
	}()
	select {
	case ok := <-done:
		if ok {
			t.Error("a damaged record at the cursor was returned as a record")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a damaged record at the cursor did not return in 5s (the reader spins)")
	}
}

// TestFullQueueDropsOldest: a queue over max_bytes drops its oldest
// segments, counts their samples (queue_full), and sends the newest
// once the store is back; nothing but the dropped is lost.
func TestFullQueueDropsOldest(t *testing.T) {
	store := newFakeStore(t)
	store.setRespond(func(int, *prompb.WriteRequest, http.ResponseWriter) int { return http.StatusServiceUnavailable })
	cfg := testConfig(store.url())
	cfg.MaxBytes = minMaxBytes
	q := openQueue(t, t.TempDir(), cfg)
	const perBatch = 20
	n := 0
	for ; n < 1000 && (n < 5 || dropped(q, DropQueueFull) == 0 || n < 60); n++ {
		q.Enqueue("t1", batch("t1", n, perBatch))
		if b := testutil.ToFloat64(q.m.queueBytes); b > float64(cfg.MaxBytes) {
			t.Fatalf("queue holds %v bytes, over max_bytes %d", b, cfg.MaxBytes)
		}
	}
	lost := dropped(q, DropQueueFull)
	if lost == 0 {
		t.Fatalf("%d batches did not fill a queue of %d bytes", n, cfg.MaxBytes)
	}
	// A request in flight while its segment is dropped may still land
	// (counted both dropped and sent); wait for an attempt that began
	// after the last drop, so the count below is exact.
	f0 := failures(q, FailServer)
	waitFor(t, "two more attempts", 10*time.Second, func() bool { return failures(q, FailServer) >= f0+2 })
	store.setRespond(nil)
	waitFor(t, "the queue to drain", 20*time.Second, func() bool { return pending(q) == 0 })
	got := store.accepted()
	var missing []int
	for b := range n {
		switch got[strconv.Itoa(b)] {
		case perBatch:
		case 0:
			missing = append(missing, b)
		default:
			t.Errorf("batch %d: %d samples arrived, want all %d or none", b, got[strconv.Itoa(b)], perBatch)
		}
	}
	// The oldest were dropped: the missing batches are a prefix.
	if len(missing) == 0 || missing[0] != 0 || missing[len(missing)-1] != len(missing)-1 {
		t.Errorf("missing batches %v, want the oldest (0..k)", missing)
	}
	if want := float64(len(missing) * perBatch); lost != want {
		t.Errorf("dropped{queue_full} = %v, want %v (the samples of the missing batches)", lost, want)
	}
	if d := dropped(q, DropQueueFull); d != lost {
		t.Errorf("more drops after the store came back: %v, then %v", lost, d)
	}
}

// TestDamagedTailIsCutOff: a torn record (a crash mid-write) or a record
// whose checksum fails ends its segment at Open; the queue opens, sends
// the records before it and nothing of the damaged one.
func TestDamagedTailIsCutOff(t *testing.T) {
	cases := []struct {
		name string
		// lostLast: the damage hits the last good record, not after it.
		lostLast bool
		damage   func(t *testing.T, path string, lastStart int64)
	}{
		{"torn record", false, func(t *testing.T, path string, _ int64) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// A header promising 1000 bytes, then the crash.
			if _, err := f.Write([]byte{0, 0, 3, 232, 1, 2, 3, 4, 1, 5}); err != nil {
				t.Fatal(err)
			}
		}},
		{"checksum mismatch", true, func(t *testing.T, path string, lastStart int64) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// The last byte of the last record's tenant: "t1" becomes
			// "t2", which only the checksum tells.
			i := lastStart + headerLen + 3 + 1
			if b[i] != '1' {
				t.Fatalf("byte %d is %q, not the tenant's last", i, b[i])
			}
			b[i] = '2'
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := newFakeStore(t)
			store.setRespond(func(int, *prompb.WriteRequest, http.ResponseWriter) int { return http.StatusServiceUnavailable })
			cfg := testConfig(store.url())
			cfg.OrgIDFromTenant = true
			dir := t.TempDir()
			q := openQueue(t, dir, cfg)
			for b := 1; b <= 3; b++ {
				q.Enqueue("t1", batch("t1", b, 5))
			}
			q.mu.Lock()
			seg := q.segs[len(q.segs)-1]
			path, size := q.segPath(seg.seq), seg.size
			q.mu.Unlock()
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var last int64
			for off := int64(0); off < size; {
				_, n, err := decodeRecord(b[off:])
				if err != nil {
					t.Fatal(err)
				}
				last, off = off, off+int64(n)
			}
			tc.damage(t, path, last)

			openQueue(t, dir, cfg) // the store still refuses: the segment stays
			wantSize, wantBatches := size, []string{"1", "2", "3"}
			if tc.lostLast {
				wantSize, wantBatches = last, []string{"1", "2"}
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != wantSize {
				t.Errorf("damaged segment not cut to %d bytes: %v, %v", wantSize, fi, err)
			}
			store.setRespond(nil)
			waitFor(t, "the undamaged batches", 10*time.Second, func() bool { return len(store.accepted()) >= len(wantBatches) })
			time.Sleep(100 * time.Millisecond) // anything else would have come by now
			var gotBatches []string
			for b := range store.accepted() {
				gotBatches = append(gotBatches, b)
			}
			slices.Sort(gotBatches)
			if !slices.Equal(gotBatches, wantBatches) {
				t.Errorf("store got batches %v, want %v", gotBatches, wantBatches)
			}
			for _, r := range store.requests() {
				if r.orgID != "t1" {
					t.Errorf("a request for org %q: a damaged record was sent", r.orgID)
				}
			}
		})
	}
}

// TestDamagedCursorResends: a cursor whose checksum fails means resend
// from the start (at least once), never a refusal to open.
func TestDamagedCursorResends(t *testing.T) {
	store := newFakeStore(t)
	dir := t.TempDir()
	q := openQueue(t, dir, testConfig(store.url()))
	q.Enqueue("t1", batch("t1", 1, 10))
	waitFor(t, "batch 1", 10*time.Second, func() bool { return pending(q) == 0 })
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, DirName, cursorName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, dir, testConfig(store.url()))
	q.Enqueue("t1", batch("t1", 2, 10))
	waitFor(t, "batch 2", 10*time.Second, func() bool { return store.accepted()["2"] == 10 })
}

// TestFileModes: the queue's directory is 0700 and its files 0600.
func TestFileModes(t *testing.T) {
	store := newFakeStore(t)
	dir := t.TempDir()
	q := openQueue(t, dir, testConfig(store.url()))
	q.Enqueue("t1", batch("t1", 1, 10))
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	qdir := filepath.Join(dir, DirName)
	if fi, err := os.Stat(qdir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("queue dir: %v, %v; want 0700", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(qdir)
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want 0600", e.Name(), fi.Mode(), err)
		}
	}
}
