package audit

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Origin names a region's audit log in its checkpoints.
func Origin(region string) string { return "outpost audit " + region }

// ProviderOrigin is the checkpoint origin of a region's provider audit
// stream: the separate log of operator (region admin) reach into tenant
// data, which tenants read. It is signed with the same region key.
func ProviderOrigin(region string) string { return "outpost provider audit " + region }

// StreamProvider names the provider stream in Meta.Stream; "" is the
// region's main log.
const StreamProvider = "provider"

// KeyName is the signed-note key name of a region's audit key.
func KeyName(region string) string { return "outpost-audit-" + region }

// DeriveKey derives the region's Ed25519 audit key from the region CA key
// (HKDF-SHA256, salted with the region name), returning signed-note signer
// and verifier keys. Every node holds the CA key, so every node can sign a
// checkpoint, and no further secret has to be stored or shared.
func DeriveKey(region string, caKey *ecdsa.PrivateKey) (skey, vkey string, err error) {
	secret, err := caKey.Bytes()
	if err != nil {
		return "", "", err
	}
	seed, err := hkdf.Key(sha256.New, secret, []byte(region), "outpost audit checkpoint key v1", 32)
	if err != nil {
		return "", "", err
	}
	// GenerateKey reads exactly the 32-byte Ed25519 seed from its reader.
	return note.GenerateKey(bytes.NewReader(seed), KeyName(region))
}

// FormatCheckpoint is the C2SP tlog-checkpoint body: origin, tree size and
// base64 root hash, one per line.
func FormatCheckpoint(origin string, t tlog.Tree) []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", origin, t.N, base64.StdEncoding.EncodeToString(t.Hash[:]))
}

// ErrBadCheckpoint marks checkpoint text that does not parse.
var ErrBadCheckpoint = errors.New("malformed checkpoint")

// ParseCheckpoint parses a checkpoint body. Extension lines after the
// third are ignored, as the format allows.
func ParseCheckpoint(text []byte) (origin string, t tlog.Tree, err error) {
	if len(text) > 4096 {
		return "", t, fmt.Errorf("%w: %d bytes", ErrBadCheckpoint, len(text))
	}
	lines := strings.SplitN(string(text), "\n", 4)
	if len(lines) < 4 || lines[0] == "" {
		return "", t, fmt.Errorf("%w: need origin, size and hash lines", ErrBadCheckpoint)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return "", t, fmt.Errorf("%w: bad tree size %q", ErrBadCheckpoint, lines[1])
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return "", t, fmt.Errorf("%w: bad root hash", ErrBadCheckpoint)
	}
	t.N = n
	copy(t.Hash[:], h)
	return lines[0], t, nil
}

// SignCheckpoint signs a checkpoint of tree t as a signed note.
func SignCheckpoint(skey, origin string, t tlog.Tree) ([]byte, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: string(FormatCheckpoint(origin, t))}, s)
}

// OpenCheckpoint verifies a signed checkpoint with the region's verifier
// key and checks its origin.
func OpenCheckpoint(signed []byte, vkey, origin string) (tlog.Tree, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("audit key: %w", err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	got, t, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return tlog.Tree{}, err
	}
	if got != origin {
		return tlog.Tree{}, fmt.Errorf("checkpoint is for %q, expected %q", got, origin)
	}
	return t, nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
