package main

import (
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-mesh/outpost/internal/cli/clidoc"
)

var (
	update = flag.Bool("update", false, "rewrite docs/cli/ from the command tree (go generate ./cmd/...)")
	manDir = flag.String("man", "", "write the man pages to this directory (make man)")
)

// TestEveryCommandHelp walks the command tree: `-h` and `--help` on every
// command (groups and the root too) print that command's description,
// usage line, examples and flags to standard output, exit 0 and send
// nothing.
func TestEveryCommandHelp(t *testing.T) {
	cmds := commandsOf(testRoot())
	cmds[""] = testRoot()
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range cmds {
			if !yield(n) {
				return
			}
		}
	}) {
		c := cmds[name]
		for _, h := range []string{"-h", "--help"} {
			args := append(strings.Fields(name), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				addr, seen := fakeNode(t, nil)
				stdout, stderr, err := runCLI(t, addr, "", args...)
				if err != nil || stderr != "" {
					t.Fatalf("err %v, stderr %q; want exit 0 and nothing on standard error", err, stderr)
				}
				if !strings.Contains(stdout, "\nusage: "+c.UseLine()+"\n") {
					t.Errorf("no usage line %q in:\n%s", "usage: "+c.UseLine(), stdout)
				}
				if c.Example == "" || !strings.Contains(stdout, "\nExamples:\n"+c.Example) {
					t.Errorf("no examples in:\n%s", stdout)
				}
				if c.Short == "" || !strings.HasPrefix(stdout, strings.TrimSpace(cmp(c.Long, c.Short))) {
					t.Errorf("help does not begin with the description:\n%s", stdout)
				}
				if n := len(seen()); n != 0 {
					t.Errorf("help sent %d requests", n)
				}
			})
		}
		// `help COMMAND` says the same as `COMMAND -h`.
		t.Run("help "+name, func(t *testing.T) {
			h, _, err := runCLI(t, "", "", append(strings.Fields(name), "-h")...)
			if err != nil {
				t.Fatal(err)
			}
			out, stderr, err := runCLI(t, "", "", append([]string{"help"}, strings.Fields(name)...)...)
			if err != nil || stderr != "" || out != h {
				t.Errorf("help %s: err %v, stderr %q; the output differs from -h's:\n%s", name, err, stderr, out)
			}
		})
	}
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestBinaryHelpExitsZero runs the built binary: `help`, `-h` and
// `--help` alone, and `-h` after every command, exit 0 with the help on
// standard output and send nothing.
func TestBinaryHelpExitsZero(t *testing.T) {
	bin := buildOutpostctl(t)
	for _, alone := range []string{"help", "-h", "--help"} {
		t.Run(alone, func(t *testing.T) {
			code, stdout, _, reqs := runBinary(t, bin, alone)
			if code != 0 || !strings.HasPrefix(stdout, "outpostctl administers") || len(reqs) != 0 {
				t.Fatalf("exit %d, stdout %.40q, %d requests; want exit 0, the help on standard output, none sent", code, stdout, len(reqs))
			}
		})
	}
	for name, c := range commandsOf(testRoot()) {
		args := append(strings.Fields(name), "-h")
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr, reqs := runBinary(t, bin, args...)
			if code != 0 || !strings.Contains(stdout, "usage: "+c.UseLine()) || stderr != "" || len(reqs) != 0 {
				t.Fatalf("exit %d, stdout %.80q, stderr %q, requests %v; want exit 0, the help on standard output, none sent", code, stdout, stderr, reqs)
			}
		})
	}
	t.Run("mistake exits 2", func(t *testing.T) {
		code, _, stderr, _ := runBinary(t, bin, "kv", "put", "--bogus")
		if code != 2 || !strings.HasPrefix(stderr, "outpostctl kv put: unknown flag --bogus\nusage: outpostctl kv put") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
}

// TestCompletionScriptsLoad: the bash script parses (bash -n) and, once
// sourced, registers a completion for outpostctl; zsh and fish scripts
// are written.
func TestCompletionScriptsLoad(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		t.Run(sh, func(t *testing.T) {
			out, _, err := runCLI(t, "", "", "completion", sh)
			if err != nil || !strings.Contains(out, "outpostctl") {
				t.Fatalf("err %v; script %.80q", err, out)
			}
			if sh != "bash" {
				return
			}
			bash, err := exec.LookPath("bash")
			if err != nil {
				t.Skip("needs bash")
			}
			script := filepath.Join(t.TempDir(), "outpostctl.bash")
			if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
				t.Fatalf("bash -n: %v\n%s", err, b)
			}
			b, err := exec.Command(bash, "-c", "source "+script+" && complete -p outpostctl").CombinedOutput()
			if err != nil || !strings.Contains(string(b), "outpostctl") {
				t.Fatalf("complete -p outpostctl: %v\n%s", err, b)
			}
		})
	}
}

