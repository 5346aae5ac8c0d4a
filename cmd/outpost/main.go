// Command outpost is the Outpost node daemon: `outpost serve --config
// FILE` runs a node, `outpost dev` a whole region on loopback, `outpost
// validate` checks a config; keygen, keys and ca make the secrets a
// region needs. The commands are a spf13/cobra tree (newRoot); the
// reference in docs/cli/ is generated from it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/agent/dataplane"
	"github.com/outpost-mesh/outpost/dev"
	"github.com/outpost-mesh/outpost/internal/cli"
	"github.com/outpost-mesh/outpost/internal/gcpolicy"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/pki"
)

//go:generate go test -run TestCLIReference -update .

// errUsage marks a usage error (exit 2).
var errUsage = cli.ErrUsage

func main() {
	gcpolicy.Apply() // GOGC=400 unless the environment sets it: see the package
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	case errors.Is(err, node.ErrStoppedByDrill):
		// EX_TEMPFAIL: the supervisor (Restart=on-failure) starts it again.
		fmt.Fprintln(os.Stderr, "outpost:", err, "(exit 75; the supervisor restarts the node)")
		os.Exit(75)
	default:
		fmt.Fprintln(os.Stderr, "outpost:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return cli.Execute(ctx, newRoot(stdin, stdout, stderr), args)
}

// newRoot builds the command tree of one run.
func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := cli.Group("outpost <command>", "The Outpost node daemon",
		"  outpost dev --nodes 3\n  outpost validate --config /etc/outpost/node.yaml\n  outpost serve --config /etc/outpost/node.yaml")
	root.Long = `outpost runs an Outpost node (serve) or a whole dev region on loopback
(dev), checks a node's config (validate), and makes the secrets a region
needs: the master key (keys generate), the gossip key (keygen) and the
region CA (ca create). The master key comes from OUTPOST_MASTER_KEY or
--master-key-file. Exit status: 0 success, 1 a failure, 2 a usage error,
75 a node stopped by a failover drill (its supervisor restarts it).`
	root.AddGroup(&cobra.Group{ID: "run", Title: "Run a node:"}, &cobra.Group{ID: "secrets", Title: "Keys and certificates:"})
	for _, c := range []*cobra.Command{serveCommand(stderr), devCommand(stdout, stderr), validateCommand(stdout)} {
		c.GroupID = "run"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{keygenCommand(stdout, stderr), keysCommand(stdin, stdout), caCommand(stdout)} {
		c.GroupID = "secrets"
		root.AddCommand(c)
	}
	cli.AddVersion(root, "")
	cli.Setup(root, stdin, stdout, stderr)
	return root
}

func serveCommand(stderr io.Writer) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run a node",
		Long: `Run one node with the configuration in FILE (docs/config.md,
deploy/node.example.yaml). The log goes to standard error. A bad config, a
missing gossip key, a port in use or a data dir of another node ends the
process at once (exit 1), naming the field or file; every problem of a bad
config is listed, as ` + "`outpost validate`" + ` lists them. SIGTERM or SIGINT stops the
node gracefully (exit 0).`,
		Example: "  outpost serve --config /etc/outpost/node.yaml\n  OUTPOST_MASTER_KEY=$(cat master.key) outpost serve --config node.yaml",
		RunE: func(c *cobra.Command, _ []string) error {
			if path == "" {
				return cli.Usagef("--config FILE is required (deploy/node.example.yaml is a starting point)")
			}
			cfg, err := node.LoadConfig(path)
			if err != nil {
				if ps, cerr := node.CheckConfigFile(path); cerr == nil && len(ps) > 0 {
					return configError(path, ps)
				}
				return err
			}
			logger := node.NewLogger(cfg.Log, stderr)
			if p := os.Getenv("OUTPOST_CPU_PROFILE"); p != "" {
				stopProfile, err := startCPUProfile(p)
				if err != nil {
					return err
				}
				defer stopProfile()
				logger.Info("writing a CPU profile until the node stops", "file", p)
			}
			return node.Run(c.Context(), cfg, node.Options{Logger: logger})
		},
	}
	c.Flags().StringVar(&path, "config", "", "the node's config `FILE` (YAML)")
	return c
}

