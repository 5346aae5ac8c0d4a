// Package testfault damages and copies bbolt state files for the tests
// that check how a node survives a crash, a power loss or a damaged disk
// (storage, raft and internal/e2e). It is imported by tests only.
package testfault

import (
	"errors"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// InUse is the size of the pages a bbolt file's meta says are in use
// (below the file's size: bbolt grows the file ahead of them). The file
// must not be open in another bbolt handle of this process.
func InUse(t testing.TB, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	_ = db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// Scribble overwrites n bytes at off in path with garbage: random bytes
// from r, or a fixed pattern when r is nil (a test that must damage the
// same way every run).
func Scribble(t testing.TB, r *rand.Rand, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	for i := range b {
		if r != nil {
			b[i] = byte(r.IntN(256))
		} else {
			b[i] = byte(i*7 + 13)
		}
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// Tear overwrites one to four random 4 KiB pages of path past its two
// meta pages with garbage, as pages a power loss never wrote would read.
func Tear(t testing.TB, r *rand.Rand, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	pages := fi.Size() / 4096
	for i := 0; i < 1+r.IntN(4) && pages > 2; i++ {
		Scribble(t, r, path, (2+r.Int64N(pages-2))*4096, 4096)
	}
}

// Copy copies the file src to dst (replacing it). A missing src is an
// error unless missingOK, when dst is left empty.
func Copy(t testing.TB, src, dst string, missingOK bool) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil && !(missingOK && errors.Is(err, os.ErrNotExist)) {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
