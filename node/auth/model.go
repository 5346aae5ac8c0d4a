package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/storage"
)

// Buckets of the identity records (region-level: they are the provider's
// directory, not tenant data).
var (
	BucketTenants   = []byte("auth_tenants")    // tenant name -> Tenant
	BucketTenantIDs = []byte("auth_tenant_ids") // tenant id -> name
	BucketUsers     = []byte("auth_users")      // user name -> User
	BucketTokens    = []byte("auth_tokens")     // token id -> Token
	BucketSecrets   = []byte("auth_secrets")    // "pw:NAME" argon2id, "tok:ID" sha256
	BucketLockout   = []byte("auth_lockout")    // user name -> lockoutState
	BucketGrants    = []byte("auth_grants")     // "TENANTID/GRANTID" -> Grant
	BucketRoles     = []byte("auth_roles")      // "TENANTID/USER" -> role name
	BucketEpochs    = []byte("auth_epochs")     // user name -> session epoch
	BucketInvites   = []byte("auth_invites")    // "TENANTID/USER" -> Invitation
	// BucketInviteSeq holds, per tenant id, how many invitations were
	// made (decimal): each invitation expects the count it read and
	// raises it, so two invitations counted against the same pending
	// invitations cannot both pass the cap (OpsInvite).
	BucketInviteSeq = []byte("auth_invite_seq")
)

// Role is a caller's role in one tenant. Higher includes lower.
type Role int

// Tenant roles.
const (
	NoRole Role = iota
	Viewer
	Operator
	Admin
)

func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	case Admin:
		return "admin"
	}
	return "none"
}

// ParseRole parses viewer, operator or admin.
func ParseRole(s string) (Role, error) {
	switch strings.ToLower(s) {
	case "viewer":
		return Viewer, nil
	case "operator":
		return Operator, nil
	case "admin":
		return Admin, nil
	}
	return NoRole, fmt.Errorf("role %q: use viewer, operator or admin", s)
}

// MarshalText encodes the role as its name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText decodes a role name.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	*r = v
	return err
}

// Tenant is one tenant of the region. The id is generated and stays local
// to the region; the name is what people type.
type Tenant struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// BreakGlassAutoApprove lets region admins' break-glass requests take
	// effect without a tenant Admin's approval (set by the tenant).
	BreakGlassAutoApprove bool `json:"breakglass_auto_approve,omitempty"`
	// ProbeAllow lists address ranges (CIDR) the tenant's probes may
	// reach although the SSRF guard refuses them (link-local, metadata
	// services); set by a tenant Admin.
	ProbeAllow []string `json:"probe_allow,omitempty"`
}

// User is a local or OIDC account.
type User struct {
	Name        string    `json:"name"`
	Source      string    `json:"source"` // "local" or "oidc"
	RegionAdmin bool      `json:"region_admin,omitempty"`
	Created     time.Time `json:"created"`
	// Roles (tenant id -> role) and Epoch are kept under their own keys
	// (BucketRoles, BucketEpochs), so changing one never rewrites the
	// record; Reader.User fills them in.
	Roles map[string]Role `json:"-"`
	// Epoch ends sessions: a cookie carries the epoch it was issued in,
	// and logout replaces it with a new random one.
	Epoch string `json:"-"`
}

// Token is an API token. The token is stored only as its SHA-256.
type Token struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	RegionAdmin bool      `json:"region_admin,omitempty"`
	Tenant      string    `json:"tenant,omitempty"` // tenant id
	Role        Role      `json:"role,omitempty"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires,omitzero"`
	// CreatedBy is the account that made the token ("user:NAME" or
	// "oidc:…"; "system" for the first admin's), also when it was made
	// with another token.
	CreatedBy string `json:"created_by"`
	// Owner is the account the token acts for. The token never has more
	// access than its owner has now: a removed or demoted owner's tokens
	// lose that access at once.
	Owner string `json:"owner,omitempty"`
}

// OwnerName is the account the token acts for. Tokens made before
// owners were recorded name their maker in CreatedBy.
func (t Token) OwnerName() string {
	switch {
	case t.Owner != "":
		return t.Owner
	case strings.HasPrefix(t.CreatedBy, "user:"):
		return strings.TrimPrefix(t.CreatedBy, "user:")
	case isOIDCName(t.CreatedBy):
		return t.CreatedBy
	}
	return ""
}

