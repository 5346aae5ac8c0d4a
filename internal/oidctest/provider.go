package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"
)

const (
	// CodeTTL is how long an authorization code can be redeemed after
	// /authorize issues it.
	CodeTTL = time.Minute
	// DefaultIDTokenTTL is the lifetime of ID tokens until
	// [Provider.SetIDTokenTTL] changes it.
	DefaultIDTokenTTL = 5 * time.Minute
	// AccessTokenTTL is the lifetime of the opaque access tokens, which
	// only /userinfo accepts.
	AccessTokenTTL = time.Hour
)

// User is the person /authorize logs in.
type User struct {
	Subject string // "sub"; empty means nobody is logged in
	Email   string
	Name    string
	Groups  []string
}

// DefaultUser returns the user a new Provider logs in until
// [Provider.SetUser] picks another.
func DefaultUser() User {
	return User{
		Subject: "user-ada",
		Email:   "ada@example.test",
		Name:    "Ada Lovelace",
		Groups:  []string{"outpost-admins"},
	}
}

func (u User) clone() User {
	u.Groups = slices.Clone(u.Groups)
	return u
}

// Option configures [New].
type Option func(*options)

type options struct {
	now func() time.Time
	tls bool
}

// WithClock makes the provider read time from now instead of time.Now. It
// drives code expiry and the iat/exp of ID tokens, so a test can expire a
// code without sleeping. A verifier still on the real clock will reject ID
// tokens whose clock has drifted by more than their TTL.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithTLS serves HTTPS with httptest's self-signed certificate. Clients
// must then use [Provider.HTTPClient], which trusts it.
func WithTLS() Option {
	return func(o *options) { o.tls = true }
}

// Provider is a running OpenID Connect provider. Its methods are safe for
// concurrent use, including while requests are in flight.
type Provider struct {
	t      testing.TB
	srv    *httptest.Server
	issuer string // immutable once the server starts
	now    func() time.Time

	mu            sync.Mutex
	clients       map[string]client
	user          User
	grants        map[string]*grant // by authorization code
	accessTokens  map[string]accessToken
	keys          []signingKey // oldest first; the last one signs
	rogue         *rsa.PrivateKey
	useRogue      bool
	idTokenTTL    time.Duration
	audience      string // overrides the aud claim when not empty
	issuerClaim   string // overrides the iss claim when not empty
	tokenRequests int
	rejections    []Rejection
}

type client struct {
	secret       string
	redirectURIs []string
}

// grant is what /authorize promised and /token may redeem once.
type grant struct {
	clientID    string
	redirectURI string
	challenge   string // base64url(SHA-256(code_verifier))
	nonce       string
	scope       string
	user        User
	expires     time.Time
	redeemed    bool
	accessToken string // issued on redemption; revoked if the code is replayed
}

type accessToken struct {
	user    User
	expires time.Time
}

