package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/node/clientaddr"
	"github.com/outpost-mesh/outpost/storage"
)

// remote is the client address limits, lockout sources and records key
// on: the peer's, or behind a trusted proxy the client it forwarded for
// (clientaddr; never on the agent port).
func remote(r *http.Request) string { return clientaddr.Of(r) }

// withPeer adds "peer", the proxy's address, to an audit detail when r
// was forwarded for another client.
func withPeer(r *http.Request, detail map[string]string) map[string]string {
	if p := clientaddr.Peer(r); p != remote(r) {
		detail["peer"] = p
	}
	return detail
}

func (s *server) login(w http.ResponseWriter, r *http.Request, _ *call) {
	now := s.cfg.Now()
	client := remote(r)
	if ok, wait := s.limiter.Allow(client, now); !ok {
		s.m.logins.WithLabelValues(loginRateLimited).Inc()
		secs := int(wait/time.Second) + 1
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, "too many login attempts from your address", fmt.Sprintf("wait %d seconds and try again", secs))
		return
	}
	var in api.Login
	if !decodeBody(w, r, &in, `{"username":"…","password":"…"}`) {
		return
	}
	const wrong = "wrong user name or password"
	if auth.ValidUserName(in.Username) != nil {
		s.m.logins.WithLabelValues(loginUnknown).Inc()
		writeError(w, http.StatusUnauthorized, wrong, "")
		return
	}
	var u auth.User
	var hash string
	var lock auth.LockoutState
	uerr := s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := auth.Reader{Tx: tx}
		var err error
		u, err = rd.User(in.Username)
		hash, lock = rd.PasswordHash(in.Username), rd.Lockout(in.Username)
		return err
	})
	source := auth.LockSource(client)
	if until := lock.LockedUntil(source, now); !until.IsZero() {
		s.m.logins.WithLabelValues(loginLocked).Inc()
		s.locked(w, in.Username, until, now)
		return
	}
	if until := lock.SlowedUntil(s.cfg.Lockout, now); !until.IsZero() {
		s.m.logins.WithLabelValues(loginSlowed).Inc()
		s.slowed(w, in.Username, until, now)
		return
	}
	if uerr != nil || hash == "" {
		// Unknown account: spend the same time as a real check, and keep
		// no record keyed by a name anyone can invent.
		_, _ = auth.CheckPassword(auth.DummyHash(), in.Password)
		s.m.logins.WithLabelValues(loginUnknown).Inc()
		s.cfg.Logger.Warn("login failed: unknown account", "user", in.Username, "remote", client, "peer", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, wrong, "")
		return
	}
	ok, err := auth.CheckPassword(hash, in.Password)
	if err != nil {
		s.cfg.Logger.Error("stored password hash unreadable", "user", in.Username, "err", err)
	}
	if !ok {
		s.m.logins.WithLabelValues(loginWrong).Inc()
		res, ok := s.apply(w, r, change{actor: "anonymous", action: "auth.login_failed", entity: "user/" + in.Username,
			detail: withPeer(r, map[string]string{"remote": client})}, auth.LoginFailed(in.Username, source, now, s.cfg.Lockout))
		if !ok {
			return
		}
		var st auth.LockoutState
		_ = json.Unmarshal(res.Value, &st)
		if until := st.LockedUntil(source, now); !until.IsZero() {
			if !lock.LockedUntil(source, now).Equal(until) {
				s.m.lockouts.Inc() // this failure locked it
			}
			s.locked(w, in.Username, until, now)
			return
		}
		writeError(w, http.StatusUnauthorized, wrong, "")
		return
	}
	if _, ok := s.apply(w, r, change{p: auth.PrincipalOf(u), action: "auth.login", entity: "user/" + u.Name,
		detail: withPeer(r, map[string]string{"remote": client, "method": "password"})}, auth.LoginSucceeded(u.Name, source)); !ok {
		return
	}
	s.m.logins.WithLabelValues(loginOK).Inc()
	s.setSession(w, r, u, now)
}

