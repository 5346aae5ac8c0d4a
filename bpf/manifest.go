package bpf

import (
	"bufio"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// manifest is objects.sha256, written by `make generate` beside the
// objects it hashes ("<sha256>  <file>" per line, sha256sum's format).
//
//go:embed objects.sha256
var manifest string

// ErrIntegrity is wrapped when an object does not match the manifest
// embedded at build: the agent refuses to load it.
var ErrIntegrity = errors.New("eBPF object does not match the manifest")

// manifestSums parses a manifest.
func manifestSums(m string) (map[string]string, error) {
	sums := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(m))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		sum, name, ok := strings.Cut(line, "  ")
		if b, err := hex.DecodeString(sum); !ok || err != nil || len(b) != sha256.Size || name == "" {
			return nil, fmt.Errorf("objects.sha256 line %d: want \"<sha256 hex>  <file>\"", n)
		}
		if _, dup := sums[name]; dup {
			return nil, fmt.Errorf("objects.sha256 line %d: %s listed twice", n, name)
		}
		sums[name] = sum
	}
	return sums, sc.Err()
}

// Verify checks an object's bytes against the embedded manifest: an
// object the manifest does not list, or whose SHA-256 differs, is refused
// with an error naming it.
func Verify(name string, object []byte) error {
	return verify(manifest, name, object)
}

func verify(m, name string, object []byte) error {
	sums, err := manifestSums(m)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrIntegrity, err)
	}
	want, ok := sums[name]
	if !ok {
		return fmt.Errorf("%w: %s is not in the embedded manifest; rebuild with `make generate`", ErrIntegrity, name)
	}
	got := sha256.Sum256(object)
	if hex.EncodeToString(got[:]) != want {
		return fmt.Errorf("%w: %s has SHA-256 %x, the manifest says %s; refusing to load it (rebuild the agent from a clean checkout)", ErrIntegrity, name, got, want)
	}
	return nil
}
