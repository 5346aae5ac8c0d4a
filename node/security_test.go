package node_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/internal/oidctest"
	"github.com/outpost-mesh/outpost/internal/testcluster/nodes"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/node/httpapi"
	"github.com/outpost-mesh/outpost/node/keys"
	"github.com/outpost-mesh/outpost/node/pki"
)

// These tests run a real single-node region (Raft over TLS, bbolt, the
// HTTP API on loopback) and drive it through its public API.

type testNode struct {
	n        *node.Node
	cfg      node.Config
	url      string
	token    string // first admin's API token
	password string // first admin's password
	gossip   []byte
}

func newMasterKey(t *testing.T) []byte {
	t.Helper()
	k, err := keys.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := base64.StdEncoding.DecodeString(k)
	return b
}

// nodeConfig is the shared test cluster's single-node config (region
// "sec", node n1, free loopback ports).
func nodeConfig(t *testing.T, dir string) node.Config { return nodes.Config(t, dir) }

// startNode starts a node of the shared test cluster and keeps the first
// admin's credentials.
func startNode(t *testing.T, cfg node.Config, kp *keys.Protector, opts node.Options) *testNode {
	t.Helper()
	opts.Keys = kp
	return fromShared(nodes.Start(t, cfg, opts))
}

func fromShared(n *nodes.Node) *testNode {
	return &testNode{n: n.Node, cfg: n.Config, url: n.URL, token: n.Token, password: n.Password, gossip: n.GossipKey}
}

type resp struct {
	code   int
	body   string
	header http.Header
}

// do sends a request with a bearer token (cred "opt_…") or a cookie
// header (cred "outpost_session=…").
func (tn *testNode) do(t *testing.T, method, path, cred, body string) resp {
	t.Helper()
	return tn.doFrom(t, "", method, path, cred, body)
}

// doFrom is do from the loopback source address from ("" for any).
func (tn *testNode) doFrom(t *testing.T, from, method, path, cred, body string) resp {
	t.Helper()
	req, _ := http.NewRequest(method, tn.url+path, strings.NewReader(body))
	switch {
	case strings.HasPrefix(cred, "opt_"):
		req.Header.Set("Authorization", "Bearer "+cred)
	case cred != "":
		req.Header.Set("Cookie", cred)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if from != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c.Transport = &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	}
	r, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, string(b), r.Header}
}

func (tn *testNode) must(t *testing.T, want int, method, path, cred, body string) string {
	t.Helper()
	r := tn.do(t, method, path, cred, body)
	if r.code != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, r.code, want, r.body)
	}
	return r.body
}

func (tn *testNode) newUser(t *testing.T, name string) string {
	t.Helper()
	var u api.User
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/users", tn.token, fmt.Sprintf(`{"name":%q}`, name))), &u)
	return u.Password
}