func (s *server) setSession(w http.ResponseWriter, r *http.Request, u auth.User, now time.Time) {
	exp := s.sessionCookie(w, r, u, now)
	writeJSON(w, http.StatusOK, api.Session{User: u.Name, Expires: exp})
}

// sessionCookie issues u a session and sets its cookie.
func (s *server) sessionCookie(w http.ResponseWriter, r *http.Request, u auth.User, now time.Time) time.Time {
	value, exp := s.cfg.Sessions.Issue(u, now)
	http.SetCookie(w, &http.Cookie{
		Name: auth.CookieName, Value: value, Path: "/", Expires: exp, MaxAge: int(auth.SessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		// Behind a TLS-terminating proxy the request arrives as plain
		// HTTP; X-Forwarded-Proto says what the browser used.
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
	})
	return exp
}

func (s *server) locked(w http.ResponseWriter, user string, until, now time.Time) {
	w.Header().Set("Retry-After", strconv.Itoa(int(until.Sub(now)/time.Second)+1))
	writeError(w, http.StatusTooManyRequests,
		fmt.Sprintf("account %s is locked for your address until %s after repeated failed logins from it", user, until.UTC().Format(time.RFC3339)),
		fmt.Sprintf("wait until then, log in from another address, or ask a region admin: outpostctl users unlock %s", user))
}

// slowed answers an attempt on an account that many wrong passwords from
// everywhere have slowed down.
func (s *server) slowed(w http.ResponseWriter, user string, until, now time.Time) {
	w.Header().Set("Retry-After", strconv.Itoa(int(until.Sub(now)/time.Second)+1))
	writeError(w, http.StatusTooManyRequests,
		fmt.Sprintf("account %s is receiving many wrong passwords; it takes one login attempt every %v for now", user, s.cfg.Lockout.SlowEvery),
		"retry after the Retry-After seconds; a region admin sees the failures in the audit log (auth.login_failed)")
}

func (s *server) logout(w http.ResponseWriter, r *http.Request, c *call) {
	if c.p.User == "" {
		writeError(w, http.StatusBadRequest, "an API token has no session to end", "revoke the token instead: outpostctl tokens api revoke ID")
		return
	}
	if _, ok := s.apply(w, r, change{p: c.p, action: "auth.logout", entity: "user/" + c.p.User}, batch(auth.OpsEndSessions(c.p.User))); !ok {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: auth.CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]string{"status": "logged out; every session of this account has ended"})
}

// tenantNames maps tenant ids to names.
func tenantNames(tx *storage.Tx) map[string]string {
	m := map[string]string{}
	for _, t := range (auth.Reader{Tx: tx}).Tenants() {
		m[t.ID] = t.Name
	}
	return m
}

