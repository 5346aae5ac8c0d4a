package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/dev"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/ui"
)

func jsq(s string) string { b, _ := json.Marshal(s); return string(b) }

// adminSet fills a field as typing would leave it (value, input and
// change events).
func adminSet(t *testing.T, ctx context.Context, id, value string) {
	t.Helper()
	waitFor(t, ctx, "field #"+id, `document.getElementById(`+jsq(id)+`) !== null`)
	evalJS[bool](t, ctx, `(() => { const e = document.getElementById(`+jsq(id)+`); e.value = `+jsq(value)+`;
		e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`)
}

// adminClick clicks what sel selects, as a person does.
func adminClick(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	if err := chromedpClick(ctx, sel); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("main").outerHTML`))
		t.Fatalf("click %s: %v\n%s", sel, err, html)
	}
}

// adminSubmit submits the section's form with its button.
func adminSubmit(t *testing.T, ctx context.Context) {
	t.Helper()
	adminClick(t, ctx, `#main form button[type="submit"]`)
}

// adminConfirm answers yes in the confirmation dialog.
func adminConfirm(t *testing.T, ctx context.Context) {
	t.Helper()
	waitFor(t, ctx, "the confirmation dialog", `document.querySelector("dialog.confirm[open]") !== null`)
	adminClick(t, ctx, `dialog.confirm[open] #confirm-yes`)
	waitFor(t, ctx, "the dialog closed", `document.querySelector("dialog.confirm") === null`)
}

// adminSection opens a section of the Admin page and waits until it is drawn.
func adminSection(t *testing.T, ctx context.Context, base, query, title string) {
	t.Helper()
	visit(t, ctx, base, "#/admin?"+query)
	waitFor(t, ctx, "admin section "+title, `(() => { const h = document.getElementById("admin-section"), b = document.querySelector(".admin-body");
		return h !== null && h.textContent.startsWith(`+jsq(title)+`) && b !== null && !b.textContent.includes("Loading…"); })()`)
}

// adminSaid waits for the section's success message to contain want.
func adminSaid(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	waitFor(t, ctx, "the message "+want, `(document.getElementById("admin-ok")?.textContent ?? "").includes(`+jsq(want)+`)`)
}

func adminLogout(t *testing.T, ctx context.Context) {
	t.Helper()
	evalJS[bool](t, ctx, `document.getElementById("logout").click(); true`)
	waitFor(t, ctx, "logged out", `location.hash === "#/login"`)
}

// adminProblems is the page's problems less the refusals the test asked
// for (the browser logs every 4xx answer as an error).
func adminProblems(problems func() []string, expected ...string) []string {
	var out []string
next:
	for _, p := range problems() {
		for _, e := range expected {
			if strings.Contains(p, e) {
				continue next
			}
		}
		out = append(out, p)
	}
	return out
}

