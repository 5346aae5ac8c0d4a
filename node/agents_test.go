package node_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/storage"
)

func csrFor(t *testing.T, key crypto.Signer, uris ...*url.URL) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: uris}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func enrollBody(token, csr, host string) string {
	b, _ := json.Marshal(agentwire.EnrollRequest{Token: token, CSR: csr, Host: host, Version: "0.1.0", InstanceUID: "claimed-uid"})
	return string(b)
}

// TestAgentEnrollment: a tenant admin makes a bootstrap token; an agent
// redeems it once with a CSR and gets a certificate naming the token's
// tenant; every bad redemption is refused with a clear error (and
// audited where it names a real token); concurrent redemptions of one
// token enroll exactly one agent; tenants see only their agents.
func TestAgentEnrollment(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, bob := twoTenants(t, tn)
	viewer := tn.tenantToken(t, alice, "acme", "viewer")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	create := func(cred string) api.BootstrapToken {
		t.Helper()
		var bt api.BootstrapToken
		_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants/acme/agent-tokens", cred, `{"ttl":"15m"}`)), &bt)
		if !strings.HasPrefix(bt.Token, "opb_") || bt.Status != "unused" || bt.Tenant != "acme" {
			t.Fatalf("created token %+v", bt)
		}
		return bt
	}
	bt := create(alice)
	tn.must(t, 403, "POST", "/api/v1/tenants/acme/agent-tokens", viewer, `{}`)
	if r := tn.do(t, "POST", "/api/v1/tenants/acme/agent-tokens", bob, `{}`); r.code != 404 && r.code != 403 {
		t.Fatalf("another tenant's admin made an acme token: %d", r.code)
	}
	for _, ttl := range []string{"0s", "30s", "25h", "soon"} {
		if r := tn.do(t, "POST", "/api/v1/tenants/acme/agent-tokens", alice, fmt.Sprintf(`{"ttl":%q}`, ttl)); r.code != 400 || !strings.Contains(r.body, "ttl") {
			t.Errorf("ttl %s: %d %s", ttl, r.code, r.body)
		}
	}
	if list := tn.must(t, 200, "GET", "/api/v1/tenants/acme/agent-tokens", alice, ""); strings.Contains(list, bt.Token) || strings.Contains(list, "hash") {
		t.Fatalf("the token list shows the secret or its hash: %s", list)
	}

	// Bad requests before any redemption.
	otherTenant := pki.AgentURI("test", "someone-else", "ag-1")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, c := range map[string]struct {
		body string
		code int
		want string
	}{
		"not a token":   {enrollBody("hello", csrFor(t, key), "web-1"), 401, "not a bootstrap token"},
		"unknown token": {enrollBody("opb_0123456789ab_"+strings.Repeat("A", 43), csrFor(t, key), "web-1"), 401, "unknown bootstrap token"},
		"other tenant":  {enrollBody(bt.Token, csrFor(t, key, otherTenant), "web-1"), 400, "claims the identity"},
		"RSA key":       {enrollBody(bt.Token, csrFor(t, rsaKey), "web-1"), 400, "use ECDSA"},
		"no CSR":        {enrollBody(bt.Token, "", "web-1"), 400, "CERTIFICATE REQUEST"},
		"bad host":      {enrollBody(bt.Token, csrFor(t, key), "web 1"), 400, "host"},
		"bad JSON":      {`{"token":`, 400, "bad JSON"},
	} {
		r := tn.doFrom(t, "127.0.0.2", "POST", "/api/v1/agents/enroll", "", c.body)
		if r.code != c.code || !strings.Contains(r.body, c.want) {
			t.Errorf("%s: %d %s, want %d mentioning %q", name, r.code, r.body, c.code, c.want)
		}
	}

	// A token this node has not seen carries the code on which an agent
	// asks again (it may have been created a moment ago elsewhere).
	if r := tn.doFrom(t, "127.0.0.2", "POST", "/api/v1/agents/enroll", "", enrollBody("opb_0123456789ab_"+strings.Repeat("B", 43), csrFor(t, key), "web-1")); r.code != 401 ||
		!strings.Contains(r.body, fmt.Sprintf(`"code": %q`, agentwire.CodeTokenNotSeen)) {
		t.Errorf("unknown token: %d %s, want 401 with code %s", r.code, r.body, agentwire.CodeTokenNotSeen)
	}

	// Concurrent redemptions: exactly one wins.
	var mu sync.Mutex
	var wins []agentwire.Enrollment
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			r := tn.doFrom(t, "127.0.0.3", "POST", "/api/v1/agents/enroll", "", enrollBody(bt.Token, csrFor(t, k), fmt.Sprintf("web-%d", i)))
			mu.Lock()
			defer mu.Unlock()
			codes[r.code]++
			if r.code == 201 {
				var e agentwire.Enrollment
				_ = json.Unmarshal([]byte(r.body), &e)
				wins = append(wins, e)
			} else if !strings.Contains(r.body, "already redeemed") {
				t.Errorf("a losing redemption: %d %s", r.code, r.body)
			}
		}()
	}
	wg.Wait()
	if len(wins) != 1 || codes[403] != 5 {
		t.Fatalf("6 concurrent redemptions of one token: %v, want one 201 and five 403", codes)
	}
	e := wins[0]
	b, _ := pem.Decode([]byte(e.Certificate))
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caBlock, _ := pem.Decode([]byte(e.CA))
	caCert, _ := x509.ParseCertificate(caBlock.Bytes)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	tid, aid, err := pki.VerifyAgentPeer([]*x509.Certificate{cert}, pool, e.Region, cert.NotBefore.Add(2*60e9))
	if err != nil || aid != e.AgentID || tid == "" || e.Tenant != "acme" || e.Region == "" {
		t.Fatalf("issued certificate: tenant %q agent %q %v; enrollment %+v", tid, aid, err, e)
	}
	if got := cert.NotAfter.Sub(cert.NotBefore); got < 23*3600e9 || got > 25*3600e9 {
		t.Fatalf("certificate lifetime %v, want the default 24h", got)
	}

	// A redeemed token stays used; a revoked one cannot be redeemed.
	r := tn.do(t, "POST", "/api/v1/agents/enroll", "", enrollBody(bt.Token, csrFor(t, key), "web-9"))
	if r.code != 403 || !strings.Contains(r.body, "already redeemed") {
		t.Fatalf("reused token: %d %s", r.code, r.body)
	}
	bt2 := create(alice)
	tn.must(t, 200, "DELETE", "/api/v1/tenants/acme/agent-tokens/"+bt2.ID, alice, "")
	if r := tn.do(t, "POST", "/api/v1/agents/enroll", "", enrollBody(bt2.Token, csrFor(t, key), "web-2")); r.code != 403 || !strings.Contains(r.body, "revoked") {
		t.Fatalf("revoked token: %d %s", r.code, r.body)
	}
	if r := tn.do(t, "DELETE", "/api/v1/tenants/acme/agent-tokens/"+bt.ID, alice, ""); r.code != 409 || !strings.Contains(r.body, e.AgentID) {
		t.Fatalf("revoking a redeemed token: %d %s, want 409 naming the agent", r.code, r.body)
	}
	var toks []api.BootstrapToken
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/tenants/acme/agent-tokens", alice, "")), &toks)
	st := map[string]string{}
	for _, x := range toks {
		st[x.ID] = x.Status + "/" + x.Agent
	}
	if st[bt.ID] != "redeemed/"+e.AgentID || st[bt2.ID] != "revoked/" {
		t.Fatalf("token statuses %v", st)
	}

	// Tenants see only their own agents; the agent-supplied instance id
	// is kept as information only.
	var list []api.Agent
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/tenants/acme/agents", viewer, "")), &list)
	if len(list) != 1 || list[0].ID != e.AgentID || list[0].Tenant != "acme" || list[0].Fingerprint != pki.Fingerprint(cert) || list[0].InstanceUID != "claimed-uid" {
		t.Fatalf("acme's agents: %+v", list)
	}
	if l := tn.must(t, 200, "GET", "/api/v1/tenants/globex/agents", bob, ""); strings.Contains(l, e.AgentID) {
		t.Fatal("globex sees acme's agent")
	}
	tn.must(t, 404, "POST", "/api/v1/tenants/globex/agents/"+e.AgentID+"/revoke", bob, "")
	tn.must(t, 403, "POST", "/api/v1/tenants/acme/agents/"+e.AgentID+"/revoke", viewer, "")
	var rev api.Agent
	_ = json.Unmarshal([]byte(tn.must(t, 200, "POST", "/api/v1/tenants/acme/agents/"+e.AgentID+"/revoke", alice, "")), &rev)
	if !rev.Revoked || rev.Health != "revoked" {
		t.Fatalf("revoked agent %+v", rev)
	}

	// Refusals are limited per address (10, then one per 6 s) and their
	// audit records per token (5 a minute); another address is not
	// slowed.
	var limited resp
	for i := range 11 {
		limited = tn.doFrom(t, "127.0.0.9", "POST", "/api/v1/agents/enroll", "", enrollBody(bt2.Token, csrFor(t, key), "web-2"))
		if i < 10 && limited.code != 403 {
			t.Fatalf("refusal %d: %d %s", i, limited.code, limited.body)
		}
	}
	if limited.code != 429 || limited.header.Get("Retry-After") == "" || !strings.Contains(limited.body, "too many refused enrollments") {
		t.Fatalf("the 11th enrollment after 10 refusals from one address: %d %v %s", limited.code, limited.header, limited.body)
	}
	if r := tn.doFrom(t, "127.0.0.10", "POST", "/api/v1/agents/enroll", "", enrollBody(bt2.Token, csrFor(t, key), "web-2")); r.code != 403 {
		t.Fatalf("another address was limited too: %d %s", r.code, r.body)
	}
	if n := strings.Count(strings.Join(auditDetails(t, tn, tn.token, "agent.enroll_refused"), "\n"), "was revoked"); n < 1 || n > 5 {
		t.Errorf("%d refusal records of the revoked token, want 1..5", n)
	}
	actions := strings.Join(auditActions(t, tn, tn.token, "/api/v1/audit"), ",")
	for _, want := range []string{"agent_token.create", "agent.enroll", "agent.enroll_refused", "agent_token.revoke", "agent.revoke"} {
		if !strings.Contains(actions, want) {
			t.Errorf("audit log lacks %s: %s", want, actions)
		}
	}
	// The losing redemptions' entries committed too (the FSM decided
	// them), each recorded as changing nothing.
	var page audit.Page
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/audit", tn.token, "")), &page)
	enrolled, unchanged := 0, 0
	for _, en := range page.Entries {
		var rec audit.Record
		_ = json.Unmarshal(en.Data, &rec)
		if rec.Action != "agent.enroll" {
			continue
		}
		if rec.Outcome == audit.OutcomeUnchanged {
			unchanged++
		} else if enrolled++; rec.Entity != "agent/"+e.AgentID {
			t.Errorf("the enrollment record names %s, want agent/%s", rec.Entity, e.AgentID)
		}
	}
	if enrolled != 1 {
		t.Errorf("%d agent.enroll records that changed state (%d unchanged), want 1", enrolled, unchanged)
	}
}