func (s *server) whoami(w http.ResponseWriter, r *http.Request, c *call) {
	out := api.WhoAmI{Region: s.cfg.RegionName, Actor: c.p.Actor, User: c.p.User, RegionAdmin: c.p.RegionAdmin, Tenants: map[string]string{},
		Federation: s.cfg.Federation != nil}
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		names := tenantNames(tx)
		for id, role := range c.p.Roles {
			if n, ok := names[id]; ok {
				out.Tenants[n] = role.String()
			}
		}
		if c.p.RegionAdmin {
			now := time.Now()
			rd := auth.Reader{Tx: tx}
			for _, t := range rd.Tenants() {
				for _, g := range rd.Grants(t.ID) {
					if g.Requester == c.p.Actor && g.Active(now) {
						out.Grants = append(out.Grants, api.ActiveGrant{Tenant: t.Name, ID: g.ID, Expires: g.Expires})
					}
				}
			}
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *server) tenantsList(w http.ResponseWriter, r *http.Request, c *call) {
	out := []api.Tenant{}
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		for _, t := range (auth.Reader{Tx: tx}).Tenants() {
			role, member := c.p.Roles[t.ID]
			if !member && !c.p.RegionAdmin {
				continue
			}
			v := api.Tenant{Name: t.Name, ID: t.ID, Created: t.Created}
			if member {
				v.Role = role.String()
			}
			out = append(out, v)
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *server) tenantCreate(w http.ResponseWriter, r *http.Request, c *call) {
	var in api.TenantCreate
	if !decodeBody(w, r, &in, `{"name":"acme","admin":"alice"}`) {
		return
	}
	if err := auth.ValidTenantName(in.Name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	if in.Admin == "" {
		writeError(w, http.StatusBadRequest, "admin is required: the account that becomes the tenant's first Admin", "region admins have no access to tenant data, so a tenant needs its own Admin: outpostctl tenants create NAME --admin USER")
		return
	}
	if !s.userExists(in.Admin) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no account %q", in.Admin), "create it first: outpostctl users create NAME")
		return
	}
	t := auth.Tenant{ID: auth.NewID(8), Name: in.Name, Created: s.cfg.Now().UTC()}
	res, ok := s.apply(w, r, change{p: c.p, tenant: t.ID, action: "tenant.create", entity: "tenant/" + t.ID,
		detail: map[string]string{"name": t.Name, "admin": in.Admin}}, batch(auth.OpsCreateTenant(t, in.Admin)))
	if !ok {
		return
	}
	if string(res.Value) != "1" {
		writeError(w, http.StatusConflict, fmt.Sprintf("tenant %q already exists", in.Name), "choose another name")
		return
	}
	writeJSON(w, http.StatusCreated, api.Tenant{Name: t.Name, ID: t.ID, Created: t.Created})
}

func (s *server) userExists(name string) bool {
	err := s.cfg.Store.View(func(tx *storage.Tx) error {
		_, err := auth.Reader{Tx: tx}.User(name)
		return err
	})
	return err == nil
}

func (s *server) usersList(w http.ResponseWriter, r *http.Request, c *call) {
	out := []api.User{}
	now := s.cfg.Now()
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := auth.Reader{Tx: tx}
		names := tenantNames(tx)
		for _, u := range rd.Users() {
			v := api.User{Name: u.Name, Source: u.Source, RegionAdmin: u.RegionAdmin, Tenants: map[string]string{}}
			for id, role := range u.Roles {
				v.Tenants[names[id]] = role.String()
			}
			lock := rd.Lockout(u.Name)
			for _, l := range lock.Sources {
				if until := time.UnixMilli(l.LockedUntilMs); until.After(now) && (v.LockedUntil == nil || until.After(*v.LockedUntil)) {
					v.LockedUntil = &until
				}
			}
			v.LockedSources = lock.LockedSources(now)
			if until := lock.SlowedUntil(s.cfg.Lockout, now); !until.IsZero() {
				v.Slowed = true
			}
			out = append(out, v)
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *server) userCreate(w http.ResponseWriter, r *http.Request, c *call) {
	var in api.UserCreate
	if !decodeBody(w, r, &in, `{"name":"alice","password":"…"} (omit password to have one generated)`) {
		return
	}
	if err := auth.ValidUserName(in.Name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	generated := in.Password == ""
	if generated {
		in.Password = auth.GeneratePassword()
	}
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "use a longer password, or omit it to have one generated")
		return
	}
	u := auth.User{Name: in.Name, Source: "local", RegionAdmin: in.RegionAdmin, Created: s.cfg.Now().UTC()}
	res, ok := s.apply(w, r, change{p: c.p, action: "user.create", entity: "user/" + u.Name}, batch(auth.OpsCreateUser(u, hash)))
	if !ok {
		return
	}
	if string(res.Value) != "1" {
		writeError(w, http.StatusConflict, fmt.Sprintf("account %q already exists", in.Name), "choose another name")
		return
	}
	out := api.User{Name: u.Name, Source: u.Source, RegionAdmin: u.RegionAdmin, Tenants: map[string]string{}}
	if generated {
		out.Password = in.Password
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *server) userUnlock(w http.ResponseWriter, r *http.Request, c *call) {
	name := r.PathValue("user")
	if !s.userExists(name) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no account %q", name), "`outpostctl users list` shows the accounts")
		return
	}
	if _, ok := s.apply(w, r, change{p: c.p, action: "user.unlock", entity: "user/" + name}, batch(auth.OpsUnlock(name))); ok {
		writeJSON(w, http.StatusOK, map[string]string{"user": name, "status": "unlocked"})
	}
}

func tokenView(t auth.Token, tenantName string) api.APIToken {
	role := t.Role.String()
	if t.RegionAdmin {
		role = "region-admin"
	}
	return api.APIToken{ID: t.ID, Name: t.Name, Role: role, Tenant: tenantName, Created: t.Created, Expires: t.Expires, CreatedBy: t.CreatedBy, Owner: t.OwnerName()}
}

// tokensList lists region-admin tokens, or the tenant's on a tenant route.
func (s *server) tokensList(w http.ResponseWriter, r *http.Request, c *call) {
	out := []api.APIToken{}
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		for _, t := range (auth.Reader{Tx: tx}).Tokens(c.tenant.ID) {
			out = append(out, tokenView(t, c.tenant.Name))
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *server) tokenCreate(w http.ResponseWriter, r *http.Request, c *call) {
	var in api.TokenCreate
	if !decodeBody(w, r, &in, `{"name":"ci","role":"viewer","ttl":"720h"}`) {
		return
	}
	if in.Name == "" || len(in.Name) > 64 {
		writeError(w, http.StatusBadRequest, "name must be 1..64 characters", "name says what the token is for")
		return
	}
	now := s.cfg.Now().UTC()
	tok, id := auth.NewToken()
	// The token acts for the account behind the caller (made with a
	// token, for that token's owner), never for more than it has.
	t := auth.Token{ID: id, Name: in.Name, Created: now, CreatedBy: auth.AccountActor(c.p.Owner), Owner: c.p.Owner}
	if c.tenant.ID == "" {
		if in.Role != "" && in.Role != "region-admin" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("role %q: region tokens are region-admin tokens", in.Role), "for a tenant role use POST /api/v1/tenants/{tenant}/tokens (outpostctl tokens api create --tenant T --role R)")
			return
		}
		t.RegionAdmin = true
	} else {
		role, err := auth.ParseRole(in.Role)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error(), "")
			return
		}
		t.Tenant, t.Role = c.tenant.ID, role
	}
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d <= 0 || d > 366*24*time.Hour {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl %q: use a duration up to 8784h (e.g. 720h)", in.TTL), "")
			return
		}
		t.Expires = now.Add(d)
	}
	if _, ok := s.apply(w, r, change{p: c.p, tenant: t.Tenant, action: "token.create", entity: "token/" + id}, batch(auth.OpsCreateToken(t, tok))); !ok {
		return
	}
	v := tokenView(t, c.tenant.Name)
	v.Token = tok
	writeJSON(w, http.StatusCreated, v)
}

