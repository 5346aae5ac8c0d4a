package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// outpostctl runs the real outpostctl against addr with token and stdin,
// returning its exit code, standard output and standard error.
func outpostctl(t *testing.T, bin, addr, token, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin+"/outpostctl", args...)
	cmd.Env = append(os.Environ(), "OUTPOST_ADDR="+addr, "OUTPOST_TOKEN="+token)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb syncBuf
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// TestAgentBinary runs what an operator runs: three `outpost serve`
// nodes, a tenant admin who logs in with `outpostctl login` and makes a
// bootstrap token, and the real `outpost-agent` process enrolling with
// it and the CA pin. The agent attaches, applies a config dispatch, fails
// over when its node is SIGKILLed and applies the next dispatch there,
// comes back from its state directory alone after a restart, and is
// refused after `outpostctl agents revoke`; SIGTERM ends it cleanly.
func TestAgentBinary(t *testing.T) {
	sr := newServedRegion(t, 3)
	for _, nd := range sr.nodes {
		sr.start(t, nd)
	}
	c := &apiClient{http: &http.Client{Timeout: 5 * time.Second}}
	var admin string
	waitFor(t, 60*time.Second, "the first admin token", func() bool {
		b, err := os.ReadFile(sr.tokenFile)
		admin = strings.TrimSpace(string(b))
		return err == nil && admin != ""
	})
	c.token = admin
	addr := sr.leader(t, c).api
	bin := sr.bin
	ctl := func(token, stdin string, args ...string) (string, string) {
		t.Helper()
		var code int
		var out, errs string
		// A node that has not applied the entry naming the token yet
		// answers 401 for a moment.
		for range 50 {
			if code, out, errs = outpostctl(t, bin, addr, token, stdin, args...); code == 0 || !strings.Contains(errs, "HTTP 401") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if code != 0 {
			t.Fatalf("outpostctl %v: exit %d\n%s%s", args, code, out, errs)
		}
		return out, errs
	}
	ctl(admin, "alice-password-1234\n", "users", "create", "alice", "--password-stdin")
	ctl(admin, "", "tenants", "create", "acme", "--admin", "alice")

	// Alice logs in: a token with her role in acme, for outpostctl.
	out, errs := ctl("", "alice-password-1234\n", "login", "alice", "--password-stdin", "--tenant", "acme")
	alice := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "export OUTPOST_TOKEN="))
	if !strings.HasPrefix(alice, "opt_") || !strings.Contains(errs, "admin in tenant acme") {
		t.Fatalf("login printed %q, %q", out, errs)
	}
	if code, _, errs := outpostctl(t, bin, addr, "", "wrong-password\n", "login", "alice", "--password-stdin", "--tenant", "acme"); code != 1 || !strings.Contains(errs, "wrong user name or password") {
		t.Fatalf("login with a wrong password: exit %d %s", code, errs)
	}
	if who, _ := ctl(alice, "", "whoami"); !strings.Contains(who, "acme") {
		t.Fatalf("whoami with the login token: %s", who)
	}

	// Alice invites bob; bob joins by accepting with his password.
	ctl(admin, "bob-password-12345\n", "users", "create", "bob", "--password-stdin")
	if out, _ := ctl(alice, "", "tenants", "members", "set", "acme", "bob", "--role", "admin"); !strings.Contains(out, "invitations accept acme bob") {
		t.Fatalf("members set for a non-member: %s", out)
	}
	if code, _, errs := outpostctl(t, bin, addr, "", "bob-password-12345\n", "login", "bob", "--password-stdin", "--tenant", "acme"); code != 1 || !strings.Contains(errs, "invited to acme") {
		t.Fatalf("login of an invited account: exit %d %s, want 1 naming the invitation", code, errs)
	}
	if out, _ := ctl("", "bob-password-12345\n", "invitations", "list", "bob", "--password-stdin"); !strings.Contains(out, "acme") || !strings.Contains(out, "alice") {
		t.Fatalf("invitations list: %s", out)
	}
	ctl("", "bob-password-12345\n", "invitations", "accept", "acme", "bob", "--password-stdin")
	if out, _ := ctl(alice, "", "tenants", "members", "list", "acme"); !regexp.MustCompile(`bob\s+admin\s+member`).MatchString(out) {
		t.Fatalf("members after bob accepted: %s", out)
	}
	ctl("", "bob-password-12345\n", "login", "bob", "--password-stdin", "--tenant", "acme")

	out, _ = ctl(alice, "", "tokens", "create", "--tenant", "acme", "--ttl", "15m", "--json")
	var bt struct {
		Token   string   `json:"token"`
		CAPin   string   `json:"ca_pin"`
		Servers []string `json:"servers"`
	}
	if err := json.Unmarshal([]byte(out), &bt); err != nil || len(bt.Servers) != 3 || bt.CAPin == "" {
		t.Fatalf("tokens create --json: %v %s", err, out)
	}
	state := t.TempDir()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(bt.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	agentArgs := []string{"--state", state, "--host", "e2e-host", "--heartbeat", "1s", "--log-level", "debug"}
	ag := start(t, bin+"/outpost-agent", append(agentArgs, "--servers", strings.Join(bt.Servers, ","), "--token-file", tokenFile, "--ca-pin", bt.CAPin)...)

	list := func() []api.Agent {
		t.Helper()
		out, _ := ctl(alice, "", "agents", "list", "--tenant", "acme", "--json")
		var as []api.Agent
		if err := json.Unmarshal([]byte(out), &as); err != nil {
			t.Fatalf("agents list --json: %v %s", err, out)
		}
		return as
	}
	var me api.Agent
	waitFor(t, 30*time.Second, "the agent process enrolled and attached", func() bool {
		as := list()
		if len(as) == 1 && as[0].Node != "" && as[0].Health == "healthy" {
			me = as[0]
			return true
		}
		return false
	})
	if me.Host != "e2e-host" || me.Tenant != "acme" || me.CertExpires.IsZero() {
		t.Fatalf("agent as listed: %+v", me)
	}
	if fi, err := os.Stat(filepath.Join(state, "agent.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent key: %v %v", fi, err)
	}
	applied := func(id string) func() bool {
		return func() bool {
			for _, a := range list() {
				if a.ID == me.ID && a.Config != nil && a.Config.Dispatch == id && a.Config.Status == "applied" {
					return true
				}
			}
			return false
		}
	}
	ctl(alice, "", "dispatches", "create", "--tenant", "acme", "--kind", "config", "--id", "cfg-e2e-1", "--payload", `{"export_interval":"10s"}`)
	waitFor(t, 20*time.Second, "the agent applied cfg-e2e-1", applied("cfg-e2e-1"))

	// SIGKILL the agent's node: it fails over and the next dispatch,
	// sent through a live node, reaches it there.
	var dead *servedNode
	for _, nd := range sr.nodes {
		if nd.id == me.Node {
			dead = nd
		}
	}
	dead.p.signal(syscall.SIGKILL)
	dead.p.wait(t, 10*time.Second)
	dead.p = nil
	for _, nd := range sr.nodes {
		if nd.p != nil {
			addr = nd.api
		}
	}
	waitFor(t, 30*time.Second, "the agent attached to a live node", func() bool {
		for _, a := range list() {
			if a.ID == me.ID && a.Node != "" && a.Node != dead.id && a.Health == "healthy" {
				return true
			}
		}
		return false
	})
	ctl(alice, "", "dispatches", "create", "--tenant", "acme", "--kind", "config", "--id", "cfg-e2e-2", "--payload", `{"export_interval":"20s"}`)
	waitFor(t, 30*time.Second, "the agent applied cfg-e2e-2 after the failover", applied("cfg-e2e-2"))

	// SIGTERM ends the agent cleanly; it comes back from its state alone.
	ag.signal(syscall.SIGTERM)
	if code := ag.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("the agent exited %d on SIGTERM:\n%s", code, ag.out.String())
	}
	waitFor(t, 15*time.Second, "the region saw the agent go", func() bool {
		as := list()
		return len(as) == 1 && as[0].Node == "" && as[0].Health != "healthy"
	})
	ag = start(t, bin+"/outpost-agent", agentArgs...)
	waitFor(t, 30*time.Second, "the restarted agent attached with its stored identity", func() bool {
		as := list()
		return len(as) == 1 && as[0].ID == me.ID && as[0].Node != "" && as[0].Health == "healthy"
	})

	// Revoked: its link is closed and it stays out.
	ctl(alice, "", "agents", "revoke", me.ID, "--tenant", "acme")
	waitFor(t, 10*time.Second, "the revoked agent said it was refused and what to do", func() bool {
		out := ag.out.String()
		return strings.Contains(out, "the node refuses this agent's certificate") && strings.Contains(out, "revoked")
	})
	time.Sleep(2 * time.Second)
	if as := list(); len(as) != 1 || as[0].Health != "revoked" {
		t.Fatalf("after revoking: %+v", as)
	}
	ag.signal(syscall.SIGTERM)
	if code := ag.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("the revoked agent exited %d on SIGTERM:\n%s", code, ag.out.String())
	}
}
