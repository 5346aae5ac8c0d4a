package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/internal/cli"
	"github.com/outpost-mesh/outpost/internal/cli/clidoc"
)

var (
	update = flag.Bool("update", false, "rewrite docs/cli/ from the command tree (go generate ./cmd/...)")
	manDir = flag.String("man", "", "write the man pages to this directory (make man)")
)

func testRoot() *cobra.Command { return newRoot(&bytes.Buffer{}, &bytes.Buffer{}) }

func runAgentCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errw bytes.Buffer
	err = run(context.Background(), args, &out, &errw)
	return out.String(), errw.String(), err
}

// TestEveryCommandHelp: `-h` on every command prints its description,
// usage line and examples to standard output and exits 0, running
// nothing.
func TestEveryCommandHelp(t *testing.T) {
	cli.Walk(testRoot(), func(c *cobra.Command) {
		if c.HasParent() && !c.IsAvailableCommand() {
			return
		}
		args := append(strings.Fields(strings.TrimPrefix(c.CommandPath(), "outpost-agent")), "-h")
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, stderr, err := runAgentCLI(t, args...)
			if err != nil || stderr != "" {
				t.Fatalf("err %v, stderr %q", err, stderr)
			}
			if !strings.Contains(out, "\nusage: "+c.UseLine()+"\n") || c.Example == "" || !strings.Contains(out, "\nExamples:\n"+c.Example) {
				t.Errorf("help lacks the usage line or examples:\n%s", out)
			}
		})
	})
}

// TestUsageErrors: mistaken flags are one line and the usage, exit 2,
// before the agent does anything.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args  []string
		first string
	}{
		{[]string{"--servers", "http://n1:7443"}, `outpost-agent: --servers "http://n1:7443": use https:// URLs of the nodes' agent ports`},
		{[]string{"--log-level", "loud"}, `outpost-agent: --log-level "loud": use debug, info, warn or error`},
		{[]string{"--heartbeat", "often"}, `outpost-agent: invalid value "often" for --heartbeat: use a duration such as 10s, 1m30s or 2h`},
		{[]string{"--sever", "https://n1:7443"}, "outpost-agent: unknown flag --sever; did you mean --servers?"},
		{[]string{"enroll"}, `outpost-agent: unknown command "enroll" for "outpost-agent"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stderr, err := runAgentCLI(t, tt.args...)
			lines := strings.Split(stderr, "\n")
			if !errors.Is(err, errUsage) || lines[0] != tt.first || len(lines) < 2 || !strings.HasPrefix(lines[1], "usage: outpost-agent") {
				t.Fatalf("err %v, stderr:\n%s\nwant first line %q, then the usage", err, stderr, tt.first)
			}
		})
	}
}

// TestVersion: `version` and `--version` print the build and the version
// the agent reports to its node.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, _, err := runAgentCLI(t, args...)
		if err != nil || !strings.HasPrefix(out, "outpost-agent ") || !strings.Contains(out, "\ngo:      go") || !strings.Contains(out, "reports: "+agent.Version) {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

// TestCLIReference: docs/cli/ is what the command tree generates (-update
// rewrites it; -man DIR writes the man pages).
func TestCLIReference(t *testing.T) {
	clidoc.TestReference(t, testRoot(), "../../docs/cli", "./cmd/outpost-agent", *update, *manDir)
}

// TestDocsCommandLines: every outpost-agent command line shown in code in
// README.md and docs/*.md uses flags the agent has.
func TestDocsCommandLines(t *testing.T) {
	clidoc.TestDocLines(t, testRoot(), "../..", 1)
}
