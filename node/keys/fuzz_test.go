package keys

import (
	"bytes"
	"testing"
)

// sealedSeed is a value Wrap produced, and where it was sealed.
type sealedSeed struct {
	bucket, key string
	pt, sealed  []byte
}

// FuzzUnwrap: sealed values come from the state file, which an attacker
// may have edited. No bytes may panic Unwrap, and only bytes Wrap produced
// (for that bucket and key) may open.
func FuzzUnwrap(f *testing.F) {
	p := mustNew(f, testKey("cur"), testKey("prev"))
	prev := mustNew(f, testKey("prev"), nil)
	var seeds []sealedSeed
	add := func(w *Protector, bucket, key string, pt []byte) {
		// A fixed nonce: every fuzz worker must build the same seeds.
		nonce := [nonceSize]byte{byte(len(seeds))}
		s := sealedSeed{bucket, key, pt, w.seal(nonce, bucket, key, pt)}
		seeds = append(seeds, s)
		f.Add(s.sealed, bucket, key)
	}
	add(p, "secrets", "k", []byte("hunter2"))
	add(p, "", "", nil)
	add(prev, "oidc", "client_secret", bytes.Repeat([]byte{0xa5}, 100))
	f.Add([]byte("opk1"), "b", "k")
	f.Add(make([]byte, minSealed), "b", "k")
	f.Add(append([]byte("opk1"), make([]byte, 40)...), "b", "k")

	f.Fuzz(func(t *testing.T, sealed []byte, bucket, key string) {
		pt, err := p.Unwrap(bucket, key, sealed)
		if len(sealed) < minSealed && err == nil {
			t.Fatalf("%d bytes, shorter than the header and tag, opened", len(sealed))
		}
		needs := p.NeedsRewrap(sealed)
		if err != nil {
			return
		}
		for _, s := range seeds {
			if bytes.Equal(sealed, s.sealed) && bucket == s.bucket && key == s.key {
				if !bytes.Equal(pt, s.pt) {
					t.Fatalf("seed opened to %q, want %q", pt, s.pt)
				}
				if _, err := p.Rewrap(bucket, key, sealed); err != nil {
					t.Fatalf("Rewrap of an opened value: %v", err)
				}
				if needs != bytes.Equal(sealed[4:12], prev.current.id[:]) {
					t.Fatalf("NeedsRewrap = %v", needs)
				}
				return
			}
		}
		t.Fatalf("bytes Wrap did not produce opened: %x (bucket %q, key %q)", sealed, bucket, key)
	})
}

// FuzzDecodeFile: a wrapped secret file is read from disk, where anyone
// with write access to it may have put anything. No contents may panic the
// parser, and only contents EncodeFile produced may open.
func FuzzDecodeFile(f *testing.F) {
	p := mustNew(f, testKey("cur"), testKey("prev"))
	type fileSeed struct {
		purpose              string
		secret, data, sealed []byte
	}
	var seeds []fileSeed
	for _, s := range []fileSeed{
		{purpose: "ca", secret: []byte("-----BEGIN EC PRIVATE KEY-----")},
		{purpose: "gossip", secret: bytes.Repeat([]byte{1}, 32)},
	} {
		// A fixed nonce: every fuzz worker must build the same seeds.
		s.sealed = p.seal([nonceSize]byte{byte(len(seeds))}, fileBucket, s.purpose, s.secret)
		s.data = encodeSealed(s.purpose, s.sealed)
		seeds = append(seeds, s)
		f.Add(s.data, s.purpose)
	}
	f.Add([]byte("-----BEGIN OUTPOST WRAPPED SECRET-----\nPurpose: ca\nKey-Id: 00\n\nb3BrMQ==\n-----END OUTPOST WRAPPED SECRET-----\n"), "ca")
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), "ca")
	f.Add([]byte("c2VjcmV0\n"), "gossip")
	f.Add([]byte{}, "")

	f.Fuzz(func(t *testing.T, data []byte, purpose string) {
		wrapped := IsWrapped(data)
		secret, sealed, err := decode(p, "fuzz", purpose, data)
		if err != nil {
			return
		}
		if !wrapped {
			t.Fatal("decoded contents IsWrapped rejects")
		}
		for _, s := range seeds {
			if bytes.Equal(sealed, s.sealed) && purpose == s.purpose {
				if !bytes.Equal(secret, s.secret) {
					t.Fatalf("seed opened to %q, want %q", secret, s.secret)
				}
				return
			}
		}
		t.Fatalf("contents EncodeFile did not produce opened:\n%s", data)
	})
}
