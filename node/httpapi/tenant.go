package httpapi

import (
	"cmp"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Tenant routes run after authorize minted c.h from the caller's role (or
// a break-glass grant); they reach tenant data only through it.

func (s *server) membersList(w http.ResponseWriter, r *http.Request, c *call) {
	out := []api.TenantMember{}
	now := s.cfg.Now()
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := auth.Reader{Tx: tx}
		for u, role := range rd.Members(c.tenant.ID) {
			out = append(out, api.TenantMember{User: u, Role: role.String(), Status: statusMember})
		}
		for _, inv := range rd.Invitations(c.tenant.ID) {
			if inv.Pending(now) {
				out = append(out, invitedView(inv))
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	writeJSON(w, http.StatusOK, out)
}

// Membership states in the API's answers.
const (
	statusMember  = "member"
	statusInvited = "invited"
)

func invitedView(inv auth.Invitation) api.TenantMember {
	return api.TenantMember{User: inv.User, Role: inv.Role.String(), Status: statusInvited, InvitedBy: inv.InvitedBy, Expires: inv.Expires}
}

// DefaultInvitationTTL is how long an invitation can be accepted unless
// configured (auth.invitation_ttl).
const DefaultInvitationTTL = 7 * 24 * time.Hour

// maxPendingInvitations bounds a tenant's pending invitations.
const maxPendingInvitations = 100

// memberSet changes a member's role, or invites an account that is not a
// member. An account joins a tenant only by accepting (consent), and the
// answer to an invitation is the same whether or not an account of that
// name exists (202, status "invited"), so a tenant Admin learns nothing
// about the region's other accounts.
func (s *server) memberSet(w http.ResponseWriter, r *http.Request, c *call) {
	user := r.PathValue("user")
	var in api.TenantMember
	if !decodeBody(w, r, &in, `{"role":"operator"}`) {
		return
	}
	role, err := auth.ParseRole(in.Role)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	if s.isMember(c.tenant.ID, user) {
		s.changeMember(w, r, c, "tenant.member.set", user, auth.OpsSetRole(c.tenant.ID, user, role), role == auth.Admin,
			api.TenantMember{User: user, Role: role.String(), Status: statusMember})
		return
	}
	if strings.HasPrefix(user, "oidc:") {
		writeError(w, http.StatusBadRequest, "OIDC accounts take their tenant roles from the identity provider's groups, set at each login",
			"map a group to this tenant in the node's oidc.group_roles (docs/config.md)")
		return
	}
	if err := auth.ValidUserName(user); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	s.invite(w, r, c, user, role)
}

// isMember reports whether user has a role in the tenant.
func (s *server) isMember(tenantID, user string) bool {
	var have bool
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		_, have = auth.Reader{Tx: tx}.Members(tenantID)[user]
		return nil
	})
	return have
}

// inviteAttempts bounds how often an invitation is counted again against
// the cap after racing another invitation to the same tenant.
const inviteAttempts = 5

func (s *server) invite(w http.ResponseWriter, r *http.Request, c *call, user string, role auth.Role) {
	for range inviteAttempts {
		now := s.cfg.Now().UTC()
		var stale []auth.Invitation
		var seq []byte
		pending := 0
		_ = s.cfg.Store.View(func(tx *storage.Tx) error {
			rd := auth.Reader{Tx: tx}
			seq = rd.InviteSeq(c.tenant.ID)
			for _, inv := range rd.Invitations(c.tenant.ID) {
				switch {
				case !inv.Pending(now):
					stale = append(stale, inv)
				case inv.User != user:
					pending++
				}
			}
			return nil
		})
		if pending >= maxPendingInvitations {
			writeError(w, http.StatusConflict, fmt.Sprintf("the tenant has %d pending invitations, the most it may have", pending),
				"withdraw some (outpostctl tenants members remove TENANT USER) or wait for them to be accepted or expire")
			return
		}
		inv := auth.Invitation{Tenant: c.tenant.ID, User: user, Role: role, InvitedBy: c.p.Owner, Created: now, Expires: now.Add(s.cfg.InvitationTTL)}
		res, ok := s.apply(w, r, change{p: c.p, tenant: c.tenant.ID, action: "tenant.member.invite", entity: "member/" + user,
			detail: map[string]string{"role": role.String(), "expires": inv.Expires.Format(time.RFC3339)}}, batch(auth.OpsInvite(inv, stale, seq)))
		if !ok {
			return
		}
		if string(res.Value) != "0" {
			writeJSON(w, http.StatusAccepted, invitedView(inv))
			return
		}
		// Nothing was applied: the account became a member, or another
		// invitation to this tenant landed since the count (count again).
		if s.isMember(c.tenant.ID, user) {
			writeError(w, http.StatusConflict, fmt.Sprintf("%q became a member during this request", user), "retry to change its role")
			return
		}
	}
	writeError(w, http.StatusServiceUnavailable, "other invitations to this tenant kept landing during this request", "retry")
}

// memberRemove removes a member, or withdraws an invitation.
func (s *server) memberRemove(w http.ResponseWriter, r *http.Request, c *call) {
	user := r.PathValue("user")
	var have, invited bool
	var raw []byte
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := auth.Reader{Tx: tx}
		_, have = rd.Members(c.tenant.ID)[user]
		var err error
		_, raw, err = rd.Invitation(c.tenant.ID, user)
		invited = err == nil
		return nil
	})
	switch {
	case have:
		s.changeMember(w, r, c, "tenant.member.remove", user, auth.OpsRemoveRole(c.tenant.ID, user), false,
			map[string]string{"user": user, "status": "removed"})
	case invited:
		res, ok := s.apply(w, r, change{p: c.p, tenant: c.tenant.ID, action: "tenant.member.uninvite", entity: "member/" + user},
			batch(auth.OpsDeleteInvitation(c.tenant.ID, user, raw)))
		switch {
		case !ok:
		case string(res.Value) == "0":
			writeError(w, http.StatusConflict, fmt.Sprintf("the invitation of %q changed during this request (accepted, declined or replaced)", user),
				"`outpostctl tenants members list TENANT` shows where it stands")
		default:
			writeJSON(w, http.StatusOK, map[string]string{"user": user, "status": "invitation withdrawn"})
		}
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("%q is neither a member nor invited", user), "`outpostctl tenants members list TENANT` shows both")
	}
}