// TestAgentEnrollmentBurstFromOneAddress: only refusals count against an
// address. 64 good enrollments at once from one address (a fleet behind a
// NAT, a provisioning burst) all pass; refusals that ran in parallel all
// count, so the next request from that address waits. Taking an attempt
// up front and refunding it refused such a burst with 429.
func TestAgentEnrollmentBurstFromOneAddress(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fleet := make([]api.BootstrapToken, 64)
	for i := range fleet {
		_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants/acme/agent-tokens", alice, `{"ttl":"15m"}`)), &fleet[i])
	}
	fleetResp := make([]resp, len(fleet))
	var wg sync.WaitGroup
	for i := range fleet {
		wg.Go(func() {
			fleetResp[i] = tn.doFrom(t, "127.0.0.11", "POST", "/api/v1/agents/enroll", "", enrollBody(fleet[i].Token, csrFor(t, key), fmt.Sprintf("nat-%d", i)))
		})
	}
	wg.Wait()
	for i, r := range fleetResp {
		if r.code != 201 {
			t.Fatalf("enrollment %d of 64 in parallel from one address: %d %s", i, r.code, r.body)
		}
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // not the redeemer's key: a refusal, not a repeat
	for i := range 12 {
		wg.Go(func() {
			fleetResp[i] = tn.doFrom(t, "127.0.0.12", "POST", "/api/v1/agents/enroll", "", enrollBody(fleet[0].Token, csrFor(t, other), "again"))
		})
	}
	wg.Wait()
	for i, r := range fleetResp[:12] {
		if r.code != 403 && r.code != 429 { // 429 once ten refusals finished before it was checked
			t.Fatalf("refusal %d: %d %s, want 403 (already redeemed) or 429", i, r.code, r.body)
		}
	}
	if r := tn.doFrom(t, "127.0.0.12", "POST", "/api/v1/agents/enroll", "", enrollBody(fleet[0].Token, csrFor(t, other), "again")); r.code != 429 {
		t.Fatalf("after 12 refusals in parallel from one address: %d %s, want 429", r.code, r.body)
	}
}

// TestBootstrapTokenRefusalCodes: an enrollment with a bootstrap token
// past its expiry, a revoked one or one already redeemed is refused 403
// with the code docs/api.md names (token_expired, token_revoked,
// token_used), on the API and on the agent port; outpost-agent gives up
// at the first such refusal rather than asking again or another node.
func TestBootstrapTokenRefusalCodes(t *testing.T) {
	clock := &testClock{}
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{Now: clock.Now})
	alice, _ := twoTenants(t, tn)
	var expiring api.BootstrapToken
	if err := json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants/acme/agent-tokens", alice, `{"ttl":"1m"}`)), &expiring); err != nil {
		t.Fatal(err)
	}
	revoked := newToken(t, tn, alice, "acme")
	tn.must(t, 200, "DELETE", "/api/v1/tenants/acme/agent-tokens/"+revoked.ID, alice, "")
	used := newToken(t, tn, alice, "acme")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tn.must(t, 201, "POST", "/api/v1/agents/enroll", "", enrollBody(used.Token, csrFor(t, key), "web-1"))
	clock.advance(2 * time.Minute)

	for _, c := range []struct {
		name  string
		token api.BootstrapToken
		code  string
		want  string
	}{
		{"expired", expiring, agentwire.CodeTokenExpired, "expired"},
		{"revoked", revoked, agentwire.CodeTokenRevoked, "revoked"},
		{"redeemed", used, agentwire.CodeTokenUsed, "already redeemed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			r := tn.do(t, "POST", "/api/v1/agents/enroll", "", enrollBody(c.token.Token, csrFor(t, other), "web-2"))
			var e api.Error
			if err := json.Unmarshal([]byte(r.body), &e); err != nil || r.code != 403 || e.Code != c.code || !strings.Contains(e.Error, c.want) {
				t.Fatalf("API: %d %s, want 403 with code %q saying %q", r.code, r.body, c.code, c.want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			_, err := agent.New(ctx, agent.Config{Servers: c.token.Servers, Token: c.token.Token, StateDir: t.TempDir(), CAPin: c.token.CAPin, Host: "web-3"})
			if err == nil || !strings.Contains(err.Error(), "enrollment refused") || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("agent port: %v, want the 403 refusal saying %q", err, c.want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("the agent took %v to give up on a refused token; it asks again only on 5xx, 429 and tokens not seen", took)
			}
		})
	}
}

