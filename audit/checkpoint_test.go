package audit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("outpost.audit/eu\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	f.Add([]byte("x\n-1\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		origin, tr, err := ParseCheckpoint(b)
		if err != nil {
			return
		}
		if _, t2, err := ParseCheckpoint(FormatCheckpoint(origin, tr)); err != nil || t2 != tr {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

// TestOriginsAndKeyNames: origins are schema-less URL-like names, each
// log has its own key named by its origin (C2SP signed-note and
// tlog-checkpoint), and a checkpoint or key of another log is refused.
func TestOriginsAndKeyNames(t *testing.T) {
	ca, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if Origin("eu") != "outpost.audit/eu" || ProviderOrigin("eu") != "outpost.audit/eu/provider" {
		t.Fatalf("origins %q, %q", Origin("eu"), ProviderOrigin("eu"))
	}
	rs, rv, _ := DeriveKey("eu", false, ca)
	ps, pv, _ := DeriveKey("eu", true, ca)
	for _, c := range []struct{ vkey, want string }{{rv, Origin("eu")}, {pv, ProviderOrigin("eu")}} {
		if got, err := KeyOrigin(c.vkey); err != nil || got != c.want {
			t.Errorf("key %s names %q (%v), want %q", c.vkey, got, err, c.want)
		}
	}
	for _, c := range []struct {
		origin   string
		region   string
		provider bool
		ok       bool
	}{
		{"outpost.audit/eu", "eu", false, true},
		{"outpost.audit/eu/provider", "eu", true, true},
		{"outpost audit eu", "", false, false},
		{"outpost.audit/", "", false, false},
		{"outpost.audit/eu/x/provider", "", false, false},
	} {
		r, p, err := ParseOrigin(c.origin)
		if (err == nil) != c.ok || r != c.region || p != c.provider {
			t.Errorf("ParseOrigin(%q) = %q %v %v", c.origin, r, p, err)
		}
	}
	h, _ := tlog.TreeHash(0, nil)
	empty := tlog.Tree{Hash: h}
	pcp, _ := SignCheckpoint(ps, ProviderOrigin("eu"), empty)
	usCP, _ := SignCheckpoint(rs, Origin("us"), empty) // right key, other origin
	tests := []struct {
		name       string
		cp         []byte
		vkey, want string
	}{
		{"provider checkpoint with the provider key, as the region log", pcp, pv, Origin("eu")},
		{"provider checkpoint with the region key", pcp, rv, Origin("eu")},
		{"another origin signed by the region key", usCP, rv, Origin("eu")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := OpenCheckpoint(tc.cp, tc.vkey, tc.want); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := OpenCheckpoint(pcp, pv, ProviderOrigin("eu")); err != nil {
		t.Fatalf("the provider checkpoint as the provider stream: %v", err)
	}
	if _, err := OpenCheckpoint(usCP, rv, Origin("us")); !errors.Is(err, ErrWrongLog) {
		t.Fatalf("a key named for another log: %v, want ErrWrongLog", err)
	}
}