// startCPUProfile profiles the process into path (OUTPOST_CPU_PROFILE, a
// diagnostic: `go tool pprof bin/outpost FILE`) until the returned stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("OUTPOST_CPU_PROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("OUTPOST_CPU_PROFILE: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// configError lists a config file's problems, one per line ("line 4:
// bootstrap_expct: no such field …").
func configError(path string, ps []node.ConfigProblem) error {
	var b strings.Builder
	fmt.Fprintf(&b, "config %s: %d problem(s) (`outpost validate --config %s` lists them too):", path, len(ps), path)
	for _, p := range ps {
		fmt.Fprintf(&b, "\n  %s", p)
	}
	return errors.New(b.String())
}

// problemText is a problem after "FILE:": "12: lease.duration: …", or
// " lease.duration: …" when the file does not set the field.
func problemText(p node.ConfigProblem) string {
	if p.Line > 0 {
		return fmt.Sprintf("%d: %s", p.Line, p.Msg)
	}
	return " " + p.Msg
}

func validateCommand(stdout io.Writer) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a node's config file and list every problem",
		Long: `Read FILE as ` + "`outpost serve --config FILE`" + ` does and list every problem, each
with the file, the line and the field as the file writes it: YAML that does
not parse, fields that do not exist, values of the wrong kind, values out of
range and settings that conflict. Exit 0 and "configuration valid" when
there is none, 1 when there is any. Nothing else is checked: the files the
config names, the keys and the ports are checked when the node starts.`,
		Example: "  outpost validate --config /etc/outpost/node.yaml\n  outpost validate --config deploy/node.example.yaml",
		RunE: func(*cobra.Command, []string) error {
			if path == "" {
				return cli.Usagef("--config FILE is required")
			}
			ps, err := node.CheckConfigFile(path)
			if err != nil {
				return err
			}
			if len(ps) == 0 {
				fmt.Fprintf(stdout, "%s: configuration valid\n", path)
				return nil
			}
			for _, p := range ps {
				fmt.Fprintf(stdout, "%s:%s\n", path, problemText(p))
			}
			return fmt.Errorf("%s: %d problem(s)", path, len(ps))
		},
	}
	c.Flags().StringVar(&path, "config", "", "the node's config `FILE` (YAML)")
	return c
}

func devCommand(stdout, stderr io.Writer) *cobra.Command {
	var o dev.Options
	var observe, level string
	c := &cobra.Command{
		Use:   "dev [--nodes N] [--regions N] [--http ADDR] [--data DIR] [--keep]",
		Short: "Run a dev region (1, 3 or 5 nodes) on loopback",
		Long: `Run a complete region of 1, 3 or 5 nodes in one process on loopback, each
with its own data dir and real ports, sharing a generated CA and gossip key,
with in-process agents enrolled in tenant "dev". It prints each node's API,
the admin login and token, and commands to try. With --regions N, N such
regions federated with each other. The terminal shows progress and
Outpost's own warnings; the nodes' logs (Raft and gossip included) go to
outpost.log in the data dir. Ctrl-C stops it (exit 0); without --keep or
--data, the temporary directory is removed.`,
		Example: "  outpost dev\n  outpost dev --nodes 3 --data /tmp/outpost-dev --log-level debug\n  outpost dev --regions 2\n  outpost dev --agents-bind 10.203.0.1   # agents on another host or namespace dial 10.203.0.1",
		RunE: func(c *cobra.Command, _ []string) error {
			switch observe {
			case "off":
			case dataplane.ModeAuto, dataplane.ModeEBPF, dataplane.ModeProcfs:
				o.Telemetry = &agent.TelemetryConfig{DataPlane: dataplane.Config{Mode: observe}, ExportInterval: 5 * time.Second}
			default:
				return cli.Usagef("--observe %q: use auto, ebpf, procfs or off", observe)
			}
			o.Out = stdout
			// The terminal gets the progress lines and Outpost's own
			// warnings and errors; the nodes' logs, Raft and gossip
			// included, go to outpost.log in the data dir.
			o.Logger = node.NewLogger(node.LogConfig{Level: "warn", Format: "text"}, stderr)
			o.LogLevel = level
			if o.Regions > 1 {
				return devFederation(c.Context(), o, stdout)
			}
			return devRegion(c.Context(), o, stdout)
		},
	}
	f := c.Flags()
	f.IntVar(&o.Nodes, "nodes", 1, "nodes in the region: 1, 3 or 5")
	f.IntVar(&o.Regions, "regions", 1, "regions, 1..5: more than one are federated on loopback (peered, their dev tenants linked)")
	f.StringVar(&o.HTTP, "http", "127.0.0.1:7070", "API `ADDR` of the first node; node i listens on the next port")
	f.StringVar(&o.DataDir, "data", "", "data `DIR` (default: a new temp dir, removed on exit unless --keep)")
	f.BoolVar(&o.Keep, "keep", false, "keep the temp data dir on exit")
	f.IntVar(&o.Agents, "agents", 1, "in-process agents, enrolled in tenant \"dev\" (0 for none)")
	f.StringVar(&o.AgentsBind, "agents-bind", "127.0.0.1", "`ADDR` (IP or IP:PORT; node i takes the next port) of the nodes' agent ports, which agents dial: an address another host reaches lets outpost-agent there enroll")
	f.StringVar(&observe, "observe", dataplane.ModeAuto, "how the first agent observes this machine: auto (eBPF when run as root, else procfs, saying why), ebpf, procfs, or off")
	f.StringVar(&level, "log-level", "info", "`LEVEL` of the nodes' log file, outpost.log in the data dir (kept with --keep or --data): debug, info, warn, error")
	return c
}

