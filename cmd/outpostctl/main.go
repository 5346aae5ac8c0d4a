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
	"strings"
)

const usage = `usage: outpostctl <command> [flags]

commands:
  status                 the region: nodes, Raft state, leader, dispatch lease
  members                gossip members
  kv get KEY             read a region key (--consistent for a linearizable read)
  kv put KEY VALUE       write a region key (VALUE "-" reads stdin)
  kv delete KEY          delete a region key
  kv list [PREFIX]       list region keys
                         (kv commands take --tenant T: tenant T's keys instead)
  audit verify           recompute the audit log's Merkle tree and check the
                         signed checkpoint (--since FILE: prove it only grew
                         since an older checkpoint; --save FILE keeps this one;
                         --key VKEY pins the log's key; --region R the log
                         expected, default the key's or the node's region;
                         --provider: the provider stream)
  audit verify-record SEQ [--tenant T] [--provider] [--since FILE]
                         prove one record is in the signed log, without
                         downloading it (a tenant Admin: its own records)
  audit export --out DIR write records, inclusion proofs and the checkpoint
  audit verify-export DIR --key VKEY [--partial]   check an export offline;
                         one with fewer records than its checkpoint needs
                         --partial
  dev stop NODE          (outpost dev only) kill a node
  dev start NODE         (outpost dev only) start a stopped node

dispatches and failover drills:
  dispatches create --kind K [--tenant T] [--selector S] [--payload JSON |
                         --payload-file F|-] [--id ID]
                         issue a fenced dispatch; follows the lease holder, and
                         retries for 10s while a failover is under way
  dispatches list [--tenant T] [--after INDEX]    committed dispatches
  dispatches watch [--kinds leader,lease,dispatch,fenced]
                         stream the node's events until Ctrl-C
  drill failover [--mode transfer|isolate|stop] [--rounds N]
                 [--isolate-for 5s] [--restart-after 2s]
                         fail the lease holder over and report the times to a
                         new leader, lease and first dispatch, stale dispatches
                         refused and acknowledged writes lost (exit 1 on any)
  drill partition --node ID [--duration 10s]
                         cut one node off its peers, watch, confirm it healed

federation (read-only, between regions):
  peers add NAME --peer-addr HOST:PORT[,HOST:PORT…] --ca PEER-CA.pem --secret-file FILE|-
                         (region admin) federate with region NAME: its CA is
                         pinned, the secret (32+ bytes) is shared with it and
                         stored sealed; the peer adds this region the same way
  peers list             peers: state, RTT, last success, data age, cert expiry
  peers remove NAME      stop federating with NAME (its links go too)
  links create --tenant T --peer P [--link-id ID]
                         (tenant Admin) link tenant T to its counterpart on P:
                         prints a link id; on P, run links create with
                         --link-id ID against P's own tenant
  links list --tenant T
  links remove ID --tenant T --peer P
  global health          every region's health (region admin)
  global agents --tenant T        the tenant's agents here and in linked peers
  global query QUERY --tenant T   an instant PromQL query here and in peers
                         (global views say per peer: ok, stale, timeout,
                         refused, malformed, error; and whether complete)

accounts and tenants:
  whoami                 who the token is: actor, region admin, tenant roles
  users create NAME [--region-admin] [--password-stdin]
                         create a local account (without --password-stdin the
                         node generates a password and shows it once)
  users list             accounts, their roles and lockouts
  users unlock NAME      end a lockout after failed logins
  tenants create NAME --admin USER     create a tenant and its first Admin
  tenants list           the tenants you can see, and your role in each
  tenants members list TENANT
  tenants members set TENANT USER --role viewer|operator|admin
                         change a member's role, or invite an account (it
                         joins only when it accepts; invitations expire)
  tenants members remove TENANT USER   remove a member or withdraw an invitation
  invitations list USER [--password-stdin]
  invitations accept TENANT USER [--password-stdin]
  invitations decline TENANT USER [--password-stdin]
                         an account's own invitations, answered with its
                         password (an API token cannot accept one)
  tenants settings TENANT [--breakglass-auto-approve=true|false]
                         show the tenant's settings, or change them
  tenants audit TENANT [--provider]    the tenant's audit records (--provider:
                         the provider stream: break-glass requests and access)
  login USER [--password-stdin] [--tenant T [--role R]] [--ttl 12h]
                         log in with a password and print an API token for
                         outpostctl (export OUTPOST_TOKEN=…): a tenant token
                         with your role there, or a region-admin token
  tokens create --tenant T [--ttl 15m]       agent bootstrap token (single use)
  tokens list --tenant T
  tokens revoke ID --tenant T
  agents list [--tenant T]
  agents revoke ID [--tenant T]
  agents clear-flags ID [--tenant T]
  tokens api create --name N --role R [--tenant T] [--ttl 720h]
                         create an API token, shown once (without --tenant the
                         role must be region-admin)
  tokens api list [--tenant T]
  tokens api revoke ID [--tenant T]
  breakglass request TENANT --reason TEXT [--duration 1h]
                         (region admin) ask a tenant for access to its data
  breakglass list [TENANT]             grants: a tenant's (its Admins), or
                         every tenant's (region admins)
  breakglass approve TENANT ID         (tenant Admin) approve a grant
  keys status            the master key and how many secrets it wraps
  keys rotate            re-wrap stored secrets under the current master key

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
	cmd, rest := args[0], args[1:]
	if cmd == "-h" || cmd == "--help" || cmd == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	for isGroup(cmd) {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintf(stderr, "outpostctl %s: missing subcommand\n%s", cmd, usage)
			return errUsage
		}
		cmd, rest = cmd+" "+rest[0], rest[1:]
	}
	fs, g, aop, acctp, opsp, fedp := commandFlags(cmd, stderr)
	pos, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		return nil // usage already printed
	}
	if err != nil {
		return err
	}
	sp, known := commands[cmd]
	if !known {
		fmt.Fprintf(stderr, "outpostctl: unknown command %q\n%s", cmd, usage)
		return errUsage
	}
	if err := checkFlags(cmd, sp, fs, stderr); err != nil {
		return err
	}
	ao, acct, ops := *aop, *acctp, *opsp
	ao.tenant, ao.provider = acct.tenant, acct.provider
	c := newClient(g.addr, g.token)
	c.warnTo(stderr)
	if isAccountCommand(cmd) {
		return runAccount(ctx, c, g, acct, cmdline{name: cmd, pos: pos, given: givenFlags(fs), stdin: stdin, stdout: stdout, stderr: stderr})
	}
	consistent := fs.Lookup("consistent").Value.String() == "true"
	if isFederationCommand(cmd) {
		return runFederation(ctx, c, g, *fedp, acct.tenant, cmdline{name: cmd, pos: pos, given: givenFlags(fs), stdin: stdin, stdout: stdout, stderr: stderr})
	}
	if isOpsCommand(cmd) {
		return runOps(ctx, c, g, ops, acct, consistent, cmdline{name: cmd, pos: pos, given: givenFlags(fs), stdin: stdin, stdout: stdout, stderr: stderr})
	}
	switch cmd {
	case "status":
		return status(ctx, c, g, stdout)
	case "members":
		return members(ctx, c, g, stdout)
	case "kv get":
		if len(pos) != 1 {
			return usageErr(stderr, sp.form)
		}
		return kvGet(ctx, c, g, acct.tenant, pos[0], consistent, stdout)
	case "kv put":
		if len(pos) != 2 {
			return usageErr(stderr, sp.form)
		}
		return kvPut(ctx, c, g, acct.tenant, pos[0], pos[1], stdin, stdout)
	case "kv delete":
		if len(pos) != 1 {
			return usageErr(stderr, sp.form)
		}
		return kvDelete(ctx, c, g, acct.tenant, pos[0], stdout)
	case "kv list":
		if len(pos) > 1 {
			return usageErr(stderr, sp.form)
		}
		prefix := ""
		if len(pos) == 1 {
			prefix = pos[0]
		}
		return kvList(ctx, c, g, acct.tenant, prefix, consistent, stdout)
	case "audit verify":
		return auditVerify(ctx, c, g, ao, stdout)
	case "audit verify-record":
		if len(pos) != 1 {
			return usageErr(stderr, "audit verify-record SEQ [--tenant T] [--provider] [--since FILE] [--key VKEY]")
		}
		return auditVerifyRecord(ctx, c, g, pos[0], ao, stdout)
	case "audit export":
		return auditExport(ctx, c, g, ao, stdout)
	case "audit verify-export":
		if len(pos) != 1 {
			return usageErr(stderr, "audit verify-export DIR --key VKEY")
		}
		return auditVerifyExport(pos[0], g, ao, stdout)
	case "dev stop", "dev start":
		if len(pos) != 1 {
			return usageErr(stderr, cmd+" NODE")
		}
		return devAction(ctx, c, g, strings.TrimPrefix(cmd, "dev "), pos[0], stdout)
	}
	fmt.Fprintf(stderr, "outpostctl: unknown command %q\n%s", cmd, usage)
	return errUsage
}

// commandFlags is the one FlagSet every command parses (flags may come
// anywhere after the command words); the commands table says which of
// its flags each command takes.
func commandFlags(cmd string, stderr io.Writer) (*flag.FlagSet, *globals, *auditOpts, *accountOpts, *opsOpts, *fedOpts) {
	fs, g := newFlags(cmd, stderr)
	ao, acct, ops := &auditOpts{}, &accountOpts{}, &opsOpts{}
	fs.Bool("consistent", false, "linearizable read (kv get/list, dispatches list)")
	fs.StringVar(&ao.since, "since", "", "older signed checkpoint file (audit verify)")
	fs.StringVar(&ao.key, "key", "", "the region's audit verifier key (audit commands)")
	fs.StringVar(&ao.save, "save", "", "write the verified checkpoint to this file (audit verify)")
	fs.StringVar(&ao.out, "out", "", "export directory (audit export)")
	fs.StringVar(&ao.region, "region", "", "the region whose audit log to expect (audit commands; default: the pinned key's, else the node's)")
	fs.BoolVar(&ao.partial, "partial", false, "accept an export holding fewer records than its checkpoint (audit verify-export)")
	acct.register(fs)
	ops.register(fs)
	fed := &fedOpts{}
	fed.register(fs)
	return fs, g, ao, acct, ops, fed
}

// isGroup reports whether a command word (or words) takes a subcommand.
func isGroup(cmd string) bool {
	switch cmd {
	case "kv", "dev", "audit", "users", "tenants", "tenants members", "invitations", "tokens", "tokens api", "breakglass", "keys", "dispatches", "drill", "agents", "peers", "links", "global":
		return true
	}
	return false
}

// givenFlags names the flags set on the command line, beyond the global
// --addr, --token and --json.
func givenFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "addr", "token", "json":
		default:
			set[f.Name] = true
		}
	})
	return set
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
