package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// join makes user a member of tenant with role the only way there is:
// an Admin (adminCred) invites, the account (logged in with its
// session) accepts. It returns nothing; the caller's session for user
// sees the tenant at once.
func join(t *testing.T, tn *testNode, adminCred, tenant, user, userCred, role string) {
	t.Helper()
	tn.must(t, http.StatusAccepted, "PUT", "/api/v1/tenants/"+tenant+"/members/"+user, adminCred, `{"role":"`+role+`"}`)
	tn.must(t, http.StatusOK, "POST", "/api/v1/invitations/"+tenant+"/accept", userCred, "")
}

// members reads a tenant's member list as cred sees it, by user.
func members(t *testing.T, tn *testNode, cred, tenant string) map[string]api.TenantMember {
	t.Helper()
	var ms []api.TenantMember
	if err := json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/tenants/"+tenant+"/members", cred, "")), &ms); err != nil {
		t.Fatal(err)
	}
	out := map[string]api.TenantMember{}
	for _, m := range ms {
		out[m.User] = m
	}
	return out
}

// TestMemberAddAnsweredAlike: a tenant Admin adding an account that
// exists and one that does not gets the same answer (202, "invited", the
// same fields), so the member route tells a tenant Admin nothing about
// which account names the region has. Before invitations, an unknown
// name answered 404 and a known one 200.
func TestMemberAddAnsweredAlike(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	tn.newUser(t, "carol")
	answers := map[string]resp{}
	for _, u := range []string{"carol", "nobody"} {
		answers[u] = tn.do(t, "PUT", "/api/v1/tenants/acme/members/"+u, alice, `{"role":"operator"}`)
	}
	shape := func(u string) string {
		r := answers[u]
		var m map[string]any
		if err := json.Unmarshal([]byte(r.body), &m); err != nil {
			t.Fatalf("%s: %d %s: %v", u, r.code, r.body, err)
		}
		m["user"], m["expires"] = "NAME", "TIME"
		b, _ := json.Marshal(m)
		return string(b)
	}
	if answers["carol"].code != answers["nobody"].code || shape("carol") != shape("nobody") {
		t.Fatalf("an existing and an unknown account answered differently:\n carol:  %d %s\n nobody: %d %s",
			answers["carol"].code, answers["carol"].body, answers["nobody"].code, answers["nobody"].body)
	}
	if answers["carol"].code != http.StatusAccepted || !strings.Contains(shape("carol"), `"status":"invited"`) {
		t.Fatalf("answer %d %s, want 202 with status invited", answers["carol"].code, answers["carol"].body)
	}
	ms := members(t, tn, alice, "acme")
	for _, u := range []string{"carol", "nobody"} {
		if m := ms[u]; m.Status != "invited" || m.Role != "operator" || m.InvitedBy != "alice" || m.Expires.IsZero() {
			t.Errorf("members list entry of %s: %+v, want invited operator by alice with an expiry", u, m)
		}
	}
}

