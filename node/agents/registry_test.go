package agents

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/storage"
)

func TestTokenFormat(t *testing.T) {
	tok, id := NewToken()
	if got, err := TokenID(tok); err != nil || got != id {
		t.Fatalf("TokenID(%q) = %q, %v; want %q", tok, got, err, id)
	}
	tok2, _ := NewToken()
	if tok == tok2 || HashToken(tok) == HashToken(tok2) || len(HashToken(tok)) != 64 {
		t.Fatal("tokens or their hashes repeat")
	}
	for _, bad := range []string{"", "opb_", "opt_" + strings.TrimPrefix(tok, "opb_"), "opb_XYZ123456789_" + strings.Repeat("a", 43), tok + "x", tok[:len(tok)-1]} {
		if _, err := TokenID(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("TokenID(%q): %v, want ErrBadToken", bad, err)
		}
	}
	if !(BootstrapToken{Hash: HashToken(tok)}).Matches(tok) || (BootstrapToken{Hash: HashToken(tok)}).Matches(tok2) || (BootstrapToken{}).Matches("") {
		t.Fatal("Matches is wrong")
	}
}

func put(t *testing.T, s *storage.Store, bucket []byte, key string, v any) {
	t.Helper()
	b, ok := v.([]byte)
	if !ok {
		b, _ = json.Marshal(v)
	}
	if err := s.Update(func(tx *storage.Tx) error { return tx.Put(bucket, []byte(key), b) }); err != nil {
		t.Fatal(err)
	}
}

// Redeemable refuses each way a token can be unusable, with the error
// that says what to do.
func TestRedeemable(t *testing.T) {
	s, err := storage.Open(filepath.Join(t.TempDir(), "state.db"), storage.Options{Region: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Unix(1_800_000_000, 0)
	mk := func() (string, BootstrapToken) {
		tok, id := NewToken()
		rec := BootstrapToken{ID: id, Tenant: "t1", Created: now, Expires: now.Add(15 * time.Minute), Hash: HashToken(tok)}
		put(t, s, BucketBootstrap, id, rec)
		return tok, rec
	}
	good, goodRec := mk()
	used, usedRec := mk()
	put(t, s, BucketRedeemed, usedRec.ID, []byte("ag-1"))
	revoked, revRec := mk()
	put(t, s, BucketRedeemed, revRec.ID, []byte(Revoked))
	unknown, _ := NewToken()
	forged := "opb_" + goodRec.ID + "_" + strings.Repeat("A", 43)

	check := func(tok string, at time.Time, want error) {
		t.Helper()
		_ = s.View(func(tx *storage.Tx) error {
			rec, err := Reader{tx}.Redeemable(tok, at)
			if !errors.Is(err, want) {
				t.Errorf("Redeemable: %v, want %v", err, want)
			}
			if want == nil && rec.Tenant != "t1" {
				t.Errorf("record %+v", rec)
			}
			return nil
		})
	}
	check(good, now, nil)
	check(good, now.Add(15*time.Minute), ErrTokenExpired)
	check(used, now, ErrTokenUsed)
	check(revoked, now, ErrTokenRevoked)
	check(unknown, now, ErrUnknownToken)
	check(forged, now, ErrUnknownToken)
	check("hello", now, ErrBadToken)
}

func TestValidateSelf(t *testing.T) {
	if err := ValidateSelf("web-1.example", "0.1.0"); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]string{{"", "1"}, {"a b", "1"}, {strings.Repeat("h", 254), "1"}, {"h", "v 1"}, {"h", strings.Repeat("v", 65)}, {"h\x00", "1"}, {"hé", "1"}} {
		if err := ValidateSelf(c[0], c[1]); err == nil {
			t.Errorf("ValidateSelf(%q, %q) accepted", c[0], c[1])
		}
	}
}

// TestClearFlagsKeepsNewer: clearing removes the flags raised up to
// Through (those the admin saw) and keeps one raised since.
func TestClearFlagsKeepsNewer(t *testing.T) {
	s, err := storage.Open(filepath.Join(t.TempDir(), "state.db"), storage.Options{Region: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Unix(1_800_000_000, 0).UTC()
	put(t, s, BucketPresence, "ag-1", Presence{Flags: []Flag{
		{Kind: FlagNewAddress, At: t0, Detail: "seen"},
		{Kind: FlagTwoAddresses, At: t0.Add(time.Second), Detail: "raised after the admin looked"},
	}})
	cmd, err := Op{ClearFlags: &ClearFlagsOp{Agent: "ag-1", Through: t0, At: t0.Add(2 * time.Second), By: "user:alice"}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	f := NewFSM(nil)
	var out []byte
	if err := s.Update(func(tx *storage.Tx) error {
		out, err = f.apply(tx, 1, cmd[1:])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var res Result
	_ = json.Unmarshal(out, &res)
	var p Presence
	_ = s.View(func(tx *storage.Tx) error { p, _ = Reader{tx}.Presence("ag-1"); return nil })
	if !res.Applied || len(p.Flags) != 1 || p.Flags[0].Kind != FlagTwoAddresses {
		t.Fatalf("after clearing through t0: applied %v, flags %+v", res.Applied, p.Flags)
	}
}
