package oidctest

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// TestFullFlow logs in the way Outpost does, driving /authorize by hand as
// a browser would, and checks everything the relying party relies on.
func TestFullFlow(t *testing.T) {
	p := New(t)
	user := User{Subject: "u-42", Email: "grace@example.test", Name: "Grace Hopper", Groups: []string{"ops", "outpost-admins"}}
	p.SetUser(user)
	rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)

	state, nonce, verifier := "st-1", "nonce-1", oauth2.GenerateVerifier()
	authURL := rp.cfg.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	browser := &http.Client{
		Transport:     p.HTTPClient().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, authURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %s, want 302", resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect {
		t.Errorf("redirected to %s, want %s", got, testRedirect)
	}
	if got := loc.Query().Get("state"); got != state {
		t.Errorf("state = %q, want %q", got, state)
	}

	tok, err := rp.cfg.Exchange(rp.ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.TokenType != "Bearer" || tok.AccessToken == "" || tok.Expiry.IsZero() {
		t.Errorf("token = %+v, want a Bearer access token with an expiry", tok)
	}
	idt, err := rp.verifier.Verify(rp.ctx, rawIDToken(t, tok))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if idt.Nonce != nonce {
		t.Errorf("nonce = %q, want %q", idt.Nonce, nonce)
	}
	if idt.Subject != user.Subject || idt.Issuer != p.Issuer() || !slices.Equal(idt.Audience, []string{testClientID}) {
		t.Errorf("sub, iss, aud = %q, %q, %q; want %q, %q, [%q]", idt.Subject, idt.Issuer, idt.Audience, user.Subject, p.Issuer(), testClientID)
	}
	if got, want := idt.Expiry.Sub(idt.IssuedAt), DefaultIDTokenTTL; got != want {
		t.Errorf("exp - iat = %v, want %v", got, want)
	}
	c := idClaimsOf(t, idt)
	if c.Email != user.Email || c.Name != user.Name || !slices.Equal(c.Groups, user.Groups) {
		t.Errorf("claims = %+v, want those of %+v", c, user)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}

	info, err := rp.op.UserInfo(rp.ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var ic idClaims
	if err := info.Claims(&ic); err != nil {
		t.Fatal(err)
	}
	if info.Subject != user.Subject || info.Email != user.Email || !slices.Equal(ic.Groups, user.Groups) {
		t.Errorf("userinfo = %+v %+v, want %+v", info, ic, user)
	}

	if n := p.TokenRequests(); n != 1 {
		t.Errorf("TokenRequests() = %d, want 1", n)
	}
	if rs := p.Rejections(); len(rs) != 0 {
		t.Errorf("Rejections() = %v, want none", rs)
	}
}

// TestClientAuthentication covers both client authentication methods and
// their failure, with a secret that needs form-encoding.
func TestClientAuthentication(t *testing.T) {
	tests := []struct {
		name   string
		style  oauth2.AuthStyle
		secret string
		want   Reason // "" for success
	}{
		{"basic", oauth2.AuthStyleInHeader, testSecret, ""},
		{"post", oauth2.AuthStyleInParams, testSecret, ""},
		{"basic wrong secret", oauth2.AuthStyleInHeader, "nope", ReasonClientAuth},
		{"post wrong secret", oauth2.AuthStyleInParams, "nope", ReasonClientAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(t)
			rp := newRelyingParty(t, p, tt.style)
			rp.cfg.ClientSecret = tt.secret
			a := newAttempt()
			tok, err := rp.cfg.Exchange(rp.ctx, rp.login(t, a), oauth2.VerifierOption(a.verifier))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("exchange: %v", err)
				}
				if _, err := rp.verifier.Verify(rp.ctx, rawIDToken(t, tok)); err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != http.StatusUnauthorized {
				t.Fatalf("exchange error = %v, want invalid_client with 401", err)
			}
			if r := lastRejection(t, p, "/token"); r.Reason != tt.want {
				t.Errorf("rejected for %q, want %q", r.Reason, tt.want)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	p := New(t, WithTLS())
	rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
	raw, _ := rp.loginAndExchange(t)
	if _, err := rp.verifier.Verify(rp.ctx, raw); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got := rp.op.Endpoint().TokenURL; got != p.Issuer()+"/token" || !strings.HasPrefix(p.Issuer(), "https://") {
		t.Errorf("token URL = %s, want https under the issuer", got)
	}
}

// TestIssuerMustMatchExactly documents go-oidc's exact-match rule: a
// trailing slash is a different issuer.
func TestIssuerMustMatchExactly(t *testing.T) {
	p := New(t)
	ctx := oidc.ClientContext(t.Context(), p.HTTPClient())
	_, err := oidc.NewProvider(ctx, p.Issuer()+"/")
	var mismatch *oidc.IssuerMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("NewProvider(issuer + \"/\") = %v, want *oidc.IssuerMismatchError", err)
	}
}

func TestDiscovery(t *testing.T) {
	p := New(t)
	rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
	var d discovery
	if err := rp.op.Claims(&d); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		field     string
		got, want []string
	}{
		{"response_types_supported", d.ResponseTypes, []string{"code"}},
		{"code_challenge_methods_supported", d.CodeChallengeMethods, []string{"S256"}},
		{"id_token_signing_alg_values_supported", d.IDTokenSigningAlgs, []string{"RS256"}},
		{"subject_types_supported", d.SubjectTypes, []string{"public"}},
	}
	for _, c := range checks {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if !slices.Contains(d.Claims, "groups") || !slices.Contains(d.Scopes, "openid") {
		t.Errorf("claims_supported = %q, scopes_supported = %q; want groups and openid", d.Claims, d.Scopes)
	}
	if d.JWKSURI != p.Issuer()+"/jwks" || d.UserInfoEndpoint != rp.op.UserInfoEndpoint() {
		t.Errorf("jwks_uri = %s, userinfo_endpoint = %s", d.JWKSURI, d.UserInfoEndpoint)
	}
}

// TestConcurrentLogins runs logins in parallel while knobs change, for the
// race detector.
func TestConcurrentLogins(t *testing.T) {
	p := New(t)
	rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a := newAttempt()
			loc, err := p.Authorize(rp.ctx, rp.authCodeURL(a))
			if err != nil {
				t.Errorf("login %d: %v", i, err)
				return
			}
			tok, err := rp.cfg.Exchange(rp.ctx, loc.Query().Get("code"), oauth2.VerifierOption(a.verifier))
			if err != nil {
				t.Errorf("login %d: exchange: %v", i, err)
				return
			}
			if _, err := rp.verifier.Verify(rp.ctx, tok.Extra("id_token").(string)); err != nil {
				t.Errorf("login %d: verify: %v", i, err)
			}
		})
	}
	wg.Go(func() {
		p.SetUser(User{Subject: "other", Groups: []string{"g"}})
		p.SetIDTokenTTL(DefaultIDTokenTTL * 2)
		_ = p.Rejections()
	})
	wg.Wait()
	if got := p.TokenRequests(); got != n {
		t.Errorf("TokenRequests() = %d, want %d", got, n)
	}
}
