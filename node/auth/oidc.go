package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCConfig is OIDC login (Authorization Code flow with PKCE).
type OIDCConfig struct {
	// Issuer is the IdP's issuer URL, exactly as its discovery document
	// says (no trailing slash unless the IdP has one).
	Issuer string `yaml:"issuer"`
	// ClientID and ClientSecret identify Outpost to the IdP. The secret is
	// read from ClientSecretFile, wrapped by the master key (`outpost keys
	// wrap --purpose oidc_client_secret`).
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// RedirectURL is this node's callback,
	// https://HOST/api/v1/auth/oidc/callback, registered at the IdP.
	RedirectURL string `yaml:"redirect_url"`
	// GroupsClaim names the ID-token claim listing the user's groups.
	// Default "groups".
	GroupsClaim string `yaml:"groups_claim"`
	// Groups maps IdP groups to roles. A user with no mapped group cannot
	// log in.
	Groups []GroupMapping `yaml:"groups"`
}

// GroupMapping gives members of an IdP group a role in a tenant, or makes
// them region admins.
type GroupMapping struct {
	Group       string `yaml:"group"`
	Tenant      string `yaml:"tenant"`
	Role        string `yaml:"role"`
	RegionAdmin bool   `yaml:"region_admin"`
}

// Validate checks the OIDC settings, naming the field.
func (c OIDCConfig) Validate() error {
	switch {
	case c.Issuer == "" || !(strings.HasPrefix(c.Issuer, "https://") || strings.HasPrefix(c.Issuer, "http://127.0.0.1")):
		return fmt.Errorf("auth.oidc.issuer %q: use the IdP's https:// issuer URL", c.Issuer)
	case c.ClientID == "":
		return errors.New("auth.oidc.client_id is required")
	case c.RedirectURL == "" || !strings.HasSuffix(c.RedirectURL, "/api/v1/auth/oidc/callback"):
		return fmt.Errorf("auth.oidc.redirect_url %q: use this node's URL ending in /api/v1/auth/oidc/callback", c.RedirectURL)
	case len(c.Groups) == 0:
		return errors.New("auth.oidc.groups is empty: map at least one IdP group to a role, or nobody can log in")
	}
	for i, g := range c.Groups {
		if g.Group == "" {
			return fmt.Errorf("auth.oidc.groups[%d].group is required", i)
		}
		if g.RegionAdmin {
			if g.Tenant != "" || g.Role != "" {
				return fmt.Errorf("auth.oidc.groups[%d]: region_admin takes no tenant or role", i)
			}
			continue
		}
		if err := ValidTenantName(g.Tenant); err != nil {
			return fmt.Errorf("auth.oidc.groups[%d].tenant: %v", i, err)
		}
		if _, err := ParseRole(g.Role); err != nil {
			return fmt.Errorf("auth.oidc.groups[%d].role: %v", i, err)
		}
	}
	return nil
}

// OIDCIdentity is who the IdP says logged in, and the roles their groups
// map to (tenant name -> role).
type OIDCIdentity struct {
	Subject     string
	Email       string
	Groups      []string
	RegionAdmin bool
	Roles       map[string]Role
}

// UserName is the account an OIDC identity maps to.
func (id OIDCIdentity) UserName() string { return "oidc:" + id.Subject }

// OIDC runs the login flow. The IdP is discovered on first use, so a node
// starts while its IdP is down.
type OIDC struct {
	cfg    OIDCConfig
	secret string
	key    []byte // signs the flow cookie
	client *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
}

// FlowCookie carries state, nonce and PKCE verifier between the redirect
// to the IdP and the callback, signed and short-lived.
const FlowCookie = "outpost_oidc_flow"

const flowTTL = 10 * time.Minute

// NewOIDC prepares OIDC login. client may be nil (http.DefaultClient).
func NewOIDC(cfg OIDCConfig, clientSecret string, s *Sessions, client *http.Client) (*OIDC, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if client == nil {
		client = http.DefaultClient
	}
	k := hmac.New(sha256.New, s.key)
	k.Write([]byte("outpost oidc flow cookie v1"))
	return &OIDC{cfg: cfg, secret: clientSecret, key: k.Sum(nil), client: client}, nil
}

func (o *OIDC) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.client), o.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("OIDC discovery at %s failed: %w", o.cfg.Issuer, err)
	}
	o.provider = p
	return p, nil
}