// New starts a provider on 127.0.0.1 and closes it when the test ends. It
// knows no clients until [Provider.AddClient], and logs in [DefaultUser].
// New must be called from the test's goroutine.
func New(t testing.TB, opts ...Option) *Provider {
	t.Helper()
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	key, err := newRSAKey()
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	p := &Provider{
		t:            t,
		now:          o.now,
		clients:      map[string]client{},
		user:         DefaultUser(),
		grants:       map[string]*grant{},
		accessTokens: map[string]accessToken{},
		keys:         []signingKey{{id: "key-1", priv: key}},
		idTokenTTL:   DefaultIDTokenTTL,
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.serveDiscovery)
	mux.HandleFunc("GET /jwks", p.serveJWKS)
	mux.HandleFunc("GET /authorize", p.serveAuthorize)
	mux.HandleFunc("POST /token", p.serveToken)
	mux.HandleFunc("GET /userinfo", p.serveUserInfo)
	mux.HandleFunc("POST /userinfo", p.serveUserInfo)

	// The issuer is fixed before Start so handlers read it without a lock.
	p.srv = httptest.NewUnstartedServer(mux)
	scheme := "http"
	if o.tls {
		scheme = "https"
	}
	p.issuer = scheme + "://" + p.srv.Listener.Addr().String()
	if o.tls {
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	t.Cleanup(p.srv.Close)
	return p
}

// Issuer returns the issuer URL, which is also the server's base URL, for
// example "http://127.0.0.1:41234". It has no trailing slash, and go-oidc
// requires the one it is given to match exactly.
func (p *Provider) Issuer() string { return p.issuer }

// HTTPClient returns a client for this server: it trusts the certificate
// under [WithTLS], and its idle connections are closed with the server.
// Hand it to go-oidc with oidc.ClientContext and to oauth2 with
// context.WithValue(ctx, oauth2.HTTPClient, c).
func (p *Provider) HTTPClient() *http.Client { return p.srv.Client() }

// AddClient registers a confidential client, or replaces one with the same
// id. Redirect URIs must be absolute and are matched exactly, byte for
// byte, as OAuth 2.1 requires.
func (p *Provider) AddClient(id, secret string, redirectURIs ...string) {
	if id == "" || secret == "" {
		p.t.Errorf("oidctest: AddClient(%q, %q): client id and secret must not be empty", id, secret)
		return
	}
	for _, r := range redirectURIs {
		u, err := url.Parse(r)
		if err != nil || !u.IsAbs() || u.Fragment != "" {
			p.t.Errorf("oidctest: AddClient(%q): redirect URI %q must be absolute and without a fragment", id, r)
			return
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients[id] = client{secret: secret, redirectURIs: slices.Clone(redirectURIs)}
}

// SetUser chooses who the next /authorize logs in. A user with an empty
// Subject means nobody: /authorize then redirects with error=access_denied.
// Codes already issued keep the user they were issued for.
func (p *Provider) SetUser(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user = u.clone()
}

// SignWithRogueKey makes /token sign ID tokens with a key that is not in
// the JWK set but carries the current key's kid, as a forger would. The
// rogue key is made on first use.
func (p *Provider) SignWithRogueKey(on bool) {
	p.mu.Lock()
	need := on && p.rogue == nil
	p.mu.Unlock()
	var key *rsa.PrivateKey
	if need {
		var err error
		if key, err = newRSAKey(); err != nil { // slow; not under the lock
			p.t.Errorf("oidctest: SignWithRogueKey: %v", err)
			return
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rogue == nil {
		p.rogue = key
	}
	p.useRogue = on
}

// SetIDTokenTTL sets exp to iat+d for ID tokens issued from now on. A
// negative d issues tokens that are already expired; zero is not special.
func (p *Provider) SetIDTokenTTL(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idTokenTTL = d
}

// SetAudienceOverride puts aud in ID tokens instead of the client id; an
// empty aud restores the client id.
func (p *Provider) SetAudienceOverride(aud string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.audience = aud
}

// SetIssuerOverride puts iss in the iss claim of ID tokens; an empty iss
// restores [Provider.Issuer]. Discovery keeps advertising the real issuer.
func (p *Provider) SetIssuerOverride(iss string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issuerClaim = iss
}

// RotateKey makes a new signing key with a new kid. The JWK set keeps
// publishing every earlier key too, so tokens already issued still verify.
func (p *Provider) RotateKey() {
	key, err := newRSAKey() // slow; not under the lock
	if err != nil {
		p.t.Errorf("oidctest: RotateKey: %v", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, signingKey{id: fmt.Sprintf("key-%d", len(p.keys)+1), priv: key})
}

// KeyID returns the kid of the key that signs ID tokens now.
func (p *Provider) KeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[len(p.keys)-1].id
}

// TokenRequests counts requests to /token, accepted or not.
func (p *Provider) TokenRequests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokenRequests
}

// Rejections returns every request the provider refused, oldest first.
func (p *Provider) Rejections() []Rejection {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.rejections)
}

// failure is a refusal on its way to becoming a response and a Rejection.
type failure struct {
	code   string // RFC 6749 error code
	reason Reason
	detail string
}

func (p *Provider) reject(endpoint string, f failure) {
	r := Rejection{Endpoint: endpoint, Error: f.code, Reason: f.reason, Detail: f.detail}
	p.mu.Lock()
	p.rejections = append(p.rejections, r)
	p.mu.Unlock()
	p.t.Logf("oidctest: rejected %v", r)
}

type discovery struct {
	Issuer                  string   `json:"issuer"`
	AuthorizationEndpoint   string   `json:"authorization_endpoint"`
	TokenEndpoint           string   `json:"token_endpoint"`
	UserInfoEndpoint        string   `json:"userinfo_endpoint"`
	JWKSURI                 string   `json:"jwks_uri"`
	ResponseTypes           []string `json:"response_types_supported"`
	ResponseModes           []string `json:"response_modes_supported"`
	GrantTypes              []string `json:"grant_types_supported"`
	SubjectTypes            []string `json:"subject_types_supported"`
	IDTokenSigningAlgs      []string `json:"id_token_signing_alg_values_supported"`
	CodeChallengeMethods    []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethod []string `json:"token_endpoint_auth_methods_supported"`
	Scopes                  []string `json:"scopes_supported"`
	Claims                  []string `json:"claims_supported"`
}

func (p *Provider) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, discovery{
		Issuer:                  p.issuer,
		AuthorizationEndpoint:   p.issuer + "/authorize",
		TokenEndpoint:           p.issuer + "/token",
		UserInfoEndpoint:        p.issuer + "/userinfo",
		JWKSURI:                 p.issuer + "/jwks",
		ResponseTypes:           []string{"code"},
		ResponseModes:           []string{"query"},
		GrantTypes:              []string{"authorization_code"},
		SubjectTypes:            []string{"public"},
		IDTokenSigningAlgs:      []string{"RS256"},
		CodeChallengeMethods:    []string{"S256"},
		TokenEndpointAuthMethod: []string{"client_secret_basic", "client_secret_post"},
		Scopes:                  []string{"openid", "email", "profile", "groups"},
		Claims:                  []string{"iss", "sub", "aud", "exp", "iat", "nonce", "at_hash", "email", "name", "groups"},
	})
}

func (p *Provider) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	set := publicKeySet(p.keys)
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, set)
}

// randomToken returns 256 random bits, base64url-encoded: unguessable
// codes and access tokens.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails; it crashes the program instead
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The status is sent; a failed write means the client went away.
	_ = json.NewEncoder(w).Encode(v)
}
