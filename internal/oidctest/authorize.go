package oidctest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// serveAuthorize is the authorization endpoint (RFC 6749 §4.1.1, RFC 7636
// §4.3). It logs the configured user in without asking and redirects with a
// code.
func (p *Provider) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()

	// Until client_id and redirect_uri check out, redirecting would make
	// this an open redirector: answer with a page instead.
	if name := repeatedParameter(q); name != "" {
		p.authorizePage(w, failure{"invalid_request", ReasonRepeatedParameter, name})
		return
	}
	clientID, redirectURI := q.Get("client_id"), q.Get("redirect_uri")
	p.mu.Lock()
	c, ok := p.clients[clientID]
	p.mu.Unlock()
	if !ok {
		p.authorizePage(w, failure{"invalid_request", ReasonUnknownClient, clientID})
		return
	}
	if !slices.Contains(c.redirectURIs, redirectURI) {
		p.authorizePage(w, failure{"invalid_request", ReasonRedirectURI, redirectURI})
		return
	}

	state := q.Get("state")
	if f, ok := checkAuthorizeRequest(q); !ok {
		p.authorizeError(w, r, redirectURI, state, f)
		return
	}

	p.mu.Lock()
	user := p.user.clone()
	p.mu.Unlock()
	if user.Subject == "" {
		p.authorizeError(w, r, redirectURI, state, failure{"access_denied", ReasonNoUser, ""})
		return
	}

	code := randomToken()
	p.mu.Lock()
	p.grants[code] = &grant{
		clientID:    clientID,
		redirectURI: redirectURI,
		challenge:   q.Get("code_challenge"),
		nonce:       q.Get("nonce"),
		scope:       q.Get("scope"),
		user:        user,
		expires:     p.now().Add(CodeTTL),
	}
	p.mu.Unlock()
	redirect(w, r, redirectURI, url.Values{"code": {code}}, state)
}

// checkAuthorizeRequest checks what is left once the redirect URI is
// trusted, in the order a reader of RFC 6749 and RFC 7636 would.
func checkAuthorizeRequest(q url.Values) (failure, bool) {
	switch challenge := q.Get("code_challenge"); {
	case q.Get("response_type") != "code":
		return failure{"unsupported_response_type", ReasonResponseType, q.Get("response_type")}, false
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		return failure{"invalid_scope", ReasonScope, q.Get("scope")}, false
	case challenge == "":
		return failure{"invalid_request", ReasonChallengeMissing, ""}, false
	// A missing method means "plain" (RFC 7636 §4.3), which is refused too.
	case q.Get("code_challenge_method") != "S256":
		return failure{"invalid_request", ReasonChallengeMethod, q.Get("code_challenge_method")}, false
	case !isSHA256Digest(challenge):
		return failure{"invalid_request", ReasonChallenge, challenge}, false
	}
	return failure{}, true
}

func isSHA256Digest(s string) bool {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == 32
}

// repeatedParameter returns the name of a parameter given more than once,
// which RFC 6749 §3.1 forbids, or "".
func repeatedParameter(v url.Values) string {
	for name, vals := range v {
		if len(vals) > 1 {
			return name
		}
	}
	return ""
}

func (p *Provider) authorizePage(w http.ResponseWriter, f failure) {
	p.reject("/authorize", f)
	msg := "oidctest: " + string(f.reason)
	if f.detail != "" {
		msg += fmt.Sprintf(": %q", f.detail)
	}
	http.Error(w, msg, http.StatusBadRequest)
}

// authorizeError answers with an error redirect (RFC 6749 §4.1.2.1).
func (p *Provider) authorizeError(w http.ResponseWriter, r *http.Request, redirectURI, state string, f failure) {
	p.reject("/authorize", f)
	redirect(w, r, redirectURI, url.Values{"error": {f.code}, "error_description": {string(f.reason)}}, state)
}

// redirect sends the browser to target with params added to its query,
// and state echoed when the client sent one.
func redirect(w http.ResponseWriter, r *http.Request, target string, params url.Values, state string) {
	u, err := url.Parse(target) // registered URIs were parsed by AddClient
	if err != nil {
		http.Error(w, "oidctest: bad redirect URI", http.StatusInternalServerError)
		return
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// Authorize plays the browser's part of a login: it GETs authCodeURL,
// which must be this provider's /authorize URL (as built by
// oauth2.Config.AuthCodeURL), without following the redirect, and returns
// where the provider sends the browser: the client's redirect_uri carrying
// code and state, or error and state. A 400 page is returned as an error.
func (p *Provider) Authorize(ctx context.Context, authCodeURL string) (*url.URL, error) {
	if !strings.HasPrefix(authCodeURL, p.issuer+"/authorize?") {
		return nil, fmt.Errorf("authorize: %q is not %s/authorize?…", authCodeURL, p.issuer)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authCodeURL, nil)
	if err != nil {
		return nil, fmt.Errorf("authorize: %w", err)
	}
	c := *p.HTTPClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("authorize: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("authorize: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	loc, err := resp.Location()
	if errors.Is(err, http.ErrNoLocation) {
		return nil, fmt.Errorf("authorize: %s without Location", resp.Status)
	}
	return loc, err
}
