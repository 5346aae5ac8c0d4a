package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/dev"
	"github.com/outpost-mesh/outpost/drill"
)

// leaseModes are the failover drills the benchmark runs, in order.
var leaseModes = []drill.Mode{drill.ModeTransfer, drill.ModeIsolate, drill.ModeStop}

// benchLease runs cfg.leaseRounds failover drills of each mode against a
// 3-node dev region (full nodes: API, lease, audit; in this process, on
// loopback) through the same client `outpostctl drill failover` uses, and
// returns one report per mode.
func benchLease(ctx context.Context, cfg config, dir string, out io.Writer) ([]api.DrillReport, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var reports []api.DrillReport
	for _, mode := range leaseModes {
		fmt.Fprintf(out, "  drill failover --mode %s, %d rounds on a new 3-node region …\n", mode, cfg.leaseRounds)
		rep, err := leaseDrill(ctx, cfg, filepath.Join(dir, string(mode)), mode, out)
		if err != nil {
			return reports, fmt.Errorf("drill %s: %w", mode, err)
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

// leaseDrill runs one mode's rounds on a region of its own, so one mode's
// leftovers (a node still catching up) do not land in another's figures.
func leaseDrill(ctx context.Context, cfg config, dir string, mode drill.Mode, out io.Writer) (api.DrillReport, error) {
	d, err := dev.Start(ctx, dev.Options{Nodes: 3, HTTP: "127.0.0.1:0", DataDir: dir, Keep: true,
		Out: io.Discard, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return api.DrillReport{}, fmt.Errorf("start a 3-node dev region: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = d.Stop(sctx)
	}()
	tok, err := os.ReadFile(d.TokenFile())
	if err != nil {
		return api.DrillReport{}, err
	}
	n1, ok := d.Node("n1")
	if !ok {
		return api.DrillReport{}, fmt.Errorf("dev region has no node n1")
	}
	return drill.Run(ctx, drill.Config{Addr: n1.APIURL(), Token: strings.TrimSpace(string(tok)), Mode: mode,
		Rounds: cfg.leaseRounds, Progress: prefixWriter{out, "    "}})
}

// prefixWriter indents progress lines.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	lines := strings.SplitAfter(string(b), "\n")
	for _, l := range lines {
		if l != "" {
			if _, err := io.WriteString(p.w, p.prefix+l); err != nil {
				return 0, err
			}
		}
	}
	return len(b), nil
}

// printLeaseTable prints the drills' time split and the comparison with
// etcd's kill-the-leader → next acknowledged write, measured in this run.
func printLeaseTable(out io.Writer, reports []api.DrillReport, et systemResult) {
	if len(reports) == 0 {
		return
	}
	t := reports[0].Timings
	fmt.Fprintf(out, "\nDispatch lease failover (%d rounds per mode; lease %dms, drift margin %dms; raft heartbeat %dms, election %dms).\n",
		reports[0].Rounds, t.LeaseDurationMs, t.LeaseDriftMarginMs, t.HeartbeatTimeoutMs, t.ElectionTimeoutMs)
	fmt.Fprintln(out, "Times from the fault to the first survivor event saying so, p50 / p99 / max in ms:")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| mode | new leader | new lease | first fenced dispatch delivered | split at p50: election + lease wait + delivery | stale attempted / refused / accepted | acked writes / lost |")
	fmt.Fprintln(out, "|---|---:|---:|---:|---|---:|---:|")
	for _, r := range reports {
		el, ls, fd := r.LeaderElectedMs, r.LeaseAcquiredMs, r.FirstDispatchMs
		fmt.Fprintf(out, "| %s | %d / %d / %d | %d / %d / %d | %d / %d / %d | %d + %d + %d | %d / %d / %d | %d / %d |\n",
			r.Mode, el.P50, el.P99, el.Max, ls.P50, ls.P99, ls.Max, fd.P50, fd.P99, fd.Max,
			el.P50, max(0, ls.P50-el.P50), max(0, fd.P50-ls.P50),
			r.StaleAttempted, r.StaleRefused, r.StaleAccepted, r.AckedWrites, r.AckedWritesLost)
	}
	if et.skipped != "" || et.failover.Rounds == 0 {
		fmt.Fprintf(out, "\netcd kill-the-leader not measured (%s); no ratio.\n", cmp.Or(et.skipped, "-failover-rounds 0"))
		return
	}
	ew := et.failover
	fmt.Fprintf(out, "\netcd, leader killed → next acknowledged write (%d rounds, same run): p50 %d ms, p99 %d ms, max %d ms.\n",
		ew.Rounds, ew.WritableP50.Milliseconds(), ew.WritableP99.Milliseconds(), ew.WritableMax.Milliseconds())
	fmt.Fprintln(out, "| mode | first fenced dispatch p50 | etcd next write p50 | ratio (lower is faster) | p99 under 2.5 s | zero stale accepted, zero acked writes lost |")
	fmt.Fprintln(out, "|---|---:|---:|---:|---|---|")
	for _, r := range reports {
		ratio := float64(r.FirstDispatchMs.P50) / float64(max(1, ew.WritableP50.Milliseconds()))
		fmt.Fprintf(out, "| %s | %d ms | %d ms | %.2f× | %s | %s |\n", r.Mode, r.FirstDispatchMs.P50, ew.WritableP50.Milliseconds(), ratio,
			yesNo(r.FirstDispatchMs.P99 < 2500), yesNo(r.StaleAccepted == 0 && r.AckedWritesLost == 0))
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// leaseDir is where the dev region of the lease drills keeps its data.
func leaseDir(dir string) string { return filepath.Join(dir, "lease") }
