package oidctest

import (
	"net/url"
	"testing"

	"golang.org/x/oauth2"
)

// TestAuthorizeRejections checks /authorize: a 400 page while the redirect
// URI is untrusted, an error redirect echoing state after.
func TestAuthorizeRejections(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(q url.Values, p *Provider)
		wantPage bool   // a 400 page rather than an error redirect
		wantErr  string // error= in the redirect
		want     Reason
	}{
		{"no code_challenge", func(q url.Values, _ *Provider) {
			q.Del("code_challenge")
			q.Del("code_challenge_method")
		}, false, "invalid_request", ReasonChallengeMissing},
		{"plain method", func(q url.Values, _ *Provider) {
			q.Set("code_challenge_method", "plain")
		}, false, "invalid_request", ReasonChallengeMethod},
		{"no method means plain", func(q url.Values, _ *Provider) {
			q.Del("code_challenge_method")
		}, false, "invalid_request", ReasonChallengeMethod},
		{"challenge not a digest", func(q url.Values, _ *Provider) {
			q.Set("code_challenge", "too-short")
		}, false, "invalid_request", ReasonChallenge},
		{"no openid scope", func(q url.Values, _ *Provider) {
			q.Set("scope", "email profile")
		}, false, "invalid_scope", ReasonScope},
		{"implicit flow", func(q url.Values, _ *Provider) {
			q.Set("response_type", "id_token")
		}, false, "unsupported_response_type", ReasonResponseType},
		{"nobody logged in", func(_ url.Values, p *Provider) {
			p.SetUser(User{})
		}, false, "access_denied", ReasonNoUser},
		{"unknown client", func(q url.Values, _ *Provider) {
			q.Set("client_id", "stranger")
		}, true, "", ReasonUnknownClient},
		{"redirect_uri with trailing slash", func(q url.Values, _ *Provider) {
			q.Set("redirect_uri", testRedirect+"/")
		}, true, "", ReasonRedirectURI},
		{"redirect_uri elsewhere", func(q url.Values, _ *Provider) {
			q.Set("redirect_uri", "https://attacker.example/cb")
		}, true, "", ReasonRedirectURI},
		{"no redirect_uri", func(q url.Values, _ *Provider) {
			q.Del("redirect_uri")
		}, true, "", ReasonRedirectURI},
		{"repeated parameter", func(q url.Values, _ *Provider) {
			q.Add("scope", "openid")
		}, true, "", ReasonRepeatedParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(t)
			rp := newRelyingParty(t, p, oauth2.AuthStyleInHeader)
			a := newAttempt()
			u, err := url.Parse(rp.authCodeURL(a))
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			tt.mutate(q, p)
			u.RawQuery = q.Encode()

			loc, err := p.Authorize(t.Context(), u.String())
			switch {
			case tt.wantPage && err == nil:
				t.Fatalf("redirected to %s, want a 400 page", loc)
			case tt.wantPage:
				t.Logf("page: %v", err)
			case err != nil:
				t.Fatalf("authorize: %v", err)
			default:
				got := loc.Query()
				if got.Get("error") != tt.wantErr || got.Get("state") != a.state || got.Get("code") != "" {
					t.Errorf("redirected to %s, want error=%s, state=%s and no code", loc, tt.wantErr, a.state)
				}
			}
			rs := p.Rejections()
			if len(rs) != 1 || rs[0].Endpoint != "/authorize" || rs[0].Reason != tt.want {
				t.Errorf("Rejections() = %v, want one /authorize for %q", rs, tt.want)
			}
		})
	}
}

// TestAuthorizeKeepsRedirectQuery checks that a redirect URI's own query
// survives, and that codes are unique.
func TestAuthorizeKeepsRedirectQuery(t *testing.T) {
	p := New(t)
	const cb = "http://127.0.0.1:7070/cb?tenant=blue"
	p.AddClient("c", "s", cb)
	cfg := oauth2.Config{ClientID: "c", ClientSecret: "s", RedirectURL: cb, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: p.Issuer() + "/authorize", TokenURL: p.Issuer() + "/token"}}
	seen := map[string]bool{}
	for range 3 {
		loc, err := p.Authorize(t.Context(), cfg.AuthCodeURL("s1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if err != nil {
			t.Fatal(err)
		}
		q := loc.Query()
		if q.Get("tenant") != "blue" || q.Get("code") == "" || seen[q.Get("code")] {
			t.Fatalf("redirected to %s, want tenant=blue and a fresh code", loc)
		}
		seen[q.Get("code")] = true
	}
}
