package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// request is what a fake node saw.
type request struct {
	method, uri, body string
}

// fakeNode is an httptest server that records requests and answers each
// with the body answer picks for it ("{}" when answer is nil).
func fakeNode(t *testing.T, answer func(r *http.Request) (code int, body string)) (addr string, seen func() []request) {
	t.Helper()
	var mu sync.Mutex
	var reqs []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, request{r.Method, r.RequestURI, string(b)})
		mu.Unlock()
		code, body := http.StatusOK, "{}"
		if answer != nil {
			code, body = answer(r)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []request {
		mu.Lock()
		defer mu.Unlock()
		return append([]request(nil), reqs...)
	}
}

// runCLI runs outpostctl against addr with stdin.
func runCLI(t *testing.T, addr, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	t.Setenv("OUTPOST_TOKEN", "")
	// The cache of the regions' nodes (nodecache.go) is the test's own.
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	var out, errw bytes.Buffer
	if addr != "" { // "" for offline commands, which refuse --addr
		args = append(args, "--addr", addr)
	}
	err = run(context.Background(), args, strings.NewReader(stdin), &out, &errw)
	return out.String(), errw.String(), err
}

// TestUsageErrors: a malformed command line is a usage error (exit 2)
// that says what is wrong, and sends no request.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string // in stderr
	}{
		{"group without subcommand", []string{"tenants"}, "", "outpostctl tenants: missing subcommand"},
		{"nested group without subcommand", []string{"tenants", "members"}, "", "outpostctl tenants members: missing subcommand"},
		{"flag instead of subcommand", []string{"tokens", "api", "--json"}, "", "outpostctl tokens api: missing subcommand"},
		{"unknown subcommand", []string{"keys", "spin"}, "", `unknown command "keys spin"`},
		{"bootstrap token without tenant", []string{"tokens", "create"}, "", "--tenant is required"},
		{"bootstrap token with a long ttl", []string{"tokens", "create", "--tenant", "acme", "--ttl", "48h"}, "", `--ttl "48h"`},
		{"agents revoke without id", []string{"agents", "revoke"}, "", "usage: outpostctl agents revoke ID"},
		{"whoami takes no argument", []string{"whoami", "alice"}, "", "usage: outpostctl whoami"},
		{"tenants create without name", []string{"tenants", "create", "--admin", "alice"}, "", "usage: outpostctl tenants create NAME --admin USER"},
		{"tenants create without admin", []string{"tenants", "create", "acme"}, "", "--admin is required"},
		{"members list without tenant", []string{"tenants", "members", "list"}, "", "usage: outpostctl tenants members list TENANT"},
		{"members set without role", []string{"tenants", "members", "set", "acme", "bob"}, "", `--role "": use viewer, operator or admin`},
		{"members set with a bad role", []string{"tenants", "members", "set", "acme", "bob", "--role", "owner"}, "", `--role "owner"`},
		{"members remove without user", []string{"tenants", "members", "remove", "acme"}, "", "usage: outpostctl tenants members remove TENANT USER"},
		{"settings without tenant", []string{"tenants", "settings"}, "", "usage: outpostctl tenants settings TENANT"},
		{"audit with a flag of another command", []string{"tenants", "audit", "acme", "--role", "admin"}, "", "--role does not apply to this command"},
		{"users create with a role", []string{"users", "create", "bob", "--role", "admin"}, "", "--role does not apply to this command"},
		{"users create with an empty password", []string{"users", "create", "bob", "--password-stdin"}, "\n", "--password-stdin read an empty password"},
		{"users unlock without name", []string{"users", "unlock"}, "", "usage: outpostctl users unlock NAME"},
		{"token without name", []string{"tokens", "api", "create", "--role", "region-admin"}, "", "--name is required"},
		{"token without role", []string{"tokens", "api", "create", "--name", "ci"}, "", "--role is required"},
		{"tenant role without tenant", []string{"tokens", "api", "create", "--name", "ci", "--role", "viewer"}, "", `--role "viewer" needs --tenant T`},
		{"region role in a tenant", []string{"tokens", "api", "create", "--name", "ci", "--role", "region-admin", "--tenant", "acme"}, "", "a tenant token is viewer, operator or admin"},
		{"token with a bad ttl", []string{"tokens", "api", "create", "--name", "ci", "--role", "viewer", "--tenant", "acme", "--ttl", "soon"}, "", `--ttl "soon"`},
		{"token create with a positional", []string{"tokens", "api", "create", "ci", "--name", "ci", "--role", "region-admin"}, "", "usage: outpostctl tokens api create --name N --role R"},
		{"revoke without id", []string{"tokens", "api", "revoke", "--tenant", "acme"}, "", "usage: outpostctl tokens api revoke ID [--tenant T]"},
		{"breakglass without reason", []string{"breakglass", "request", "acme"}, "", "--reason is required"},
		{"breakglass with a bad duration", []string{"breakglass", "request", "acme", "--reason", "INC-42 flapping", "--duration", "-1h"}, "", `--duration "-1h"`},
		{"breakglass list of two tenants", []string{"breakglass", "list", "a", "b"}, "", "usage: outpostctl breakglass list [TENANT]"},
		{"breakglass approve without id", []string{"breakglass", "approve", "acme"}, "", "usage: outpostctl breakglass approve TENANT ID"},
		{"keys status with an argument", []string{"keys", "status", "now"}, "", "usage: outpostctl keys status"},
		{"undefined flag", []string{"tenants", "list", "--bogus"}, "", "outpostctl tenants list: unknown flag --bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, seen := fakeNode(t, nil)
			_, stderr, err := runCLI(t, addr, tt.stdin, tt.args...)
			if !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want a usage error (exit 2)", err)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.want)
			}
			if n := len(seen()); n != 0 {
				t.Errorf("a usage error sent %d requests: %v", n, seen())
			}
		})
	}
}

