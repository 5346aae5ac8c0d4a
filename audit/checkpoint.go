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

// Origin names a region's audit log in its checkpoints: a schema-less,
// URL-like name as C2SP tlog-checkpoint asks, and also the name of the
// log's signed-note key (one key per log).
func Origin(region string) string { return originPrefix + region }

// ProviderOrigin is the checkpoint origin of a region's provider audit
// stream: the separate log of operator (region admin) reach into tenant
// data, which tenants read. It has its own key, named like it.
func ProviderOrigin(region string) string { return Origin(region) + providerSuffix }

const (
	originPrefix   = "outpost.audit/"
	providerSuffix = "/provider"
)

// StreamProvider names the provider stream in Meta.Stream; "" is the
// region's main log.
const StreamProvider = "provider"

// ErrWrongLog means a checkpoint or key belongs to another log than the
// one being verified (another region, or the provider stream in place of
// the region log).
var ErrWrongLog = errors.New("checkpoint of another log")

// ParseOrigin splits an origin made by Origin or ProviderOrigin into its
// region and whether it is the provider stream.
func ParseOrigin(origin string) (region string, provider bool, err error) {
	rest, ok := strings.CutPrefix(origin, originPrefix)
	if rest, provider = strings.CutSuffix(rest, providerSuffix); !ok || rest == "" || strings.ContainsAny(rest, "/ +\n") {
		return "", false, fmt.Errorf("%w: %q is not an Outpost audit log origin (%sREGION or %sREGION%s)", ErrWrongLog, origin, originPrefix, originPrefix, providerSuffix)
	}
	return rest, provider, nil
}

// KeyOrigin is the origin a verifier key is for: its signed-note name.
func KeyOrigin(vkey string) (string, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return "", fmt.Errorf("audit key: %w", err)
	}
	return v.Name(), nil
}

// DeriveKey derives the Ed25519 key of a region's audit log (or, with
// provider, of its provider stream) from the region CA key
// (HKDF-SHA256, salted with the region name), returning signed-note
// signer and verifier keys named by the log's origin. Every node holds the
// CA key, so every node can sign a checkpoint, and no further secret has to
// be stored or shared. The region log's key is the one of issue 4 under a
// new name; the provider stream's is new (it shared the region's before).
func DeriveKey(region string, provider bool, caKey *ecdsa.PrivateKey) (skey, vkey string, err error) {
	secret, err := caKey.Bytes()
	if err != nil {
		return "", "", err
	}
	info, name := "outpost audit checkpoint key v1", Origin(region)
	if provider {
		info, name = "outpost provider audit checkpoint key v1", ProviderOrigin(region)
	}
	seed, err := hkdf.Key(sha256.New, secret, []byte(region), info, 32)
	if err != nil {
		return "", "", err
	}
	// GenerateKey reads exactly the 32-byte Ed25519 seed from its reader.
	return note.GenerateKey(bytes.NewReader(seed), name)
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

// OpenCheckpoint verifies a signed checkpoint with the log's verifier key
// and checks that both the key and the checkpoint are for origin, the log
// the caller expects (never taken from the checkpoint itself).
func OpenCheckpoint(signed []byte, vkey, origin string) (tlog.Tree, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("audit key: %w", err)
	}
	if v.Name() != origin {
		return tlog.Tree{}, fmt.Errorf("%w: the key is for %q, expected %q", ErrWrongLog, v.Name(), origin)
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
		return tlog.Tree{}, fmt.Errorf("%w: checkpoint is for %q, expected %q", ErrWrongLog, got, origin)
	}
	return t, nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
