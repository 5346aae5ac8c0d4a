package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// sampleArg returns a command-line form of flag f with a value it
// parses, so the test reaches the check of which command takes it.
func sampleArg(t *testing.T, name string) string {
	t.Helper()
	fs, _, _, _, _, _ := commandFlags("test", io.Discard)
	f := fs.Lookup(name)
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return "--" + name
	}
	for _, v := range []string{"1", "1s", "x"} {
		if f.Value.Set(v) == nil {
			return "--" + name + "=" + v
		}
	}
	t.Fatalf("no sample value parses for --%s", name)
	return ""
}

// TestEveryCommandRefusesFlagsItDoesNotUse walks the commands table:
// for every command, every flag outpostctl defines that the command does
// not use is a usage error (exit 2) naming the flag and the command, and
// no request is sent. One FlagSet serves all commands, so without this
// check such a flag parsed and was silently ignored.
func TestEveryCommandRefusesFlagsItDoesNotUse(t *testing.T) {
	all, _, _, _, _, _ := commandFlags("test", io.Discard)
	var names []string
	all.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	for _, cmd := range slices.Sorted(func(yield func(string) bool) {
		for c := range commands {
			if !yield(c) {
				return
			}
		}
	}) {
		sp := commands[cmd]
		for _, name := range names {
			if sp.accepts(name) {
				continue
			}
			t.Run(cmd+"/--"+name, func(t *testing.T) {
				addr, seen := fakeNode(t, nil)
				t.Setenv("OUTPOST_ADDR", addr)
				t.Setenv("OUTPOST_TOKEN", "")
				args := append(strings.Fields(cmd), sampleArg(t, name))
				// Bounded: a command that ran instead of refusing the flag
				// (a watch, a drill) must fail this test, not hang it.
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				var out, errw bytes.Buffer
				err := run(ctx, args, strings.NewReader(""), &out, &errw)
				if !errors.Is(err, errUsage) {
					t.Fatalf("err = %v, want a usage error (exit 2); stderr %q", err, errw.String())
				}
				want := "outpostctl " + cmd + ": --" + name + " does not apply to this command (" + cmd + " takes "
				if !strings.Contains(errw.String(), want) || !strings.Contains(errw.String(), "usage: outpostctl "+sp.form) {
					t.Errorf("stderr = %q, want %q and the usage line", errw.String(), want)
				}
				if n := len(seen()); n != 0 {
					t.Errorf("sent %d requests: %v", n, seen())
				}
			})
		}
	}
}

// TestCommandsTableIsComplete: every command the usage text and
// docs/cli.md name is in the commands table (a command missing from it
// is refused as unknown), and every flag of the table exists.
func TestCommandsTableIsComplete(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	all, _, _, _, _, _ := commandFlags("test", io.Discard)
	for cmd, sp := range commands {
		if !strings.Contains(usage, "  "+cmd) {
			t.Errorf("%q is not in the usage text", cmd)
		}
		if !strings.Contains(string(doc), cmd) {
			t.Errorf("%q is not in docs/cli.md", cmd)
		}
		if !strings.HasPrefix(sp.form, cmd) {
			t.Errorf("%q: usage form %q does not start with the command", cmd, sp.form)
		}
		for _, f := range sp.flags {
			if all.Lookup(f) == nil {
				t.Errorf("%q takes --%s, which outpostctl does not define", cmd, f)
			}
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
	cmd.Env = append(os.Environ(), "OUTPOST_ADDR="+addr, "OUTPOST_TOKEN=opt_x_y")
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

// TestBinaryHelpExitsZero runs the built binary: `-h` or `--help` after
// any command prints the usage to standard error and exits 0 without
// sending anything, and `help`, `-h` or `--help` alone print it to
// standard output and exit 0 (docs/cli.md). `-h` where a group's
// subcommand belongs is still the usage error "missing subcommand"
// (exit 2).
func TestBinaryHelpExitsZero(t *testing.T) {
	bin := buildOutpostctl(t)
	for _, alone := range []string{"help", "-h", "--help"} {
		t.Run(alone, func(t *testing.T) {
			code, stdout, _, reqs := runBinary(t, bin, alone)
			if code != 0 || !strings.HasPrefix(stdout, "usage: outpostctl") || len(reqs) != 0 {
				t.Fatalf("exit %d, stdout %.40q, %d requests; want exit 0, the usage on standard output, none sent", code, stdout, len(reqs))
			}
		})
	}
	names := slices.Sorted(maps.Keys(commands))
	for _, name := range names {
		for _, h := range []string{"-h", "--help"} {
			args := append(strings.Fields(name), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				code, _, stderr, reqs := runBinary(t, bin, args...)
				if code != 0 || !strings.Contains(stderr, "usage: outpostctl") || len(reqs) != 0 {
					t.Fatalf("exit %d, stderr %.60q, requests %v; want exit 0, the usage on standard error, none sent", code, stderr, reqs)
				}
			})
		}
	}
	t.Run("kv -h", func(t *testing.T) {
		if code, _, stderr, _ := runBinary(t, bin, "kv", "-h"); code != 2 || !strings.Contains(stderr, "missing subcommand") {
			t.Fatalf("exit %d, stderr %.60q; want exit 2, missing subcommand", code, stderr)
		}
	})
}