// TestAdminRegionInBrowser: the region admin creates an account (its
// generated password shown once, gone when the section is left), a
// tenant with that account as its Admin (a second create is refused with
// the server's words), creates an API token that works and revokes it,
// and requests break-glass access to the new tenant; the tenant's Admin
// approves it on its own Admin page; the region admin then sees the
// break-glass banner with the tenant and the expiry.
func TestAdminRegionInBrowser(t *testing.T) {
	ctx, problems := browser(t)
	d, err := dev.Start(context.Background(), dev.Options{HTTP: "127.0.0.1:0", Agents: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	base := d.APIURL()
	adminPW := secret(t, d.PasswordFile())
	login(t, ctx, base, "admin", adminPW)

	// An account, with a generated password shown once.
	adminSection(t, ctx, base, "section=users", "Users")
	adminSet(t, ctx, "user-name", "alice")
	adminSubmit(t, ctx)
	adminSaid(t, ctx, "Account alice created")
	waitFor(t, ctx, "the generated password", `(document.getElementById("user-password")?.textContent || "").length >= 12`)
	alicePW := evalJS[string](t, ctx, `document.getElementById("user-password").textContent`)
	checkA11y(t, ctx, "admin users, a password shown")
	shot(t, ctx, "admin-users")
	waitFor(t, ctx, "alice listed", `(document.getElementById("users-table")?.textContent ?? "").includes("alice")`)

	// A tenant with alice as its first Admin; leaving the users section
	// dropped the password.
	adminSection(t, ctx, base, "section=tenants", "Tenants")
	if gone := evalJS[bool](t, ctx, `document.getElementById("user-password") === null && !document.body.textContent.includes(`+jsq(alicePW)+`)`); !gone {
		t.Error("the one-time password is still in the page after leaving the section")
	}
	// Client-side checks first: a bad name is refused before any request.
	adminSet(t, ctx, "tenant-name", "Acme!")
	adminSet(t, ctx, "tenant-admin", "alice")
	adminSubmit(t, ctx)
	waitFor(t, ctx, "the tenant name refused in the form", `(document.getElementById("tenant-name-err")?.textContent ?? "").includes("lower-case") && document.getElementById("tenant-name").getAttribute("aria-invalid") === "true"`)
	adminSet(t, ctx, "tenant-name", "acme")
	adminSubmit(t, ctx)
	adminSaid(t, ctx, "Tenant acme created, with alice as its first Admin")
	waitFor(t, ctx, "acme listed with alice", `[...document.querySelectorAll("#tenants-table tbody tr")].some(r => r.cells[0].textContent === "acme" && r.cells[3].textContent === "alice")`)
	// The server is the judge: its refusal and hint, verbatim.
	adminSet(t, ctx, "tenant-name", "acme")
	adminSet(t, ctx, "tenant-admin", "alice")
	adminSubmit(t, ctx)
	waitFor(t, ctx, "the server's refusal", `(document.getElementById("admin-error")?.textContent ?? "") === 'tenant "acme" already exists (choose another name)'`)

	// An API token that works until it is revoked.
	adminSection(t, ctx, base, "section=tokens", "API tokens")
	adminSet(t, ctx, "token-name", "ci")
	adminSet(t, ctx, "token-ttl", "720h")
	adminSubmit(t, ctx)
	adminSaid(t, ctx, "API token ci")
	waitFor(t, ctx, "the token shown", `(document.getElementById("token-secret")?.textContent || "").length > 10`)
	tok := evalJS[string](t, ctx, `document.getElementById("token-secret").textContent`)
	bg := context.Background()
	var me api.WhoAmI
	if err := api.NewClient(base, tok).Do(bg, "GET", "/api/v1/whoami", nil, &me); err != nil || !me.RegionAdmin {
		t.Fatalf("the token the page showed does not work: %v %+v", err, me)
	}
	// Copy, then hide: the token leaves the page.
	adminClick(t, ctx, `button[aria-label="Copy API token ci"]`)
	waitFor(t, ctx, "copied or selected", `/Copied|Selected/.test((document.querySelector(".secret")?.textContent ?? ""))`)
	adminClick(t, ctx, `#main .secret button:not(.copy)`)
	waitFor(t, ctx, "the token hidden", `document.getElementById("token-secret") === null && !document.body.textContent.includes(`+jsq(tok)+`)`)
	adminClick(t, ctx, `button[aria-label="Revoke token ci"]`)
	adminConfirm(t, ctx)
	adminSaid(t, ctx, "revoked")
	waitFor(t, ctx, "the token gone from the list", `!(document.getElementById("main")?.textContent ?? "").includes("Revoke token ci") && document.querySelector('button[aria-label="Revoke token ci"]') === null`)
	if err := api.NewClient(base, tok).Do(bg, "GET", "/api/v1/whoami", nil, nil); api.StatusOf(err) != 401 {
		t.Errorf("the revoked token still answers: %v", err)
	}

	// Break-glass: request read access to acme.
	adminSection(t, ctx, base, "section=breakglass", "Break-glass")
	adminSet(t, ctx, "bg-tenant", "acme")
	adminSet(t, ctx, "bg-reason", "INC-7: acme's agents flapping")
	adminSet(t, ctx, "bg-duration", "2h")
	adminSubmit(t, ctx)
	adminSaid(t, ctx, "an Admin of acme must approve it")
	waitFor(t, ctx, "the pending grant listed", `[...document.querySelectorAll("#grants-table tbody tr")].some(r => r.textContent.includes("acme") && r.textContent.includes("pending approval"))`)
	adminLogout(t, ctx)

	// alice, acme's Admin, approves it.
	login(t, ctx, base, "alice", alicePW)
	if links := navLinks(t, ctx); !strings.Contains(strings.Join(links, " "), "#/admin") {
		t.Fatalf("a tenant Admin's nav has no Admin: %v", links)
	}
	adminSection(t, ctx, base, "tenant=acme&section=breakglass", "Break-glass requests")
	waitFor(t, ctx, "the request listed", `(document.getElementById("tenant-grants-table")?.textContent ?? "").includes("INC-7")`)
	adminClick(t, ctx, `button[aria-label^="Approve grant"]`)
	adminConfirm(t, ctx)
	adminSaid(t, ctx, "approved: user:admin reads acme's data until")
	waitFor(t, ctx, "the grant active", `(document.getElementById("tenant-grants-table")?.textContent ?? "").includes("active until")`)
	checkA11y(t, ctx, "admin tenant break-glass")
	adminLogout(t, ctx)

	// The region admin sees the banner, with the tenant and the expiry.
	login(t, ctx, base, "admin", adminPW)
	adminSection(t, ctx, base, "section=breakglass", "Break-glass")
	waitFor(t, ctx, "the grant active", `[...document.querySelectorAll("#grants-table tbody tr")].some(r => r.textContent.includes("acme") && r.textContent.includes("active until"))`)
	waitFor(t, ctx, "the break-glass banner", `(() => { const b = document.getElementById("breakglass"); return !b.hidden && b.textContent.includes("tenant acme until") && /left/.test(b.textContent); })()`)
	checkA11y(t, ctx, "admin")
	shot(t, ctx, "admin")
	if p := adminProblems(problems, "status of 409"); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}

// adminShellWords splits a command line as a POSIX shell would, for
// the quoting the UI uses; anything needing more of a shell (expansions,
// globs, operators) is an error, so the line runs here as it would there.
func adminShellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				words, in = append(words, cur.String()), false
				cur.Reset()
			}
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(line[i+1 : i+1+j])
			i, in = i+1+j, true
		case c == '"':
			in = true
			for i++; i < len(line) && line[i] != '"'; i++ {
				switch {
				case line[i] == '\\' && i+1 < len(line) && strings.IndexByte("$`\"\\", line[i+1]) >= 0:
					i++
				case line[i] == '$' || line[i] == '`':
					return nil, fmt.Errorf("an expansion (%q) in double quotes", line[i])
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, errors.New("unterminated double quote")
			}
		case c == '\\':
			if i+1 >= len(line) {
				return nil, errors.New("a trailing backslash")
			}
			i++
			cur.WriteByte(line[i])
			in = true
		case strings.IndexByte("$`;|&<>()*?[]{}~#\n\r", c) >= 0:
			return nil, fmt.Errorf("%q needs a shell", c)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

func TestAdminShellWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`A=b x --s 'a b' "c\"d" e\ f`, []string{"A=b", "x", "--s", "a b", `c"d`, "e f"}},
		{`x 'it'\''s'`, []string{"x", "it's"}},
	} {
		got, err := adminShellWords(tc.in)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`x $HOME`, `x URL[,URL…]`, `x; y`, `x 'a`} {
		if _, err := adminShellWords(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestAdminBootstrapTokenEnrollsAgent: the dev tenant's Admin creates a
// bootstrap token on the Admin page; the outpost-agent line the page
// shows, run exactly as shown (a freshly built outpost-agent on PATH),
// enrolls an agent that attaches to the region; the token is then listed
// as redeemed, and leaving the section dropped the line. An unused token
// is revoked from the page.
func TestAdminBootstrapTokenEnrollsAgent(t *testing.T) {
	bin := t.TempDir()
	goTool, lookErr := exec.LookPath("go")
	var built error
	var wg sync.WaitGroup
	if _, err := exec.LookPath("chromium"); err == nil && ui.Built() && lookErr == nil {
		// Built while the region starts.
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(goTool, "build", "-o", filepath.Join(bin, "outpost-agent"), "github.com/outpost-mesh/outpost/cmd/outpost-agent").CombinedOutput()
			if err != nil {
				built = fmt.Errorf("go build outpost-agent: %v\n%s", err, out)
			}
		}()
		t.Cleanup(wg.Wait)
	}
	ctx, problems := browser(t)
	if lookErr != nil {
		t.Skip("the go tool is not on PATH: this test builds outpost-agent")
	}
	d, err := dev.Start(context.Background(), dev.Options{HTTP: "127.0.0.1:0", Agents: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	base := d.APIURL()
	devPW := secret(t, d.DevPasswordFile())
	login(t, ctx, base, "dev", devPW)

	adminSection(t, ctx, base, "tenant=dev&section=agent-tokens", "Bootstrap tokens")
	state := filepath.Join(t.TempDir(), "agent state")
	adminSet(t, ctx, "agent-state", state)
	adminSet(t, ctx, "agent-host", "admin-test-agent")
	adminSet(t, ctx, "agent-mode", "procfs")
	adminSubmit(t, ctx)
	adminSaid(t, ctx, "created for tenant dev")
	waitFor(t, ctx, "the outpost-agent line", `(document.getElementById("agent-command")?.textContent || "").includes("outpost-agent")`)
	line := evalJS[string](t, ctx, `document.getElementById("agent-command").textContent`)
	// The line outpostctl tokens create prints, with the options chosen.
	if !regexp.MustCompile(`^OUTPOST_AGENT_TOKEN=\S+ outpost-agent --servers https://\S+ --ca-pin sha256:\S+ --state '[^']+' --host admin-test-agent --mode procfs$`).MatchString(line) {
		t.Fatalf("the line: %s", line)
	}
	checkA11y(t, ctx, "admin bootstrap token shown")
	shot(t, ctx, "admin-bootstrap-token")

	words, err := adminShellWords(line)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	var env []string
	for len(words) > 0 && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(words[0]) {
		env, words = append(env, words[0]), words[1:]
	}
	wg.Wait()
	if built != nil {
		t.Fatal(built)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd := exec.Command(words[0], words[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("running %s: %v", line, err)
	}
	if cmd.Path != filepath.Join(bin, "outpost-agent") {
		t.Errorf("ran %s, not the outpost-agent just built", cmd.Path)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			return fmt.Errorf("outpost-agent did not stop on SIGINT: %v", <-exited)
		}
	}
	t.Cleanup(func() { _ = stop() })

	// The agent enrolls and attaches: the tenant's agents list shows it.
	owner := api.NewClient(base, "")
	bg := context.Background()
	if err := owner.Login(bg, "dev", devPW); err != nil {
		t.Fatal(err)
	}
	var agent api.Agent
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		var as []api.Agent
		if err := owner.Do(bg, "GET", "/api/v1/tenants/dev/agents", nil, &as); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, a := range as {
			if a.Host == "admin-test-agent" {
				agent, found = a, true
			}
		}
		if found && agent.Node != "" {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("outpost-agent exited: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent is not attached (%+v)\n%s", agent, stderr.String())
		}
	}
	t.Logf("agent %s enrolled and attached to %s", agent.ID, agent.Node)
	if _, err := os.Stat(filepath.Join(state, "state.json")); err != nil {
		t.Errorf("the agent's state is not where the line said: %v", err)
	}

	// Back on the page: the token is redeemed by that agent, and the line
	// (the token in it) is gone.
	adminSection(t, ctx, base, "tenant=dev&section=members", "Members and roles")
	adminSection(t, ctx, base, "tenant=dev&section=agent-tokens", "Bootstrap tokens")
	if gone := evalJS[bool](t, ctx, `document.getElementById("agent-command") === null && !document.body.textContent.includes("OUTPOST_AGENT_TOKEN")`); !gone {
		t.Error("the outpost-agent line is still in the page after leaving the section")
	}
	waitFor(t, ctx, "the token redeemed by the agent", `[...document.querySelectorAll("#agent-tokens-table tbody tr")].some(r => r.textContent.includes("redeemed") && r.textContent.includes(`+jsq(agent.ID)+`))`)

	// An unused token is revoked from the page.
	adminSubmit(t, ctx)
	adminSaid(t, ctx, "created for tenant dev")
	adminClick(t, ctx, `button[aria-label^="Revoke bootstrap token"]`)
	adminConfirm(t, ctx)
	adminSaid(t, ctx, "revoked")
	waitFor(t, ctx, "the token listed revoked", `[...document.querySelectorAll("#agent-tokens-table tbody tr")].some(r => r.cells[1].textContent === "revoked")`)

	if err := stop(); err != nil {
		t.Errorf("stopping outpost-agent: %v\n%s", err, stderr.String())
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}

// TestAdminPeersAndLinks: the region admin adds a peer region (its CA
// made here), refused first in the form for a short secret; the dev
// tenant's Admin links the tenant to it and is given the link id for
// the other side; the link and then the peer are deleted from the page.
func TestAdminPeersAndLinks(t *testing.T) {
	ctx, problems := browser(t)
	d, err := dev.Start(context.Background(), dev.Options{HTTP: "127.0.0.1:0", Agents: 1, Federation: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	base := d.APIURL()
	peerCA, err := pki.NewCA("eu-west")
	if err != nil {
		t.Fatal(err)
	}
	login(t, ctx, base, "admin", secret(t, d.PasswordFile()))
	adminSection(t, ctx, base, "section=peers", "Peers")
	adminSet(t, ctx, "peer-name", "eu-west")
	adminSet(t, ctx, "peer-addr", "127.0.0.1:9, 127.0.0.2:9")
	adminSet(t, ctx, "peer-ca", string(peerCA.CertPEM()))
	adminSet(t, ctx, "peer-secret", "too short")
	adminSubmit(t, ctx)
	waitFor(t, ctx, "the short secret refused in the form", `(document.getElementById("peer-secret-err")?.textContent ?? "").includes("at least 32")`)
	adminSet(t, ctx, "peer-secret", strings.Repeat("s3cret-", 6))
	adminSubmit(t, ctx)
	adminSaid(t, ctx, "Peer eu-west added")
	waitFor(t, ctx, "eu-west listed", `[...document.querySelectorAll("#peers-admin-table tbody tr")].some(r => r.cells[0].textContent === "eu-west" && r.textContent.includes(`+jsq(peerCA.Pin())+`))`)
	if v := evalJS[string](t, ctx, `document.getElementById("peer-secret").value`); v != "" {
		t.Error("the shared secret stays in the form after the peer was added")
	}
	checkA11y(t, ctx, "admin peers")
	shot(t, ctx, "admin-peers")
	adminLogout(t, ctx)

	login(t, ctx, base, "dev", secret(t, d.DevPasswordFile()))
	adminSection(t, ctx, base, "tenant=dev&section=links", "Links")
	adminSet(t, ctx, "link-peer", "eu-west")
	adminSubmit(t, ctx)
	adminSaid(t, ctx, "to eu-west created")
	waitFor(t, ctx, "the link id to give the peer", `/^lnk-[a-z2-7]+$/.test(document.getElementById("link-id")?.textContent || "")`)
	linkID := evalJS[string](t, ctx, `document.getElementById("link-id").textContent`)
	waitFor(t, ctx, "the link listed", `(document.getElementById("links-table")?.textContent ?? "").includes(`+jsq(linkID)+`)`)
	checkA11y(t, ctx, "admin links")
	shot(t, ctx, "admin-links")
	adminClick(t, ctx, fmt.Sprintf(`button[aria-label="Delete link %s to eu-west"]`, linkID))
	adminConfirm(t, ctx)
	adminSaid(t, ctx, "Link "+linkID+" to eu-west deleted")
	waitFor(t, ctx, "no links left", `document.getElementById("links-table") === null && (document.querySelector(".admin-body")?.textContent ?? "").includes("No links.")`)
	adminLogout(t, ctx)

	login(t, ctx, base, "admin", secret(t, d.PasswordFile()))
	adminSection(t, ctx, base, "section=peers", "Peers")
	adminClick(t, ctx, `button[aria-label="Remove peer eu-west"]`)
	waitFor(t, ctx, "the confirmation dialog", `document.querySelector("dialog.confirm[open]") !== null`)
	checkA11y(t, ctx, "admin confirmation dialog")
	adminConfirm(t, ctx)
	adminSaid(t, ctx, "Peer eu-west removed")
	waitFor(t, ctx, "no peers left", `document.getElementById("peers-admin-table") === null && (document.querySelector(".admin-body")?.textContent ?? "").includes("No peers.")`)
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}

// TestAdminMembersSettingsKeys: the dev tenant's Admin invites an
// account and changes the invitation's role; the account, which has no
// role yet, is told what role the page needs and accepts the invitation
// there; its Admin then changes its role and removes it. The tenant
// turns break-glass auto-approve on (confirmed), so the region admin's
// request is active at once, with the banner; the region admin rotates
// the master key (confirmed).
func TestAdminMembersSettingsKeys(t *testing.T) {
	ctx, problems := browser(t)
	d, err := dev.Start(context.Background(), dev.Options{HTTP: "127.0.0.1:0", Agents: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	base := d.APIURL()
	bg := context.Background()
	var bob api.User
	if err := api.NewClient(base, secret(t, d.TokenFile())).Do(bg, "POST", "/api/v1/users", api.UserCreate{Name: "bob"}, &bob); err != nil {
		t.Fatal(err)
	}
	devPW := secret(t, d.DevPasswordFile())

	login(t, ctx, base, "dev", devPW)
	adminSection(t, ctx, base, "tenant=dev&section=members", "Members and roles")
	adminSet(t, ctx, "member-user", "bob")
	adminSet(t, ctx, "member-role", "operator")
	adminSubmit(t, ctx)
	adminSaid(t, ctx, "Invitation sent to bob as operator")
	waitFor(t, ctx, "bob invited", `[...document.querySelectorAll("#members-table tbody tr")].some(r => r.cells[0].textContent === "bob" && r.textContent.includes("invited by dev"))`)
	evalJS[bool](t, ctx, `(() => { const s = document.querySelector('select[aria-label="Role of bob"]'); s.value = "viewer"; s.dispatchEvent(new Event("change")); return true; })()`)
	adminClick(t, ctx, `button[aria-label="Change role of bob"]`)
	adminSaid(t, ctx, "The invitation of bob now offers the viewer role")
	checkA11y(t, ctx, "admin members")

	adminSection(t, ctx, base, "tenant=dev&section=settings", "Settings")
	adminClick(t, ctx, "#settings-auto")
	adminSet(t, ctx, "settings-probe-allow", "169.254.10.0/24")
	adminSubmit(t, ctx)
	adminConfirm(t, ctx)
	adminSaid(t, ctx, "break-glass auto-approve on, 1 probe range(s) allowed")
	adminLogout(t, ctx)

	// bob has no role: the page says what it needs, and offers the
	// invitation.
	login(t, ctx, base, "bob", bob.Password)
	if links := strings.Join(navLinks(t, ctx), " "); strings.Contains(links, "#/admin") {
		t.Errorf("an account without a role is offered Admin: %s", links)
	}
	visit(t, ctx, base, "#/admin")
	waitFor(t, ctx, "the role needed, and the invitation", `(document.getElementById("main")?.textContent ?? "").includes("you need its Admin role") && document.querySelector('button[aria-label="Accept the invitation to dev"]') !== null`)
	checkA11y(t, ctx, "admin without a role")
	adminClick(t, ctx, `button[aria-label="Accept the invitation to dev"]`)
	waitFor(t, ctx, "bob a viewer", `(document.getElementById("main")?.textContent ?? "").includes("Your roles: viewer of dev") && document.querySelector(".invitations") === null`)
	adminLogout(t, ctx)

	login(t, ctx, base, "dev", devPW)
	adminSection(t, ctx, base, "tenant=dev&section=members", "Members and roles")
	waitFor(t, ctx, "bob a member", `[...document.querySelectorAll("#members-table tbody tr")].some(r => r.cells[0].textContent === "bob" && r.cells[1].textContent === "viewer" && r.textContent.includes("member"))`)
	evalJS[bool](t, ctx, `(() => { const s = document.querySelector('select[aria-label="Role of bob"]'); s.value = "operator"; s.dispatchEvent(new Event("change")); return true; })()`)
	adminClick(t, ctx, `button[aria-label="Change role of bob"]`)
	adminSaid(t, ctx, "bob is now operator of dev")
	adminClick(t, ctx, `button[aria-label="Remove bob"]`)
	adminConfirm(t, ctx)
	adminSaid(t, ctx, "bob removed from dev")
	waitFor(t, ctx, "bob gone", `![...document.querySelectorAll("#members-table tbody tr")].some(r => r.cells[0].textContent === "bob")`)
	adminLogout(t, ctx)

	login(t, ctx, base, "admin", secret(t, d.PasswordFile()))
	adminSection(t, ctx, base, "section=keys", "Keys")
	adminClick(t, ctx, `button[aria-label^="Rotate"]`)
	adminConfirm(t, ctx)
	adminSaid(t, ctx, "Re-wrapped 0 secret(s); 0 still on the previous key")
	adminSection(t, ctx, base, "section=breakglass", "Break-glass")
	adminSet(t, ctx, "bg-tenant", "dev")
	adminSet(t, ctx, "bg-reason", "INC-9: checking the dev agents")
	adminSubmit(t, ctx)
	adminSaid(t, ctx, "approves automatically")
	waitFor(t, ctx, "the break-glass banner", `(() => { const b = document.getElementById("breakglass"); return !b.hidden && b.textContent.includes("tenant dev until"); })()`)
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}
