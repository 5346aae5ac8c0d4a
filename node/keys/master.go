package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// ErrNoKey: a Source names neither a set environment variable nor a file.
// LoadMaster treats it as "no previous key"; for the current key it is an
// error that says how to make one.
var ErrNoKey = errors.New("no master key configured")

// Source says where a master key comes from. When the variable named by
// Env is set and not empty it wins over File, so an orchestrator can
// inject the key without a file on disk. Either holds the key as base64
// (standard encoding) of KeySize bytes; surrounding whitespace is ignored.
type Source struct {
	// File is a path to a key file, which must not be accessible to group
	// or others (chmod 600). Empty means no file.
	File string
	// Env is the NAME of an environment variable holding the key, such as
	// OUTPOST_MASTER_KEY. Empty means no variable.
	Env string
}

// GenerateKey returns a new random master key, base64 encoded, in the
// form ReadKey accepts.
func GenerateKey() (string, error) {
	k := make([]byte, KeySize)
	// Since Go 1.24 crypto/rand.Read never returns an error; it crashes
	// the program instead.
	rand.Read(k)
	defer clear(k)
	return base64.StdEncoding.EncodeToString(k), nil
}

// ReadKey reads and decodes the master key s names. It returns an error
// wrapping ErrNoKey when s names nothing. Errors name the source, never
// the key.
func ReadKey(s Source) ([]byte, error) {
	if s.Env != "" {
		if v := strings.TrimSpace(os.Getenv(s.Env)); v != "" {
			return decodeKey([]byte(v), "environment variable "+s.Env)
		}
	}
	if s.File == "" {
		return nil, ErrNoKey
	}
	data, err := readKeyFile(s.File)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	return decodeKey(data, "master key file "+s.File)
}

// maxKeyFile bounds what ReadKey reads: a key is 44 base64 characters, so
// anything near this size is not a key file.
const maxKeyFile = 4 << 10

// readKeyFile reads a key file after checking, on the open file, that it
// is a regular file no one but its owner can access.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("master key file %s does not exist: restore the region's master key there, or for a new region make one with `outpost keys generate > %s` and `chmod 600 %s`", path, path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("master key file %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	// Windows has no Unix permission bits; there the ACL protects the file.
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("master key file %s has mode %04o, open to group or others: run `chmod 600 %s`", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile))
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	return data, nil
}

// decodeKey parses base64 key text from the source named by what.
func decodeKey(text []byte, what string) ([]byte, error) {
	text = bytes.TrimSpace(text)
	key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(key, text)
	if err != nil {
		clear(key)
		// The CorruptInputError names an offset only, never key bytes.
		return nil, fmt.Errorf("%s is not base64 (standard encoding): %w: make a key with `outpost keys generate`", what, err)
	}
	if n != KeySize {
		clear(key)
		return nil, fmt.Errorf("%s decodes to %d bytes, want %d: make a key with `outpost keys generate`", what, n, KeySize)
	}
	return key[:n], nil
}

// LoadMaster reads the current master key (required) and the previous
// one (optional: a previous Source naming nothing means none) and returns
// the Protector built from them.
func LoadMaster(current, previous Source) (*Protector, error) {
	cur, err := ReadKey(current)
	if errors.Is(err, ErrNoKey) {
		return nil, fmt.Errorf("%w: make one with `outpost keys generate > master.key`, `chmod 600 master.key`, and set keys.master_key_file to its path%s",
			ErrNoKey, envHint(current.Env))
	}
	if err != nil {
		return nil, fmt.Errorf("current master key: %w", err)
	}
	defer clear(cur)
	prev, err := ReadKey(previous)
	if err != nil && !errors.Is(err, ErrNoKey) {
		return nil, fmt.Errorf("previous master key: %w", err)
	}
	defer clear(prev)
	return New(cur, prev)
}

func envHint(env string) string {
	if env == "" {
		return ""
	}
	return " (or put the key itself in " + env + ")"
}
