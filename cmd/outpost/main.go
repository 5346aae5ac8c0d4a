// Command outpost is the Outpost node daemon.
//
//	outpost serve --config FILE      run a node
//	outpost dev [--nodes N] ...      run a complete dev region in one process
//	outpost keygen [--out FILE]      a new gossip key (printed, or wrapped into FILE)
//	outpost keys generate            print a new master key
//	outpost keys wrap --purpose P --in FILE --out FILE [--master-key-file FILE]   wrap a secret file
//	outpost ca create --region R --out DIR   create a region CA (key wrapped)
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
	"syscall"
	"time"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/agent/dataplane"
	"github.com/outpost-mesh/outpost/dev"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/pki"
)

const usage = `usage: outpost <command> [flags]

commands:
  serve --config FILE    run a node (see docs/config.md and deploy/)
  dev                    run a dev region on loopback (outpost dev -h)
  keygen [--out FILE]    a new gossip key: printed (for OUTPOST_GOSSIP_KEY), or
                         written to FILE wrapped by the master key (gossip.key_file)
  keys generate          print a new master key (store it 0600; OUTPOST_MASTER_KEY)
  keys wrap              wrap a secret file with the master key (outpost keys wrap -h)
  ca create              create a region CA, key wrapped (outpost ca create -h)

The master key comes from OUTPOST_MASTER_KEY or --master-key-file.
`

// errUsage marks a usage error (exit 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
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

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "dev":
		return devCmd(ctx, args[1:], stdout, stderr)
	case "keygen":
		return keygen(args[1:], stdout, stderr)
	case "keys":
		return keysCmd(args[1:], stdout, stderr)
	case "ca":
		return caCmd(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "outpost: unknown command %q\n%s", args[0], usage)
	return errUsage
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "node config file (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		fmt.Fprintln(stderr, "outpost serve: --config FILE is required (deploy/node.example.yaml is a starting point)")
		return errUsage
	}
	cfg, err := node.LoadConfig(*path)
	if err != nil {
		return err
	}
	logger := node.NewLogger(cfg.Log, stderr)
	return node.Run(ctx, cfg, node.Options{Logger: logger})
}

func devCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o dev.Options
	fs.StringVar(&o.HTTP, "http", "127.0.0.1:7070", "API address of the first node; node i listens on the next port")
	fs.StringVar(&o.DataDir, "data", "", "data directory (default: a new temp dir, removed on exit unless --keep)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temp data dir on exit")
	fs.IntVar(&o.Nodes, "nodes", 1, "nodes in the region: 1, 3 or 5")
	fs.IntVar(&o.Regions, "regions", 1, "regions, 1..5: more than one are federated on loopback (peered, their dev tenants linked)")
	fs.IntVar(&o.Agents, "agents", 1, "in-process agents, enrolled in tenant \"dev\" (0 for none)")
	observe := fs.String("observe", dataplane.ModeAuto, "how the first agent observes this machine: auto (eBPF when run as root, else procfs, saying why), ebpf, procfs, or off")
	level := fs.String("log-level", "warn", "node log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *observe {
	case "off":
	case dataplane.ModeAuto, dataplane.ModeEBPF, dataplane.ModeProcfs:
		o.Telemetry = &agent.TelemetryConfig{DataPlane: dataplane.Config{Mode: *observe}, ExportInterval: 5 * time.Second}
	default:
		fmt.Fprintf(stderr, "outpost dev: --observe %q: use auto, ebpf, procfs or off\n", *observe)
		return errUsage
	}
	o.Out = stdout
	o.Logger = node.NewLogger(node.LogConfig{Level: *level, Format: "text"}, stderr)
	if o.Regions > 1 {
		return devFederation(ctx, o, stdout)
	}
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

Try:
  export OUTPOST_ADDR=%s OUTPOST_TOKEN=$(cat %s)
  outpostctl status
  outpostctl agents list     # the dev agents, in tenant "dev" (its admin: dev / password in %s)
  outpostctl dev stop n1     # with --nodes 3: kill a node, then run status against another node
%s
Press Ctrl-C to stop.
`, d.APIURL(), strings.TrimSpace(string(password)), strings.TrimSpace(string(token)), d.TokenFile(), d.APIURL(), d.TokenFile(), d.DevPasswordFile(), queryHint(d, o))
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
	first, last := f.Regions[0], f.Regions[len(f.Regions)-1]
	fmt.Fprintf(stdout, `
Try (against %[1]s; any region works the same):
  export OUTPOST_ADDR=%[2]s OUTPOST_TOKEN=$(cat %[3]s)
  outpostctl peers list                 # every peer: state, RTT, data age, cert expiry
  outpostctl global health              # every region's nodes, leader and lease
  OUTPOST_TOKEN=$(cat %[4]s) outpostctl global agents --tenant dev
                                        # tenant "dev"'s agents in every region, each row labelled with its peer
  outpostctl dev stop n1 --addr %[5]s --token $(cat %[6]s)
                                        # stop a node of %[7]s: with --nodes 1 the region is down and the global
                                        # views say "timeout" for it and still answer; with 3, its other nodes answer

Press Ctrl-C to stop.
`, first.Name(), first.APIURL(), first.TokenFile(), first.QueryTokenFile(), last.APIURL(), last.TokenFile(), last.Name())
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

func caCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, "usage: outpost ca create --region NAME --out DIR [--master-key-file FILE]")
		return errUsage
	}
	fs := flag.NewFlagSet("ca create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	region := fs.String("region", "", "region name")
	out := fs.String("out", "", "directory for ca.crt and ca.key")
	mk := fs.String("master-key-file", "", "master key file (default: OUTPOST_MASTER_KEY)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *region == "" || *out == "" {
		fmt.Fprintln(stderr, "outpost ca create: --region and --out are required")
		return errUsage
	}
	if _, err := os.Stat(*out + "/ca.key"); err == nil {
		return fmt.Errorf("%s/ca.key exists; refusing to overwrite a region CA", *out)
	}
	kp, err := masterKey(*mk)
	if err != nil {
		return err
	}
	ca, err := pki.NewCA(*region)
	if err != nil {
		return err
	}
	if err := ca.SaveWrapped(kp, *out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created region CA for %q in %s (fingerprint %s; key wrapped by master key %s)\n", *region, *out, ca.Fingerprint(), kp.KeyID())
	fmt.Fprintf(stdout, "agent CA pin: %s (outpost-agent --ca-pin)\n", ca.Pin())
	fmt.Fprintln(stdout, "copy ca.crt, ca.key and the master key to every node; set tls.ca_cert, tls.ca_key and keys.master_key_file")
	return nil
}