// memberRetries bounds how often a membership change is decided again
// after a concurrent change invalidated its guard.
const memberRetries = 5

// changeMember applies a change to user's membership (ops). Unless
// keepsAdmin, the change takes an Admin role away if user has one, so it
// must leave another Admin: the decision is read here, and the batch
// carries a guard (auth.ExpectRole) that another Admin still is one when
// the FSM applies it. Two concurrent demotions of a tenant's last two
// Admins therefore cannot both commit: the second's guard fails, it is
// decided again on the new state and answered 409.
func (s *server) changeMember(w http.ResponseWriter, r *http.Request, c *call, action, user string, ops raft.Batch, keepsAdmin bool, out any) {
	for range memberRetries {
		b := ops
		if !keepsAdmin {
			other, demotes := s.otherAdmin(c.tenant.ID, user)
			if demotes && other == "" {
				writeError(w, http.StatusConflict, errLastAdmin.Error(), "make another member Admin first")
				return
			}
			if demotes {
				b = append(raft.Batch{auth.ExpectRole(c.tenant.ID, other, auth.Admin)}, ops...)
			}
		}
		res, ok := s.apply(w, r, change{p: c.p, tenant: c.tenant.ID, action: action, entity: "member/" + user}, batch(b))
		if !ok {
			return
		}
		if string(res.Value) != "0" {
			writeJSON(w, http.StatusOK, out)
			return
		}
	}
	writeError(w, http.StatusConflict, "the tenant's membership kept changing during this request", "retry")
}

// otherAdmin reports whether user is an Admin of the tenant and, if so,
// another Admin ("" when user is the only one), chosen by name so every
// node picks the same.
func (s *server) otherAdmin(tenantID, user string) (other string, isAdmin bool) {
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		for u, role := range (auth.Reader{Tx: tx}).Members(tenantID) {
			switch {
			case role != auth.Admin:
			case u == user:
				isAdmin = true
			case other == "" || u < other:
				other = u
			}
		}
		return nil
	})
	return other, isAdmin
}

func (s *server) settingsGet(w http.ResponseWriter, r *http.Request, c *call) {
	writeJSON(w, http.StatusOK, api.TenantSettings{BreakGlassAutoApprove: c.tenant.BreakGlassAutoApprove, ProbeAllow: c.tenant.ProbeAllow})
}

func (s *server) settingsPut(w http.ResponseWriter, r *http.Request, c *call) {
	var in api.TenantSettings
	if !decodeBody(w, r, &in, `{"breakglass_auto_approve":false,"probe_allow":["169.254.10.0/24"]}`) {
		return
	}
	if _, err := agentwire.ParseProbeAllow(in.ProbeAllow); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), `list CIDR ranges such as "169.254.10.0/24" or "fe80::/64"`)
		return
	}
	t := c.tenant
	t.BreakGlassAutoApprove, t.ProbeAllow = in.BreakGlassAutoApprove, in.ProbeAllow
	if _, ok := s.apply(w, r, change{p: c.p, tenant: t.ID, action: "tenant.settings", entity: "tenant/" + t.ID}, batch(auth.OpsUpdateTenant(t))); ok {
		writeJSON(w, http.StatusOK, in)
	}
}

// MaxGrant is the longest break-glass grant.
const MaxGrant = 24 * time.Hour