// devRegion runs `outpost dev` with one region until ctx ends.
func devRegion(ctx context.Context, o dev.Options, stdout io.Writer) error {
	d, err := dev.Start(ctx, o)
	if err != nil {
		return err
	}
	token, _ := os.ReadFile(d.TokenFile())
	password, _ := os.ReadFile(d.PasswordFile())
	fmt.Fprintf(stdout, `
Outpost dev region is up.
  API and UI:   %s   (open it in a browser; log in as admin)
  admin login:  admin / %s
  admin token:  %s
  token file:   %s
  node logs:    %s

Try:
%s  export OUTPOST_ADDR=%s OUTPOST_TOKEN=$(cat %s)
                             # or, from any shell while it runs: . %s
  outpostctl status
  outpostctl agents list     # the dev agents, in tenant "dev" (its admin: dev / password in %s)
  outpostctl dev stop n1     # with --nodes 3: kill a node, then run status against another node
%s
Press Ctrl-C to stop.
`, d.APIURL(), strings.TrimSpace(string(password)), strings.TrimSpace(string(token)), d.TokenFile(), d.LogFile(), pathHint(), d.APIURL(), d.TokenFile(), d.EnvFile(), d.DevPasswordFile(), queryHint(d, o))
	<-ctx.Done()
	fmt.Fprintln(stdout, "\noutpost dev: stopping...")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Stop(sctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "outpost dev: stopped")
	return nil
}

// devFederation runs `outpost dev --regions N`: N federated regions.
func devFederation(ctx context.Context, o dev.Options, stdout io.Writer) error {
	f, err := dev.StartFederation(ctx, o)
	if err != nil {
		return err
	}
	if err := f.WaitGlobal(ctx, 30*time.Second); err != nil {
		fmt.Fprintf(stdout, "outpost dev: %v (the regions run; `outpostctl peers list` says why)\n", err)
	}
	fmt.Fprintf(stdout, "\nOutpost dev: %d federated regions are up (data in %s).\n", len(f.Regions), f.DataDir())
	for _, r := range f.Regions {
		password, _ := os.ReadFile(r.PasswordFile())
		fmt.Fprintf(stdout, "  %-9s API %s   federation %s   admin / %s   token file %s\n",
			r.Name(), r.APIURL(), r.FederationAddr(), strings.TrimSpace(string(password)), r.TokenFile())
	}
	fmt.Fprintf(stdout, "  node logs: %s in each region's directory, e.g. %s\n", dev.LogFileName, f.Regions[0].LogFile())
	first, last := f.Regions[0], f.Regions[len(f.Regions)-1]
	fmt.Fprintf(stdout, `
Try (against %[1]s; any region works the same):
%[8]s  export OUTPOST_ADDR=%[2]s OUTPOST_TOKEN=$(cat %[3]s)
  outpostctl peers list                 # every peer: state, RTT, data age, cert expiry
  outpostctl global health              # every region's nodes, leader and lease
  OUTPOST_TOKEN=$(cat %[4]s) outpostctl global agents --tenant dev
                                        # tenant "dev"'s agents in every region, each row labelled with its peer
  outpostctl dev stop n1 --addr %[5]s --token $(cat %[6]s)
                                        # stop a node of %[7]s: with --nodes 1 the region is down and the global
                                        # views say "timeout" for it and still answer; with 3, its other nodes answer

Press Ctrl-C to stop.
`, first.Name(), first.APIURL(), first.TokenFile(), first.QueryTokenFile(), last.APIURL(), last.TokenFile(), last.Name(), pathHint())
	<-ctx.Done()
	fmt.Fprintln(stdout, "\noutpost dev: stopping...")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.Stop(sctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "outpost dev: stopped")
	return nil
}

