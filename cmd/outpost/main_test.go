package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/internal/cli"
	"github.com/outpost-mesh/outpost/internal/cli/clidoc"
)

var (
	update = flag.Bool("update", false, "rewrite docs/cli/ from the command tree (go generate ./cmd/...)")
	manDir = flag.String("man", "", "write the man pages to this directory (make man)")
)

func testRoot() *cobra.Command {
	return newRoot(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
}

// runOutpost runs one command line in-process.
func runOutpost(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errw bytes.Buffer
	err = run(context.Background(), args, strings.NewReader(""), &out, &errw)
	return out.String(), errw.String(), err
}

// TestEveryCommandHelp: `-h` on every command prints its description,
// usage line and examples to standard output and exits 0.
func TestEveryCommandHelp(t *testing.T) {
	root := testRoot()
	cli.Walk(root, func(c *cobra.Command) {
		if c.HasParent() && !c.IsAvailableCommand() {
			return
		}
		args := append(strings.Fields(strings.TrimPrefix(c.CommandPath(), "outpost")), "-h")
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, stderr, err := runOutpost(t, args...)
			if err != nil || stderr != "" {
				t.Fatalf("err %v, stderr %q", err, stderr)
			}
			if !strings.Contains(out, "\nusage: "+c.UseLine()+"\n") || c.Example == "" || !strings.Contains(out, "\nExamples:\n"+c.Example) {
				t.Errorf("help lacks the usage line or examples:\n%s", out)
			}
		})
	})
}

// TestUsageErrors: a mistaken command line is one line and the command's
// usage, exit 2.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args  []string
		first string
	}{
		{[]string{"serve"}, "outpost serve: --config FILE is required (deploy/node.example.yaml is a starting point)"},
		{[]string{"serve", "--confg", "x"}, "outpost serve: unknown flag --confg; did you mean --config?"},
		{[]string{"dev", "--nodes", "three"}, `outpost dev: invalid value "three" for --nodes: use a whole number`},
		{[]string{"dev", "--observe", "x"}, `outpost dev: --observe "x": use auto, ebpf, procfs or off`},
		{[]string{"keys"}, "outpost keys: missing subcommand"},
		{[]string{"keys", "wrap", "--purpose", "x"}, "outpost keys wrap: --purpose must be ca_key, gossip_key or oidc_client_secret"},
		{[]string{"ca", "create", "--region", "eu"}, "outpost ca create: --region and --out are required"},
		{[]string{"ca", "create", "--config", "x"}, "outpost ca create: --config does not apply to this command (ca create takes --region, --out, --master-key-file)"},
		{[]string{"serve", "extra", "--config", "x"}, `outpost serve: unexpected argument "extra" (serve takes no arguments)`},
		{[]string{"servee"}, `outpost: unknown command "servee"; did you mean serve?`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stderr, err := runOutpost(t, tt.args...)
			lines := strings.Split(stderr, "\n")
			if !errors.Is(err, errUsage) || lines[0] != tt.first || len(lines) < 2 || !strings.HasPrefix(lines[1], "usage: outpost") {
				t.Fatalf("err %v, stderr:\n%s\nwant first line %q, then the usage", err, stderr, tt.first)
			}
		})
	}
}

// TestValidate: a good config is "configuration valid" (exit 0); a bad
// one lists every problem, each with the file, line and field as YAML
// writes it, in words (no Go type names), exit 1.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("region: eu-west\nnode_id: n1\nbootstrap_expect: 1\nraft:\n  bind: 127.0.0.1:7301\ngossip:\n  bind: 127.0.0.1:7302\n"), 0o644)
	out, _, err := runOutpost(t, "validate", "--config", good)
	if err != nil || out != good+": configuration valid\n" {
		t.Fatalf("good config: %v\n%s", err, out)
	}
	out, _, err = runOutpost(t, "validate", "--config", "../../deploy/node.example.yaml")
	if err != nil {
		t.Fatalf("deploy/node.example.yaml: %v\n%s", err, out)
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(strings.Join([]string{
		"region: EU West",          // 1: not a name
		"node_id: n1",              // 2
		"bootstrap_expct: 3",       // 3: no such field
		"lease:",                   // 4
		"  duration: soon",         // 5: not a duration
		"  drift_margin: 2s",       // 6: above a third of the (default) duration
		"raft:",                    // 7
		"  bind: 127.0.0.1:7301",   // 8
		"  heartbeat: 1s",          // 9: no such field
		"gossip:",                  // 10
		"  bind: 127.0.0.1:7302",   // 11
		"  seeds: [10.0.0.1, x:1]", // 12: a seed without a port
		"agents:",                  // 13
		"  max_connections: lots",  // 14: not a number
		"log:",                     // 15
		"  level: loud",            // 16
	}, "\n")), 0o644)
	out, _, err = runOutpost(t, "validate", "--config", bad)
	if err == nil || errors.Is(err, errUsage) {
		t.Fatalf("bad config: err %v, want a failure (exit 1)\n%s", err, out)
	}
	for _, want := range []string{
		bad + `:1: region "EU West": use 1-63 lowercase letters`,
		bad + ":3: bootstrap_expct: no such field (did you mean bootstrap_expect?)",
		bad + `:5: lease.duration: "soon" is not a duration`,
		bad + ":6: lease.drift_margin 2s must be under a third of lease.duration",
		bad + ":9: raft.heartbeat: no such field",
		bad + `:12: gossip.seeds[0] "10.0.0.1": address 10.0.0.1: missing port in address`,
		bad + `:14: agents.max_connections: "lots" is not a whole number`,
		bad + `:16: log.level "loud": use debug, info, warn or error`,
	} {
		if !strings.Contains(out, want+"") {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, goName := range []string{"node.Config", "time.Duration", "int64", "!!str", "lease.Config", "DriftMargin"} {
		if strings.Contains(out, goName) {
			t.Errorf("output names Go's %q:\n%s", goName, out)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
	// serve lists the same problems, and runs nothing.
	if _, _, err := runOutpost(t, "serve", "--config", bad); err == nil || !strings.Contains(err.Error(), "\n  line 9: raft.heartbeat: no such field") {
		t.Errorf("serve: %v", err)
	}
	if _, _, err := runOutpost(t, "validate", "--config", filepath.Join(dir, "missing.yaml")); err == nil || errors.Is(err, errUsage) {
		t.Errorf("a missing file: %v", err)
	}
}

// TestVersion: `outpost version` and `--version` print the build.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, _, err := runOutpost(t, args...)
		if err != nil || !strings.HasPrefix(out, "outpost ") || !strings.Contains(out, "\ncommit:  ") || !strings.Contains(out, "\ngo:      go") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

// TestCLIReference: docs/cli/ is what the command tree generates (-update
// rewrites it; -man DIR writes the man pages).
func TestCLIReference(t *testing.T) {
	clidoc.TestReference(t, testRoot(), "../../docs/cli", "./cmd/outpost", *update, *manDir)
}

// TestDocsCommandLines: every outpost command line shown in code in
// README.md and docs/*.md names a command that exists, with its flags.
func TestDocsCommandLines(t *testing.T) {
	clidoc.TestDocLines(t, testRoot(), "../..", 10)
}
