// Package syncfile writes files durably: contents fsynced before close,
// replacements renamed into place and the directory fsynced, so a crash
// leaves either the old file or the whole new one.
//
// Any package of Outpost's may import it; it imports only the standard
// library.
package syncfile

import (
	"io"
	"os"
	"path/filepath"
)

// Write creates or truncates path with mode, copies r into it and fsyncs
// it before closing.
func Write(path string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Replace atomically replaces path with data: it writes a temporary file
// of its own in the same directory (so concurrent Replaces of one path
// never share or truncate each other's temporary file), fsyncs it, renames
// it over path and fsyncs the directory. A reader sees the old file or the
// whole new one, never a cut one; callers that need a newer state never to
// be overwritten by an older one must order their Replaces themselves.
func Replace(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making a rename in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