// Grant is a break-glass grant: a region admin's time-bounded read of one
// tenant's data, for a stated reason, effective once approved.
type Grant struct {
	ID         string        `json:"id"`
	Tenant     string        `json:"tenant"` // tenant id
	Requester  string        `json:"requester"`
	Reason     string        `json:"reason"`
	Duration   time.Duration `json:"duration_ns"`
	Created    time.Time     `json:"created"`
	Approved   bool          `json:"approved"`
	ApprovedBy string        `json:"approved_by,omitempty"`
	Expires    time.Time     `json:"expires,omitzero"`
}

// Invitation is a tenant Admin's offer of a role to an account. The
// account becomes a member only when it accepts; until then it has no
// access. An invitation is stored whether or not an account of that name
// exists, so the answer to an Admin never tells which names exist.
type Invitation struct {
	Tenant    string    `json:"tenant"` // tenant id
	User      string    `json:"user"`
	Role      Role      `json:"role"`
	InvitedBy string    `json:"invited_by"` // the inviting Admin's account
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
}

// Pending reports whether the invitation can still be accepted.
func (i Invitation) Pending(now time.Time) bool { return now.Before(i.Expires) }

// Active reports whether the grant is approved and not yet expired.
func (g Grant) Active(now time.Time) bool { return g.Approved && now.Before(g.Expires) }

