// Package syncfile writes files durably: contents fsynced before close,
// replacements renamed into place and the directory fsynced, so a crash
// leaves either the old file or the whole new one.
//
// Any package of Outpost's may import it; it imports only the standard
// library.
package syncfile

import (
	"bytes"
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

// Replace atomically replaces path with data: it writes path.tmp, renames
// it over path and fsyncs the directory.
func Replace(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := Write(tmp, bytes.NewReader(data), mode); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
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
