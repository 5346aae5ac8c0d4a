// Package oidctest runs a small, real OpenID Connect provider inside a test,
// so that Outpost's OIDC login (Authorization Code flow with PKCE) can be
// exercised end to end against real HTTP, real JWTs and real key sets
// instead of mocks.
//
// It is for tests only: nothing outside _test.go files may import it. It
// logs what it rejects through the test's t.Log, so the log shows only when
// a test fails.
//
//	p := oidctest.New(t)
//	p.AddClient("outpost", "s3cret", "http://127.0.0.1:7070/auth/callback")
//	p.SetUser(oidctest.User{Subject: "u1", Email: "ada@example.test", Groups: []string{"ops"}})
//	// point the code under test at p.Issuer(); drive the browser leg with
//	// p.Authorize(ctx, authCodeURL)
//
// What it implements:
//
//   - discovery at /.well-known/openid-configuration, with the issuer
//     exactly [Provider.Issuer] (no trailing slash);
//   - a JWK set at /jwks publishing every key the provider has signed with;
//   - /authorize for response_type=code only, with exact redirect_uri
//     matching and mandatory PKCE S256. There is no login page and no
//     consent screen: the user chosen with [Provider.SetUser] is logged in
//     and consents at once;
//   - /token for grant_type=authorization_code, with client_secret_basic or
//     client_secret_post, single-use codes that expire after [CodeTTL], and
//     RS256 ID tokens built with go-jose;
//   - /userinfo for the opaque access tokens /token issues.
//
// What it does not implement: refresh tokens, the implicit and hybrid
// flows, public clients, prompt/max_age/acr, request objects, logout,
// dynamic registration, or scope-dependent claims (email, name and groups
// are always in the ID token).
//
// Knobs on [Provider] make it misbehave on purpose — a rogue signing key,
// expired tokens, a wrong audience or issuer — and [Provider.Rejections]
// says why it refused a request, so negative tests can assert the cause.
package oidctest