func (s *server) tokenRevoke(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.PathValue("id")
	var t auth.Token
	err := s.cfg.Store.View(func(tx *storage.Tx) error {
		var err error
		t, err = auth.Reader{Tx: tx}.Token(id)
		return err
	})
	if err != nil || t.Tenant != c.tenant.ID {
		// A token of another tenant (or a region token on a tenant route)
		// is as absent as a token that does not exist.
		writeError(w, http.StatusNotFound, fmt.Sprintf("no token %q here", id), "`outpostctl tokens api list` shows the tokens")
		return
	}
	if _, ok := s.apply(w, r, change{p: c.p, tenant: t.Tenant, action: "token.revoke", entity: "token/" + id}, batch(auth.OpsRevokeToken(id))); ok {
		writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": "revoked"})
	}
}

var errLastAdmin = errors.New("a tenant keeps at least one Admin")

// OIDCLogin is the OIDC flow (auth.OIDC).
type OIDCLogin interface {
	Start(ctx context.Context, now time.Time) (redirect, cookie string, err error)
	Finish(ctx context.Context, cookie, state, code string, now time.Time) (auth.OIDCIdentity, error)
}

func (s *server) oidcLogin(w http.ResponseWriter, r *http.Request, _ *call) {
	if s.cfg.OIDC == nil {
		writeError(w, http.StatusNotFound, "OIDC login is not configured on this region", "log in with a local account (POST /api/v1/login), or configure auth.oidc (docs/config.md)")
		return
	}
	url, cookie, err := s.cfg.OIDC.Start(r.Context(), s.cfg.Now())
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error(), "the IdP may be down; try again, or log in with a local account")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: auth.FlowCookie, Value: cookie, Path: "/api/v1/auth/oidc/", MaxAge: 600, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"})
	http.Redirect(w, r, url, http.StatusFound)
}

