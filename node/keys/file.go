package keys

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/outpost-mesh/outpost/internal/syncfile"
)

// ErrNotWrapped: a secret file holds something other than a wrapped
// secret, such as a plaintext PEM private key.
var ErrNotWrapped = errors.New("not a wrapped secret")

// The wrapped secret file format.
const (
	pemType      = "OUTPOST WRAPPED SECRET"
	purposeHdr   = "Purpose"
	keyIDHdr     = "Key-Id"
	fileBucket   = "file"
	maxPurpose   = 64
	maxSecretLen = 1 << 20 // no node secret file is near this size
)

// validPurpose accepts short names of letters, digits, '.', '_' and '-',
// which are safe in a PEM header and in a shell hint.
func validPurpose(purpose string) error {
	if purpose == "" || len(purpose) > maxPurpose {
		return fmt.Errorf("purpose %q must be 1 to %d characters", purpose, maxPurpose)
	}
	for _, c := range purpose {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("purpose %q may hold only letters, digits, '.', '_' and '-'", purpose)
		}
	}
	return nil
}

// EncodeFile seals secret for purpose and returns the contents of a
// wrapped secret file: one PEM block of type "OUTPOST WRAPPED SECRET" with
// headers Purpose and Key-Id, whose bytes are the value Wrap seals for
// bucket "file" and key purpose. The purpose binding means a wrapped
// gossip key renamed to ca.key does not open as the CA key.
func EncodeFile(p *Protector, purpose string, secret []byte) ([]byte, error) {
	if err := validPurpose(purpose); err != nil {
		return nil, err
	}
	sealed, err := p.Wrap(fileBucket, purpose, secret)
	if err != nil {
		return nil, err
	}
	return encodeSealed(purpose, sealed), nil
}

// encodeSealed is the file form of a value sealed for purpose.
func encodeSealed(purpose string, sealed []byte) []byte {
	id, _ := header(sealed) // sealed comes from Wrap
	return pem.EncodeToMemory(&pem.Block{
		Type:    pemType,
		Headers: map[string]string{purposeHdr: purpose, keyIDHdr: id.String()},
		Bytes:   sealed,
	})
}

// DecodeFile opens wrapped secret file contents EncodeFile produced for
// purpose; name labels errors (usually the file's path). Contents that are
// not a wrapped secret give an error wrapping ErrNotWrapped; the others
// wrap ErrMalformed, ErrUnknownKey or ErrTampered as Unwrap's do.
func DecodeFile(p *Protector, name, purpose string, data []byte) ([]byte, error) {
	secret, _, err := decode(p, name, purpose, data)
	return secret, err
}

// decode is DecodeFile, also returning the sealed bytes.
func decode(p *Protector, name, purpose string, data []byte) (secret, sealed []byte, err error) {
	sealed, err = parse(name, purpose, data)
	if err != nil {
		return nil, nil, err
	}
	secret, err = p.Unwrap(fileBucket, purpose, sealed)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return secret, sealed, nil
}

// parse extracts the sealed bytes from wrapped secret file contents and
// checks the headers against purpose. It does no cryptography.
func parse(name, purpose string, data []byte) ([]byte, error) {
	if err := validPurpose(purpose); err != nil {
		return nil, err
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != pemType {
		found := "no PEM block"
		if block != nil {
			found = "a PEM " + block.Type + " block"
		}
		return nil, fmt.Errorf("%s holds %s, %w: wrap it with `outpost keys wrap --purpose %s --in %s --out %s --master-key-file MASTER_KEY_FILE` (the node's keys.master_key_file)",
			name, found, ErrNotWrapped, purpose, name, name)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s: %w: data after the %s block", name, ErrMalformed, pemType)
	}
	got, ok := block.Headers[purposeHdr]
	if !ok {
		return nil, fmt.Errorf("%s: %w: no %s header", name, ErrMalformed, purposeHdr)
	}
	if got != purpose {
		return nil, fmt.Errorf("%s holds the wrapped %q secret, not the %q secret: check which file is configured for the %s secret", name, got, purpose, purpose)
	}
	id, err := header(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// Key-Id is for people and tools reading the file; the id that counts
	// is the authenticated one inside the sealed bytes, so they must agree.
	if h := block.Headers[keyIDHdr]; h != id.String() {
		return nil, fmt.Errorf("%s: %w: %s header %q does not match the sealed key id %s", name, ErrMalformed, keyIDHdr, h, id)
	}
	return block.Bytes, nil
}

// IsWrapped reports whether data starts with a wrapped secret PEM block.
// It does not check the headers or open the value.
func IsWrapped(data []byte) bool {
	block, _ := pem.Decode(data)
	return block != nil && block.Type == pemType
}

// WriteFile wraps secret for purpose and atomically replaces path with it
// (mode 0600, fsynced).
func WriteFile(p *Protector, path, purpose string, secret []byte) error {
	data, err := EncodeFile(p, purpose, secret)
	if err != nil {
		return err
	}
	if err := syncfile.Replace(path, data, 0o600); err != nil {
		return fmt.Errorf("write wrapped %s secret: %w", purpose, err)
	}
	return nil
}

// ReadFile reads and opens the wrapped secret for purpose at path. A file
// that is not a wrapped secret (a plaintext key, say) gives an error
// wrapping ErrNotWrapped with the command that wraps it.
func ReadFile(p *Protector, path, purpose string) ([]byte, error) {
	data, err := readSecretFile(path, purpose)
	if err != nil {
		return nil, err
	}
	defer clear(data) // it may be a plaintext key read by mistake
	return DecodeFile(p, path, purpose, data)
}

// RewrapFile seals the wrapped secret at path again under the current
// master key when it is under the previous one, atomically replacing the
// file. A file already under the current key is opened, to check it, but
// not written; changed reports whether the file was replaced.
func RewrapFile(p *Protector, path, purpose string) (changed bool, err error) {
	data, err := readSecretFile(path, purpose)
	if err != nil {
		return false, err
	}
	defer clear(data)
	secret, sealed, err := decode(p, path, purpose, data)
	if err != nil {
		return false, err
	}
	defer clear(secret)
	if !p.NeedsRewrap(sealed) {
		return false, nil
	}
	if err := WriteFile(p, path, purpose, secret); err != nil {
		return false, err
	}
	return true, nil
}

func readSecretFile(path, purpose string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read wrapped %s secret: %w", purpose, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read wrapped %s secret: %w", purpose, err)
	}
	if fi.Size() > maxSecretLen {
		return nil, fmt.Errorf("%s is %d bytes, too large for a wrapped secret (at most %d): check the path", path, fi.Size(), maxSecretLen)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretLen))
	if err != nil {
		return nil, fmt.Errorf("read wrapped %s secret: %w", purpose, err)
	}
	return data, nil
}