// pathHint is a line for the banner when outpostctl is not on PATH: the
// directory this outpost binary is in, if outpostctl is beside it (a
// repository checkout's ./bin), else where `make build` puts it.
func pathHint() string {
	if _, err := exec.LookPath("outpostctl"); err == nil {
		return ""
	}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		if _, err := os.Stat(filepath.Join(dir, "outpostctl")); err == nil {
			return fmt.Sprintf("  export PATH=\"%s:$PATH\"   # outpostctl is beside this outpost binary\n", dir)
		}
	}
	return "  # outpostctl is not on your PATH: `make build` puts it in ./bin of the repository\n"
}

// queryHint is the banner's PromQL example, when an agent observes.
func queryHint(d *dev.Region, o dev.Options) string {
	if o.Telemetry == nil || o.Agents == 0 {
		return ""
	}
	return fmt.Sprintf(`
This machine's TCP connections, as the dev agent exports them (every 5s), by PromQL:
  curl -sG -H "Authorization: Bearer $(cat %s)" \
    '%s/api/v1/tenants/dev/prometheus/api/v1/query' --data-urlencode 'query=topk(10, sum by (remote_addr, port, comm) (rate(outpost_flow_sent_bytes_total[1m])))'
`, d.QueryTokenFile(), d.APIURL())
}

func caCommand(stdout io.Writer) *cobra.Command {
	grp := cli.Group("ca <command>", "The region CA", "  outpost ca create --region eu-west --out ./ca --master-key-file master.key")
	var region, out, mk string
	create := &cobra.Command{
		Use:   "create --region NAME --out DIR [--master-key-file FILE]",
		Short: "Create a region CA, its key wrapped by the master key",
		Long: `Create a region CA: an ECDSA P-256 key and a self-signed certificate valid
for 10 years. Write DIR/ca.crt (0644) and DIR/ca.key (0600, wrapped by the
master key), and print the CA's pin: "sha256:" and the hex SHA-256 of the
certificate's SubjectPublicKeyInfo, the one fingerprint Outpost shows
(outpostctl tokens create prints the same for outpost-agent --ca-pin).
An existing DIR/ca.key is never overwritten (exit 1).`,
		Example: "  outpost ca create --region eu-west --out ./ca --master-key-file master.key\n  OUTPOST_MASTER_KEY=$(cat master.key) outpost ca create --region eu-west --out /etc/outpost/ca",
		RunE: func(*cobra.Command, []string) error {
			if region == "" || out == "" {
				return cli.Usagef("--region and --out are required")
			}
			if _, err := os.Stat(out + "/ca.key"); err == nil {
				return fmt.Errorf("%s/ca.key exists; refusing to overwrite a region CA", out)
			}
			kp, err := masterKey(mk)
			if err != nil {
				return err
			}
			ca, err := pki.NewCA(region)
			if err != nil {
				return err
			}
			if err := ca.SaveWrapped(kp, out); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "created region CA for %q in %s (key wrapped by master key %s)\n", region, out, kp.KeyID())
			fmt.Fprintf(stdout, "CA pin: %s (SHA-256 of its public key: what outpostctl tokens create prints, for outpost-agent's --ca-pin)\n", ca.Pin())
			fmt.Fprintln(stdout, "copy ca.crt, ca.key and the master key to every node; set tls.ca_cert, tls.ca_key and keys.master_key_file")
			return nil
		},
	}
	create.Flags().StringVar(&region, "region", "", "the region's `NAME`")
	create.Flags().StringVar(&out, "out", "", "the `DIR` for ca.crt and ca.key (created 0700 if missing)")
	withMasterKeyFile(create, &mk)
	grp.AddCommand(create)
	return grp
}
