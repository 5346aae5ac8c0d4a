package e2e

import (
	"bytes"
	"encoding/json"
	"io/fs"
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

// `outpost dev --nodes 3` starts a region, prints where the API and token
// are, survives killing its leader through `outpostctl dev stop`, and ends
// cleanly on Ctrl-C, removing its temporary data dir.
func TestDevRegion(t *testing.T) {
	bin := binaries(t)
	p := start(t, bin+"/outpost", "dev", "--nodes", "3", "--http", "127.0.0.1:0")
	var apiURL, tokenFile string
	waitFor(t, 60*time.Second, "dev to print its API and token file", func() bool {
		out := p.out.String()
		a := regexp.MustCompile(`API and UI:\s+(http://\S+)`).FindStringSubmatch(out)
		f := regexp.MustCompile(`token file:\s+(\S+)`).FindStringSubmatch(out)
		if a == nil || f == nil {
			return false
		}
		apiURL, tokenFile = a[1], f[1]
		return true
	})
	token := readToken(t, tokenFile)
	// The banner's PromQL example runs as printed, and answers.
	curl := regexp.MustCompile(`(?s)\n  (curl -sG .*?--data-urlencode '[^']*')`).FindStringSubmatch(p.out.String())
	if curl == nil {
		t.Fatalf("the banner has no PromQL example:\n%s", p.out.String())
	}
	if out, err := exec.Command("bash", "-c", curl[1]).CombinedOutput(); err != nil || !strings.Contains(string(out), `"status":"success"`) {
		t.Fatalf("the banner's example %q: %v\n%s", curl[1], err, out)
	}
	ctl := func(args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(bin+"/outpostctl", args...)
		cmd.Env = append(os.Environ(), "OUTPOST_ADDR="+apiURL, "OUTPOST_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	code, out := ctl("status", "--json")
	if code != 0 {
		t.Fatalf("status: %d %s", code, out)
	}
	var r api.Region
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	if r.Region != "dev" || r.Leader == "" || len(r.Nodes) != 3 {
		t.Fatalf("status: %+v", r)
	}
	for _, n := range r.Nodes {
		if n.Suffrage != "voter" || n.APIURL == "" {
			t.Fatalf("node %+v", n)
		}
	}
	if code, out := ctl("status"); code != 0 || !strings.Contains(out, "Leader: "+r.Leader) {
		t.Fatalf("table status: %d\n%s", code, out)
	}

	// Kill the leader; ask another node for the new one.
	other := ""
	for _, n := range r.Nodes {
		if n.ID != r.Leader {
			other = n.APIURL
		}
	}
	leaderURL := ""
	for _, n := range r.Nodes {
		if n.ID == r.Leader {
			leaderURL = n.APIURL
		}
	}
	if code, out := ctl("dev", "stop", r.Leader, "--addr", other); code != 0 {
		t.Fatalf("dev stop: %d %s", code, out)
	}
	// dev stop returns once the node's API no longer answers.
	if resp, err := http.Get(leaderURL + "/api/v1/health"); err == nil {
		resp.Body.Close()
		t.Errorf("dev stop %s returned while its API at %s still answered", r.Leader, leaderURL)
	}
	waitFor(t, 20*time.Second, "a new leader", func() bool {
		code, out := ctl("status", "--json", "--addr", other)
		var r2 api.Region
		return code == 0 && json.Unmarshal([]byte(out), &r2) == nil && r2.Leader != "" && r2.Leader != r.Leader
	})
	if code, out := ctl("kv", "put", "tour", "ok", "--addr", other); code != 0 {
		t.Fatalf("write after failover: %d %s", code, out)
	}
	if code, out := ctl("dev", "start", r.Leader, "--addr", other); code != 0 {
		t.Fatalf("dev start: %d %s", code, out)
	}

	// Usage and failure exit codes.
	if code, _ := ctl("frobnicate"); code != 2 {
		t.Fatalf("unknown command exit %d, want 2", code)
	}
	if code, out := ctl("status", "--token", "opt_wrong"); code != 1 || !strings.Contains(out, "invalid API token") {
		t.Fatalf("bad token: %d %s", code, out)
	}

	dataDir := strings.TrimSuffix(tokenFile, "/admin.token")
	// The token is stored only as a hash: no state file, Raft log segment
	// or snapshot of any node holds it in plaintext.
	scanned := 0
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), "admin.token") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		if bytes.Contains(b, []byte(token)) {
			t.Errorf("%s contains the admin token in plaintext", path)
		}
		return nil
	})
	if err != nil || scanned < 6 {
		t.Fatalf("scanned %d files (err %v); expected every node's state and log", scanned, err)
	}
	p.signal(syscall.SIGINT)
	if code := p.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("dev exited %d after Ctrl-C", code)
	}
	if !strings.Contains(p.out.String(), "outpost dev: stopped") {
		t.Fatalf("no clean stop message:\n%s", p.out.String())
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Fatalf("temp data dir %s was not removed (err %v)", dataDir, err)
	}
}