// TestOlderUIDFlagsShownWithoutDetail: an instance_uid flag raised
// before uids were kept per tenant may name an agent of another tenant
// in its detail. Read from a state file such a version left, it is shown
// without its detail in the tenant's and the region's agent lists and
// in the audit record that clears it; a flag raised since (same tenant)
// and an address flag keep theirs.
func TestOlderUIDFlagsShownWithoutDetail(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	kp := mustKeys(t, newMasterKey(t), nil)
	tn := startNode(t, cfg, kp, node.Options{})
	alice, bob := twoTenants(t, tn)
	enroll := func(cred, tenant, host string) string {
		t.Helper()
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		var e agentwire.Enrollment
		_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/agents/enroll", "", enrollBody(newToken(t, tn, cred, tenant).Token, csrFor(t, key), host))), &e)
		return e.AgentID
	}
	acmeAgent, globexAgent := enroll(alice, "acme", "web-1"), enroll(bob, "globex", "db-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tn.n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// The flags as the older version wrote them into the state file.
	const secretUID = "globex-uid-7f3a"
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	p := agents.Presence{Addrs: []string{"127.0.0.1"}, Flags: []agents.Flag{
		{Kind: agents.FlagInstanceUID, At: at, Node: "n1", Addr: "127.0.0.1",
			Detail: fmt.Sprintf("reported instance uid %s, which agent %s reported first", secretUID, globexAgent)},
		{Kind: agents.FlagInstanceUID, At: at.Add(time.Minute), Node: "n1", Addr: "127.0.0.1", Tenanted: true,
			Detail: "reported instance uid acme-uid-1, which agent ag-acme-first of this tenant reported first"},
		{Kind: agents.FlagNewAddress, At: at.Add(2 * time.Minute), Node: "n1", Addr: "10.0.0.9",
			Detail: "connected from 10.0.0.9; known addresses [127.0.0.1]"},
	}}
	st, err := storage.Open(filepath.Join(cfg.DataDir, "state.db"), storage.Options{Region: cfg.Region})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	if err := st.Update(func(tx *storage.Tx) error { return tx.Put(agents.BucketPresence, []byte(acmeAgent), b) }); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	tn = startNode(t, cfg, kp, node.Options{GossipKey: tn.gossip})

	leaks := func(s string) bool { return strings.Contains(s, globexAgent) || strings.Contains(s, secretUID) }
	wantFlags := []string{
		"instance_uid at " + at.Format(time.RFC3339) + ": reported an instance uid another agent reported first",
		"instance_uid at " + at.Add(time.Minute).Format(time.RFC3339) + ": reported instance uid acme-uid-1, which agent ag-acme-first of this tenant reported first",
		"new_address at " + at.Add(2*time.Minute).Format(time.RFC3339) + ": connected from 10.0.0.9; known addresses [127.0.0.1]",
	}
	for _, view := range []struct{ name, cred, path string }{
		{"tenant list", alice, "/api/v1/tenants/acme/agents"},
		{"region list", tn.token, "/api/v1/agents"},
	} {
		var list []api.Agent
		var body string
		eventually(t, 10*time.Second, "the restarted node serving "+view.path, func() bool {
			r := tn.do(t, "GET", view.path, view.cred, "")
			body = r.body
			return r.code == 200 && json.Unmarshal([]byte(r.body), &list) == nil
		})
		var entry api.Agent
		for _, a := range list {
			if a.ID == acmeAgent {
				entry = a
			}
		}
		// The region's list shows globex's agent itself, not in acme's entry.
		shown, _ := json.Marshal(entry)
		if view.cred == alice {
			shown = []byte(body)
		}
		if !slices.Equal(entry.Flags, wantFlags) || leaks(string(shown)) {
			t.Errorf("%s: flags %q\nwant %q, and nothing naming %s or its uid:\n%s", view.name, entry.Flags, wantFlags, globexAgent, shown)
		}
	}

	tn.must(t, 200, "POST", "/api/v1/tenants/acme/agents/"+acmeAgent+"/clear-flags", alice, "")
	var cleared []string
	eventually(t, 5*time.Second, "the agent.flags_cleared record", func() bool {
		cleared = auditDetails(t, tn, tn.token, "agent.flags_cleared")
		return len(cleared) == 1
	})
	for _, want := range []string{"another agent reported first", "acme-uid-1", "10.0.0.9"} {
		if !strings.Contains(cleared[0], want) {
			t.Errorf("the clearing record lacks %q: %s", want, cleared[0])
		}
	}
	if leaks(cleared[0]) || leaks(tn.must(t, 200, "GET", "/api/v1/tenants/acme/audit", alice, "")) {
		t.Errorf("the clearing record names %s or its uid: %s", globexAgent, cleared[0])
	}
	if l := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[acmeAgent]; len(l.Flags) != 0 {
		t.Errorf("flags after clearing: %q", l.Flags)
	}
}