func (o *OIDC) oauth(p *oidc.Provider) *oauth2.Config {
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.secret, Endpoint: ep, RedirectURL: o.cfg.RedirectURL,
		Scopes: []string{oidc.ScopeOpenID, "email", "profile", o.cfg.GroupsClaim}}
}

type flowState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"exp"`
}

func (o *OIDC) sign(b []byte) string {
	m := hmac.New(sha256.New, o.key)
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Start returns the IdP URL to send the browser to and the flow cookie's
// value.
func (o *OIDC) Start(ctx context.Context, now time.Time) (redirect, cookie string, err error) {
	p, err := o.discover(ctx)
	if err != nil {
		return "", "", err
	}
	st := flowState{State: NewID(16), Nonce: NewID(16), Verifier: oauth2.GenerateVerifier(), Expires: now.Add(flowTTL).Unix()}
	b, _ := json.Marshal(st)
	url := o.oauth(p).AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier))
	return url, o.sign(b), nil
}

// ErrOIDCFlow marks a callback that does not continue a flow this node
// started (missing, forged or expired flow cookie; state mismatch).
var ErrOIDCFlow = errors.New("OIDC login did not complete")

// Finish checks the callback against the flow cookie, redeems the code
// with the PKCE verifier, verifies the ID token against the IdP's JWKS
// (signature, issuer, audience, expiry) and its nonce, and maps groups to
// roles.
func (o *OIDC) Finish(ctx context.Context, cookie, state, code string, now time.Time) (OIDCIdentity, error) {
	var id OIDCIdentity
	body, sig, ok := strings.Cut(cookie, ".")
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if !ok || err != nil || !hmac.Equal([]byte(o.sign(raw)), []byte(body+"."+sig)) {
		return id, fmt.Errorf("%w: the login flow cookie is missing or not ours; start again at /api/v1/auth/oidc/login", ErrOIDCFlow)
	}
	var st flowState
	if json.Unmarshal(raw, &st) != nil || now.Unix() > st.Expires {
		return id, fmt.Errorf("%w: the login took longer than %s; start again", ErrOIDCFlow, flowTTL)
	}
	if !hmac.Equal([]byte(st.State), []byte(state)) || code == "" {
		return id, fmt.Errorf("%w: state does not match this browser's login", ErrOIDCFlow)
	}
	p, err := o.discover(ctx)
	if err != nil {
		return id, err
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, o.client)
	tok, err := o.oauth(p).Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return id, fmt.Errorf("%w: the IdP refused the code: %v", ErrOIDCFlow, err)
	}
	rawID, ok := tok.Extra("id_token").(string)
	if !ok {
		return id, fmt.Errorf("%w: the IdP returned no id_token", ErrOIDCFlow)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: func() time.Time { return now }}).Verify(oidc.ClientContext(ctx, o.client), rawID)
	if err != nil {
		return id, fmt.Errorf("%w: the ID token did not verify: %v", ErrOIDCFlow, err)
	}
	if !hmac.Equal([]byte(idt.Nonce), []byte(st.Nonce)) {
		return id, fmt.Errorf("%w: the ID token's nonce is not this login's", ErrOIDCFlow)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return id, fmt.Errorf("%w: %v", ErrOIDCFlow, err)
	}
	id.Subject = idt.Subject
	id.Email, _ = claims["email"].(string)
	if gs, ok := claims[o.cfg.GroupsClaim].([]any); ok {
		for _, g := range gs {
			if s, ok := g.(string); ok {
				id.Groups = append(id.Groups, s)
			}
		}
	}
	id.Roles = map[string]Role{}
	for _, m := range o.cfg.Groups {
		for _, g := range id.Groups {
			if g != m.Group {
				continue
			}
			if m.RegionAdmin {
				id.RegionAdmin = true
				continue
			}
			if r, _ := ParseRole(m.Role); r > id.Roles[m.Tenant] {
				id.Roles[m.Tenant] = r
			}
		}
	}
	if !id.RegionAdmin && len(id.Roles) == 0 {
		return id, fmt.Errorf("%w: none of your groups (%s) is mapped to a role in auth.oidc.groups", ErrOIDCFlow, strings.Join(id.Groups, ", "))
	}
	if len(id.Subject) == 0 || len(id.Subject) > 255 {
		return id, fmt.Errorf("%w: the ID token's subject is empty or too long", ErrOIDCFlow)
	}
	return id, nil
}
