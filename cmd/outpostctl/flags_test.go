package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/outpost-mesh/outpost/internal/cli"
)

// testRoot is the command tree of a run that writes nowhere.
func testRoot() *cobra.Command {
	return newRoot(&app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard})
}

// commandsOf lists the commands of root's tree a user can run: every
// available command, groups included, by its words ("kv put").
func commandsOf(root *cobra.Command) map[string]*cobra.Command {
	out := map[string]*cobra.Command{}
	cli.Walk(root, func(c *cobra.Command) {
		if c.HasParent() && c.IsAvailableCommand() {
			out[strings.TrimPrefix(c.CommandPath(), root.Name()+" ")] = c
		}
	})
	return out
}

// leaves are the commands that do something (not groups).
func leaves(root *cobra.Command) []string {
	var out []string
	for name, c := range commandsOf(root) {
		if !cli.IsGroup(c) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// sampleArg returns a command-line form of flag f with a value it
// parses, so the test reaches the check of which command takes it.
func sampleArg(t *testing.T, f *pflag.Flag) string {
	t.Helper()
	if f.Value.Type() == "bool" {
		return "--" + f.Name
	}
	for _, v := range []string{"1", "1s", "x"} {
		if f.Value.Set(v) == nil {
			return "--" + f.Name + "=" + v
		}
	}
	t.Fatalf("no sample value parses for --%s", f.Name)
	return ""
}

// TestEveryCommandRefusesFlagsItDoesNotUse walks the command tree: for
// every command, every flag some other command defines is a usage error
// (exit 2) naming the flag and the command, and no request is sent.
// `kv put K V --tenant T` once wrote the region's store because a flag
// parsed and was ignored; each command now has only its own flags.
func TestEveryCommandRefusesFlagsItDoesNotUse(t *testing.T) {
	root := testRoot()
	all := map[string]*pflag.Flag{}
	cli.Walk(root, func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { all[f.Name] = f })
	})
	cmds := commandsOf(root)
	for _, name := range leaves(root) {
		c := cmds[name]
		takes := map[string]bool{"help": true}
		for _, f := range cli.FlagNames(c) {
			takes[strings.TrimPrefix(f, "--")] = true
		}
		for _, flag := range slices.Sorted(func(yield func(string) bool) {
			for n := range all {
				if !yield(n) {
					return
				}
			}
		}) {
			if takes[flag] || flag == "version" {
				continue
			}
			t.Run(name+"/--"+flag, func(t *testing.T) {
				addr, seen := fakeNode(t, nil)
				t.Setenv("OUTPOST_ADDR", addr)
				t.Setenv("OUTPOST_TOKEN", "")
				args := append(strings.Fields(name), sampleArg(t, all[flag]))
				// Bounded: a command that ran instead of refusing the flag
				// (a watch, a drill) must fail this test, not hang it.
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				var out, errw bytes.Buffer
				err := run(ctx, args, strings.NewReader(""), &out, &errw)
				if !errors.Is(err, errUsage) {
					t.Fatalf("err = %v, want a usage error (exit 2); stderr %q", err, errw.String())
				}
				want := "outpostctl " + name + ": --" + flag + " does not apply to this command (" + name + " takes "
				if !strings.HasPrefix(errw.String(), want) || !strings.Contains(errw.String(), "\nusage: "+c.UseLine()+"\n") {
					t.Errorf("stderr = %q, want %q and the usage line", errw.String(), want)
				}
				if n := len(seen()); n != 0 {
					t.Errorf("sent %d requests: %v", n, seen())
				}
			})
		}
	}
}

// TestDocsNameEveryCommand: docs/cli.md mentions every command.
func TestDocsNameEveryCommand(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range leaves(testRoot()) {
		if !strings.Contains(string(doc), name) {
			t.Errorf("%q is not in docs/cli.md", name)
		}
	}
}