// TestInvitationNeedsConsent: an invited account has no access to the
// tenant until it accepts; only the account itself, logged in, can
// accept or decline (not an API token of its own); an Admin can
// withdraw an invitation; an accepted, declined or withdrawn invitation
// cannot be accepted again; a member's role is changed directly.
func TestInvitationNeedsConsent(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, bob := twoTenants(t, tn)
	carol := tn.login(t, "carol", tn.newUser(t, "carol"))
	dave := tn.login(t, "dave", tn.newUser(t, "dave"))

	tn.must(t, 202, "PUT", "/api/v1/tenants/acme/members/carol", alice, `{"role":"operator"}`)
	tn.must(t, 404, "GET", "/api/v1/tenants/acme/kv", carol, "")
	tn.must(t, 404, "PUT", "/api/v1/tenants/acme/kv/k", carol, "v")

	var invs []api.Invitation
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/invitations", carol, "")), &invs)
	if len(invs) != 1 || invs[0].Tenant != "acme" || invs[0].Role != "operator" || invs[0].InvitedBy != "alice" {
		t.Fatalf("carol's invitations: %+v, want one to acme as operator from alice", invs)
	}
	if body := tn.must(t, 200, "GET", "/api/v1/invitations", dave, ""); body != "[]\n" && body != "[]" {
		t.Fatalf("dave sees invitations addressed to others: %s", body)
	}
	tn.must(t, 404, "POST", "/api/v1/invitations/acme/accept", dave, "")

	// carol's own API token (from a tenant she joined) cannot accept.
	join(t, tn, bob, "globex", "carol", carol, "admin")
	carolTok := tn.tenantToken(t, carol, "globex", "admin")
	if r := tn.do(t, "POST", "/api/v1/invitations/acme/accept", carolTok, ""); r.code != 403 || !strings.Contains(r.body, "logged in") {
		t.Fatalf("accept with an API token: %d %s, want 403 saying to log in", r.code, r.body)
	}
	tn.must(t, 404, "GET", "/api/v1/tenants/acme/kv", carol, "")

	tn.must(t, 200, "POST", "/api/v1/invitations/acme/accept", carol, "")
	tn.must(t, 200, "PUT", "/api/v1/tenants/acme/kv/k", carol, "v")
	if m := members(t, tn, alice, "acme")["carol"]; m.Status != "member" || m.Role != "operator" {
		t.Fatalf("carol after accepting: %+v, want an operator member", m)
	}
	tn.must(t, 404, "POST", "/api/v1/invitations/acme/accept", carol, "")
	// A member's role changes without a new invitation.
	tn.must(t, 200, "PUT", "/api/v1/tenants/acme/members/carol", alice, `{"role":"viewer"}`)
	tn.must(t, 403, "PUT", "/api/v1/tenants/acme/kv/k", carol, "v")

	// Declined, and withdrawn: neither can be accepted afterwards.
	tn.must(t, 202, "PUT", "/api/v1/tenants/acme/members/dave", alice, `{"role":"admin"}`)
	tn.must(t, 200, "POST", "/api/v1/invitations/acme/decline", dave, "")
	tn.must(t, 404, "POST", "/api/v1/invitations/acme/accept", dave, "")
	tn.must(t, 202, "PUT", "/api/v1/tenants/acme/members/dave", alice, `{"role":"admin"}`)
	if r := tn.must(t, 200, "DELETE", "/api/v1/tenants/acme/members/dave", alice, ""); !strings.Contains(r, "withdrawn") {
		t.Fatalf("withdrawing: %s", r)
	}
	tn.must(t, 404, "POST", "/api/v1/invitations/acme/accept", dave, "")
	if _, ok := members(t, tn, alice, "acme")["dave"]; ok {
		t.Fatal("dave is listed after declining and a withdrawn invitation")
	}
	tn.must(t, 404, "DELETE", "/api/v1/tenants/acme/members/dave", alice, "")
	tn.must(t, 404, "GET", "/api/v1/tenants/acme/kv", dave, "")

	// OIDC accounts take roles from groups: no invitations to them.
	if r := tn.do(t, "PUT", "/api/v1/tenants/acme/members/oidc:abc", alice, `{"role":"viewer"}`); r.code != 400 || !strings.Contains(r.body, "group") {
		t.Fatalf("inviting an OIDC account: %d %s, want 400 naming groups", r.code, r.body)
	}
}

// TestInvitationExpires: an invitation not accepted within
// auth.invitation_ttl cannot be accepted, and is no longer listed.
func TestInvitationExpires(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.Auth.InvitationTTL = 2 * time.Second
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	carol := tn.login(t, "carol", tn.newUser(t, "carol"))
	tn.must(t, 202, "PUT", "/api/v1/tenants/acme/members/carol", alice, `{"role":"operator"}`)
	var inv api.TenantMember
	_ = json.Unmarshal([]byte(tn.must(t, 202, "PUT", "/api/v1/tenants/acme/members/carol", alice, `{"role":"viewer"}`)), &inv)
	time.Sleep(time.Until(inv.Expires) + 100*time.Millisecond)
	if r := tn.do(t, "POST", "/api/v1/invitations/acme/accept", carol, ""); r.code != 404 {
		t.Fatalf("accepting an expired invitation: %d %s, want 404", r.code, r.body)
	}
	tn.must(t, 404, "GET", "/api/v1/tenants/acme/kv", carol, "")
	if _, ok := members(t, tn, alice, "acme")["carol"]; ok {
		t.Fatal("an expired invitation is still listed")
	}
	if body := tn.must(t, 200, "GET", "/api/v1/invitations", carol, ""); strings.Contains(body, "acme") {
		t.Fatalf("an expired invitation is offered: %s", body)
	}
	// More expired invitations than one Raft batch can delete: inviting
	// still works (the cleanup is bounded per invitation).
	var last api.TenantMember
	for i := range 80 {
		_ = json.Unmarshal([]byte(tn.must(t, 202, "PUT", fmt.Sprintf("/api/v1/tenants/acme/members/u%02d", i), alice, `{"role":"viewer"}`)), &last)
	}
	time.Sleep(time.Until(last.Expires) + 100*time.Millisecond)
	for i := range 3 {
		tn.must(t, 202, "PUT", fmt.Sprintf("/api/v1/tenants/acme/members/late%d", i), alice, `{"role":"viewer"}`)
	}
}

