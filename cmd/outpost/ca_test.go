package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/testcluster/nodes"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/keys"
)

var (
	pinLine = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	hexRun  = regexp.MustCompile(`[0-9a-f]{32,}`) // any SHA-256 in hex
)

// TestCAPinOneFingerprint: the pin `outpost ca create` prints is the one
// `outpostctl tokens create` prints for the agents of a node that runs
// with that CA (one function, pki.CA.Pin, makes both), and it is the only
// fingerprint ca create prints.
//
//	go test -run TestCAPinOneFingerprint ./cmd/outpost
func TestCAPinOneFingerprint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds outpostctl and starts a node; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go tool on PATH to build outpostctl")
	}
	dir := t.TempDir()
	ctl := filepath.Join(dir, "outpostctl")
	if out, err := exec.Command(goTool, "build", "-o", ctl, "github.com/outpost-mesh/outpost/cmd/outpostctl").CombinedOutput(); err != nil {
		t.Fatalf("building outpostctl: %v\n%s", err, out)
	}
	mk, err := keys.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	mkFile, caDir := filepath.Join(dir, "master.key"), filepath.Join(dir, "ca")
	if err := os.WriteFile(mkFile, []byte(mk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runOutpost(t, "ca", "create", "--region", nodes.Region, "--out", caDir, "--master-key-file", mkFile)
	if err != nil {
		t.Fatal(err)
	}
	pins := pinLine.FindAllString(out, -1)
	if len(pins) != 1 || len(hexRun.FindAllString(out, -1)) != 1 {
		t.Fatalf("ca create should print one fingerprint, the sha256: pin:\n%s", out)
	}

	cfg := nodes.Config(t, filepath.Join(dir, "node"))
	cfg.TLS.CACert, cfg.TLS.CAKey = filepath.Join(caDir, "ca.crt"), filepath.Join(caDir, "ca.key")
	cfg.Keys.MasterKeyFile = mkFile
	n := nodes.Start(t, cfg, node.Options{})
	outpostctl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(ctl, append(args, "--addr", n.URL, "--token", n.Token)...)
		cmd.Env = append(os.Environ(), "OUTPOST_TOKEN=", "XDG_CACHE_HOME="+t.TempDir())
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("outpostctl %v: %v\n%s%s", args, err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	// A bootstrap token is a tenant Admin's to make: alice's, through the API.
	var u api.User
	call(t, n.URL, "POST", "/api/v1/users", n.Token, `{"name":"alice"}`, &u)
	call(t, n.URL, "POST", "/api/v1/tenants", n.Token, `{"name":"acme","admin":"alice"}`, nil)
	cookie := call(t, n.URL, "POST", "/api/v1/login", "", fmt.Sprintf(`{"username":"alice","password":%q}`, u.Password), nil)
	var alice api.APIToken
	call(t, n.URL, "POST", "/api/v1/tenants/acme/tokens", cookie, `{"name":"ci","role":"admin"}`, &alice)
	n.Token = alice.Token
	tok := outpostctl("tokens", "create", "--tenant", "acme")
	if got := pinLine.FindAllString(tok, -1); len(got) != 1 || got[0] != pins[0] {
		t.Errorf("tokens create prints pin %v, ca create printed %s:\n%s", got, pins[0], tok)
	}
}

// call sends one API request with a token ("opt_…") or a cookie, decodes
// a 2xx answer into out, and returns the session cookie it set, if any.
func call(t *testing.T, base, method, path, cred, body string, out any) string {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if strings.HasPrefix(cred, "opt_") {
		req.Header.Set("Authorization", "Bearer "+cred)
	} else if cred != "" {
		req.Header.Set("Cookie", cred)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, r.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range r.Cookies() {
		return c.Name + "=" + c.Value
	}
	return ""
}