// TestRequests: each command sends the API request the route table
// expects, with path segments escaped, and prints the answer.
func TestRequests(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		stdin  string
		method string
		uri    string
		body   string
		answer string // default "{}"
		want   string // in stdout
	}{
		{"whoami", []string{"whoami"}, "", "GET", "/api/v1/whoami", "",
			`{"actor":"user:alice","user":"alice","region_admin":false,"tenants":{"acme":"admin"}}`, "acme    admin"},
		{"tenants create", []string{"tenants", "create", "acme", "--admin", "alice"}, "", "POST", "/api/v1/tenants", `{"name":"acme","admin":"alice"}`,
			`{"name":"acme","id":"t1","created":"2025-01-02T03:04:05Z"}`, "created tenant acme (id t1); alice is its Admin"},
		{"tenants list", []string{"tenants", "list"}, "", "GET", "/api/v1/tenants", "",
			`[{"name":"acme","id":"t1","created":"2025-01-02T03:04:05Z","role":"viewer"}]`, "acme  t1  2025-01-02T03:04:05Z  viewer"},
		{"members list escapes the tenant", []string{"tenants", "members", "list", "a/b?c"}, "", "GET", "/api/v1/tenants/a%2Fb%3Fc/members", "",
			`[{"user":"bob","role":"operator"}]`, "bob   operator"},
		{"members set", []string{"tenants", "members", "set", "acme", "bob/x", "--role", "operator"}, "", "PUT", "/api/v1/tenants/acme/members/bob%2Fx", `{"role":"operator"}`,
			`{"user":"bob/x","role":"operator"}`, "bob/x is now operator of tenant acme"},
		{"members remove", []string{"tenants", "members", "remove", "acme", "bob"}, "", "DELETE", "/api/v1/tenants/acme/members/bob", "",
			`{"user":"bob","status":"removed"}`, "bob removed from tenant acme"},
		{"settings get", []string{"tenants", "settings", "acme"}, "", "GET", "/api/v1/tenants/acme/settings", "",
			`{"breakglass_auto_approve":false}`, "breakglass auto-approve: off"},
		{"settings put false", []string{"tenants", "settings", "acme", "--breakglass-auto-approve=false"}, "", "PUT", "/api/v1/tenants/acme/settings", `{"breakglass_auto_approve":false}`,
			`{"breakglass_auto_approve":false}`, "breakglass auto-approve: off"},
		{"settings put true", []string{"tenants", "settings", "acme", "--breakglass-auto-approve"}, "", "PUT", "/api/v1/tenants/acme/settings", `{"breakglass_auto_approve":true}`,
			`{"breakglass_auto_approve":true}`, "breakglass auto-approve: on"},
		{"audit provider stream", []string{"tenants", "audit", "acme", "--provider"}, "", "GET", "/api/v1/tenants/acme/audit/provider?from=0", "",
			`{"entries":[],"size":0}`, "no audit records for tenant acme"},
		{"users create generates a password", []string{"users", "create", "bob"}, "", "POST", "/api/v1/users", `{"name":"bob"}`,
			`{"name":"bob","source":"local","region_admin":false,"tenants":{},"password":"gen-123"}`, "password: gen-123\n(shown only once"},
		{"users create with a password", []string{"users", "create", "root", "--region-admin", "--password-stdin"}, "s3cret pass\n", "POST", "/api/v1/users",
			`{"name":"root","password":"s3cret pass","region_admin":true}`,
			`{"name":"root","source":"local","region_admin":true,"tenants":{}}`, "created region admin account root\n"},
		{"users list", []string{"users", "list"}, "", "GET", "/api/v1/users", "",
			`[{"name":"bob","source":"local","region_admin":false,"tenants":{"b":"viewer","a":"admin"}}]`, "a=admin,b=viewer"},
		{"users unlock", []string{"users", "unlock", "bob"}, "", "POST", "/api/v1/users/bob/unlock", "",
			`{"user":"bob","status":"unlocked"}`, "account bob unlocked"},
		{"bootstrap token", []string{"tokens", "create", "--tenant", "acme", "--ttl", "15m"}, "", "POST", "/api/v1/tenants/acme/agent-tokens", `{"ttl":"15m"}`,
			`{"id":"b1","tenant":"acme","created":"2025-01-02T03:04:05Z","expires":"2025-01-02T03:19:05Z","created_by":"user:alice","status":"unused","token":"opb_secret"}`,
			"token: opb_secret\n(shown only once"},
		{"bootstrap tokens list", []string{"tokens", "list", "--tenant", "acme"}, "", "GET", "/api/v1/tenants/acme/agent-tokens", "",
			`[{"id":"b1","tenant":"acme","created":"2025-01-02T03:04:05Z","expires":"2025-01-02T03:19:05Z","created_by":"user:alice","status":"redeemed","agent":"ag-1"}]`, "b1  redeemed  ag-1"},
		{"bootstrap token revoke", []string{"tokens", "revoke", "b1", "--tenant", "acme"}, "", "DELETE", "/api/v1/tenants/acme/agent-tokens/b1", "",
			`{"id":"b1","status":"revoked"}`, "bootstrap token b1 revoked"},
		{"agents list", []string{"agents", "list"}, "", "GET", "/api/v1/agents", "",
			`[{"id":"ag-1","tenant":"acme","host":"web-1","version":"0.1.0","fingerprint":"ff","enrolled":"2025-01-02T03:04:05Z","cert_expires":"2025-01-03T03:04:05Z","node":"","rtt_ms":0,"mode":"unknown","health":"disconnected"}]`,
			"ag-1  acme    web-1  0.1.0    -     -    unknown  -             disconnected"},
		{"agents list: unreported health and RTT are unknown", []string{"agents", "list"}, "", "GET", "/api/v1/agents", "",
			`[{"id":"ag-2","tenant":"acme","host":"web-2","version":"0.1.0","fingerprint":"ff","enrolled":"2025-01-02T03:04:05Z","cert_expires":"2025-01-03T03:04:05Z","node":"n1","mode":"unknown"}]`,
			"ag-2  acme    web-2  0.1.0    n1    -    unknown  -             unknown"},
		{"agents list: procfs mode and its reason", []string{"agents", "list"}, "", "GET", "/api/v1/agents", "",
			`[{"id":"ag-3","tenant":"acme","host":"web-3","version":"0.1.0","node":"n1","mode":"procfs","mode_reason":"no privilege: run as root or grant CAP_BPF and CAP_PERFMON"}]`,
			"n1    -    procfs  -"},
		{"agents list: the reason printed", []string{"agents", "list"}, "", "GET", "/api/v1/agents", "",
			`[{"id":"ag-3","tenant":"acme","host":"web-3","version":"0.1.0","node":"n1","mode":"procfs","mode_reason":"no privilege: run as root or grant CAP_BPF and CAP_PERFMON"}]`,
			"ag-3 (web-3) observes through procfs: no privilege: run as root or grant CAP_BPF and CAP_PERFMON"},
		{"agents list --json: instance_uid, null health and RTT", []string{"agents", "list", "--json"}, "", "GET", "/api/v1/agents", "",
			`[{"id":"ag-2","tenant":"acme","host":"web-2","instance_uid":"0123456789abcdef0123456789abcdef","node":"n1","mode":"unknown"}]`,
			`"instance_uid": "0123456789abcdef0123456789abcdef",
    "node": "n1",
    "rtt_ms": null,
    "mode": "unknown",
    "health": null,`},
		{"agents revoke in a tenant", []string{"agents", "revoke", "ag-1", "--tenant", "acme"}, "", "POST", "/api/v1/tenants/acme/agents/ag-1/revoke", "",
			`{"id":"ag-1","tenant":"acme","host":"web-1","revoked":true,"health":"revoked"}`, "agent ag-1 (web-1, tenant acme) revoked"},
		{"agents clear-flags", []string{"agents", "clear-flags", "ag-1"}, "", "POST", "/api/v1/agents/ag-1/clear-flags", "",
			`{"id":"ag-1","tenant":"acme","host":"web-1","health":"healthy"}`, "agent ag-1 (web-1, tenant acme): flags cleared"},
		{"region token", []string{"tokens", "api", "create", "--name", "ci", "--role", "region-admin", "--ttl", "720h"}, "", "POST", "/api/v1/tokens",
			`{"name":"ci","role":"region-admin","ttl":"720h"}`,
			`{"id":"k1","name":"ci","role":"region-admin","created":"2025-01-02T03:04:05Z","expires":"2025-02-01T03:04:05Z","created_by":"user:root","token":"opt_secret"}`,
			"token: opt_secret\n(shown only once"},
		{"tenant token", []string{"tokens", "api", "create", "--tenant", "acme", "--name", "ci", "--role", "viewer"}, "", "POST", "/api/v1/tenants/acme/tokens",
			`{"name":"ci","role":"viewer"}`,
			`{"id":"k2","name":"ci","role":"viewer","tenant":"acme","created":"2025-01-02T03:04:05Z","created_by":"user:alice","token":"opt_x"}`,
			`created API token k2 ("ci"): viewer in tenant acme, expires never`},
		{"region tokens", []string{"tokens", "api", "list"}, "", "GET", "/api/v1/tokens", "", `[]`, "ID  NAME"},
		{"tenant tokens", []string{"tokens", "api", "list", "--tenant", "acme"}, "", "GET", "/api/v1/tenants/acme/tokens", "", `[]`, "ID  NAME"},
		{"revoke a tenant token", []string{"tokens", "api", "revoke", "k2", "--tenant", "acme"}, "", "DELETE", "/api/v1/tenants/acme/tokens/k2", "",
			`{"id":"k2","status":"revoked"}`, "token k2 revoked"},
		{"revoke a region token", []string{"tokens", "api", "revoke", "k1"}, "", "DELETE", "/api/v1/tokens/k1", "",
			`{"id":"k1","status":"revoked"}`, "token k1 revoked"},
		{"breakglass request", []string{"breakglass", "request", "acme", "--reason", "INC-42 agent flapping", "--duration", "2h"}, "", "POST", "/api/v1/tenants/acme/breakglass",
			`{"reason":"INC-42 agent flapping","duration":"2h"}`,
			`{"id":"g1","tenant":"acme","requester":"user:root","reason":"INC-42 agent flapping","duration":"2h0m0s","created":"2025-01-02T03:04:05Z","approved":false,"active":false}`,
			"outpostctl breakglass approve acme g1"},
		{"breakglass list for region admins", []string{"breakglass", "list"}, "", "GET", "/api/v1/breakglass", "",
			`[{"id":"g1","tenant":"acme","requester":"user:root","reason":"INC-42","duration":"1h0m0s","created":"2025-01-02T03:04:05Z","approved":false,"active":false}]`, "pending"},
		{"breakglass list of a tenant", []string{"breakglass", "list", "acme"}, "", "GET", "/api/v1/tenants/acme/breakglass", "", `[]`, "ID  TENANT"},
		{"breakglass approve", []string{"breakglass", "approve", "acme", "g1"}, "", "POST", "/api/v1/tenants/acme/breakglass/g1/approve", "",
			`{"id":"g1","tenant":"acme","requester":"user:root","reason":"INC-42","duration":"1h0m0s","created":"2025-01-02T03:04:05Z","approved":true,"approved_by":"user:alice","expires":"2025-01-02T04:04:05Z","active":true}`,
			"user:root may reach tenant acme until 2025-01-02T04:04:05Z"},
		{"keys status mid-rotation", []string{"keys", "status"}, "", "GET", "/api/v1/keys", "",
			`{"node":"n1","key_id":"new","previous_key_id":"old","secrets":1,"on_previous":1}`, "run `outpostctl keys rotate`"},
		{"keys rotate", []string{"keys", "rotate"}, "", "POST", "/api/v1/keys/rotate", "",
			`{"node":"n1","key_id":"new","previous_key_id":"old","secrets":1,"on_previous":0,"rewrapped":1}`,
			"rotation complete on the stored secrets; once every node has restarted with the new key, remove previous_master_key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, seen := fakeNode(t, func(*http.Request) (int, string) {
				if tt.answer == "" {
					return http.StatusOK, "{}"
				}
				return http.StatusOK, tt.answer
			})
			stdout, stderr, err := runCLI(t, addr, tt.stdin, tt.args...)
			if err != nil {
				t.Fatalf("err = %v\nstderr: %s", err, stderr)
			}
			reqs := seen()
			if len(reqs) != 1 {
				t.Fatalf("sent %d requests, want 1: %v", len(reqs), reqs)
			}
			if got := reqs[0]; got.method != tt.method || got.uri != tt.uri || got.body != tt.body {
				t.Errorf("sent %s %s %s\nwant %s %s %s", got.method, got.uri, got.body, tt.method, tt.uri, tt.body)
			}
			if !strings.Contains(stdout, tt.want) {
				t.Errorf("stdout = %q, want it to contain %q", stdout, tt.want)
			}
		})
	}
}

