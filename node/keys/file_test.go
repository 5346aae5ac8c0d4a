package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustWriteFile(t *testing.T, p *Protector, path, purpose string, secret []byte) {
	t.Helper()
	if err := WriteFile(p, path, purpose, secret); err != nil {
		t.Fatal(err)
	}
}

func TestFileRoundTrip(t *testing.T) {
	p := mustNew(t, testKey("a"), nil)
	path := filepath.Join(t.TempDir(), "gossip.key")
	secret := []byte("0123456789abcdef0123456789abcdef the gossip key")
	mustWriteFile(t, p, path, "gossip", secret)

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	if !IsWrapped(data) {
		t.Fatalf("IsWrapped false for:\n%s", data)
	}
	for _, leak := range [][]byte{secret, []byte(base64.StdEncoding.EncodeToString(secret)), secret[:16]} {
		if bytes.Contains(data, leak) {
			t.Fatalf("file contains the secret (%q):\n%s", leak, data)
		}
	}
	block, _ := pem.Decode(data)
	if block.Type != "OUTPOST WRAPPED SECRET" || block.Headers["Purpose"] != "gossip" || block.Headers["Key-Id"] != p.KeyID() {
		t.Fatalf("block %q headers %v", block.Type, block.Headers)
	}
	if got, err := p.Unwrap("file", "gossip", block.Bytes); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("bytes are not a value sealed for bucket file, key gossip: %v", err)
	}

	got, err := ReadFile(p, path, "gossip")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("ReadFile = %q", got)
	}
}