// grantView is a grant as the lists show it: who asked and who approved
// named as accounts (an API token's actor as its owner and the token).
func grantView(rd auth.Reader, g auth.Grant, tenantName string, now time.Time) api.Grant {
	return api.Grant{ID: g.ID, Tenant: tenantName, Requester: rd.ActorName(g.Requester), Reason: g.Reason, Duration: g.Duration.String(),
		Created: g.Created, Approved: g.Approved, ApprovedBy: rd.ActorName(g.ApprovedBy), Expires: g.Expires, Active: g.Active(now)}
}

// answerGrant writes one grant's view.
func (s *server) answerGrant(w http.ResponseWriter, code int, g auth.Grant, tenantName string, now time.Time) {
	var v api.Grant
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		v = grantView(auth.Reader{Tx: tx}, g, tenantName, now)
		return nil
	})
	writeJSON(w, code, v)
}

// grantRequest is a region admin asking for break-glass access to one
// tenant. It is recorded in the provider stream the tenant reads.
func (s *server) grantRequest(w http.ResponseWriter, r *http.Request, c *call) {
	var t auth.Tenant
	err := s.cfg.Store.View(func(tx *storage.Tx) error {
		var err error
		t, err = auth.Reader{Tx: tx}.Tenant(r.PathValue("tenant"))
		return err
	})
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no tenant %q", r.PathValue("tenant")), "`outpostctl tenants list` shows the tenants")
		return
	}
	var in api.BreakGlassRequest
	if !decodeBody(w, r, &in, `{"reason":"incident INC-42: agent flapping","duration":"1h"}`) {
		return
	}
	if len(strings.TrimSpace(in.Reason)) < 8 || len(in.Reason) > 500 {
		writeError(w, http.StatusBadRequest, "reason must be 8..500 characters", "say why you need the tenant's data (an incident or ticket id); the tenant reads it")
		return
	}
	d, err := time.ParseDuration(cmp.Or(in.Duration, "1h"))
	if err != nil || d <= 0 || d > MaxGrant {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("duration %q: use a duration up to %s", in.Duration, MaxGrant), "")
		return
	}
	now := s.cfg.Now().UTC()
	g := auth.Grant{ID: auth.NewID(6), Tenant: t.ID, Requester: c.p.Actor, Reason: in.Reason, Duration: d, Created: now}
	action := "breakglass.request"
	if t.BreakGlassAutoApprove {
		g.Approved, g.ApprovedBy, g.Expires = true, "auto-approve (tenant setting)", now.Add(d)
		action = "breakglass.auto_approved"
	}
	if _, ok := s.apply(w, r, change{p: c.p, tenant: t.ID, stream: audit.StreamProvider, action: action, entity: "grant/" + g.ID,
		detail: map[string]string{"reason": g.Reason, "duration": d.String()}}, batch(auth.OpsPutGrant(g, true))); ok {
		s.answerGrant(w, http.StatusCreated, g, t.Name, now)
	}
}

func (s *server) grantsList(w http.ResponseWriter, r *http.Request, c *call) {
	out := []api.Grant{}
	now := s.cfg.Now()
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := auth.Reader{Tx: tx}
		for _, g := range rd.Grants(c.tenant.ID) {
			out = append(out, grantView(rd, g, c.tenant.Name, now))
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

// grantsAll lists every tenant's grants for region admins: who asked,
// for what, whether approved; no tenant data.
func (s *server) grantsAll(w http.ResponseWriter, r *http.Request, c *call) {
	out := []api.Grant{}
	now := s.cfg.Now()
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := auth.Reader{Tx: tx}
		for _, t := range rd.Tenants() {
			for _, g := range rd.Grants(t.ID) {
				out = append(out, grantView(rd, g, t.Name, now))
			}
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *server) grantApprove(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.PathValue("id")
	var g auth.Grant
	err := s.cfg.Store.View(func(tx *storage.Tx) error {
		var err error
		g, err = auth.Reader{Tx: tx}.Grant(c.tenant.ID, id)
		return err
	})
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no grant %q in this tenant", id), "`outpostctl breakglass list TENANT` shows the grants")
		return
	}
	if g.Approved {
		writeError(w, http.StatusConflict, "grant is already approved", "")
		return
	}
	now := s.cfg.Now().UTC()
	g.Approved, g.ApprovedBy, g.Expires = true, c.p.Actor, now.Add(g.Duration)
	if _, ok := s.apply(w, r, change{p: c.p, tenant: c.tenant.ID, stream: audit.StreamProvider, action: "breakglass.approve", entity: "grant/" + g.ID,
		detail: map[string]string{"requester": g.Requester, "expires": g.Expires.Format(time.RFC3339)}}, batch(auth.OpsPutGrant(g, false))); ok {
		s.answerGrant(w, http.StatusOK, g, c.tenant.Name, now)
	}
}
