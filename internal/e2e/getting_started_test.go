package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// gettingStarted is the guide TestGettingStarted follows.
const gettingStarted = "../../docs/getting-started.md"

// The marks docs/getting-started.md adds to the README's (readme_test.go)
// before its sh blocks.
const (
	// Ctrl-C the region left running, then start the block's last line
	// in its place, as markKeepsRunning does.
	markAfterCtrlC = "after Ctrl-C, keeps running"
	// A markOtherTerminal block run again, as a reader would after a
	// moment, until its output contains the text after the prefix.
	markUntilPrefix = "in another terminal, until it prints "
	// The last block: the test checks the outcome before it runs.
	markCleanUp = "in another terminal, to clean up"
)

// The second host as the guide makes it.
const (
	gsNetns    = "edge-1"      // the namespace, and the host name its agent reports
	gsHostLink = "edge-1-host" // this machine's end of the veth pair
	gsHostAddr = "10.203.0.1"  // that end's address
	gsNSAddr   = "10.203.0.2"  // the namespace's
)

// TestGettingStarted follows docs/getting-started.md as written, as
// root: `make run`, the region's environment and outpostctl, a network
// namespace edge-1 linked to this machine by a veth pair, the region
// restarted with its agent port on the link, outpost-agent enrolled
// inside the namespace with the line `outpostctl tokens create`
// printed, a web server in the namespace called from this machine, and
// the PromQL query of edge-1's flows. Afterwards, before the guide's
// clean-up: edge-1's agent is enrolled in tenant dev and healthy, and the
// bytes its web server sent are in the tenant's PromQL API under
// host="edge-1". The namespace and every process the guide started are
// removed even when the test fails.
func TestGettingStarted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries with make and runs a dev region and an agent in a network namespace; run without -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("docs/getting-started.md's second host is a network namespace, which needs root (CI runs this test as root)")
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("docs/getting-started.md needs `ip netns` (iproute2): %v %s", err, out)
	}
	for _, tool := range []string{"make", "curl", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("docs/getting-started.md uses %s, which is not on PATH", tool)
		}
	}
	blocks := shellBlocks(t, gettingStarted)
	known := []string{markKeepsRunning, markOtherTerminal, markAfterCtrlC, markCleanUp}
	for _, b := range blocks { // before anything runs: fail fast
		if !slices.Contains(known, b.Mark) && !strings.HasPrefix(b.Mark, markUntilPrefix) {
			t.Fatalf("%s: sh block with mark %q; mark it `<!-- test: MARK -->` with one of %q or %q…", b, b.Mark, known, markUntilPrefix)
		}
	}
	// The README tour's dev region takes the same port and env file.
	holdLock(t, "outpost-e2e-readme-tour.lock", 5*time.Minute)
	if l, err := net.Listen("tcp", "127.0.0.1:7070"); err != nil {
		t.Fatalf("the guide's dev region needs 127.0.0.1:7070, which is in use (stop the outpost dev running there): %v", err)
	} else {
		l.Close()
	}
	if netnsExists(t) || linkExists(gsHostLink) {
		t.Fatalf("network namespace %s or link %s exists already (left by an earlier run?): remove them with `ip netns del %s; ip link del %s`", gsNetns, gsHostLink, gsNetns, gsHostLink)
	}
	// Registered before any process starts, so that it runs after their
	// process groups are killed.
	t.Cleanup(func() { removeSecondHost(t) })

	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "TMPDIR=") || strings.HasPrefix(kv, "OUTPOST_")
	})
	env = append(env, "TMPDIR="+tmp)
	sh := newShellSession(t, root, env, "")
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(tmp, "outpost-dev-*", gsNetns+".log"))
		for _, f := range logs {
			b, _ := os.ReadFile(f)
			t.Logf("%s:\n%s", f, b)
		}
	})

	start := time.Now()
	var region *proc
	checked := false
	for _, b := range blocks {
		switch {
		case b.Mark == markKeepsRunning || b.Mark == markAfterCtrlC:
			if b.Mark == markAfterCtrlC {
				if region == nil {
					t.Fatalf("%s: Ctrl-C, but no block before it left a region running", b)
				}
				stopRegion(t, region)
			}
			region = startRegion(t, sh, b)
		case b.Mark == markOtherTerminal:
			typeLines(t, sh, b, 2*time.Minute)
		case strings.HasPrefix(b.Mark, markUntilPrefix):
			runUntil(t, sh, b, strings.TrimPrefix(b.Mark, markUntilPrefix), 90*time.Second)
		case b.Mark == markCleanUp:
			checkSecondHost(t, tmp)
			checked = true
			typeLines(t, sh, b, time.Minute)
			if netnsExists(t) {
				t.Errorf("%s: namespace %s is still there after the guide's clean-up", b, gsNetns)
			}
		}
		t.Logf("%s done, %v into the guide", b, time.Since(start).Round(time.Second))
	}
	if !checked || region == nil {
		t.Fatalf("the guide has no %q block, or never started a region", markCleanUp)
	}
	// The guide ends with Ctrl-C: the region stops and its data dir goes.
	stopRegion(t, region)
	if left, _ := filepath.Glob(filepath.Join(tmp, "outpost-dev-*")); len(left) != 0 {
		t.Errorf("after the last Ctrl-C, still under TMPDIR (the data dir and the environment file should be gone): %v", left)
	}
	t.Logf("the guide ran in %v", time.Since(start).Round(time.Second))
}