// TestJSONIsTheAnswer: --json prints the API's JSON and keeps notes off
// stdout, so a script can decode stdout.
func TestJSONIsTheAnswer(t *testing.T) {
	const answer = `{"id":"k1","name":"ci","role":"region-admin","created":"2025-01-02T03:04:05Z","created_by":"user:root","token":"opt_secret"}`
	addr, _ := fakeNode(t, func(*http.Request) (int, string) { return http.StatusCreated, answer })
	stdout, stderr, err := runCLI(t, addr, "", "tokens", "api", "create", "--name", "ci", "--role", "region-admin", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout, "{") || !strings.Contains(stdout, `"token": "opt_secret"`) || strings.Contains(stdout, "shown only once") {
		t.Errorf("stdout = %q, want the API's JSON alone", stdout)
	}
	if !strings.Contains(stderr, "shown only once") {
		t.Errorf("stderr = %q, want the shown-once note", stderr)
	}
}

// TestRefusalIsExit1: an API refusal is a failure (exit 1), not a usage
// error, and carries the server's error and hint.
func TestRefusalIsExit1(t *testing.T) {
	addr, _ := fakeNode(t, func(*http.Request) (int, string) {
		return http.StatusForbidden, `{"error":"this needs a region admin","hint":"tenant work is under /api/v1/tenants/{tenant}"}`
	})
	_, _, err := runCLI(t, addr, "", "users", "list")
	if err == nil || errors.Is(err, errUsage) {
		t.Fatalf("err = %v, want a refusal", err)
	}
	for _, want := range []string{"this needs a region admin (HTTP 403)", "hint: tenant work is under"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to contain %q", err, want)
		}
	}
}

