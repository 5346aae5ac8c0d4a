package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// testKey returns a fixed 32-byte key, different for each name.
func testKey(name string) []byte {
	k := sha256.Sum256([]byte("test key " + name))
	return k[:]
}

func mustNew(t testing.TB, current, previous []byte) *Protector {
	t.Helper()
	p, err := New(current, previous)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustWrap(t testing.TB, p *Protector, bucket, key string, pt []byte) []byte {
	t.Helper()
	sealed, err := p.Wrap(bucket, key, pt)
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

func TestRoundTrip(t *testing.T) {
	p := mustNew(t, testKey("a"), nil)
	for _, tc := range []struct {
		name        string
		bucket, key string
		pt          []byte
	}{
		{"empty", "secrets", "k", []byte{}},
		{"short", "secrets", "k", []byte("hunter2")},
		{"empty bucket and key", "", "", []byte("x")},
		{"binary", "oidc", "tenant/7/client_secret", bytes.Repeat([]byte{0, 0xff, 7}, 1000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealed := mustWrap(t, p, tc.bucket, tc.key, tc.pt)
			if want := len(tc.pt) + minSealed; len(sealed) != want {
				t.Fatalf("sealed is %d bytes, want %d", len(sealed), want)
			}
			if string(sealed[:4]) != "opk1" {
				t.Fatalf("magic = %q", sealed[:4])
			}
			got, err := p.Unwrap(tc.bucket, tc.key, sealed)
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !bytes.Equal(got, tc.pt) {
				t.Fatalf("Unwrap = %q, want %q", got, tc.pt)
			}
		})
	}
}

func TestWrapUsesFreshNonces(t *testing.T) {
	p := mustNew(t, testKey("a"), nil)
	a := mustWrap(t, p, "b", "k", []byte("same"))
	b := mustWrap(t, p, "b", "k", []byte("same"))
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are identical")
	}
}

func TestSealedHidesPlaintext(t *testing.T) {
	p := mustNew(t, testKey("a"), nil)
	pt := []byte("-----BEGIN EC PRIVATE KEY----- a distinctive secret value")
	sealed := mustWrap(t, p, "b", "k", pt)
	for i := 0; i+8 <= len(pt); i++ {
		if bytes.Contains(sealed, pt[i:i+8]) {
			t.Fatalf("sealed bytes contain plaintext fragment %q", pt[i:i+8])
		}
	}
}

// TestBinding: a sealed value opens only for the bucket and key it was
// sealed for, including where the length prefixes keep "ab"+"c" apart
// from "a"+"bc".
func TestBinding(t *testing.T) {
	p := mustNew(t, testKey("a"), nil)
	sealed := mustWrap(t, p, "ab", "c", []byte("secret"))
	for _, tc := range []struct{ name, bucket, key string }{
		{"other bucket", "xx", "c"},
		{"other key", "ab", "d"},
		{"shifted boundary", "a", "bc"},
		{"swapped", "c", "ab"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Unwrap(tc.bucket, tc.key, sealed)
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("err = %v, want ErrTampered", err)
			}
		})
	}
}

// TestFlippedByte: changing any bit of a sealed value makes Unwrap fail,
// with the error the changed part calls for.
func TestFlippedByte(t *testing.T) {
	p := mustNew(t, testKey("a"), nil)
	sealed := mustWrap(t, p, "b", "k", []byte("secret value"))
	for i := range sealed {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(sealed)
			bad[i] ^= bit
			want := ErrTampered
			switch {
			case i < len(magic):
				want = ErrMalformed
			case i < len(magic)+idSize:
				want = ErrUnknownKey
			}
			if _, err := p.Unwrap("b", "k", bad); !errors.Is(err, want) {
				t.Fatalf("byte %d ^ %#x: err = %v, want %v", i, bit, err, want)
			}
		}
	}
	for n := range sealed {
		if _, err := p.Unwrap("b", "k", sealed[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: opened", n)
		}
	}
	if _, err := p.Unwrap("b", "k", append(bytes.Clone(sealed), 0)); !errors.Is(err, ErrTampered) {
		t.Fatalf("extended: err = %v, want ErrTampered", err)
	}
}

func TestMalformed(t *testing.T) {
	p := mustNew(t, testKey("a"), nil)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"short", []byte("opk1")},
		{"header only", make([]byte, headerLen)},
		{"bad magic", append([]byte("opk2"), make([]byte, 40)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := p.Unwrap("b", "k", tc.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if p.NeedsRewrap(tc.in) {
				t.Fatal("NeedsRewrap of malformed input")
			}
		})
	}
}

