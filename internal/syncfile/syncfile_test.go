package syncfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestConcurrentReplace: Replaces of one path racing each other all
// succeed, a reader only ever sees a whole file, the survivor is one of
// the writes in full with the mode asked for, and no temporary file is
// left behind. With one shared temporary name, racing writers truncated
// and renamed each other's files (ENOENT, empty or cut files).
func TestConcurrentReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	payload := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("%04d", i)), 2048) }
	if err := Replace(path, payload(0), 0o600); err != nil {
		t.Fatal(err)
	}
	const writers, rounds = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err != nil {
				errs <- fmt.Errorf("reader: %w", err)
				return
			}
			if len(b) != 8192 || !bytes.Equal(b, bytes.Repeat(b[:4], 2048)) {
				errs <- fmt.Errorf("reader saw a cut or mixed file of %d bytes", len(b))
				return
			}
		}
	}()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				if err := Replace(path, payload(w*rounds+r+1), 0o600); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-readerDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("files left in the directory: %v", names)
	}
}

// TestReplaceFailureLeavesNoTemp: a Replace that cannot rename (the target
// is a directory) leaves no temporary file.
func TestReplaceFailureLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "sub")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Replace(target, []byte("data"), 0o600); err == nil {
		t.Fatal("replacing a non-empty directory succeeded")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("a temporary file was left: %d entries", len(ents))
	}
}
