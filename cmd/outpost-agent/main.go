// Command outpost-agent is the Outpost agent: it enrolls once with a
// bootstrap token, then attaches to the nearest node of its region over
// mutual TLS and applies the fenced dispatches the node pushes.
//
//	outpost-agent --servers https://n1:7443,https://n2:7443 --state /var/lib/outpost-agent \
//	    --ca-pin sha256:… --token-file /run/outpost/token
//
// The bootstrap token can also come from OUTPOST_AGENT_TOKEN (or --token,
// which other users can see in the process list). After enrollment the
// agent needs only its state directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/agent/dataplane"
)

// errUsage marks a usage error (exit 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "outpost-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("outpost-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	servers := fs.String("servers", "", "agent endpoints of the region's nodes, comma-separated (https://n1:7443,…); needed to enroll")
	token := fs.String("token", "", "bootstrap token (prefer --token-file or OUTPOST_AGENT_TOKEN: arguments are visible to other users)")
	tokenFile := fs.String("token-file", "", "file holding the bootstrap token")
	state := fs.String("state", "/var/lib/outpost-agent", "state directory: key (0600), certificate, CA, highest fencing token")
	caFile := fs.String("ca", "", "region CA certificate (PEM) to trust when enrolling")
	caPin := fs.String("ca-pin", "", "region CA pin (sha256:…, printed by `outpostctl tokens create`) to trust when enrolling")
	host := fs.String("host", "", "host name to report (default the system's)")
	heartbeat := fs.Duration("heartbeat", agent.DefaultHeartbeat, "how often to report to the node; match the node's agents.heartbeat")
	reeval := fs.Duration("reevaluate", agent.DefaultReevaluate, "how often to measure the nodes again and move to a markedly nearer one")
	mode := fs.String("mode", dataplane.ModeAuto, "how to observe TCP: auto (eBPF, else procfs, saying why), ebpf (the same, but a failure to load is an error in the log) or procfs")
	maxFlows := fs.Int("max-flows", dataplane.DefaultMaxFlows, "flows exported on their own; the rest fold into an \"other\" flow, counted (each flow is ~33 series)")
	exportEvery := fs.Duration("export-interval", agent.DefaultExportInterval, "how often telemetry is exported to the node (a dispatched config's export_interval replaces it)")
	spoolBytes := fs.Int64("spool-bytes", agent.DefaultSpoolBytes, "bound of the on-disk buffer of exports not yet accepted by a node; the oldest are dropped beyond it, counted")
	noTelemetry := fs.Bool("no-telemetry", false, "observe nothing and export nothing: a control-plane client only")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "outpost-agent: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	if *version {
		fmt.Fprintln(stderr, agent.Version)
		return nil
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "outpost-agent: --log-level %q: use debug, info, warn or error\n", *level)
		return errUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	cfg := agent.Config{StateDir: *state, CAPin: *caPin, Host: *host, Heartbeat: *heartbeat, Reevaluate: *reeval, Logger: logger}
	if !*noTelemetry {
		cfg.Telemetry = &agent.TelemetryConfig{DataPlane: dataplane.Config{Mode: *mode, MaxFlows: *maxFlows},
			ExportInterval: *exportEvery, SpoolBytes: *spoolBytes}
		if err := cfg.Telemetry.DataPlane.Validate(); err != nil {
			fmt.Fprintf(stderr, "outpost-agent: %v\n", err)
			return errUsage
		}
		if *exportEvery < time.Second || *spoolBytes < 1<<20 {
			fmt.Fprintln(stderr, "outpost-agent: --export-interval must be at least 1s and --spool-bytes at least 1 MiB")
			return errUsage
		}
	}
	for s := range strings.SplitSeq(*servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if !strings.HasPrefix(s, "https://") {
				fmt.Fprintf(stderr, "outpost-agent: --servers %q: use https:// URLs of the nodes' agent ports\n", s)
				return errUsage
			}
			cfg.Servers = append(cfg.Servers, s)
		}
	}
	switch {
	case *tokenFile != "":
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	case *token != "":
		cfg.Token = *token
	default:
		cfg.Token = os.Getenv("OUTPOST_AGENT_TOKEN")
	}
	if *caFile != "" {
		b, err := os.ReadFile(*caFile)
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