// startRegion runs a block's lines but the last, and leaves the last
// (outpost dev, or make run) running once it says the region is up.
func startRegion(t *testing.T, sh *shellSession, b docBlock) *proc {
	t.Helper()
	lines := commandLines(b.Code)
	if len(lines) == 0 {
		t.Fatalf("%s: an empty block", b)
	}
	for _, l := range lines[:len(lines)-1] {
		runLine(t, sh, b, l, 10*time.Minute)
	}
	last := lines[len(lines)-1]
	t.Logf("%s: %s (left running)", b, last)
	p := sh.start(t, last)
	waitFor(t, 5*time.Minute, "the dev region to say it is up", func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s: %s exited:\n%s", b, last, p.out.String())
		default:
		}
		return strings.Contains(p.out.String(), "Outpost dev region is up")
	})
	return p
}

// stopRegion presses Ctrl-C in the region's terminal: SIGINT to its
// process group (make and outpost alike), which must stop the region
// cleanly. make itself exits non-zero on an interrupt, so the region's
// own last words are checked, not the exit status.
func stopRegion(t *testing.T, p *proc) {
	t.Helper()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("the dev region did not stop within a minute of Ctrl-C:\n%s", p.out.String())
	}
	if !strings.Contains(p.out.String(), "outpost dev: stopped") {
		t.Fatalf("the dev region did not stop cleanly on Ctrl-C:\n%s", p.out.String())
	}
}

// runUntil runs block b again, every 2s, until its output contains want;
// every run must exit 0.
func runUntil(t *testing.T, sh *shellSession, b docBlock, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for n := 1; ; n++ {
		code, out, errs := sh.run(t, b.Code, time.Minute)
		if code != 0 {
			t.Fatalf("%s (run %d): exit %d\n%s\nstdout:\n%s\nstderr:\n%s", b, n, code, b.Code, out, errs)
		}
		if strings.Contains(out, want) {
			t.Logf("%s: printed %s on run %d:\n%s", b, want, n, out)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s in its output after %v (%d runs); last output:\n%s%s", b, want, timeout, n, out, errs)
		}
		time.Sleep(2 * time.Second)
	}
}

// checkSecondHost checks the guide's outcome through the API, with the
// dev tenant's query token: edge-1's agent enrolled in tenant dev, is
// attached and healthy, and the bytes its web server sent to this machine
// are in PromQL under its host name.
func checkSecondHost(t *testing.T, tmp string) {
	t.Helper()
	dirs := dataDirs(tmp)
	if len(dirs) != 1 {
		t.Fatalf("data dirs under TMPDIR: %v, want one (Ctrl-C removes the first region's)", dirs)
	}
	c := &apiClient{token: readToken(t, filepath.Join(dirs[0], "dev-query.token")), http: &http.Client{Timeout: 10 * time.Second}}
	const base = "http://127.0.0.1:7070/api/v1/tenants/dev"
	code, body, err := c.do(t.Context(), "GET", base+"/agents", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s/agents: %d %v %s", base, code, err, body)
	}
	var agents []api.Agent
	if err := json.Unmarshal(body, &agents); err != nil {
		t.Fatal(err)
	}
	var edge *api.Agent
	for i := range agents {
		if agents[i].Host == gsNetns {
			edge = &agents[i]
		}
	}
	if edge == nil || edge.Tenant != "dev" || edge.Node != "n1" || edge.Health != "healthy" {
		t.Fatalf("no healthy agent %s of tenant dev attached to n1: %s", gsNetns, body)
	}
	if edge.Mode != "ebpf" {
		t.Fatalf("%s's agent runs in %s mode (%s): the guide's PromQL step reads byte counts, which need eBPF", gsNetns, edge.Mode, edge.ModeReason)
	}
	q := fmt.Sprintf(`sum(outpost_flow_sent_bytes_total{host=%q, local_addr=%q, remote_addr=%q, port="8080"})`, gsNetns, gsNSAddr, gsHostAddr)
	code, body, err = c.do(t.Context(), "GET", base+"/prometheus/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("query %s: %d %v %s", q, code, err, body)
	}
	var res struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("query %s: %v\n%s", q, err, body)
	}
	if len(res.Data.Result) != 1 {
		t.Fatalf("query %s: want one series, got %s", q, body)
	}
	s, _ := res.Data.Result[0].Value[1].(string)
	if v, err := strconv.ParseFloat(s, 64); err != nil || v <= 0 {
		t.Fatalf("query %s: %q bytes sent by %s's web server, want some: %s", q, s, gsNetns, body)
	}
	t.Logf("agent %s (host %s, %s mode) enrolled in tenant dev; its web server sent %s bytes to %s, by PromQL", edge.ID, edge.Host, edge.Mode, s, gsHostAddr)
}

// dataDirs are the dev regions' data dirs under tmp (TMPDIR).
func dataDirs(tmp string) []string {
	m, _ := filepath.Glob(filepath.Join(tmp, "outpost-dev-*"))
	return slices.DeleteFunc(m, func(p string) bool {
		fi, err := os.Stat(p)
		return err != nil || !fi.IsDir()
	})
}

func netnsExists(t *testing.T) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	for l := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == gsNetns {
			return true
		}
	}
	return false
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", name).Run() == nil
}

// removeSecondHost undoes what the guide's part 2 made, whatever the
// point it failed at: the processes in the namespace (killed by id), the
// namespace, and this machine's end of the link.
func removeSecondHost(t *testing.T) {
	t.Helper()
	if netnsExists(t) {
		out, _ := exec.Command("ip", "netns", "pids", gsNetns).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if out, err := exec.Command("ip", "netns", "del", gsNetns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", gsNetns, err, out)
		}
	}
	// Gone with the namespace once its other end is; there when the
	// guide failed before moving that end into the namespace.
	if linkExists(gsHostLink) {
		if out, err := exec.Command("ip", "link", "del", gsHostLink).CombinedOutput(); err != nil {
			t.Errorf("ip link del %s: %v %s", gsHostLink, err, out)
		}
	}
}
