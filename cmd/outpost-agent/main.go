// Command outpost-agent is the Outpost agent: it enrolls once with a
// bootstrap token, then attaches to the nearest node of its region over
// mutual TLS and applies the fenced dispatches the node pushes.
//
//	outpost-agent --servers https://n1:7443,https://n2:7443 --state /var/lib/outpost-agent \
//	    --ca-pin sha256:… --token-file /run/outpost/token
//
// The bootstrap token can also come from OUTPOST_AGENT_TOKEN (or --token,
// which other users can see in the process list). After enrollment the
// agent needs only its state directory. The command is a spf13/cobra
// tree (newRoot); its reference in docs/cli/ is generated from it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/agent/dataplane"
	"github.com/outpost-mesh/outpost/internal/cli"
)

//go:generate go test -run TestCLIReference -update .

// errUsage marks a usage error (exit 2).
var errUsage = cli.ErrUsage

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "outpost-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cli.Execute(ctx, newRoot(stdout, stderr), args)
}

// options are the agent's flags.
type options struct {
	servers, token, tokenFile, state, caFile, caPin, host, mode, level string
	heartbeat, reeval, exportEvery                                     time.Duration
	maxFlows                                                           int
	spoolBytes                                                         int64
	noTelemetry                                                        bool
}

// newRoot builds the command tree: the agent itself, and version.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var o options
	root := &cobra.Command{
		Use:   "outpost-agent --servers URLS --ca-pin sha256:… [--token-file FILE] [--state DIR]",
		Short: "The Outpost agent",
		Long: `outpost-agent enrolls once with a bootstrap token (` + "`outpostctl tokens create`" + `),
then attaches to the nearest node of its region over mutual TLS, applies the
fenced dispatches the node pushes, observes the host's TCP connections
(eBPF, else procfs) and exports them to the node as OTLP metrics. After
enrollment it needs only its state directory.

The bootstrap token comes from --token-file, OUTPOST_AGENT_TOKEN or --token
(which other users can see in the process list). Exit status: 0 stopped by
a signal, 1 a failure (a refused enrollment says why), 2 a usage error.`,
		Example: "  OUTPOST_AGENT_TOKEN=opb_… outpost-agent --servers https://n1:7443,https://n2:7443 --ca-pin sha256:…\n" +
			"  outpost-agent --state /var/lib/outpost-agent --mode procfs --log-level debug",
		RunE: func(c *cobra.Command, _ []string) error { return runAgent(c.Context(), o, stderr) },
	}
	f := root.Flags()
	f.StringVar(&o.servers, "servers", "", "agent endpoints (`URLS`) of the region's nodes, comma-separated: https://n1:7443,…; needed to enroll")
	f.StringVar(&o.token, "token", "", "bootstrap `TOKEN` (prefer --token-file or OUTPOST_AGENT_TOKEN: arguments are visible to other users)")
	f.StringVar(&o.tokenFile, "token-file", "", "`FILE` holding the bootstrap token")
	f.StringVar(&o.state, "state", "/var/lib/outpost-agent", "state `DIR`: key (0600), certificate, CA, highest fencing token")
	f.StringVar(&o.caFile, "ca", "", "region CA certificate (PEM `FILE`) to trust when enrolling")
	f.StringVar(&o.caPin, "ca-pin", "", "region CA `PIN` (sha256:…, printed by outpostctl tokens create) to trust when enrolling")
	f.StringVar(&o.host, "host", "", "host `NAME` to report (default the system's)")
	f.DurationVar(&o.heartbeat, "heartbeat", agent.DefaultHeartbeat, "how often to report to the node; match the node's agents.heartbeat")
	f.DurationVar(&o.reeval, "reevaluate", agent.DefaultReevaluate, "how often to measure the nodes again and move to a markedly nearer one")
	f.StringVar(&o.mode, "mode", dataplane.ModeAuto, "how to observe TCP: auto (eBPF, else procfs, saying why), ebpf (the same, but a failure to load is an error in the log) or procfs")
	f.IntVar(&o.maxFlows, "max-flows", dataplane.DefaultMaxFlows, "flows exported on their own; the rest fold into an \"other\" flow, counted (each flow is ~33 series)")
	f.DurationVar(&o.exportEvery, "export-interval", agent.DefaultExportInterval, "how often telemetry is exported to the node (a dispatched config's export_interval replaces it)")
	f.Int64Var(&o.spoolBytes, "spool-bytes", agent.DefaultSpoolBytes, "bound of the on-disk buffer of exports not yet accepted by a node; the oldest are dropped beyond it, counted")
	f.BoolVar(&o.noTelemetry, "no-telemetry", false, "observe nothing and export nothing: a control-plane client only")
	f.StringVar(&o.level, "log-level", "info", "debug, info, warn or error")
	cli.AddVersion(root, fmt.Sprintf("reports: %s (the version its node sees)\n", agent.Version))
	cli.Setup(root, strings.NewReader(""), stdout, stderr)
	return root
}

// runAgent checks the flags, enrolls if it has to, and runs the agent
// until ctx ends.
func runAgent(ctx context.Context, o options, stderr io.Writer) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(o.level)); err != nil {
		return cli.Usagef("--log-level %q: use debug, info, warn or error", o.level)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	cfg := agent.Config{StateDir: o.state, CAPin: o.caPin, Host: o.host, Heartbeat: o.heartbeat, Reevaluate: o.reeval, Logger: logger}
	if !o.noTelemetry {
		cfg.Telemetry = &agent.TelemetryConfig{DataPlane: dataplane.Config{Mode: o.mode, MaxFlows: o.maxFlows},
			ExportInterval: o.exportEvery, SpoolBytes: o.spoolBytes}
		if err := cfg.Telemetry.DataPlane.Validate(); err != nil {
			return cli.Usagef("%v", err)
		}
		if o.exportEvery < time.Second || o.spoolBytes < 1<<20 {
			return cli.Usagef("--export-interval must be at least 1s and --spool-bytes at least 1 MiB")
		}
	}
	for s := range strings.SplitSeq(o.servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if !strings.HasPrefix(s, "https://") {
				return cli.Usagef("--servers %q: use https:// URLs of the nodes' agent ports", s)
			}
			cfg.Servers = append(cfg.Servers, s)
		}
	}
	switch {
	case o.tokenFile != "":
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	case o.token != "":
		cfg.Token = o.token
	default:
		cfg.Token = os.Getenv("OUTPOST_AGENT_TOKEN")
	}
	if o.caFile != "" {
		b, err := os.ReadFile(o.caFile)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		cfg.CAPEM = b
	}
	ectx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	a, err := agent.New(ectx, cfg)
	cancel()
	if err != nil {
		return err
	}
	st := a.Status()
	logger.Info("outpost-agent starting", "agent", st.AgentID, "tenant", st.Tenant, "region", st.Region, "cert_expires", st.CertExpires, "version", agent.Version)
	return a.Run(ctx)
}