// TestKVTenantFlag: --tenant on the kv commands addresses that tenant's
// keys (the tenant KV routes), and without it the region's store.
func TestKVTenantFlag(t *testing.T) {
	tests := []struct {
		args []string
		want string // method and URI the node saw
	}{
		{[]string{"kv", "put", "app/x", "v", "--tenant", "acme"}, "PUT /api/v1/tenants/acme/kv/app/x"},
		{[]string{"kv", "get", "--tenant", "acme", "app/x", "--consistent"}, "GET /api/v1/tenants/acme/kv/app/x?consistent=true"},
		{[]string{"kv", "delete", "app/x", "--tenant=acme"}, "DELETE /api/v1/tenants/acme/kv/app/x"},
		{[]string{"kv", "list", "app/", "--tenant", "acme"}, "GET /api/v1/tenants/acme/kv?prefix=app%2F"},
		{[]string{"kv", "put", "app/x", "v"}, "PUT /api/v1/kv/app/x"},
		{[]string{"kv", "list", "--all"}, "GET /api/v1/kv?all=true"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			addr, seen := fakeNode(t, listAnswer)
			if _, stderr, err := runCLI(t, addr, "", tt.args...); err != nil {
				t.Fatalf("%v: %s", err, stderr)
			}
			if got := seen(); len(got) != 1 || got[0].method+" "+got[0].uri != tt.want {
				t.Fatalf("node saw %v, want %s", got, tt.want)
			}
		})
	}
}

// listAnswer answers a kv list with an empty array, anything else "{}".
func listAnswer(r *http.Request) (int, string) {
	if strings.HasSuffix(r.URL.Path, "/kv") {
		return 200, "[]"
	}
	return 200, "{}"
}

// TestBinaryRefusesInapplicableFlags runs the built binary: a flag a
// command does not use exits 2 with the message on standard error, and
// `kv put K V --tenant T` writes tenant T's key, not the region's.
func TestBinaryRefusesInapplicableFlags(t *testing.T) {
	bin := buildOutpostctl(t)
	tests := []struct {
		args     []string
		code     int
		stderr   string // in standard error
		requests []string
	}{
		{[]string{"status", "--tenant", "acme"}, 2, "outpostctl status: --tenant does not apply to this command", nil},
		{[]string{"members", "--consistent"}, 2, "outpostctl members: --consistent does not apply to this command", nil},
		{[]string{"kv", "get", "k", "--kind", "config"}, 2, "outpostctl kv get: --kind does not apply to this command", nil},
		{[]string{"dispatches", "watch", "--tenant", "acme"}, 2, "outpostctl dispatches watch: --tenant does not apply to this command", nil},
		{[]string{"audit", "verify-export", "dir", "--key", "k", "--addr", "http://127.0.0.1:1"}, 2, "outpostctl audit verify-export: --addr does not apply to this command", nil},
		{[]string{"kv", "put", "K", "V", "--tenant", "acme"}, 0, "", []string{"PUT /api/v1/tenants/acme/kv/K"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, stderr, got := runBinary(t, bin, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.stderr)
			}
			if !slices.Equal(got, tt.requests) {
				t.Fatalf("node saw %v, want %v", got, tt.requests)
			}
		})
	}
}

