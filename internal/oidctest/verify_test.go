package oidctest

import (
	"crypto"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// TestVerifyFailures checks that each knob yields an ID token go-oidc
// refuses, and that it refuses it for that reason alone: the same token
// passes a verifier relaxed in exactly the broken respect.
func TestVerifyFailures(t *testing.T) {
	tests := []struct {
		name    string
		knob    func(p *Provider)
		relaxed func(p *Provider, rp *relyingParty) *oidc.IDTokenVerifier // nil: must verify as is
	}{
		{"control", func(*Provider) {}, nil},
		{"rogue key", func(p *Provider) { p.SignWithRogueKey(true) },
			func(p *Provider, _ *relyingParty) *oidc.IDTokenVerifier {
				p.mu.Lock()
				pub := &p.rogue.PublicKey
				p.mu.Unlock()
				ks := &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{pub}}
				return oidc.NewVerifier(p.Issuer(), ks, &oidc.Config{ClientID: testClientID})
			}},
		{"expired", func(p *Provider) { p.SetIDTokenTTL(-time.Minute) },
			func(_ *Provider, rp *relyingParty) *oidc.IDTokenVerifier {
				return rp.op.Verifier(&oidc.Config{ClientID: testClientID, SkipExpiryCheck: true})
			}},
		{"wrong audience", func(p *Provider) { p.SetAudienceOverride("someone-else") },
			func(_ *Provider, rp *relyingParty) *oidc.IDTokenVerifier {
				return rp.op.Verifier(&oidc.Config{SkipClientIDCheck: true})
			}},
		{"wrong issuer", func(p *Provider) { p.SetIssuerOverride("https://evil.example") },
			func(_ *Provider, rp *relyingParty) *oidc.IDTokenVerifier {
				return rp.op.Verifier(&oidc.Config{ClientID: testClientID, SkipIssuerCheck: true})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(t)
			rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
			tt.knob(p)
			raw, _ := rp.loginAndExchange(t)

			_, err := rp.verifier.Verify(rp.ctx, raw)
			if tt.relaxed == nil {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("go-oidc accepted the token")
			}
			t.Logf("refused as expected: %v", err)
			if _, err := tt.relaxed(p, rp).Verify(rp.ctx, raw); err != nil {
				t.Errorf("relaxed verifier also refused it: %v", err)
			}
		})
	}
}

func TestExpiredIsTokenExpiredError(t *testing.T) {
	p := New(t)
	rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
	p.SetIDTokenTTL(-time.Second)
	raw, _ := rp.loginAndExchange(t)
	var expired *oidc.TokenExpiredError
	if _, err := rp.verifier.Verify(rp.ctx, raw); !errors.As(err, &expired) {
		t.Fatalf("verify = %v, want *oidc.TokenExpiredError", err)
	}
}

// TestRogueKeyKeepsKid checks the forgery is a good one: the rogue token
// names the published kid, so only the signature can give it away.
func TestRogueKeyKeepsKid(t *testing.T) {
	p := New(t)
	rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
	p.SignWithRogueKey(true)
	raw, _ := rp.loginAndExchange(t)
	if kid := headerKeyID(t, raw); kid != p.KeyID() {
		t.Errorf("rogue token kid = %q, want the published %q", kid, p.KeyID())
	}
	p.SignWithRogueKey(false)
	raw, _ = rp.loginAndExchange(t)
	if _, err := rp.verifier.Verify(rp.ctx, raw); err != nil {
		t.Errorf("after SignWithRogueKey(false): %v", err)
	}
}

// TestRotateKey checks that go-oidc picks up a rotated key on its own and
// that tokens signed before the rotation still verify.
func TestRotateKey(t *testing.T) {
	p := New(t)
	rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
	before, _ := rp.loginAndExchange(t)
	if _, err := rp.verifier.Verify(rp.ctx, before); err != nil { // caches key-1
		t.Fatalf("verify before rotation: %v", err)
	}

	old := p.KeyID()
	p.RotateKey()
	if p.KeyID() == old {
		t.Fatalf("KeyID() still %q after RotateKey", old)
	}
	after, _ := rp.loginAndExchange(t)
	if kid := headerKeyID(t, after); kid != p.KeyID() {
		t.Errorf("new token kid = %q, want %q", kid, p.KeyID())
	}
	if _, err := rp.verifier.Verify(rp.ctx, after); err != nil {
		t.Errorf("verify after rotation: %v", err)
	}
	if _, err := rp.verifier.Verify(rp.ctx, before); err != nil {
		t.Errorf("verify old token after rotation: %v", err)
	}

	set := fetchJWKS(t, p)
	if len(set.Key(old)) != 1 || len(set.Key(p.KeyID())) != 1 || len(set.Keys) != 2 {
		t.Errorf("JWKS has %d keys, want %s and %s", len(set.Keys), old, p.KeyID())
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.Algorithm != "RS256" || k.Use != "sig" {
			t.Errorf("JWKS key %s: public=%v alg=%s use=%s, want a public RS256 signing key", k.KeyID, k.IsPublic(), k.Algorithm, k.Use)
		}
	}
}

func headerKeyID(t *testing.T, raw string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Header.KeyID
}

func fetchJWKS(t *testing.T, p *Provider) jose.JSONWebKeySet {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.Issuer()+"/jwks", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}
