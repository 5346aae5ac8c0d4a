package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/storage"
)

// The invitee's side of tenant invitations. Only the account itself,
// logged in, answers an invitation: an API token never does, so a token
// cannot add its owner to tenants the owner never agreed to join.

// errInviteNeedsSession refuses invitation routes to API tokens.
var errInviteNeedsSession = errors.New("invitations are answered by the invited account itself, logged in; an API token cannot")

func (s *server) inviteeOf(w http.ResponseWriter, c *call) (string, bool) {
	if c.p.User == "" {
		writeError(w, http.StatusForbidden, errInviteNeedsSession.Error(), "log in as the account: outpostctl login")
		return "", false
	}
	return c.p.User, true
}

func (s *server) invitationsList(w http.ResponseWriter, r *http.Request, c *call) {
	user, ok := s.inviteeOf(w, c)
	if !ok {
		return
	}
	now := s.cfg.Now()
	out := []api.Invitation{}
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := auth.Reader{Tx: tx}
		for _, inv := range rd.InvitationsFor(user) {
			t, err := rd.TenantByID(inv.Tenant)
			if err != nil || !inv.Pending(now) {
				continue
			}
			out = append(out, api.Invitation{Tenant: t.Name, Role: inv.Role.String(), InvitedBy: inv.InvitedBy, Created: inv.Created, Expires: inv.Expires})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
	writeJSON(w, http.StatusOK, out)
}

// pendingInvitation reads user's pending invitation to the tenant named
// in the path, answering 404 itself when there is none. The answer is
// the same whether the tenant does not exist or did not invite user. It
// runs before the session check, so a route with a tenant in its path
// answers 404 to whoever that tenant did not invite.
func (s *server) pendingInvitation(w http.ResponseWriter, r *http.Request, user string) (inv auth.Invitation, raw []byte, ok bool) {
	name := r.PathValue("tenant")
	err := s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := auth.Reader{Tx: tx}
		t, err := rd.Tenant(name)
		if err != nil {
			return err
		}
		inv, raw, err = rd.Invitation(t.ID, user)
		return err
	})
	if err != nil || !inv.Pending(s.cfg.Now()) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no pending invitation to tenant %q", name), fmt.Sprintf("`outpostctl invitations list` shows yours; invitations expire %s after they are made", s.cfg.InvitationTTL))
		return inv, nil, false
	}
	return inv, raw, true
}

// answerable reads the invitation the caller answers: its pending
// invitation to the path's tenant (404 first, so a route naming a tenant
// says nothing to whoever it did not invite), then the caller's session.
func (s *server) answerable(w http.ResponseWriter, r *http.Request, c *call) (inv auth.Invitation, raw []byte, user string, ok bool) {
	if inv, raw, ok = s.pendingInvitation(w, r, c.p.Owner); !ok {
		return inv, nil, "", false
	}
	user, ok = s.inviteeOf(w, c)
	return inv, raw, user, ok
}

func (s *server) invitationAccept(w http.ResponseWriter, r *http.Request, c *call) {
	inv, raw, user, ok := s.answerable(w, r, c)
	if !ok {
		return
	}
	res, ok := s.apply(w, r, change{p: c.p, tenant: inv.Tenant, action: "tenant.member.accept", entity: "member/" + user,
		detail: map[string]string{"role": inv.Role.String(), "invited_by": inv.InvitedBy}}, batch(auth.OpsAcceptInvitation(inv, raw)))
	if !ok {
		return
	}
	if string(res.Value) == "0" {
		writeError(w, http.StatusConflict, "the invitation changed during this request (withdrawn or replaced), or you are already a member",
			"`outpostctl invitations list` shows what is pending now")
		return
	}
	writeJSON(w, http.StatusOK, api.TenantMember{User: user, Role: inv.Role.String(), Status: statusMember})
}

func (s *server) invitationDecline(w http.ResponseWriter, r *http.Request, c *call) {
	inv, raw, user, ok := s.answerable(w, r, c)
	if !ok {
		return
	}
	res, ok := s.apply(w, r, change{p: c.p, tenant: inv.Tenant, action: "tenant.member.decline", entity: "member/" + user},
		batch(auth.OpsDeleteInvitation(inv.Tenant, user, raw)))
	switch {
	case !ok:
	case string(res.Value) == "0":
		writeError(w, http.StatusConflict, "the invitation changed during this request (withdrawn or replaced)", "`outpostctl invitations list` shows what is pending now")
	default:
		writeJSON(w, http.StatusOK, map[string]string{"tenant": r.PathValue("tenant"), "status": "declined"})
	}
}