// TestVersion: `version` and `--version` print the build; `version
// --json` as JSON; neither asks a node.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, _, err := runCLI(t, "", "", args...)
		if err != nil || !strings.HasPrefix(out, "outpostctl ") || !strings.Contains(out, "\ncommit:  ") ||
			!strings.Contains(out, "\nbuilt:   ") || !strings.Contains(out, "\ngo:      go") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	out, _, err := runCLI(t, "", "", "version", "--json")
	var v struct {
		Version, Commit, Built string
		GoVersion              string `json:"go_version"`
	}
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.Version == "" || v.Commit == "" || v.GoVersion == "" {
		t.Errorf("version --json: %v\n%s", err, out)
	}
	if _, stderr, err := runCLI(t, "", "", "version", "--addr", "http://x"); !errors.Is(err, errUsage) || !strings.Contains(stderr, "--addr does not apply") {
		t.Errorf("version --addr: %v %s", err, stderr)
	}
}

// TestUnauthorizedNamesLogin: a 401 says to run `outpostctl login` or
// set OUTPOST_TOKEN, in those words, not which HTTP header to send.
func TestUnauthorizedNamesLogin(t *testing.T) {
	addr, _ := fakeNode(t, func(*http.Request) (int, string) {
		return 401, `{"error":"missing credentials (API token or session)","hint":"send ` + "`Authorization: Bearer TOKEN`" + ` with an API token"}`
	})
	for _, token := range []string{"", "opt_revoked"} {
		_, _, err := runCLI(t, addr, "", "status", "--token", token)
		if err == nil || errors.Is(err, errUsage) {
			t.Fatalf("token %q: err %v, want a failure (exit 1)", token, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "outpostctl login USER") || !strings.Contains(msg, "OUTPOST_TOKEN") || strings.Contains(msg, "Bearer") {
			t.Errorf("token %q: %s", token, msg)
		}
	}
}

// TestNoAnswerNamesOtherNodes: when the node at --addr does not answer,
// the error names the address, suggests --addr, and names the region's
// other nodes the last status saw.
func TestNoAnswerNamesOtherNodes(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	live, _ := fakeNode(t, func(*http.Request) (int, string) {
		return 200, `{"region":"eu-west","node":"n2","leader":"n2","nodes":[{"id":"n1","api_url":"` + dead + `"},{"id":"n2","api_url":"http://10.0.1.12:7070","version":"v0.3.0"}]}`
	})
	var out, errw strings.Builder
	if err := run(t.Context(), []string{"status", "--addr", live}, strings.NewReader(""), &out, &errw); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "VERSION") || !strings.Contains(out.String(), "v0.3.0") {
		t.Errorf("status shows no versions:\n%s", out.String())
	}
	err = run(t.Context(), []string{"kv", "get", "k", "--addr", dead}, strings.NewReader(""), &out, &errw)
	if err == nil || errors.Is(err, errUsage) {
		t.Fatalf("err %v, want a failure", err)
	}
	for _, want := range []string{"no node answers at " + dead, "region eu-west", "n2 http://10.0.1.12:7070", "--addr http://10.0.1.12:7070", "OUTPOST_ADDR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
	// A node no status saw: the address and the way out, nothing more.
	err = run(t.Context(), []string{"kv", "get", "k", "--addr", "http://127.0.0.1:1"}, strings.NewReader(""), &out, &errw)
	if err == nil || !strings.Contains(err.Error(), "no node answers at http://127.0.0.1:1") || !strings.Contains(err.Error(), "--addr") {
		t.Errorf("err %v", err)
	}
}

// TestCLIReference: docs/cli/ is what the command tree generates. With
// -update it is rewritten (go generate ./cmd/...); with -man DIR the man
// pages are written to DIR (make man).
func TestCLIReference(t *testing.T) {
	clidoc.TestReference(t, testRoot(), "../../docs/cli", "./cmd/outpostctl", *update, *manDir)
}

// TestDocsCommandLines: every outpostctl command line shown in code in
// README.md and docs/*.md names a command that exists, with flags it
// takes.
func TestDocsCommandLines(t *testing.T) {
	clidoc.TestDocLines(t, testRoot(), "../..", 50)
}
