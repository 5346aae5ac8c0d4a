// Command outpostctl is Outpost's admin CLI. It finds its node in
// OUTPOST_ADDR and its credentials in OUTPOST_TOKEN (--addr and --token
// override). Every command takes --json and -h. Exit status: 0 success,
// 1 a refused or failed operation, 2 a usage error.
//
// The commands are a spf13/cobra tree (newRoot); the reference in
// docs/cli/ is generated from it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/internal/cli"
)

//go:generate go test -run TestCLIReference -update .

// errUsage marks a usage error (exit 2).
var errUsage = cli.ErrUsage

// defaultAddr is the node API without --addr or OUTPOST_ADDR.
const defaultAddr = "http://127.0.0.1:7070"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "outpostctl:", err)
		os.Exit(1)
	}
}

// run runs one command line. A usage error is already printed (one line
// and the command's usage) when it returns; other errors are for main.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return cli.Execute(ctx, newRoot(&app{stdin: stdin, stdout: stdout, stderr: stderr}), args)
}

// globals are the flags every command takes.
type globals struct {
	addr, token string
	json        bool
}

// app is one run of outpostctl: its streams and global flags, which the
// commands' closures read once cobra has parsed them.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	g              globals
}

// client is a client of the node at --addr with --token, saying on
// standard error when it retries.
func (a *app) client() *client {
	c := newClient(a.g.addr, a.g.token)
	c.warnTo(a.stderr)
	return c
}

// Command groups of the root's help.
var groups = []*cobra.Group{
	{ID: "region", Title: "Region and key/value store:"},
	{ID: "ops", Title: "Dispatches and failover drills:"},
	{ID: "audit", Title: "Audit log:"},
	{ID: "access", Title: "Accounts, tenants and tokens:"},
	{ID: "agents", Title: "Agents:"},
	{ID: "fed", Title: "Federation (read-only, between regions):"},
}

// newRoot builds the command tree of one run.
func newRoot(a *app) *cobra.Command {
	root := cli.Group("outpostctl <command>", "Outpost's admin CLI",
		"  export OUTPOST_ADDR=http://127.0.0.1:7070 OUTPOST_TOKEN=$(cat admin.token)\n  outpostctl status\n  outpostctl kv put app/config - < config.json")
	root.Long = `outpostctl administers an Outpost region through a node's HTTP API
(docs/api.md): the region's state, its key/value store, dispatches and
drills, the audit log, accounts, tenants, tokens, agents and federation.

It asks the node at --addr (env OUTPOST_ADDR, default ` + defaultAddr + `)
with the API token in --token (env OUTPOST_TOKEN; ` + "`outpostctl login USER`" + `
makes one). Exit status: 0 success, 1 a refused or failed operation, 2 a
usage error.`
	root.AddGroup(groups...)
	pf := root.PersistentFlags()
	pf.StringVar(&a.g.addr, "addr", "", "node API `URL` (env OUTPOST_ADDR; default "+defaultAddr+")")
	pf.StringVar(&a.g.token, "token", "", "the API `TOKEN` to act with (env OUTPOST_TOKEN; outpostctl login USER makes one)")
	pf.BoolVar(&a.g.json, "json", false, "print JSON instead of a table or a sentence")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if a.g.addr == "" {
			a.g.addr = os.Getenv("OUTPOST_ADDR")
		}
		if a.g.addr == "" {
			a.g.addr = defaultAddr
		}
		if a.g.token == "" {
			a.g.token = os.Getenv("OUTPOST_TOKEN")
		}
		return nil
	}
	add := func(group string, cs ...*cobra.Command) {
		for _, c := range cs {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("region", statusCommand(a), membersCommand(a), kvCommand(a), devCommand(a))
	add("ops", dispatchesCommand(a), drillCommand(a))
	add("audit", auditCommand(a))
	add("access", loginCommand(a), whoamiCommand(a), usersCommand(a), tenantsCommand(a), invitationsCommand(a),
		tokensCommand(a), breakglassCommand(a), keysCommand(a))
	add("agents", agentsCommand(a))
	add("fed", peersCommand(a), linksCommand(a), globalCommand(a))
	version := cli.AddVersion(root, "")
	cli.Setup(root, a.stdin, a.stdout, a.stderr)
	// These ask no node.
	for _, c := range root.Commands() {
		if c == version || c.Name() == "help" || c.Name() == "completion" {
			cli.Ignores(c, "addr", "token")
		}
	}
	return root
}