func (tn *testNode) login(t *testing.T, user, password string) string {
	t.Helper()
	r := tn.do(t, "POST", "/api/v1/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
	if r.code != 200 {
		t.Fatalf("login %s: %d %s", user, r.code, r.body)
	}
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == auth.CookieName {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Fatalf("session cookie lacks HttpOnly/SameSite=Strict: %+v", c)
			}
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("login set no session cookie: %v", r.header)
	return ""
}

func (tn *testNode) tenantToken(t *testing.T, cred, tenant, role string) string {
	t.Helper()
	var tok api.APIToken
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants/"+tenant+"/tokens", cred, fmt.Sprintf(`{"name":"t","role":%q}`, role))), &tok)
	return tok.Token
}

// twoTenants makes accounts alice (Admin of acme) and bob (Admin of
// globex) and returns their session cookies.
func twoTenants(t *testing.T, tn *testNode) (alice, bob string) {
	t.Helper()
	pa, pb := tn.newUser(t, "alice"), tn.newUser(t, "bob")
	tn.must(t, 201, "POST", "/api/v1/tenants", tn.token, `{"name":"acme","admin":"alice"}`)
	tn.must(t, 201, "POST", "/api/v1/tenants", tn.token, `{"name":"globex","admin":"bob"}`)
	return tn.login(t, "alice", pa), tn.login(t, "bob", pb)
}

// fill replaces route parameters with values.
func fill(pattern string, vals map[string]string) string {
	for k, v := range vals {
		pattern = strings.ReplaceAll(pattern, "{"+k+"...}", v)
		pattern = strings.ReplaceAll(pattern, "{"+k+"}", v)
	}
	return pattern
}

// TestCrossTenantIsolation: tenant A's Admin, with valid credentials,
// tries every tenant route against tenant B, and every region route.
func TestCrossTenantIsolation(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, bob := twoTenants(t, tn)
	tn.must(t, 200, "PUT", "/api/v1/tenants/globex/kv/secret", bob, "globex-private-value")
	bobTok := tn.tenantToken(t, bob, "globex", "viewer")
	var bobTokID api.APIToken
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/tenants/globex/tokens", bob, "")), &[]*api.APIToken{&bobTokID})
	aliceTok := tn.tenantToken(t, alice, "acme", "admin")

	for _, cred := range []string{alice, aliceTok} {
		for _, rt := range httpapi.Routes(false) {
			if !strings.Contains(rt.Pattern, "{tenant}") {
				continue
			}
			path := fill(rt.Pattern, map[string]string{"tenant": "globex", "key": "secret", "user": "alice", "id": bobTokID.ID})
			r := tn.do(t, rt.Method, path, cred, `{"role":"admin","name":"x","reason":"trying to get in","breakglass_auto_approve":true}`)
			want := 404
			if rt.Role == httpapi.RegionAdmin {
				want = 403 // the break-glass request route: alice is no region admin
			}
			if r.code != want || strings.Contains(r.body, "globex-private-value") {
				t.Errorf("acme admin %s %s: %d %s, want %d", rt.Method, path, r.code, r.body, want)
			}
		}
		for _, rt := range httpapi.Routes(false) {
			if rt.Role != httpapi.RegionAdmin || strings.Contains(rt.Pattern, "{tenant}") {
				continue
			}
			path := fill(rt.Pattern, map[string]string{"key": "k", "user": "bob", "id": bobTokID.ID})
			if r := tn.do(t, rt.Method, path, cred, `{}`); r.code != 403 {
				t.Errorf("tenant admin on region route %s %s: %d, want 403", rt.Method, path, r.code)
			}
		}
	}
	// Bob's data and token are untouched.
	if got := tn.must(t, 200, "GET", "/api/v1/tenants/globex/kv/secret", bobTok, ""); got != "globex-private-value" {
		t.Fatalf("globex value changed: %q", got)
	}
	// A tenant list shows only one's own tenants; a body naming another
	// tenant changes nothing.
	if l := tn.must(t, 200, "GET", "/api/v1/tenants", alice, ""); strings.Contains(l, "globex") {
		t.Fatalf("alice sees globex: %s", l)
	}
	tn.must(t, 400, "PUT", "/api/v1/tenants/acme/members/bob", alice, `{"role":"admin","tenant":"globex"}`)
}

// TestViewerCannotChangeState walks the route table with a tenant
// Viewer's token: no state-changing route may succeed.
func TestViewerCannotChangeState(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	viewer := tn.tenantToken(t, alice, "acme", "viewer")
	for _, rt := range httpapi.Routes(false) {
		if rt.Method == http.MethodGet || rt.Pattern == "/api/v1/login" || httpapi.ReadOnlyPOST(rt.Pattern) {
			continue // reads (the query API takes POST as Grafana sends it)
		}
		path := fill(rt.Pattern, map[string]string{"tenant": "acme", "key": "k", "user": "alice", "id": "000000000000"})
		r := tn.do(t, rt.Method, path, viewer, `{"role":"admin","name":"x","reason":"escalation attempt","breakglass_auto_approve":true}`)
		if r.code < 400 || r.code >= 500 {
			t.Errorf("viewer %s %s: %d %s, want a 4xx refusal", rt.Method, path, r.code, r.body)
		}
		if rt.Role >= httpapi.TenantOperator && r.code != 403 {
			t.Errorf("viewer %s %s: %d, want 403", rt.Method, path, r.code)
		}
	}
	// The refusals are audited for the tenant to see.
	if a := strings.Join(auditActions(t, tn, alice, "/api/v1/tenants/acme/audit"), ","); !strings.Contains(a, "auth.denied") {
		t.Fatalf("tenant audit lacks the denied attempts")
	}
}

func mustKeys(t *testing.T, cur, prev []byte) *keys.Protector {
	t.Helper()
	kp, err := keys.New(cur, prev)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestLoginLockoutAndSessions: wrong passwords lock the account with a
// clear message; an unlock lets the right password in; forged, foreign
// and logged-out cookies are refused.
func TestLoginLockoutAndSessions(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	pw := tn.newUser(t, "carol")
	bad := `{"username":"carol","password":"not-the-password"}`
	for i := 1; i <= 4; i++ {
		if r := tn.do(t, "POST", "/api/v1/login", "", bad); r.code != 401 || !strings.Contains(r.body, "wrong user name or password") {
			t.Fatalf("failure %d: %d %s", i, r.code, r.body)
		}
	}
	r := tn.do(t, "POST", "/api/v1/login", "", bad)
	if r.code != 429 || !strings.Contains(r.body, "locked for your address until") || !strings.Contains(r.body, "outpostctl users unlock carol") || r.header.Get("Retry-After") == "" {
		t.Fatalf("fifth failure: %d %s", r.code, r.body)
	}
	good := fmt.Sprintf(`{"username":"carol","password":%q}`, pw)
	if r := tn.do(t, "POST", "/api/v1/login", "", good); r.code != 429 {
		t.Fatalf("right password while locked: %d %s", r.code, r.body)
	}
	tn.must(t, 200, "POST", "/api/v1/users/carol/unlock", tn.token, "")
	cookie := tn.login(t, "carol", pw)
	if who := tn.must(t, 200, "GET", "/api/v1/whoami", cookie, ""); !strings.Contains(who, `"user:carol"`) {
		t.Fatalf("whoami: %s", who)
	}
	// Unknown accounts get the same answer as a wrong password.
	if r := tn.do(t, "POST", "/api/v1/login", "", `{"username":"nobody","password":"whatever-it-is"}`); r.code != 401 || !strings.Contains(r.body, "wrong user name or password") {
		t.Fatalf("unknown account: %d %s", r.code, r.body)
	}
	// A forged cookie: the payload edited, the signature kept.
	val := strings.TrimPrefix(cookie, auth.CookieName+"=")
	p, sig, _ := strings.Cut(val, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(p)
	forged := base64.RawURLEncoding.EncodeToString(bytes.Replace(raw, []byte("carol"), []byte("admin"), 1)) + "." + sig
	if r := tn.do(t, "GET", "/api/v1/region", auth.CookieName+"="+forged, ""); r.code != 401 {
		t.Fatalf("forged cookie: %d %s", r.code, r.body)
	}
	// A cookie signed by another region's key.
	other := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	if r := other.do(t, "GET", "/api/v1/whoami", cookie, ""); r.code != 401 {
		t.Fatalf("cookie of another region: %d %s", r.code, r.body)
	}
	if r := other.do(t, "GET", "/api/v1/whoami", tn.token, ""); r.code != 401 || !strings.Contains(r.body, "invalid API token") {
		t.Fatalf("token of another region: %d %s", r.code, r.body)
	}
	// Cross-origin state changes are refused before any route runs.
	req, _ := http.NewRequest("POST", tn.url+"/api/v1/logout", nil)
	req.Header.Set("Cookie", cookie)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 403 {
		t.Fatalf("cross-site logout: %v %v", res, err)
	}
	tn.must(t, 200, "POST", "/api/v1/logout", cookie, "")
	if r := tn.do(t, "GET", "/api/v1/whoami", cookie, ""); r.code != 401 {
		t.Fatalf("cookie after logout: %d", r.code)
	}
	a := strings.Join(auditActions(t, tn, tn.token, "/api/v1/audit"), ",")
	if strings.Count(a, "auth.login_failed") != 5 || !strings.Contains(a, "user.unlock") {
		t.Fatalf("audit lacks the failed logins or the unlock")
	}
}

func providerActions(t *testing.T, tn *testNode, cred, tenant string) []string {
	t.Helper()
	return auditActions(t, tn, cred, "/api/v1/tenants/"+tenant+"/audit/provider")
}

// auditActions lists the actions of the records an audit route returns.
func auditActions(t *testing.T, tn *testNode, cred, path string) []string {
	t.Helper()
	var page audit.Page
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", path, cred, "")), &page)
	var out []string
	for _, e := range page.Entries {
		var rec audit.Record
		_ = json.Unmarshal(e.Data, &rec)
		out = append(out, rec.Action)
	}
	return out
}

// auditDetails returns the detail of each region audit record of action.
func auditDetails(t *testing.T, tn *testNode, cred, action string) []string {
	t.Helper()
	var page audit.Page
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/audit", cred, "")), &page)
	var out []string
	for _, e := range page.Entries {
		var rec audit.Record
		if json.Unmarshal(e.Data, &rec) == nil && rec.Action == action {
			out = append(out, string(rec.Detail))
		}
	}
	return out
}

// TestBreakGlass: a region admin is refused tenant data without a grant,
// sees it read-only with an approved one until it expires, and the
// tenant reads every step in the provider stream.
func TestBreakGlass(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, bob := twoTenants(t, tn)
	tn.must(t, 200, "PUT", "/api/v1/tenants/acme/kv/flows", alice, "acme-telemetry")
	if r := tn.do(t, "GET", "/api/v1/tenants/acme/kv/flows", tn.token, ""); r.code != 403 || !strings.Contains(r.body, "break-glass") {
		t.Fatalf("region admin without a grant: %d %s", r.code, r.body)
	}
	tn.must(t, 400, "POST", "/api/v1/tenants/acme/breakglass", tn.token, `{"reason":"x","duration":"2s"}`)
	var g api.Grant
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants/acme/breakglass", tn.token, `{"reason":"INC-42 agent flapping","duration":"2s"}`)), &g)
	if g.Active {
		t.Fatal("a grant is active before the tenant approved it")
	}
	tn.must(t, 403, "GET", "/api/v1/tenants/acme/kv/flows", tn.token, "")
	tn.must(t, 404, "POST", "/api/v1/tenants/globex/breakglass/"+g.ID+"/approve", bob, "")
	tn.must(t, 200, "POST", "/api/v1/tenants/acme/breakglass/"+g.ID+"/approve", alice, "")
	if got := tn.must(t, 200, "GET", "/api/v1/tenants/acme/kv/flows", tn.token, ""); got != "acme-telemetry" {
		t.Fatalf("with a grant: %q", got)
	}
	var who api.WhoAmI
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/whoami", tn.token, "")), &who)
	if who.Federation {
		t.Error("whoami says federation is on, on a node without federation.bind")
	}
	if len(who.Grants) != 1 || who.Grants[0].Tenant != "acme" || who.Grants[0].ID != g.ID || who.Grants[0].Expires.IsZero() {
		t.Fatalf("whoami does not show the active grant and its expiry: %+v", who.Grants)
	}
	who = api.WhoAmI{}
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/whoami", alice, "")), &who)
	if len(who.Grants) != 0 {
		t.Fatalf("a tenant admin's whoami shows grants: %+v", who.Grants)
	}
	tn.must(t, 403, "PUT", "/api/v1/tenants/acme/kv/flows", tn.token, "overwrite") // read-only
	tn.must(t, 403, "GET", "/api/v1/tenants/globex/kv", tn.token, "")              // one tenant only
	time.Sleep(time.Until(g.Created.Add(2*time.Second)) + 100*time.Millisecond)
	if r := tn.do(t, "GET", "/api/v1/tenants/acme/kv/flows", tn.token, ""); r.code != 403 {
		t.Fatalf("after expiry: %d %s", r.code, r.body)
	}
	who = api.WhoAmI{}
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/whoami", tn.token, "")), &who)
	if len(who.Grants) != 0 {
		t.Fatalf("whoami shows an expired grant: %+v", who.Grants)
	}
	acts := strings.Join(providerActions(t, tn, alice, "acme"), ",")
	for _, want := range []string{"breakglass.refused", "breakglass.request", "breakglass.approve", "breakglass.access"} {
		if !strings.Contains(acts, want) {
			t.Errorf("acme's provider stream lacks %s: %s", want, acts)
		}
	}
	if acts := providerActions(t, tn, bob, "globex"); strings.Contains(strings.Join(acts, ","), "approve") {
		t.Errorf("globex's provider stream shows acme's grant: %v", acts)
	}
	// A tenant that opts in to auto-approval gets a grant active at once.
	tn.must(t, 200, "PUT", "/api/v1/tenants/globex/settings", bob, `{"breakglass_auto_approve":true}`)
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants/globex/breakglass", tn.token, `{"reason":"INC-43 routine check","duration":"1m"}`)), &g)
	if !g.Active {
		t.Fatal("auto-approved grant is not active")
	}
	tn.must(t, 200, "GET", "/api/v1/tenants/globex/kv", tn.token, "")
}

// TestSecretsAtRest: no secret appears in plaintext in any file of the
// data dir, and the node refuses to start with the wrong master key.
func TestSecretsAtRest(t *testing.T) {
	dir := t.TempDir()
	cfg := nodeConfig(t, dir)
	cfg.Federation.Bind = "127.0.0.1:0"
	mk := newMasterKey(t)
	tn := startNode(t, cfg, mustKeys(t, mk, nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	apiTok := tn.tenantToken(t, alice, "acme", "operator")
	password := tn.newUser(t, "dave")
	fedSecret := addTestPeer(t, tn)
	tn.n.Kill()
	secrets := map[string][]byte{
		"admin token": []byte(tn.token), "admin password": []byte(tn.password), "api token": []byte(apiTok),
		"user password": []byte(password), "master key": mk, "master key (base64)": []byte(base64.StdEncoding.EncodeToString(mk)),
		"gossip key": tn.gossip, "federation secret": []byte(fedSecret),
	}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || filepath.Base(path) == "admin.token" || filepath.Base(path) == "admin.password" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for name, s := range secrets {
			if bytes.Contains(data, s) {
				t.Errorf("%s holds the %s in plaintext", path, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The wrong master key: a clear error, nothing left running.
	_, err = node.Start(cfg, node.Options{Keys: mustKeys(t, newMasterKey(t), nil), GossipKey: tn.gossip})
	if err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("start with the wrong master key: %v", err)
	}
	if l, lerr := net.Listen("tcp", cfg.HTTP.Bind); lerr != nil {
		t.Fatalf("a refused start left the API port bound: %v", lerr)
	} else {
		l.Close()
	}
}

// TestMasterKeyRotation: restart with the new key current and the old as
// previous; rotate; the old key alone no longer opens the region, the new
// one alone does.
func TestMasterKeyRotation(t *testing.T) {
	dir := t.TempDir()
	cfg := nodeConfig(t, dir)
	cfg.Federation.Bind = "127.0.0.1:0"
	old, nu := newMasterKey(t), newMasterKey(t)
	tn := startNode(t, cfg, mustKeys(t, old, nil), node.Options{})
	gossip := tn.gossip
	addTestPeer(t, tn)
	var who api.WhoAmI
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/whoami", tn.token, "")), &who)
	if !who.Federation {
		t.Error("whoami says federation is off on a node with federation.bind")
	}
	tn.n.Kill()
	if _, err := node.Start(cfg, node.Options{Keys: mustKeys(t, nu, nil), GossipKey: gossip}); err == nil {
		t.Fatal("the new key alone opened data wrapped by the old one")
	}
	tn = startNode(t, cfg, mustKeys(t, nu, old), node.Options{GossipKey: gossip})
	var st api.KeyStatus
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/keys", tn.token, "")), &st)
	// The canary and the federation peer's shared secret.
	if st.OnPrevious != 2 || st.Secrets != 2 {
		t.Fatalf("before rotation: %+v", st)
	}
	_ = json.Unmarshal([]byte(tn.must(t, 200, "POST", "/api/v1/keys/rotate", tn.token, "")), &st)
	if st.OnPrevious != 0 || st.Rewrapped != 2 {
		t.Fatalf("after rotation: %+v", st)
	}
	tn.n.Kill()
	if _, err := node.Start(cfg, node.Options{Keys: mustKeys(t, old, nil), GossipKey: gossip}); err == nil {
		t.Fatal("the old key still opens the region after rotation")
	}
	tn = startNode(t, cfg, mustKeys(t, nu, nil), node.Options{GossipKey: gossip})
	// The peer's secret opens under the new key alone: the peer is asked
	// (it is not listening, so it is not ok, but it is there).
	var gh api.GlobalHealth
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/global/health", tn.token, "")), &gh)
	if len(gh.Peers) != 1 || gh.Peers[0].Peer != "eu-west" {
		t.Fatalf("after rotation the peer's secret does not open: %+v", gh)
	}
}

// addTestPeer adds a peer "eu-west" (a CA of its own, an address nothing
// listens on) and returns its shared secret.
func addTestPeer(t *testing.T, tn *testNode) string {
	t.Helper()
	ca, err := pki.NewCA("eu-west")
	if err != nil {
		t.Fatal(err)
	}
	secret := "fed-secret-" + strings.Repeat("x", 40)
	body, _ := json.Marshal(api.PeerCreate{Name: "eu-west", Addr: "127.0.0.1:9", CAPEM: string(ca.CertPEM()), Secret: secret})
	tn.must(t, 201, "POST", "/api/v1/peers", tn.token, string(body))
	return secret
}

// TestOIDCLoginWithPKCE logs in through a real OIDC provider running in
// the test: discovery, PKCE, code exchange, JWKS signature check, group
// mapping; and refuses a flow without its cookie and a token signed by a
// key the IdP does not publish.
func TestOIDCLoginWithPKCE(t *testing.T) {
	idp := oidctest.New(t)
	dir := t.TempDir()
	mk := newMasterKey(t)
	kp := mustKeys(t, mk, nil)
	cfg := nodeConfig(t, dir)
	callback := "http://" + cfg.HTTP.Bind + "/api/v1/auth/oidc/callback"
	idp.AddClient("outpost", "client-secret-1", callback)
	secretFile := filepath.Join(dir, "oidc.secret")
	if err := keys.WriteFile(kp, secretFile, node.PurposeOIDCSecret, []byte("client-secret-1")); err != nil {
		t.Fatal(err)
	}
	cfg.Auth.OIDC = &auth.OIDCConfig{Issuer: idp.Issuer(), ClientID: "outpost", ClientSecretFile: secretFile, RedirectURL: callback,
		Groups: []auth.GroupMapping{{Group: "acme-ops", Tenant: "acme", Role: "operator"}}}
	tn := startNode(t, cfg, kp, node.Options{HTTPClient: idp.HTTPClient()})
	tn.newUser(t, "alice")
	tn.must(t, 201, "POST", "/api/v1/tenants", tn.token, `{"name":"acme","admin":"alice"}`)
	idp.SetUser(oidctest.User{Subject: "sub-123", Email: "eve@example.test", Groups: []string{"acme-ops", "unrelated"}})

	login := func() (callbackURL *url.URL, flowCookie string) {
		r := tn.do(t, "GET", "/api/v1/auth/oidc/login", "", "")
		if r.code != 302 || !strings.Contains(r.header.Get("Location"), "code_challenge_method=S256") {
			t.Fatalf("login start: %d %v", r.code, r.header)
		}
		for _, c := range (&http.Response{Header: r.header}).Cookies() {
			if c.Name == auth.FlowCookie {
				flowCookie = c.Name + "=" + c.Value
			}
		}
		u, err := idp.Authorize(context.Background(), r.header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		return u, flowCookie
	}
	u, flow := login()
	r := tn.do(t, "GET", u.RequestURI(), flow, "")
	if r.code != 200 {
		t.Fatalf("callback: %d %s", r.code, r.body)
	}
	var session string
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == auth.CookieName {
			session = c.Name + "=" + c.Value
		}
	}
	var who api.WhoAmI
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/whoami", session, "")), &who)
	if who.Actor != "oidc:sub-123" || who.Tenants["acme"] != "operator" || who.RegionAdmin {
		t.Fatalf("OIDC principal: %+v", who)
	}
	tn.must(t, 200, "PUT", "/api/v1/tenants/acme/kv/x", session, "v")
	tn.must(t, 403, "PUT", "/api/v1/tenants/acme/members/alice", session, `{"role":"viewer"}`)

	// A browser (Accept: text/html) is sent back to the web UI, logged in.
	u, flow = login()
	req, _ := http.NewRequest("GET", "http://"+cfg.HTTP.Bind+u.RequestURI(), nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Cookie", flow)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var uiSession string
	for _, c := range resp.Cookies() {
		if c.Name == auth.CookieName {
			uiSession = c.Name + "=" + c.Value
		}
	}
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/#/overview" || uiSession == "" {
		t.Fatalf("browser callback: %d to %q, session cookie %q; want 303 to the UI with a session", resp.StatusCode, resp.Header.Get("Location"), uiSession)
	}
	tn.must(t, 200, "GET", "/api/v1/whoami", uiSession, "")

	// The callback without this browser's flow cookie is refused.
	u, _ = login()
	if r := tn.do(t, "GET", u.RequestURI(), "", ""); r.code != 401 {
		t.Fatalf("callback without the flow cookie: %d %s", r.code, r.body)
	}
	// An ID token signed by a key the IdP does not publish is refused.
	idp.SignWithRogueKey(true)
	u, flow = login()
	if r := tn.do(t, "GET", u.RequestURI(), flow, ""); r.code != 401 || !strings.Contains(r.body, "did not verify") {
		t.Fatalf("rogue-key token: %d %s", r.code, r.body)
	}
	idp.SignWithRogueKey(false)
	// A user whose groups map to nothing gets no account.
	idp.SetUser(oidctest.User{Subject: "sub-999", Groups: []string{"unrelated"}})
	u, flow = login()
	if r := tn.do(t, "GET", u.RequestURI(), flow, ""); r.code != 401 || !strings.Contains(r.body, "mapped to a role") {
		t.Fatalf("unmapped groups: %d %s", r.code, r.body)
	}
}
