package oidctest

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestTokenRejections checks that /token refuses each broken redemption
// with invalid_grant, for the right reason, through x/oauth2.
func TestTokenRejections(t *testing.T) {
	type env struct {
		p     *Provider
		rp    *relyingParty
		clock *fakeClock
		code  string
		a     attempt
	}
	tests := []struct {
		name   string
		redeem func(t *testing.T, e env) error
		want   Reason
	}{
		{"no verifier", func(t *testing.T, e env) error {
			_, err := e.rp.cfg.Exchange(e.rp.ctx, e.code)
			return err
		}, ReasonVerifierMissing},
		{"wrong verifier", func(t *testing.T, e env) error {
			_, err := e.rp.cfg.Exchange(e.rp.ctx, e.code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
			return err
		}, ReasonVerifierMismatch},
		{"verifier too short", func(t *testing.T, e env) error {
			_, err := e.rp.cfg.Exchange(e.rp.ctx, e.code, oauth2.VerifierOption("short"))
			return err
		}, ReasonVerifier},
		{"challenge sent as verifier", func(t *testing.T, e env) error {
			_, err := e.rp.cfg.Exchange(e.rp.ctx, e.code, oauth2.VerifierOption(oauth2.S256ChallengeFromVerifier(e.a.verifier)))
			return err
		}, ReasonVerifierMismatch},
		{"code reused", func(t *testing.T, e env) error {
			tok, err := e.rp.cfg.Exchange(e.rp.ctx, e.code, oauth2.VerifierOption(e.a.verifier))
			if err != nil {
				t.Fatalf("first exchange: %v", err)
			}
			_, err = e.rp.cfg.Exchange(e.rp.ctx, e.code, oauth2.VerifierOption(e.a.verifier))
			// RFC 6749 §4.1.2: a replay revokes what the code bought.
			if _, uerr := e.rp.op.UserInfo(e.rp.ctx, oauth2.StaticTokenSource(tok)); uerr == nil {
				t.Error("userinfo accepted an access token whose code was replayed")
			}
			return err
		}, ReasonCodeReused},
		{"code expired", func(t *testing.T, e env) error {
			e.clock.Advance(CodeTTL)
			_, err := e.rp.cfg.Exchange(e.rp.ctx, e.code, oauth2.VerifierOption(e.a.verifier))
			return err
		}, ReasonCodeExpired},
		{"redirect_uri differs", func(t *testing.T, e env) error {
			cfg := e.rp.cfg
			cfg.RedirectURL = testRedirect + "/other" // registered, but not the one used
			_, err := cfg.Exchange(e.rp.ctx, e.code, oauth2.VerifierOption(e.a.verifier))
			return err
		}, ReasonRedirectMismatch},
		{"code of another client", func(t *testing.T, e env) error {
			e.p.AddClient("intruder", "intruder-secret", testRedirect)
			cfg := e.rp.cfg
			cfg.ClientID, cfg.ClientSecret = "intruder", "intruder-secret"
			_, err := cfg.Exchange(e.rp.ctx, e.code, oauth2.VerifierOption(e.a.verifier))
			return err
		}, ReasonCodeClient},
		{"unknown code", func(t *testing.T, e env) error {
			_, err := e.rp.cfg.Exchange(e.rp.ctx, randomToken(), oauth2.VerifierOption(e.a.verifier))
			return err
		}, ReasonCodeUnknown},
		{"retry after a failure", func(t *testing.T, e env) error {
			if _, err := e.rp.cfg.Exchange(e.rp.ctx, e.code); err == nil {
				t.Fatal("exchange without verifier succeeded")
			}
			_, err := e.rp.cfg.Exchange(e.rp.ctx, e.code, oauth2.VerifierOption(e.a.verifier))
			return err
		}, ReasonCodeReused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Now()}
			p := New(t, WithClock(clock.Now))
			rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
			a := newAttempt()
			e := env{p: p, rp: rp, clock: clock, code: rp.login(t, a), a: a}

			err := tt.redeem(t, e)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("exchange error = %v, want *oauth2.RetrieveError", err)
			}
			if re.ErrorCode != "invalid_grant" || re.Response.StatusCode != http.StatusBadRequest {
				t.Errorf("got %s with %d, want invalid_grant with 400", re.ErrorCode, re.Response.StatusCode)
			}
			if r := lastRejection(t, p, "/token"); r.Reason != tt.want {
				t.Errorf("rejected %v, want %q", r, tt.want)
			}
			if re.ErrorDescription != string(tt.want) {
				t.Errorf("error_description = %q, want %q", re.ErrorDescription, tt.want)
			}
		})
	}
}

// TestAutoDetectedAuthStyleRetries documents an x/oauth2 behaviour that
// matters to assertions: with the endpoint's AuthStyle left to
// auto-detection (what go-oidc's Endpoint returns), a failed exchange is
// sent twice, and the retry finds the code already consumed.
func TestAutoDetectedAuthStyleRetries(t *testing.T) {
	p := New(t)
	rp := newRelyingParty(t, p, oauth2.AuthStyleAutoDetect)
	_, err := rp.cfg.Exchange(rp.ctx, rp.login(t, newAttempt()))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("exchange error = %v, want invalid_grant", err)
	}
	if n := p.TokenRequests(); n != 2 {
		t.Errorf("TokenRequests() = %d, want 2", n)
	}
	rs := p.Rejections()
	if len(rs) != 2 || rs[0].Reason != ReasonVerifierMissing || rs[1].Reason != ReasonCodeReused {
		t.Errorf("Rejections() = %v, want verifier missing then code reused", rs)
	}
}

// TestUserInfoRejectsUnknownToken checks the one refusal of /userinfo.
func TestUserInfoRejectsUnknownToken(t *testing.T) {
	p := New(t)
	rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
	_, err := rp.op.UserInfo(rp.ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "forged", TokenType: "Bearer"}))
	if err == nil {
		t.Fatal("userinfo accepted a forged access token")
	}
	if r := lastRejection(t, p, "/userinfo"); r.Reason != ReasonAccessToken {
		t.Errorf("rejected %v, want %q", r, ReasonAccessToken)
	}
}