func (s *server) oidcCallback(w http.ResponseWriter, r *http.Request, _ *call) {
	if s.cfg.OIDC == nil {
		writeError(w, http.StatusNotFound, "OIDC login is not configured on this region", "")
		return
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		writeError(w, http.StatusUnauthorized, "the IdP refused the login: "+e+" "+q.Get("error_description"), "start again at /api/v1/auth/oidc/login")
		return
	}
	fc, _ := r.Cookie(auth.FlowCookie)
	cookie := ""
	if fc != nil {
		cookie = fc.Value
	}
	now := s.cfg.Now()
	id, err := s.cfg.OIDC.Finish(r.Context(), cookie, q.Get("state"), q.Get("code"), now)
	if err != nil {
		s.cfg.Logger.Warn("OIDC login refused", "err", err, "remote", remote(r), "peer", r.RemoteAddr)
		s.record(r, change{actor: "anonymous", action: "auth.oidc_login_failed", entity: "oidc", detail: withPeer(r, map[string]string{"reason": err.Error(), "remote": remote(r)})})
		writeError(w, http.StatusUnauthorized, err.Error(), "start again at /api/v1/auth/oidc/login")
		return
	}
	// Resolve tenant names to ids; a mapping to a tenant that does not
	// exist grants nothing.
	roles := map[string]auth.Role{}
	var have map[string]auth.Role
	var exists bool
	name := id.UserName()
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := auth.Reader{Tx: tx}
		for tn, role := range id.Roles {
			if t, err := rd.Tenant(tn); err == nil {
				roles[t.ID] = role
			}
		}
		if u, err := rd.User(name); err == nil {
			exists, have = true, u.Roles
		}
		return nil
	})
	u := auth.User{Name: name, Source: "oidc", RegionAdmin: id.RegionAdmin, Created: now.UTC()}
	if _, ok := s.apply(w, r, change{actor: name, action: "auth.oidc_login", entity: "user/" + name,
		detail: oidcDetail(r, id)},
		batch(auth.OpsSyncOIDCUser(u, roles, have, exists))); !ok {
		return
	}
	var fresh auth.User
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		fresh, _ = auth.Reader{Tx: tx}.User(name)
		return nil
	})
	http.SetCookie(w, &http.Cookie{Name: auth.FlowCookie, Value: "", Path: "/api/v1/auth/oidc/", MaxAge: -1})
	// A browser (the web UI's "single sign-on" link) lands back in the
	// UI, logged in; an API client gets the session as JSON.
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		s.sessionCookie(w, r, fresh, now)
		http.Redirect(w, r, "/#/overview", http.StatusSeeOther)
		return
	}
	s.setSession(w, r, fresh, now)
}

// oidcDetail is the audit detail of an OIDC login.
func oidcDetail(r *http.Request, id auth.OIDCIdentity) map[string]any {
	d := map[string]any{"email": id.Email, "groups": id.Groups, "region_admin": id.RegionAdmin, "remote": remote(r)}
	if p := clientaddr.Peer(r); p != remote(r) {
		d["peer"] = p
	}
	return d
}
