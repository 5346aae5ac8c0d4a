// Command outpostctl is Outpost's admin CLI. It finds its node in
// OUTPOST_ADDR and its credentials in OUTPOST_TOKEN (--addr and --token
// override). Every command takes --json. Exit status: 0 success, 1 a
// refused or failed operation, 2 a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

const usage = `usage: outpostctl <command> [flags]

commands:
  status                 the region: nodes, Raft state, leader
  members                gossip members
  kv get KEY             read a region key (--consistent for a linearizable read)
  kv put KEY VALUE       write a region key (VALUE "-" reads stdin)
  kv delete KEY          delete a region key
  kv list [PREFIX]       list region keys
  audit verify           recompute the audit log's Merkle tree and check the
                         signed checkpoint (--since FILE: prove it only grew
                         since an older checkpoint; --save FILE keeps this one;
                         --key VKEY pins the region's audit key)
  audit export --out DIR write records, inclusion proofs and the checkpoint
  audit verify-export DIR --key VKEY   check an export offline
  dev stop NODE          (outpost dev only) kill a node
  dev start NODE         (outpost dev only) start a stopped node

global flags (anywhere after the command):
  --addr URL    node API (env OUTPOST_ADDR, default http://127.0.0.1:7070)
  --token TOK   API token (env OUTPOST_TOKEN)
  --json        machine-readable output
`

var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "outpostctl:", err)
		os.Exit(1)
	}
}

// globals are the flags every command takes.
type globals struct {
	addr, token string
	json        bool
}

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *globals) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	g := &globals{}
	addr := os.Getenv("OUTPOST_ADDR")
	if addr == "" {
		addr = "http://127.0.0.1:7070"
	}
	fs.StringVar(&g.addr, "addr", addr, "node API URL (env OUTPOST_ADDR)")
	fs.StringVar(&g.token, "token", os.Getenv("OUTPOST_TOKEN"), "API token (env OUTPOST_TOKEN)")
	fs.BoolVar(&g.json, "json", false, "print JSON")
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	return fs, g
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd := args[0]
	if cmd == "-h" || cmd == "--help" || cmd == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	sub := ""
	rest := args[1:]
	if cmd == "kv" || cmd == "dev" || cmd == "audit" {
		if len(rest) == 0 {
			fmt.Fprintf(stderr, "outpostctl %s: missing subcommand\n%s", cmd, usage)
			return errUsage
		}
		sub, rest = rest[0], rest[1:]
	}
	fs, g := newFlags(cmd, stderr)
	fs.Bool("consistent", false, "linearizable read (kv get/list)")
	var ao auditOpts
	fs.StringVar(&ao.since, "since", "", "older signed checkpoint file (audit verify)")
	fs.StringVar(&ao.key, "key", "", "the region's audit verifier key (audit commands)")
	fs.StringVar(&ao.save, "save", "", "write the verified checkpoint to this file (audit verify)")
	fs.StringVar(&ao.out, "out", "", "export directory (audit export)")
	fs.StringVar(&ao.region, "region", "", "expected region name (audit commands)")
	pos, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		return nil // usage already printed
	}
	if err != nil {
		return err
	}
	c := newClient(g.addr, g.token)
	consistent := fs.Lookup("consistent").Value.String() == "true"
	switch cmd + " " + sub {
	case "status ":
		return status(ctx, c, g, stdout)
	case "members ":
		return members(ctx, c, g, stdout)
	case "kv get":
		if len(pos) != 1 {
			return usageErr(stderr, "kv get KEY")
		}
		return kvGet(ctx, c, g, pos[0], consistent, stdout)
	case "kv put":
		if len(pos) != 2 {
			return usageErr(stderr, "kv put KEY VALUE")
		}
		return kvPut(ctx, c, g, pos[0], pos[1], stdin, stdout)
	case "kv delete":
		if len(pos) != 1 {
			return usageErr(stderr, "kv delete KEY")
		}
		return kvDelete(ctx, c, g, pos[0], stdout)
	case "kv list":
		if len(pos) > 1 {
			return usageErr(stderr, "kv list [PREFIX]")
		}
		prefix := ""
		if len(pos) == 1 {
			prefix = pos[0]
		}
		return kvList(ctx, c, g, prefix, consistent, stdout)
	case "audit verify":
		return auditVerify(ctx, c, g, ao, stdout)
	case "audit export":
		return auditExport(ctx, c, g, ao, stdout)
	case "audit verify-export":
		if len(pos) != 1 {
			return usageErr(stderr, "audit verify-export DIR --key VKEY")
		}
		return auditVerifyExport(pos[0], g, ao, stdout)
	case "dev stop", "dev start":
		if len(pos) != 1 {
			return usageErr(stderr, "dev "+sub+" NODE")
		}
		return devAction(ctx, c, g, sub, pos[0], stdout)
	}
	fmt.Fprintf(stderr, "outpostctl: unknown command %q\n%s", (cmd + " " + sub), usage)
	return errUsage
}

func usageErr(stderr io.Writer, form string) error {
	fmt.Fprintf(stderr, "usage: outpostctl %s\n", form)
	return errUsage
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments, and returns the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