var (
	namePattern     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	userNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

// ValidTenantName checks a tenant name.
func ValidTenantName(s string) error {
	if !namePattern.MatchString(s) {
		return fmt.Errorf("tenant name %q: use 1-63 lowercase letters, digits and '-'", s)
	}
	return nil
}

// ValidUserName checks a local user name. OIDC accounts are named
// "oidc:SUBJECT", which no local name can collide with.
func ValidUserName(s string) error {
	if !userNamePattern.MatchString(s) {
		return fmt.Errorf("user name %q: use 1-64 lowercase letters, digits, '.', '_' and '-', starting with a letter or digit", s)
	}
	return nil
}

// ErrNotFound means no such record.
var ErrNotFound = errors.New("not found")

// Reader reads identity records from a state-store transaction.
type Reader struct{ Tx *storage.Tx }

func get[T any](tx *storage.Tx, bucket []byte, key string) (T, error) {
	var v T
	b := tx.Get(bucket, []byte(key))
	if b == nil {
		return v, ErrNotFound
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("auth: record %s/%s: %w", bucket, key, err)
	}
	return v, nil
}

// Tenant returns the tenant named name.
func (r Reader) Tenant(name string) (Tenant, error) { return get[Tenant](r.Tx, BucketTenants, name) }

// TenantByID returns the tenant with the given id.
func (r Reader) TenantByID(id string) (Tenant, error) {
	name := r.Tx.Get(BucketTenantIDs, []byte(id))
	if name == nil {
		return Tenant{}, ErrNotFound
	}
	return r.Tenant(string(name))
}

// Tenants lists every tenant, by name.
func (r Reader) Tenants() []Tenant {
	var out []Tenant
	r.Tx.ForEach(BucketTenants, nil, func(_, v []byte) bool {
		var t Tenant
		if json.Unmarshal(v, &t) == nil {
			out = append(out, t)
		}
		return true
	})
	return out
}

// User returns the account named name, with its roles and epoch.
func (r Reader) User(name string) (User, error) {
	u, err := get[User](r.Tx, BucketUsers, name)
	if err != nil {
		return u, err
	}
	u.Roles = map[string]Role{}
	r.Tx.ForEach(BucketRoles, nil, func(k, v []byte) bool {
		tid, user, _ := strings.Cut(string(k), "/")
		var role Role
		if user == name && role.UnmarshalText(v) == nil {
			u.Roles[tid] = role
		}
		return true
	})
	u.Epoch = string(r.Tx.Get(BucketEpochs, []byte(name)))
	return u, nil
}

// Role is the account's role in the tenant, NoRole if it has none.
func (r Reader) Role(tenantID, user string) Role {
	var role Role
	if v := r.Tx.Get(BucketRoles, []byte(tenantID+"/"+user)); v == nil || role.UnmarshalText(v) != nil {
		return NoRole
	}
	return role
}

// Users lists every account, by name.
func (r Reader) Users() []User {
	var out []User
	r.Tx.ForEach(BucketUsers, nil, func(k, _ []byte) bool {
		if u, err := r.User(string(k)); err == nil {
			out = append(out, u)
		}
		return true
	})
	return out
}

// Token returns the API token record with the given id.
func (r Reader) Token(id string) (Token, error) { return get[Token](r.Tx, BucketTokens, id) }

// ActorName names an actor for people: an API token's actor ("token:ID")
// becomes its owner's account and the token, "user:alice (API token
// ID)"; a token without a known owner keeps "token:ID", and any other
// actor is returned as it is. Records keep the actor: a grant is the
// token's, not every token of its owner's.
func (r Reader) ActorName(actor string) string {
	id, ok := strings.CutPrefix(actor, "token:")
	if !ok {
		return actor
	}
	t, err := r.Token(id)
	if err != nil || t.OwnerName() == "" {
		return actor
	}
	return AccountActor(t.OwnerName()) + " (API token " + id + ")"
}

// Tokens lists the tokens of one tenant, or the region-admin tokens when
// tenantID is "".
func (r Reader) Tokens(tenantID string) []Token {
	var out []Token
	r.Tx.ForEach(BucketTokens, nil, func(_, v []byte) bool {
		var t Token
		if json.Unmarshal(v, &t) == nil && t.Tenant == tenantID {
			out = append(out, t)
		}
		return true
	})
	return out
}

// Grants lists the break-glass grants of one tenant.
func (r Reader) Grants(tenantID string) []Grant {
	var out []Grant
	r.Tx.ForEach(BucketGrants, []byte(tenantID+"/"), func(_, v []byte) bool {
		var g Grant
		if json.Unmarshal(v, &g) == nil {
			out = append(out, g)
		}
		return true
	})
	return out
}

// Grant returns one grant of a tenant.
func (r Reader) Grant(tenantID, id string) (Grant, error) {
	return get[Grant](r.Tx, BucketGrants, tenantID+"/"+id)
}

// Members lists the accounts with a role in the tenant.
func (r Reader) Members(tenantID string) map[string]Role {
	out := map[string]Role{}
	r.Tx.ForEach(BucketRoles, []byte(tenantID+"/"), func(k, v []byte) bool {
		var role Role
		if role.UnmarshalText(v) == nil {
			out[strings.TrimPrefix(string(k), tenantID+"/")] = role
		}
		return true
	})
	return out
}

// Invitation returns the invitation of user to a tenant and its stored
// bytes (the guard of an accept).
func (r Reader) Invitation(tenantID, user string) (Invitation, []byte, error) {
	raw := r.Tx.Get(BucketInvites, []byte(tenantID+"/"+user))
	if raw == nil {
		return Invitation{}, nil, ErrNotFound
	}
	var inv Invitation
	if err := json.Unmarshal(raw, &inv); err != nil {
		return inv, nil, fmt.Errorf("auth: invitation %s/%s: %w", tenantID, user, err)
	}
	return inv, append([]byte(nil), raw...), nil
}

// Invitations lists a tenant's invitations, expired ones included.
// InviteSeq is the tenant's invitation count as stored (nil before the
// first), for OpsInvite's guard.
func (r Reader) InviteSeq(tenantID string) []byte {
	return bytes.Clone(r.Tx.Get(BucketInviteSeq, []byte(tenantID)))
}

func (r Reader) Invitations(tenantID string) []Invitation {
	return r.invitations([]byte(tenantID+"/"), func(Invitation) bool { return true })
}

// InvitationsFor lists the invitations addressed to user, in every
// tenant.
func (r Reader) InvitationsFor(user string) []Invitation {
	return r.invitations(nil, func(i Invitation) bool { return i.User == user })
}

func (r Reader) invitations(prefix []byte, keep func(Invitation) bool) []Invitation {
	var out []Invitation
	r.Tx.ForEach(BucketInvites, prefix, func(_, v []byte) bool {
		var i Invitation
		if json.Unmarshal(v, &i) == nil && keep(i) {
			out = append(out, i)
		}
		return true
	})
	return out
}

func (r Reader) secret(key string) []byte {
	return append([]byte(nil), r.Tx.Get(BucketSecrets, []byte(key))...)
}

// Lockout returns the login-failure state of an account.
func (r Reader) Lockout(name string) LockoutState {
	s, _ := get[LockoutState](r.Tx, BucketLockout, name)
	return s
}

// PasswordHash returns the stored argon2id hash of a local account, or "".
func (r Reader) PasswordHash(name string) string { return string(r.secret("pw:" + name)) }