// TestDevQuietStartRunStop: a normal `outpost dev --nodes 3` start, a few
// commands, and Ctrl-C print progress lines and nothing at WARN or ERROR
// on the terminal; the nodes' logs, Raft's and gossip's included, are in
// outpost.log in the data dir, which the banner names.
func TestDevQuietStartRunStop(t *testing.T) {
	bin := binaries(t)
	data := t.TempDir()
	p := start(t, bin+"/outpost", "dev", "--nodes", "3", "--http", "127.0.0.1:0", "--data", data)
	var apiURL string
	waitFor(t, 60*time.Second, "dev to say it is up", func() bool {
		a := regexp.MustCompile(`API and UI:\s+(http://\S+)`).FindStringSubmatch(p.out.String())
		if a != nil {
			apiURL = a[1]
		}
		return a != nil && strings.Contains(p.out.String(), "Press Ctrl-C to stop.")
	})
	logFile := filepath.Join(data, "outpost.log")
	if !strings.Contains(p.out.String(), "node logs:    "+logFile) {
		t.Errorf("the banner does not name the log file %s:\n%s", logFile, p.out.String())
	}
	token := readToken(t, filepath.Join(data, "admin.token"))
	ctl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin+"/outpostctl", args...)
		cmd.Env = append(os.Environ(), "OUTPOST_ADDR="+apiURL, "OUTPOST_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("outpostctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// The environment file the banner names sets up a shell.
	env := regexp.MustCompile(`from any shell while it runs: \. (\S+)`).FindStringSubmatch(p.out.String())
	if env == nil {
		t.Fatalf("the banner names no environment file:\n%s", p.out.String())
	}
	if fi, err := os.Stat(env[1]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("environment file %s: %v (want mode 0600)", env[1], err)
	}
	sh := exec.Command("bash", "-c", ". "+env[1]+" && "+bin+"/outpostctl kv put sourced yes && test -d \"$OUTPOST_DEV_DATA\"")
	sh.Env = append(os.Environ(), "OUTPOST_ADDR=", "OUTPOST_TOKEN=")
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("a shell that sourced %s: %v\n%s", env[1], err, out)
	}
	ctl("status")
	ctl("kv", "put", "quiet", "yes")
	ctl("agents", "list")
	p.signal(syscall.SIGINT)
	if code := p.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("dev exited %d after Ctrl-C:\n%s", code, p.out.String())
	}
	for _, l := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			t.Errorf("a warning or error on the terminal in a normal run: %s", l)
		}
	}
	if _, err := os.Stat(env[1]); !os.IsNotExist(err) {
		t.Errorf("environment file %s still there after the region stopped (%v)", env[1], err)
	}
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"component=raft", "node=n1", "node=n3"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("outpost.log has no %q line", want)
		}
	}
	if t.Failed() {
		t.Logf("terminal:\n%s", p.out.String())
	}
}
