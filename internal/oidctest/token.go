package oidctest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// idClaims are the ID token claims beyond RFC 7519's registered ones.
type idClaims struct {
	Nonce  string   `json:"nonce,omitempty"`
	AtHash string   `json:"at_hash,omitempty"`
	Email  string   `json:"email,omitempty"`
	Name   string   `json:"name,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	IDToken     string `json:"id_token"`
	Scope       string `json:"scope,omitempty"`
}

type errorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// serveToken is the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.5,
// OpenID Connect Core §3.1.3).
func (p *Provider) serveToken(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.tokenRequests++
	p.mu.Unlock()

	if err := r.ParseForm(); err != nil {
		p.tokenError(w, failure{"invalid_request", ReasonMalformedRequest, err.Error()})
		return
	}
	form := r.PostForm // parameters in the URL query do not count
	if name := repeatedParameter(form); name != "" {
		p.tokenError(w, failure{"invalid_request", ReasonRepeatedParameter, name})
		return
	}
	clientID, f, ok := p.authenticateClient(r, form)
	if !ok {
		p.tokenError(w, f)
		return
	}
	if gt := form.Get("grant_type"); gt != "authorization_code" {
		p.tokenError(w, failure{"unsupported_grant_type", ReasonGrantType, gt})
		return
	}
	resp, f, ok := p.redeem(clientID, form)
	if !ok {
		p.tokenError(w, f)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

// authenticateClient accepts client_secret_basic or client_secret_post,
// but not both at once (RFC 6749 §2.3).
func (p *Provider) authenticateClient(r *http.Request, form url.Values) (string, failure, bool) {
	id, secret, basic := r.BasicAuth()
	_, postSecret := form["client_secret"]
	switch {
	case basic && postSecret:
		return "", failure{"invalid_request", ReasonTwoClientAuths, ""}, false
	case basic:
		// RFC 6749 §2.3.1 form-encodes both before they are joined.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return "", failure{"invalid_client", ReasonClientAuth, "Authorization header is not form-encoded"}, false
		}
		if postID := form.Get("client_id"); postID != "" && postID != id {
			return "", failure{"invalid_request", ReasonTwoClientAuths, "client_id differs from the Basic user"}, false
		}
	default:
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	p.mu.Lock()
	c, known := p.clients[id]
	p.mu.Unlock()
	if !known || subtle.ConstantTimeCompare([]byte(c.secret), []byte(secret)) != 1 {
		return "", failure{"invalid_client", ReasonClientAuth, id}, false
	}
	return id, failure{}, true
}

// redeem exchanges a code for tokens. Any attempt consumes the code, so a
// client cannot guess verifiers against it; replaying a code also revokes
// the access token it bought.
func (p *Provider) redeem(clientID string, form url.Values) (tokenResponse, failure, bool) {
	code := form.Get("code")
	if code == "" {
		return tokenResponse{}, failure{"invalid_request", ReasonCodeMissing, ""}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.grants[code]
	if !ok {
		return tokenResponse{}, failure{"invalid_grant", ReasonCodeUnknown, ""}, false
	}
	if g.redeemed {
		delete(p.accessTokens, g.accessToken)
		return tokenResponse{}, failure{"invalid_grant", ReasonCodeReused, ""}, false
	}
	g.redeemed = true
	now := p.now()
	verifier := form.Get("code_verifier")
	switch {
	case !now.Before(g.expires):
		return tokenResponse{}, failure{"invalid_grant", ReasonCodeExpired, "expired at " + g.expires.Format(time.RFC3339)}, false
	case g.clientID != clientID:
		return tokenResponse{}, failure{"invalid_grant", ReasonCodeClient, g.clientID}, false
	case form.Get("redirect_uri") != g.redirectURI:
		return tokenResponse{}, failure{"invalid_grant", ReasonRedirectMismatch, form.Get("redirect_uri")}, false
	case verifier == "":
		return tokenResponse{}, failure{"invalid_grant", ReasonVerifierMissing, ""}, false
	case !isVerifier(verifier):
		return tokenResponse{}, failure{"invalid_grant", ReasonVerifier, ""}, false
	case subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(g.challenge)) != 1:
		return tokenResponse{}, failure{"invalid_grant", ReasonVerifierMismatch, ""}, false
	}

	access := randomToken()
	idToken, err := p.mintIDTokenLocked(g, access, now)
	if err != nil {
		return tokenResponse{}, failure{"server_error", ReasonSigning, err.Error()}, false
	}
	g.accessToken = access
	p.accessTokens[access] = accessToken{user: g.user, expires: now.Add(AccessTokenTTL)}
	return tokenResponse{
		AccessToken: access,
		TokenType:   "Bearer",
		ExpiresIn:   int64(AccessTokenTTL / time.Second),
		IDToken:     idToken,
		Scope:       g.scope,
	}, failure{}, true
}

// mintIDTokenLocked signs g's ID token as the knobs say. p.mu must be held.
func (p *Provider) mintIDTokenLocked(g *grant, accessToken string, now time.Time) (string, error) {
	std := jwt.Claims{
		Issuer:   p.issuer,
		Subject:  g.user.Subject,
		Audience: jwt.Audience{g.clientID},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(p.idTokenTTL)),
	}
	if p.issuerClaim != "" {
		std.Issuer = p.issuerClaim
	}
	if p.audience != "" {
		std.Audience = jwt.Audience{p.audience}
	}
	extra := idClaims{
		Nonce:  g.nonce,
		AtHash: atHash(accessToken),
		Email:  g.user.Email,
		Name:   g.user.Name,
		Groups: g.user.Groups,
	}
	cur := p.keys[len(p.keys)-1]
	priv := cur.priv
	if p.useRogue {
		priv = p.rogue // same kid, so only the signature gives it away
	}
	return sign(priv, cur.id, std, extra)
}

func (p *Provider) tokenError(w http.ResponseWriter, f failure) {
	p.reject("/token", f)
	status := http.StatusBadRequest
	switch f.code {
	case "invalid_client":
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
	case "server_error":
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, errorResponse{Error: f.code, Description: string(f.reason)})
}

// serveUserInfo is the UserInfo endpoint (OpenID Connect Core §5.3).
func (p *Provider) serveUserInfo(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	p.mu.Lock()
	at, known := p.accessTokens[token]
	now := p.now()
	p.mu.Unlock()
	if !ok || !known || !now.Before(at.expires) {
		p.reject("/userinfo", failure{"invalid_token", ReasonAccessToken, ""})
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, errorResponse{Error: "invalid_token", Description: string(ReasonAccessToken)})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Subject string `json:"sub"`
		idClaims
	}{at.user.Subject, idClaims{Email: at.user.Email, Name: at.user.Name, Groups: at.user.Groups}})
}

// s256 is the S256 code_challenge for verifier (RFC 7636 §4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// atHash is the at_hash claim for an RS256 ID token: the left half of
// SHA-256 of the access token (OpenID Connect Core §3.1.3.6).
func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// isVerifier reports whether v is 43 to 128 characters from RFC 7636's
// unreserved set.
func isVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, c := range []byte(v) {
		ok := 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~'
		if !ok {
			return false
		}
	}
	return true
}
