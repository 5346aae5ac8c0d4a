package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Errors Unwrap returns; match them with errors.Is.
var (
	// ErrMalformed: the bytes are too short or lack the sealed-value magic,
	// so they were never produced by Wrap.
	ErrMalformed = errors.New("malformed sealed value")
	// ErrUnknownKey: the value was sealed under a master key that is
	// neither this node's current nor its previous key.
	ErrUnknownKey = errors.New("unknown master key")
	// ErrTampered: the key matched but authentication failed: the bytes
	// were edited, or the value was moved from another bucket or key.
	ErrTampered = errors.New("sealed value failed authentication")
)

// KeySize is the length of a master key in bytes (AES-256).
const KeySize = 32

// The sealed format: magic || key id || nonce || ciphertext+tag.
const (
	magic     = "opk1"
	idSize    = 8
	nonceSize = 12 // the GCM standard nonce
	tagSize   = 16
	headerLen = len(magic) + idSize + nonceSize
	minSealed = headerLen + tagSize
)

// idPrefix domain-separates the key id hash so the id of a master key is
// never a hash someone else computes over the same bytes.
const idPrefix = "outpost master key id v1\x00"

type keyID [idSize]byte

func (id keyID) String() string { return hex.EncodeToString(id[:]) }

func idOf(key []byte) keyID {
	h := sha256.New()
	h.Write([]byte(idPrefix))
	h.Write(key)
	var id keyID
	copy(id[:], h.Sum(nil))
	return id
}

type sealer struct {
	id   keyID
	aead cipher.AEAD
}

func newSealer(key []byte, which string) (*sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%s master key is %d bytes, want %d: make one with `outpost keys generate`", which, len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%s master key: %w", which, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%s master key: %w", which, err)
	}
	return &sealer{id: idOf(key), aead: aead}, nil
}

// Protector seals secrets with AES-256-GCM under the current master key
// and opens values sealed under the current or the previous one. Build it
// with New or LoadMaster; it is safe for concurrent use.
//
// Each Wrap draws a random 96-bit nonce, which keeps the nonce-collision
// risk negligible up to about 2^32 seals per master key; rotating the key
// starts the count again.
type Protector struct {
	current  *sealer
	previous *sealer // nil when no previous key is configured
}

// New returns a Protector that seals with current and also opens values
// sealed with previous. Both must be KeySize bytes; previous may be nil
// (no rotation in progress) but must not equal current. New keeps no copy
// of the key bytes, so callers may clear them after it returns.
func New(current, previous []byte) (*Protector, error) {
	cur, err := newSealer(current, "current")
	if err != nil {
		return nil, err
	}
	p := &Protector{current: cur}
	if previous == nil {
		return p, nil
	}
	if subtle.ConstantTimeCompare(current, previous) == 1 {
		return nil, fmt.Errorf("previous master key is the current one (id %s): set previous to the key being rotated out, or leave it unset", cur.id)
	}
	if p.previous, err = newSealer(previous, "previous"); err != nil {
		return nil, err
	}
	return p, nil
}

// KeyID is the id of the current master key: the first 8 bytes of
// SHA-256("outpost master key id v1\x00" || key), hex encoded. It is safe
// to log and show; it identifies a key without revealing it.
func (p *Protector) KeyID() string { return p.current.id.String() }

// PreviousKeyID is the id of the previous master key, or "" when none is
// configured.
func (p *Protector) PreviousKeyID() string {
	if p.previous == nil {
		return ""
	}
	return p.previous.id.String()
}

// aad binds a sealed value to its header and to where it is stored, so
// that a value copied to another bucket or key fails to open.
func aad(id keyID, bucket, key string) []byte {
	b := make([]byte, 0, len(magic)+idSize+2*binary.MaxVarintLen64+len(bucket)+len(key))
	b = append(b, magic...)
	b = append(b, id[:]...)
	b = binary.AppendUvarint(b, uint64(len(bucket)))
	b = append(b, bucket...)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return b
}

