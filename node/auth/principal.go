package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/storage"
)

// Principal is an authenticated caller.
type Principal struct {
	// Actor names the caller in audit records: "user:NAME",
	// "oidc:SUBJECT" or "token:ID".
	Actor string
	User  string // account name; "" for an API token
	// Owner is the account acting: User for a session, the token's owner
	// for an API token. Records of who made something name it.
	Owner       string
	RegionAdmin bool
	Roles       map[string]Role // tenant id -> role
	// Epoch is the account's session epoch (logout replaces it).
	Epoch string
}

func isOIDCName(name string) bool {
	return strings.HasPrefix(name, "oidc:") && len(name) > 5 && len(name) <= 260
}

// StoreViewer is the read side of the state store.
type StoreViewer interface {
	View(fn func(*storage.Tx) error) error
}

// Resolver turns a request's credentials into a Principal.
type Resolver struct {
	Store    StoreViewer
	Sessions *Sessions
	Now      func() time.Time
}

// Authentication errors: each is a 401 for the caller.
var (
	ErrNoCredentials = errors.New("no credentials")
	ErrBadToken      = errors.New("invalid API token (unknown, revoked, or from another region)")
	ErrTokenExpired  = errors.New("API token expired; create a new one with `outpostctl tokens api create`")
	// ErrTokenOwnerGone: the token's account no longer exists (or the
	// token predates recorded owners and names none).
	ErrTokenOwnerGone = errors.New("API token's account no longer exists; create a new token while logged in as an existing account")
)

// Resolve authenticates r by its bearer token or, failing that, its
// session cookie.
func (rs *Resolver) Resolve(r *http.Request) (*Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, ErrBadToken
		}
		return rs.token(strings.TrimSpace(tok))
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		return nil, ErrNoCredentials
	}
	return rs.session(c.Value)
}

func (rs *Resolver) token(tok string) (*Principal, error) {
	id, ok := tokenID(tok)
	if !ok {
		return nil, ErrBadToken
	}
	var t Token
	var stored []byte
	var owner User
	var ownerRole Role
	var ownerErr error
	err := rs.Store.View(func(tx *storage.Tx) error {
		var err error
		r := Reader{tx}
		t, err = r.Token(id)
		stored = r.secret("tok:" + id)
		if err == nil {
			// The owner's record and role as they are now: a token acts
			// with the lesser of its own role and its owner's.
			if owner, ownerErr = get[User](tx, BucketUsers, t.OwnerName()); ownerErr == nil && t.Tenant != "" {
				ownerRole = r.Role(t.Tenant, owner.Name)
			}
		}
		return err
	})
	if err != nil || !tokenMatches(tok, stored) {
		return nil, ErrBadToken
	}
	if !t.Expires.IsZero() && !rs.Now().Before(t.Expires) {
		return nil, ErrTokenExpired
	}
	if t.OwnerName() == "" || ownerErr != nil {
		return nil, ErrTokenOwnerGone
	}
	p := &Principal{Actor: "token:" + t.ID, Owner: owner.Name, RegionAdmin: t.RegionAdmin && owner.RegionAdmin, Roles: map[string]Role{}}
	if role := min(t.Role, ownerRole); t.Tenant != "" && role != NoRole {
		p.Roles[t.Tenant] = role
	}
	return p, nil
}

func (rs *Resolver) session(value string) (*Principal, error) {
	c, err := rs.Sessions.parse(value, rs.Now())
	if err != nil {
		return nil, err
	}
	var u User
	err = rs.Store.View(func(tx *storage.Tx) error {
		u, err = Reader{tx}.User(c.User)
		return err
	})
	if err != nil || u.Epoch != c.Epoch {
		// A deleted account, or a session ended by logout.
		return nil, ErrBadSession
	}
	return PrincipalOf(u), nil
}

// AccountActor names account name in audit records and CreatedBy
// fields: "user:NAME", or the "oidc:…" name itself.
func AccountActor(name string) string {
	if isOIDCName(name) {
		return name
	}
	return "user:" + name
}

// PrincipalOf is the principal of an account.
func PrincipalOf(u User) *Principal {
	actor := AccountActor(u.Name)
	roles := make(map[string]Role, len(u.Roles))
	for k, v := range u.Roles {
		roles[k] = v
	}
	return &Principal{Actor: actor, User: u.Name, Owner: u.Name, RegionAdmin: u.RegionAdmin, Roles: roles, Epoch: u.Epoch}
}

// Access outcomes a handler maps to status codes.
var (
	// ErrNoTenant: the caller has no role in the tenant (or it does not
	// exist); a 404 that does not reveal which.
	ErrNoTenant = errors.New("no such tenant")
	// ErrForbidden: the caller's role in the tenant is too low (403).
	ErrForbidden = errors.New("your role in this tenant does not allow this")
	// ErrNeedsGrant: a region admin without an active break-glass grant
	// (403).
	ErrNeedsGrant = errors.New("region admins have no access to tenant data without an approved break-glass grant")
)

// Via says how access was granted: "role" or "breakglass:GRANTID".
type Via string

// Access mints the storage handle for t if p may act with role need in
// it: by its own role there, or — read-only — by an active break-glass
// grant when p is a region admin. The tenant comes from the route and
// the principal from the credentials; nothing in a request body counts.
func (p *Principal) Access(t Tenant, need Role, grants []Grant, now time.Time) (storage.Tenant, Via, error) {
	have := p.Roles[t.ID]
	switch {
	case have >= need && have != NoRole:
		h, err := storage.Scope(t.ID)
		return h, "role", err
	case have != NoRole:
		return storage.Tenant{}, "", fmt.Errorf("%w: you are %s in %s; this needs %s", ErrForbidden, have, t.Name, need)
	case !p.RegionAdmin:
		return storage.Tenant{}, "", ErrNoTenant
	}
	for _, g := range grants {
		if g.Tenant == t.ID && g.Requester == p.Actor && g.Active(now) {
			if need > Viewer {
				return storage.Tenant{}, "", fmt.Errorf("%w: a break-glass grant gives read-only access", ErrForbidden)
			}
			h, err := storage.Scope(t.ID)
			return h, Via("breakglass:" + g.ID), err
		}
	}
	return storage.Tenant{}, "", ErrNeedsGrant
}