func TestReadFileErrors(t *testing.T) {
	p := mustNew(t, testKey("a"), nil)
	dir := t.TempDir()
	gossip := filepath.Join(dir, "gossip.key")
	mustWriteFile(t, p, gossip, "gossip", []byte("gossip secret"))
	gossipData, _ := os.ReadFile(gossip)

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(ecKey)
	plainPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})

	// A file whose Purpose header was edited to "ca": the headers now
	// agree with the caller, but the sealed bytes are bound to "gossip".
	relabelled := bytes.Replace(gossipData, []byte("Purpose: gossip"), []byte("Purpose: ca"), 1)
	block, _ := pem.Decode(gossipData)
	block.Headers["Key-Id"] = "0000000000000000"
	wrongID := pem.EncodeToMemory(block)
	otherKey := mustNew(t, testKey("other"), nil)
	foreign, _ := EncodeFile(otherKey, "ca", []byte("x"))

	for _, tc := range []struct {
		name    string
		data    []byte // written to the file; nil means no file
		purpose string
		is      error // errors.Is target, if any
		want    []string
	}{
		{name: "purpose mismatch", data: gossipData, purpose: "ca", want: []string{`"gossip"`, `"ca"`}},
		{name: "plaintext PEM key", data: plainPEM, purpose: "ca", is: ErrNotWrapped,
			want: []string{"EC PRIVATE KEY", "outpost keys wrap --purpose ca --in ", "--out "}},
		{name: "base64 key", data: []byte(base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n"), purpose: "gossip", is: ErrNotWrapped,
			want: []string{"no PEM block", "outpost keys wrap --purpose gossip"}},
		{name: "empty file", data: []byte{}, purpose: "gossip", is: ErrNotWrapped},
		{name: "relabelled purpose", data: relabelled, purpose: "ca", is: ErrTampered},
		{name: "Key-Id header disagrees", data: wrongID, purpose: "gossip", is: ErrMalformed, want: []string{"Key-Id"}},
		{name: "trailing data", data: append(bytes.Clone(gossipData), plainPEM...), purpose: "gossip", is: ErrMalformed},
		{name: "unknown master key", data: foreign, purpose: "ca", is: ErrUnknownKey, want: []string{otherKey.KeyID(), p.KeyID()}},
		{name: "missing file", purpose: "ca", is: os.ErrNotExist},
		{name: "bad purpose", data: gossipData, purpose: "ca key", want: []string{"purpose"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if tc.data != nil {
				if err := os.WriteFile(path, tc.data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := ReadFile(p, path, tc.purpose)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
			if tc.is != ErrNotWrapped && errors.Is(err, ErrNotWrapped) {
				t.Errorf("err = %v must not be ErrNotWrapped", err)
			}
			if tc.data != nil && tc.is != nil && !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestIsWrapped(t *testing.T) {
	p := mustNew(t, testKey("a"), nil)
	wrapped, _ := EncodeFile(p, "ca", []byte("x"))
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"wrapped", wrapped, true},
		{"plaintext PEM", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), false},
		{"base64", []byte("AAAA"), false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsWrapped(tc.data); got != tc.want {
				t.Fatalf("IsWrapped = %v", got)
			}
		})
	}
}

func TestWriteFileRejectsBadPurpose(t *testing.T) {
	p := mustNew(t, testKey("a"), nil)
	for _, purpose := range []string{"", "ca\nKey-Id: x", "ca key", strings.Repeat("a", 65), "ca:x", "gossip$(rm)"} {
		path := filepath.Join(t.TempDir(), "f")
		if err := WriteFile(p, path, purpose, []byte("x")); err == nil {
			t.Errorf("purpose %q accepted", purpose)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("purpose %q: file written", purpose)
		}
	}
}

// TestRewrapFile: during a rotation, RewrapFile moves previous-key files to
// the current key and leaves every other file's bytes alone.
func TestRewrapFile(t *testing.T) {
	oldKey, newKey := testKey("old"), testKey("new")
	before := mustNew(t, oldKey, nil)
	during := mustNew(t, newKey, oldKey)
	dir := t.TempDir()

	oldFile := filepath.Join(dir, "ca.key")
	mustWriteFile(t, before, oldFile, "ca", []byte("ca secret"))
	currentFile := filepath.Join(dir, "gossip.key")
	mustWriteFile(t, during, currentFile, "gossip", []byte("gossip secret"))
	plainFile := filepath.Join(dir, "oidc.secret")
	if err := os.WriteFile(plainFile, []byte("plain"), 0o600); err != nil {
		t.Fatal(err)
	}
	snapshot := func(path string) []byte {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	oldBefore, currentBefore, plainBefore := snapshot(oldFile), snapshot(currentFile), snapshot(plainFile)

	changed, err := RewrapFile(during, oldFile, "ca")
	if err != nil || !changed {
		t.Fatalf("previous-key file: changed %v, err %v", changed, err)
	}
	after := snapshot(oldFile)
	if bytes.Equal(after, oldBefore) {
		t.Fatal("file reported changed but bytes are the same")
	}
	block, _ := pem.Decode(after)
	if block.Headers["Key-Id"] != during.KeyID() || during.NeedsRewrap(block.Bytes) {
		t.Fatalf("rewrapped file not under the current key: %v", block.Headers)
	}
	if got, err := ReadFile(mustNew(t, newKey, nil), oldFile, "ca"); err != nil || string(got) != "ca secret" {
		t.Fatalf("rewrapped file under the new key alone: %q, %v", got, err)
	}
	if changed, err := RewrapFile(during, oldFile, "ca"); err != nil || changed {
		t.Fatalf("second RewrapFile: changed %v, err %v", changed, err)
	}

	if changed, err := RewrapFile(during, currentFile, "gossip"); err != nil || changed {
		t.Fatalf("current-key file: changed %v, err %v", changed, err)
	}
	if !bytes.Equal(snapshot(currentFile), currentBefore) {
		t.Fatal("current-key file was rewritten")
	}

	if changed, err := RewrapFile(during, plainFile, "oidc"); !errors.Is(err, ErrNotWrapped) || changed {
		t.Fatalf("plaintext file: changed %v, err %v", changed, err)
	}
	if !bytes.Equal(snapshot(plainFile), plainBefore) {
		t.Fatal("plaintext file was rewritten")
	}

	if changed, err := RewrapFile(during, currentFile, "ca"); err == nil || changed {
		t.Fatalf("purpose mismatch: changed %v, err %v", changed, err)
	}
	if _, err := os.Stat(oldFile + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("temporary file left behind")
	}
}