// Wrap seals plaintext under the current master key for the value stored
// at bucket/key. The result is magic "opk1", the 8-byte key id, a 12-byte
// random nonce and the GCM ciphertext with its 16-byte tag.
func (p *Protector) Wrap(bucket, key string, plaintext []byte) ([]byte, error) {
	var nonce [nonceSize]byte
	// Since Go 1.24 crypto/rand.Read never returns an error; it crashes
	// the program instead, so a predictable nonce is impossible.
	rand.Read(nonce[:])
	return p.seal(nonce, bucket, key, plaintext), nil
}

// seal is Wrap with the nonce given, which must never repeat under one
// key; only Wrap and tests that need reproducible output call it.
func (p *Protector) seal(nonce [nonceSize]byte, bucket, key string, plaintext []byte) []byte {
	s := p.current
	out := make([]byte, headerLen, headerLen+len(plaintext)+tagSize)
	copy(out, magic)
	copy(out[len(magic):], s.id[:])
	copy(out[len(magic)+idSize:], nonce[:])
	return s.aead.Seal(out, nonce[:], plaintext, aad(s.id, bucket, key))
}

// header checks the fixed part of sealed and returns its key id.
func header(sealed []byte) (keyID, error) {
	var id keyID
	if len(sealed) < minSealed {
		return id, fmt.Errorf("%w: %d bytes, shorter than the %d-byte minimum", ErrMalformed, len(sealed), minSealed)
	}
	if !bytes.Equal(sealed[:len(magic)], []byte(magic)) {
		return id, fmt.Errorf("%w: starts with %q, want %q", ErrMalformed, sealed[:len(magic)], magic)
	}
	copy(id[:], sealed[len(magic):])
	return id, nil
}

// sealerFor returns the configured key sealed names, or an ErrUnknownKey
// that names every id involved.
func (p *Protector) sealerFor(id keyID) (*sealer, error) {
	if id == p.current.id {
		return p.current, nil
	}
	if p.previous != nil && id == p.previous.id {
		return p.previous, nil
	}
	prev := "none"
	if p.previous != nil {
		prev = p.previous.id.String()
	}
	return nil, fmt.Errorf("%w: sealed with master key %s; this node has current %s, previous %s: start the node with the master key this region uses",
		ErrUnknownKey, id, p.current.id, prev)
}

// Unwrap opens a value Wrap sealed for bucket/key, under whichever
// configured master key its header names. It fails with ErrMalformed,
// ErrUnknownKey or ErrTampered; the errors do not name bucket and key, so
// callers add them as context.
func (p *Protector) Unwrap(bucket, key string, sealed []byte) ([]byte, error) {
	id, err := header(sealed)
	if err != nil {
		return nil, err
	}
	s, err := p.sealerFor(id)
	if err != nil {
		return nil, err
	}
	nonce := sealed[len(magic)+idSize : headerLen]
	pt, err := s.aead.Open(nil, nonce, sealed[headerLen:], aad(id, bucket, key))
	if err != nil {
		return nil, fmt.Errorf("%w under master key %s: the bytes were edited, or moved from another bucket or key; restore the value from a backup", ErrTampered, id)
	}
	if pt == nil {
		pt = []byte{} // an empty secret is still present
	}
	return pt, nil
}

// NeedsRewrap reports whether sealed is under the previous master key, so
// a rotation pass should Rewrap it. It does not authenticate the value.
func (p *Protector) NeedsRewrap(sealed []byte) bool {
	id, err := header(sealed)
	return err == nil && p.previous != nil && id == p.previous.id
}

// Rewrap opens sealed (under either configured key) and seals it again
// under the current key for the same bucket/key. It always returns new
// bytes; use NeedsRewrap to skip values already under the current key.
func (p *Protector) Rewrap(bucket, key string, sealed []byte) ([]byte, error) {
	pt, err := p.Unwrap(bucket, key, sealed)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return p.Wrap(bucket, key, pt)
}