// TestAcceptGuardedInTheFSM: an accept is decided on the invitation as
// it was read, and the FSM applies it only if that invitation is still
// stored unchanged and the account has no role yet. An accept racing a
// withdrawal, a replacement, or another way in (here: a role written
// directly) commits nothing; without the guards each would give the
// account a role nobody offered it at that moment, or overwrite an Admin.
func TestAcceptGuardedInTheFSM(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	st := node.StoreOf(tn.n)
	var acme auth.Tenant
	_ = st.View(func(tx *storage.Tx) (err error) { acme, err = auth.Reader{Tx: tx}.Tenant("acme"); return err })
	invite := func(user, role string) (auth.Invitation, []byte) {
		tn.must(t, 202, "PUT", "/api/v1/tenants/acme/members/"+user, alice, `{"role":"`+role+`"}`)
		var inv auth.Invitation
		var raw []byte
		_ = st.View(func(tx *storage.Tx) (err error) {
			inv, raw, err = auth.Reader{Tx: tx}.Invitation(acme.ID, user)
			return err
		})
		if raw == nil {
			t.Fatalf("no stored invitation of %s", user)
		}
		return inv, raw
	}
	apply := func(b raft.Batch) string {
		enc, err := b.Encode()
		if err != nil {
			t.Fatal(err)
		}
		res, err := tn.n.Region().Apply(context.Background(), enc)
		if err != nil || res.Err != nil {
			t.Fatalf("apply: %v %v", err, res.Err)
		}
		return string(res.Value)
	}
	role := func(user string) auth.Role {
		var r auth.Role
		_ = st.View(func(tx *storage.Tx) error { r = auth.Reader{Tx: tx}.Role(acme.ID, user); return nil })
		return r
	}

	inv, raw := invite("carol", "operator")
	tn.must(t, 200, "DELETE", "/api/v1/tenants/acme/members/carol", alice, "")
	if got := apply(auth.OpsAcceptInvitation(inv, raw)); got != "0" || role("carol") != auth.NoRole {
		t.Errorf("accept after the withdrawal: result %s, carol's role %v; want 0 and none", got, role("carol"))
	}

	inv, raw = invite("dave", "viewer")
	apply(auth.OpsSetRole(acme.ID, "dave", auth.Admin))
	if got := apply(auth.OpsAcceptInvitation(inv, raw)); got != "0" || role("dave") != auth.Admin {
		t.Errorf("accept by a member: result %s, dave's role %v; want 0 and admin kept", got, role("dave"))
	}

	// A withdrawal decided before an accept committed applies nothing.
	inv, raw = invite("frank", "viewer")
	apply(auth.OpsAcceptInvitation(inv, raw))
	if got := apply(auth.OpsDeleteInvitation(acme.ID, "frank", raw)); got != "0" || role("frank") != auth.Viewer {
		t.Errorf("withdrawal after the accept: result %s, frank's role %v; want 0 and viewer", got, role("frank"))
	}

	inv, raw = invite("erin", "admin")
	invite("erin", "viewer")
	if got := apply(auth.OpsAcceptInvitation(inv, raw)); got != "0" || role("erin") != auth.NoRole {
		t.Errorf("accept of a replaced invitation: result %s, erin's role %v; want 0 and none", got, role("erin"))
	}
}

// TestInvitationCapHoldsUnderRacingInvites: a tenant holds at most 100
// pending invitations, even when invitations race: each counts the
// pending ones and is applied only if no other invitation landed since
// (auth.OpsInvite's guard), so of several sent at once against the last
// free place exactly one is accepted. Before the guard, each handler
// counted on its own and all of them could pass.
func TestInvitationCapHoldsUnderRacingInvites(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	for i := range 99 {
		tn.must(t, http.StatusAccepted, "PUT", fmt.Sprintf("/api/v1/tenants/acme/members/u%03d", i), alice, `{"role":"viewer"}`)
	}
	const racers = 16
	codes := make(chan int, racers)
	start := make(chan struct{})
	for i := range racers {
		go func() {
			<-start
			codes <- tn.do(t, "PUT", fmt.Sprintf("/api/v1/tenants/acme/members/racer%d", i), alice, `{"role":"viewer"}`).code
		}()
	}
	close(start)
	got := map[int]int{}
	for range racers {
		got[<-codes]++
	}
	if got[http.StatusAccepted] != 1 || got[http.StatusConflict] != racers-1 {
		t.Fatalf("answers to %d racing invitations against the last place: %v, want one 202 and the rest 409", racers, got)
	}
	invited := 0
	for _, m := range members(t, tn, alice, "acme") {
		if m.Status == "invited" {
			invited++
		}
	}
	if invited != 100 {
		t.Fatalf("%d pending invitations, want the cap, 100", invited)
	}
	// At the cap: a new account is refused, saying what to do; inviting
	// an account already invited again replaces its invitation.
	if r := tn.do(t, "PUT", "/api/v1/tenants/acme/members/late", alice, `{"role":"viewer"}`); r.code != http.StatusConflict || !strings.Contains(r.body, "withdraw") {
		t.Fatalf("invitation past the cap: %d %s, want 409 saying to withdraw some", r.code, r.body)
	}
	tn.must(t, http.StatusAccepted, "PUT", "/api/v1/tenants/acme/members/u000", alice, `{"role":"operator"}`)
}