// TestTenantAuditPages: the audit command reads page after page until the
// node has no more, and prints one line per record.
func TestTenantAuditPages(t *testing.T) {
	pages := map[string]string{
		"/api/v1/tenants/acme/audit?from=0": `{"entries":[` +
			`{"seq":3,"data":"` + b64(`{"seq":3,"raft_index":9,"time":"2025-01-02T03:04:05Z","node":"n1","actor":"user:alice","tenant":"t1","action":"tenant.member.set","entity":"member/bob"}`) + `"},` +
			`{"seq":7,"data":"` + b64(`{"seq":7,"raft_index":12,"time":"2025-01-02T03:05:00Z","node":"n1","actor":"token:k2","tenant":"t1","action":"tenant.kv.put","entity":"kv/app"}`) + `"}` +
			`],"size":4611686018427387904}`,
		"/api/v1/tenants/acme/audit?from=8": `{"entries":[],"size":4611686018427387904}`,
	}
	addr, seen := fakeNode(t, func(r *http.Request) (int, string) {
		if p, ok := pages[r.RequestURI]; ok {
			return http.StatusOK, p
		}
		return http.StatusNotFound, `{"error":"unexpected request"}`
	})
	stdout, _, err := runCLI(t, addr, "", "tenants", "audit", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(seen()); n != 2 {
		t.Errorf("sent %d requests, want 2", n)
	}
	for _, want := range []string{
		"3    2025-01-02T03:04:05Z  user:alice  tenant.member.set  member/bob",
		"7    2025-01-02T03:05:00Z  token:k2    tenant.kv.put      kv/app",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout = %q, want a line %q", stdout, want)
		}
	}
}

func b64(s string) string {
	return base64.StdEncoding.EncodeToString([]byte(s))
}