// TestMistakeIsOneLineAndTheUsage: a mistaken command line prints one
// line naming the mistake, then the usage of that command (not the whole
// tree), and exits 2 without sending anything.
func TestMistakeIsOneLineAndTheUsage(t *testing.T) {
	tests := []struct {
		args  []string
		first string // the first line of standard error
		usage string // the second
	}{
		{[]string{"kv", "put", "k", "v", "--bogus"}, "outpostctl kv put: unknown flag --bogus", "usage: outpostctl kv put KEY VALUE [--tenant T]"},
		{[]string{"kv", "put", "k", "v", "--tenat", "acme"}, "outpostctl kv put: unknown flag --tenat; did you mean --tenant?", "usage: outpostctl kv put KEY VALUE [--tenant T]"},
		{[]string{"kv", "put", "k"}, "outpostctl kv put: missing VALUE", "usage: outpostctl kv put KEY VALUE [--tenant T]"},
		{[]string{"kv", "get", "a", "b"}, `outpostctl kv get: unexpected argument "b" (get takes KEY)`, "usage: outpostctl kv get KEY [--tenant T] [--consistent]"},
		{[]string{"kv", "get", "a", "-tenant", "acme"}, "outpostctl kv get: -tenant: write --tenant, with two dashes", "usage: outpostctl kv get KEY [--tenant T] [--consistent]"},
		{[]string{"dispatches", "list", "--after", "soon"}, `outpostctl dispatches list: invalid value "soon" for --after: use a whole number, 0 or more`, "usage: outpostctl dispatches list [--tenant T] [--after INDEX] [--consistent]"},
		{[]string{"kv", "pot"}, `outpostctl kv: unknown command "kv pot"; did you mean put?`, "usage: outpostctl kv <command>"},
		{[]string{"stauts"}, `outpostctl: unknown command "stauts"; did you mean status?`, "usage: outpostctl <command>"},
		{[]string{}, "outpostctl: missing command", "usage: outpostctl <command>"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			addr, seen := fakeNode(t, nil)
			_, stderr, err := runCLI(t, addr, "", tt.args...)
			if !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want a usage error (exit 2)", err)
			}
			lines := strings.Split(stderr, "\n")
			if len(lines) < 2 || lines[0] != tt.first || lines[1] != tt.usage {
				t.Fatalf("stderr begins %q, want %q then %q", strings.Join(lines[:min(2, len(lines))], "\n"), tt.first, tt.usage)
			}
			if strings.Contains(stderr, "breakglass") && !strings.Contains(tt.usage, "<command>") {
				t.Errorf("a command's usage lists the whole tree:\n%s", stderr)
			}
			if n := len(seen()); n != 0 {
				t.Errorf("a usage error sent %d requests", n)
			}
		})
	}
}

// buildOutpostctl builds the binary into a test directory (skipped with
// -short, or without the go tool).
func buildOutpostctl(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds outpostctl; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go tool on PATH to build outpostctl")
	}
	bin := filepath.Join(t.TempDir(), "outpostctl")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building outpostctl: %v\n%s", err, out)
	}
	return bin
}

// runBinary runs bin with args against a fake node and returns its exit
// status, output and the requests the node saw ("METHOD URI").
func runBinary(t *testing.T, bin string, args ...string) (code int, stdout, stderr string, requests []string) {
	t.Helper()
	addr, seen := fakeNode(t, nil)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "OUTPOST_ADDR="+addr, "OUTPOST_TOKEN=opt_x_y", "XDG_CACHE_HOME="+t.TempDir())
	var out, errw bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errw
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	for _, r := range seen() {
		requests = append(requests, r.method+" "+r.uri)
	}
	return code, out.String(), errw.String(), requests
}

// TestDocsFlagTable: the table of each command's own flags in
// docs/cli.md says what the command tree defines.
func TestDocsFlagTable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "| command | flags |\n|---|---|\n")
	if !ok {
		t.Fatal("docs/cli.md has no flag table")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	cmds := commandsOf(testRoot())
	seen := map[string]bool{}
	for _, row := range strings.Split(table, "\n") {
		cells := strings.Split(row, " | ")
		if len(cells) != 2 {
			t.Fatalf("row %q", row)
		}
		var want []string
		for _, f := range strings.Split(cells[1], ", ") {
			if strings.HasPrefix(f, "`--") {
				want = append(want, strings.Trim(f, "` |"))
			}
		}
		for _, name := range strings.Split(strings.TrimPrefix(cells[0], "| "), ", ") {
			name = strings.Trim(name, "`")
			c := cmds[name]
			if c == nil {
				t.Errorf("the table names %q, which is no command", name)
				continue
			}
			seen[name] = true
			var own []string
			for _, f := range cli.FlagNames(c) {
				if c.LocalFlags().Lookup(strings.TrimPrefix(f, "--")) != nil {
					own = append(own, f)
				}
			}
			if name != "version" && !slices.Equal(own, want) {
				t.Errorf("%s: the table says %v, the command takes %v", name, want, own)
			}
		}
	}
	for _, name := range leaves(testRoot()) {
		if !seen[name] && name != "help" {
			t.Errorf("%s is not in the flag table", name)
		}
	}
}
