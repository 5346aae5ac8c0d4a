package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// readme is the document TestReadmeTour follows.
const readme = "../../README.md"

// The marks README.md puts before its sh blocks (see doccmds_test.go).
const (
	// The block's last line keeps running (outpost dev); the lines
	// before it run to completion first.
	markKeepsRunning = "keeps running"
	// Each line is typed into a second terminal in turn; a line ending
	// in " &" is left running in the background.
	markOtherTerminal = "in another terminal"
)

// TestReadmeTour runs the README's five-minute tour as written: `make
// build`, `outpost dev --nodes 3`, then every command of the tour in
// order, each of which must exit 0, in a shell that keeps its variables
// from line to line as a terminal does. The dev region gets its own
// TMPDIR (the tour finds the token under ${TMPDIR:-/tmp}) and its fixed
// ports 7070-7072. Afterwards: the config dispatch reached the dev agent
// and was applied, and Ctrl-C stops the region and removes its data dir.
func TestReadmeTour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries with make and runs a three-node dev region; run without -short")
	}
	// Another `go test` run on this machine takes the same ports: wait
	// for it rather than fail on a port in use.
	holdLock(t, "outpost-e2e-readme-tour.lock", 5*time.Minute)
	for port := 7070; port <= 7072; port++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("the tour's dev region needs 127.0.0.1:%d, which is in use (stop the outpost dev running there): %v", port, err)
		}
		l.Close()
	}
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

	var dev *proc
	ran := 0
	for _, b := range shellBlocks(t, readme) {
		switch {
		case strings.HasPrefix(b.Mark, markNotRun) && strings.TrimSpace(strings.TrimPrefix(b.Mark, markNotRun)) != "":
			t.Logf("%s not run (%s)", b, strings.TrimSpace(strings.TrimPrefix(b.Mark, markNotRun)))
		case b.Mark == markKeepsRunning:
			dev = startRegion(t, sh, b)
			ran++
		case b.Mark == markOtherTerminal:
			if dev == nil {
				t.Fatalf("%s: the tour's commands come before the region is started", b)
			}
			typeLines(t, sh, b, 3*time.Minute)
			ran++
		default:
			t.Fatalf("%s: a sh block without a known mark (%q): mark it %q, %q or %q", b, b.Mark, markKeepsRunning, markOtherTerminal, markNotRun+" why")
		}
	}
	if ran != 2 || dev == nil {
		t.Fatalf("ran %d of the tour's blocks, want the dev region and the commands", ran)
	}

	// The dispatch the tour sent reached the dev agent and was applied.
	var dirs []string
	matches, _ := filepath.Glob(filepath.Join(tmp, "outpost-dev-*"))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.IsDir() {
			dirs = append(dirs, m)
		}
	}
	if len(dirs) != 1 {
		t.Fatalf("data dirs under TMPDIR: %v, want one", dirs)
	}
	c := &apiClient{token: readToken(t, filepath.Join(dirs[0], "admin.token")), http: &http.Client{Timeout: 10 * time.Second}}
	waitFor(t, 30*time.Second, "the dev agent to apply the tour's config dispatch", func() bool {
		code, body, err := c.do(t.Context(), "GET", "http://127.0.0.1:7070/api/v1/agents", nil)
		if err != nil || code != 200 {
			return false
		}
		var list []api.Agent
		if json.Unmarshal(body, &list) != nil || len(list) != 1 || list[0].Config == nil {
			return false
		}
		return list[0].Config.Status == "applied" && strings.HasPrefix(list[0].Config.Dispatch, "region:ctl-") // a region-wide dispatch, as agents know it
	})

	// Ctrl-C stops the region cleanly and removes its temporary data dir.
	_ = syscall.Kill(-dev.cmd.Process.Pid, syscall.SIGINT)
	if code := dev.wait(t, time.Minute); code != 0 {
		t.Fatalf("outpost dev exited %d after Ctrl-C:\n%s", code, dev.out.String())
	}
	if _, err := os.Stat(dirs[0]); !os.IsNotExist(err) {
		t.Errorf("the dev data dir %s is still there after Ctrl-C (%v)", dirs[0], err)
	}
}

// commandLines returns a block's commands, one per line, without blank
// lines and comment-only lines.
func commandLines(code string) []string {
	var out []string
	for l := range strings.SplitSeq(code, "\n") {
		if s := strings.TrimSpace(l); s != "" && !strings.HasPrefix(s, "#") {
			out = append(out, s)
		}
	}
	return out
}

// stripComment drops a trailing "# …" comment outside quotes.
func stripComment(l string) string {
	var quote rune
	for i, r := range l {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (i == 0 || l[i-1] == ' '):
			return strings.TrimSpace(l[:i])
		}
	}
	return strings.TrimSpace(l)
}

// typeLines runs a block's commands one by one, as a reader types them
// into a terminal: each must exit 0 within timeout, and one ending in " &"
// is left running in the background until the test ends.
func typeLines(t *testing.T, sh *shellSession, b docBlock, timeout time.Duration) {
	t.Helper()
	for _, l := range commandLines(b.Code) {
		if bg, ok := strings.CutSuffix(stripComment(l), "&"); ok {
			t.Logf("%s: %s (in the background)", b, l)
			sh.start(t, bg)
			continue
		}
		runLine(t, sh, b, l, timeout)
	}
}

// runLine runs one command of a block, which must exit 0.
func runLine(t *testing.T, sh *shellSession, b docBlock, line string, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	code, stdout, stderr := sh.run(t, line, timeout)
	if code != 0 {
		t.Fatalf("%s: %s\nexit %d after %v\nstdout:\n%s\nstderr:\n%s", b, line, code, time.Since(start).Round(time.Millisecond), stdout, stderr)
	}
	t.Logf("%s: %s (%v)", b, line, time.Since(start).Round(time.Millisecond))
}
