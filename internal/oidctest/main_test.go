package oidctest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testClientID = "outpost"
	// testSecret needs form-encoding inside a Basic header (RFC 6749
	// §2.3.1), which x/oauth2 does and the provider must undo.
	testSecret   = "s3cret/+ &="
	testRedirect = "http://127.0.0.1:7070/auth/callback"
)

// relyingParty is the client side as Outpost builds it: go-oidc for
// discovery and verification, x/oauth2 for the code exchange.
type relyingParty struct {
	p        *Provider
	ctx      context.Context // carries the provider's HTTP client to both libraries
	op       *oidc.Provider
	cfg      oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// newRelyingParty registers testClientID and discovers p. It pins the
// client authentication style: x/oauth2's default auto-detection sends a
// failed exchange twice, once per style.
func newRelyingParty(t *testing.T, p *Provider, style oauth2.AuthStyle) *relyingParty {
	t.Helper()
	p.AddClient(testClientID, testSecret, testRedirect, testRedirect+"/other")
	ctx := oidc.ClientContext(t.Context(), p.HTTPClient())
	ctx = context.WithValue(ctx, oauth2.HTTPClient, p.HTTPClient())
	op, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	ep := op.Endpoint()
	ep.AuthStyle = style
	return &relyingParty{
		p:   p,
		ctx: ctx,
		op:  op,
		cfg: oauth2.Config{
			ClientID:     testClientID,
			ClientSecret: testSecret,
			Endpoint:     ep,
			RedirectURL:  testRedirect,
			Scopes:       []string{oidc.ScopeOpenID, "email", "profile", "groups"},
		},
		verifier: op.Verifier(&oidc.Config{ClientID: testClientID}),
	}
}

// attempt is what a relying party keeps in its session between sending
// the browser to /authorize and handling the callback.
type attempt struct {
	state, nonce, verifier string
}

func newAttempt() attempt {
	return attempt{state: randomToken(), nonce: randomToken(), verifier: oauth2.GenerateVerifier()}
}

func (rp *relyingParty) authCodeURL(a attempt) string {
	return rp.cfg.AuthCodeURL(a.state, oidc.Nonce(a.nonce), oauth2.S256ChallengeOption(a.verifier))
}

// login runs the browser leg and returns the code from the callback.
func (rp *relyingParty) login(t *testing.T, a attempt) string {
	t.Helper()
	loc, err := rp.p.Authorize(rp.ctx, rp.authCodeURL(a))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if e := q.Get("error"); e != "" {
		t.Fatalf("authorize redirected with error=%s: %s", e, q.Get("error_description"))
	}
	if got := q.Get("state"); got != a.state {
		t.Fatalf("state = %q, want %q", got, a.state)
	}
	if q.Get("code") == "" {
		t.Fatalf("no code in callback %s", loc)
	}
	return q.Get("code")
}

// loginAndExchange returns the raw ID token of a successful login.
func (rp *relyingParty) loginAndExchange(t *testing.T) (string, attempt) {
	t.Helper()
	a := newAttempt()
	tok, err := rp.cfg.Exchange(rp.ctx, rp.login(t, a), oauth2.VerifierOption(a.verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return rawIDToken(t, tok), a
}

func rawIDToken(t *testing.T, tok *oauth2.Token) string {
	t.Helper()
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		t.Fatal("token response has no id_token")
	}
	return raw
}

// idClaimsOf reads the claims go-oidc does not surface as fields.
func idClaimsOf(t *testing.T, tok *oidc.IDToken) idClaims {
	t.Helper()
	var c idClaims
	if err := tok.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// fakeClock is a provider clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// lastRejection returns the newest rejection by endpoint.
func lastRejection(t *testing.T, p *Provider, endpoint string) Rejection {
	t.Helper()
	rs := p.Rejections()
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Endpoint == endpoint {
			return rs[i]
		}
	}
	t.Fatalf("provider rejected nothing at %s; Rejections() = %v", endpoint, rs)
	return Rejection{}
}