func TestUnknownKeyNamesIDs(t *testing.T) {
	other := mustNew(t, testKey("other"), nil)
	sealed := mustWrap(t, other, "b", "k", []byte("s"))
	for _, tc := range []struct {
		name string
		p    *Protector
		prev string
	}{
		{"no previous", mustNew(t, testKey("a"), nil), "previous none"},
		{"with previous", mustNew(t, testKey("a"), testKey("b")), "previous " + idOf(testKey("b")).String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.p.Unwrap("b", "k", sealed)
			if !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("err = %v, want ErrUnknownKey", err)
			}
			msg := err.Error()
			for _, want := range []string{
				"sealed with master key " + other.KeyID(),
				"current " + tc.p.KeyID(),
				tc.prev,
				"start the node with the master key this region uses",
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
		})
	}
}

func TestKeyIDs(t *testing.T) {
	p := mustNew(t, testKey("a"), testKey("b"))
	sum := sha256.Sum256(append([]byte("outpost master key id v1\x00"), testKey("a")...))
	if got, want := p.KeyID(), idOf(testKey("a")).String(); got != want || len(got) != 16 {
		t.Fatalf("KeyID = %q, want %q", got, want)
	}
	if p.KeyID() != hex.EncodeToString(sum[:8]) {
		t.Fatalf("KeyID = %s, want first 8 bytes of the domain-separated SHA-256, %s", p.KeyID(), hex.EncodeToString(sum[:8]))
	}
	if p.PreviousKeyID() != idOf(testKey("b")).String() {
		t.Fatalf("PreviousKeyID = %q", p.PreviousKeyID())
	}
	if got := mustNew(t, testKey("a"), nil).PreviousKeyID(); got != "" {
		t.Fatalf("PreviousKeyID without previous = %q, want empty", got)
	}
}

// TestRotation walks a rotation: values under the old key open once it is
// the previous key, Rewrap moves them to the new key, and the old key can
// then be dropped.
func TestRotation(t *testing.T) {
	oldKey, newKey := testKey("old"), testKey("new")
	before := mustNew(t, oldKey, nil)
	sealed := mustWrap(t, before, "b", "k", []byte("secret"))
	if before.NeedsRewrap(sealed) {
		t.Fatal("NeedsRewrap without a previous key")
	}

	during := mustNew(t, newKey, oldKey)
	if got, err := during.Unwrap("b", "k", sealed); err != nil || string(got) != "secret" {
		t.Fatalf("previous key does not open: %q, %v", got, err)
	}
	if !during.NeedsRewrap(sealed) {
		t.Fatal("NeedsRewrap is false for a value under the previous key")
	}
	rewrapped, err := during.Rewrap("b", "k", sealed)
	if err != nil {
		t.Fatal(err)
	}
	if during.NeedsRewrap(rewrapped) {
		t.Fatal("NeedsRewrap is true after Rewrap")
	}
	if _, err := during.Rewrap("other", "k", sealed); !errors.Is(err, ErrTampered) {
		t.Fatalf("Rewrap with the wrong binding: err = %v, want ErrTampered", err)
	}

	after := mustNew(t, newKey, nil)
	if got, err := after.Unwrap("b", "k", rewrapped); err != nil || string(got) != "secret" {
		t.Fatalf("rewrapped value under the new key alone: %q, %v", got, err)
	}
	if _, err := after.Unwrap("b", "k", sealed); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old value after dropping the old key: err = %v, want ErrUnknownKey", err)
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name              string
		current, previous []byte
		want              string
	}{
		{"nil current", nil, nil, "current master key is 0 bytes, want 32"},
		{"short current", make([]byte, 16), nil, "current master key is 16 bytes, want 32"},
		{"long current", make([]byte, 33), nil, "current master key is 33 bytes, want 32"},
		{"short previous", testKey("a"), make([]byte, 31), "previous master key is 31 bytes, want 32"},
		{"empty previous", testKey("a"), []byte{}, "previous master key is 0 bytes, want 32"},
		{"previous is current", testKey("a"), testKey("a"), "previous master key is the current one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.current, tc.previous)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestNewKeepsNoKeyBytes(t *testing.T) {
	cur, prev := testKey("a"), testKey("b")
	p := mustNew(t, cur, prev)
	sealed := mustWrap(t, p, "b", "k", []byte("s"))
	clear(cur)
	clear(prev)
	if _, err := p.Unwrap("b", "k", sealed); err != nil {
		t.Fatalf("clearing the caller's key bytes broke the Protector: %v", err)
	}
}
