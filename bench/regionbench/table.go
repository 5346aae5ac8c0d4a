package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/bench/internal/writeload"
	"github.com/outpost-mesh/outpost/internal/gcpolicy"
	"github.com/outpost-mesh/outpost/raft"
)

func printHeader(out io.Writer, cfg config, t raft.Tuning, etcdVer string, fsyncP50 time.Duration) {
	fmt.Fprintln(out, "Region write path: 3 nodes on loopback, fsync on, closed-loop writers, distinct keys, 100-byte values")
	fmt.Fprintf(out, "  host:    %d CPUs, GOMAXPROCS %d, %s %s/%s; fsync after a 150-byte write here: p50 %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, fmtDur(fsyncP50))
	fmt.Fprintf(out, "  levels:  %v writers; %s warm-up, then %s measured each\n", cfg.writers, cfg.warmup, cfg.duration)
	gogc := fmt.Sprintf("GOGC=%d, the daemon's default", gcpolicy.Percent)
	if env, ok := os.LookupEnv("GOGC"); ok {
		gogc = "GOGC=" + env + " from the environment" // the node processes inherit it
	}
	if cfg.outpostGOGC != "" {
		gogc = "GOGC=" + cfg.outpostGOGC
	}
	fmt.Fprintf(out, "  outpost: 3 node processes (%s); hashicorp/raft %s, raft-wal %s, bbolt FSM (synced every %s), node mTLS;\n"+
		"           raft.Region.Apply on the leader, in its process; heartbeat %s, election %s\n",
		gogc, moduleVersion("github.com/hashicorp/raft"), moduleVersion("github.com/hashicorp/raft-wal"), t.FSMSyncInterval, t.HeartbeatTimeout, t.ElectionTimeout)
	if etcdVer != "" && !cfg.noEtcd {
		tls := "plain peer HTTP"
		if cfg.etcd.PeerTLS {
			tls = "peer mTLS"
		}
		fmt.Fprintf(out, "  etcd:    %s (%s), 3 members, %s, default fsync; clientv3 %s (gRPC) to the leader; heartbeat %s, election %s\n",
			etcdVer, cfg.etcd.Bin, tls, moduleVersion("go.etcd.io/etcd/client/v3"), cfg.etcd.Heartbeat, cfg.etcd.Election)
	}
	fmt.Fprintf(out, "  guard:   a row is measured again (up to %d times) if other processes use over %.0f%% of a CPU meanwhile\n",
		max(1, cfg.guard.Attempts), 100*cfg.guard.Limit)
	if cfg.failoverRounds > 0 {
		fmt.Fprintf(out, "  failover: leader killed abruptly %d times per system; client retries a write through the survivors (%s per attempt)\n",
			cfg.failoverRounds, cfg.failoverAttempt)
	}
}

func printTable(out io.Writer, cfg config, op, et, ap systemResult) {
	fmt.Fprintf(out, "Medians of %d interleaved measurements per system and level; ranges in brackets; the ratio is taken within each pair.\n\n", max(1, cfg.pairs))
	fsm := "full FSM: each write's entry carries its audit record, as the API's do"
	if cfg.bareFSM {
		fsm = "bare FSM, no audit record: -bare-fsm"
	}
	fmt.Fprintf(out, "In-process: Outpost's writers call raft.Region.Apply in the leader's process (%s); etcd's go through its Go client (gRPC).\n", fsm)
	fmt.Fprintln(out)
	printRows(out, cfg, op, et)
	if ap.skipped != "" {
		fmt.Fprintf(out, "\nThrough the API: not measured (%s).\n", ap.skipped)
	} else {
		fmt.Fprintln(out, "\nThrough the API: Outpost's writers PUT /api/v1/kv/KEY on the leader of `outpost serve` nodes (full FSM: audit record, lease, tenancy),\nHTTP/1.1 keep-alive with the admin token; etcd as above.")
		fmt.Fprintln(out)
		printRows(out, cfg, ap, et)
	}
	printCPU(out, cfg, op, et, ap)
	printWarnings(out, cfg, op, et, ap)
	if cfg.failoverRounds == 0 {
		return
	}
	printFailover(out, cfg, op, et)
}

// printRows prints one write table: op's levels beside etcd's.
func printRows(out io.Writer, cfg config, op, et systemResult) {
	fmt.Fprintln(out, "| writers | outpost commits/s | p50 | p99 | etcd commits/s | p50 | p99 | ratio, median | ratio, range |")
	fmt.Fprintln(out, "|--------:|------------------:|----:|----:|---------------:|----:|----:|--------------:|-------------:|")
	for i, n := range cfg.writers {
		o := op.levels[i]
		row := fmt.Sprintf("| %7d | %s | %s | %s |", n, rateCell(o), fmtDur(medianOf(o, p50)), p99Cell(o))
		if et.skipped != "" {
			row += " not measured | – | – | – | – |"
		} else {
			e := et.levels[i]
			var ratios []float64
			for j := range min(len(o), len(e)) {
				ratios = append(ratios, o[j].PerSecond()/e[j].PerSecond())
			}
			lo, hi := minMax(ratios)
			row += fmt.Sprintf(" %s | %s | %s | %.2f× | %.2f–%.2f× |", rateCell(e), fmtDur(medianOf(e, p50)), p99Cell(e), median(ratios), lo, hi)
		}
		fmt.Fprintln(out, row)
	}
}

// printWarnings says which rows other processes disturbed or failed writes spoilt.
func printWarnings(out io.Writer, cfg config, op, et, ap systemResult) {
	if et.skipped != "" {
		fmt.Fprintf(out, "\netcd: not measured (%s).\n", et.skipped)
	} else {
		fmt.Fprintf(out, "\netcd latencies include its client's gRPC round trip to the leader (p50 %s for a read that writes nothing);\n"+
			"Outpost's in-process writers pay none, its API writers an HTTP round trip.\n", fmtDur(et.rpc))
	}
	for i, n := range cfg.writers {
		for _, s := range []struct {
			name string
			r    systemResult
		}{{"outpost", op}, {"etcd", et}, {"outpost API", ap}} {
			if i < len(s.r.busy) && s.r.busy[i] > cfg.guard.Limit {
				fmt.Fprintf(out, "\nWARNING: other processes used up to %.0f%% of a CPU during the %s row at %d writers (best of %d attempts each); rerun on a quiet machine.\n",
					100*s.r.busy[i], s.name, n, max(1, cfg.guard.Attempts))
			}
		}
	}
	for _, rs := range slices.Concat(op.levels, et.levels, ap.levels) {
		for _, r := range rs {
			if r.Errors > 0 {
				fmt.Fprintf(out, "\nWARNING: %d failed writes at %d writers (first: %v); those rows are not trustworthy.\n", r.Errors, r.Writers, r.FirstErr)
			}
		}
	}
}

// printFailover prints the failover table.
func printFailover(out io.Writer, cfg config, op, et systemResult) {
	fmt.Fprintln(out)
	fmt.Fprintf(out, "| failover, leader killed (%d rounds) | outpost p50 | max | etcd p50 | max |\n", cfg.failoverRounds)
	fmt.Fprintln(out, "|---|---:|---:|---:|---:|")
	f, g := op.failover, et.failover
	etcdCells := func(p50, max time.Duration) string {
		if et.skipped != "" {
			return "– | –"
		}
		return fmtDur(p50) + " | " + fmtDur(max)
	}
	fmt.Fprintf(out, "| new leader elected | %s | %s | %s |\n", fmtDur(f.ElectedP50), fmtDur(f.ElectedMax), etcdCells(g.ElectedP50, g.ElectedMax))
	fmt.Fprintf(out, "| first write acknowledged | %s | %s | %s |\n", fmtDur(f.WritableP50), fmtDur(f.WritableMax), etcdCells(g.WritableP50, g.WritableMax))
	fmt.Fprintf(out, "\nper round, write acknowledged: outpost %s", fmtDurs(f.PerRoundW))
	if et.skipped == "" {
		fmt.Fprintf(out, "; etcd %s", fmtDurs(g.PerRoundW))
	}
	fmt.Fprintln(out)
}

func p50(r writeload.Result) time.Duration { return r.P50 }
func p99(r writeload.Result) time.Duration { return r.P99 }

// rateCell is the median commits/s and the range over the measurements.
func rateCell(rs []writeload.Result) string {
	var v []float64
	for _, r := range rs {
		v = append(v, r.PerSecond())
	}
	lo, hi := minMax(v)
	if len(v) == 1 {
		return fmt.Sprintf("%.0f", v[0])
	}
	return fmt.Sprintf("%.0f [%.0f–%.0f]", median(v), lo, hi)
}

// p99Cell is the median p99 and the worst.
func p99Cell(rs []writeload.Result) string {
	var worst time.Duration
	for _, r := range rs {
		worst = max(worst, r.P99)
	}
	if len(rs) == 1 {
		return fmtDur(worst)
	}
	return fmt.Sprintf("%s [≤%s]", fmtDur(medianOf(rs, p99)), fmtDur(worst))
}

func medianOf(rs []writeload.Result, f func(writeload.Result) time.Duration) time.Duration {
	var v []float64
	for _, r := range rs {
		v = append(v, float64(f(r)))
	}
	return time.Duration(median(v))
}

// median of v (the mean of the middle two for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(v []float64) (lo, hi float64) {
	if len(v) == 0 {
		return 0, 0
	}
	return slices.Min(v), slices.Max(v)
}

// fmtDur prints milliseconds with two decimals below 10 ms, whole
// milliseconds above: the precision the measurements have.
func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d < 0:
		return "n/a"
	case ms < 0.1:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	default:
		return fmt.Sprintf("%.0f ms", ms)
	}
}

func fmtDurs(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmtDur(d))
	}
	return strings.Join(s, ", ")
}

// printCPU prints the CPU each system spent per write: its three server
// processes together, and the writers' client (this process).
func printCPU(out io.Writer, cfg config, op, et, ap systemResult) {
	fmt.Fprintln(out, "\nCPU per write, median of the pairs (µs; warm-up included, at the measured rate): the three server processes together, and the")
	fmt.Fprintln(out, "writers' client in this process. Outpost's in-process writers run inside its leader, so their cost is in its nodes' column.")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| writers | outpost in-process, nodes | etcd, nodes | etcd, client | API, nodes | API, client |")
	fmt.Fprintln(out, "|--------:|--------------------------:|------------:|-------------:|-----------:|------------:|")
	for i, n := range cfg.writers {
		fmt.Fprintf(out, "| %7d | %s | %s | %s | %s | %s |\n", n,
			cpuCell(op, i, func(c cpuUse) time.Duration { return c.nodes }),
			cpuCell(et, i, func(c cpuUse) time.Duration { return c.nodes }), cpuCell(et, i, func(c cpuUse) time.Duration { return c.client }),
			cpuCell(ap, i, func(c cpuUse) time.Duration { return c.nodes }), cpuCell(ap, i, func(c cpuUse) time.Duration { return c.client }))
	}
}

// cpuCell is the median over level i's pairs of what part of their CPU
// each write took, or "–" when not measured.
func cpuCell(r systemResult, i int, part func(cpuUse) time.Duration) string {
	if r.skipped != "" || i >= len(r.cpu) || i >= len(r.levels) {
		return "–"
	}
	var us []float64
	for j, c := range r.cpu[i] {
		if d := c.perWrite(part(c), r.levels[i][j]); d > 0 {
			us = append(us, float64(d)/float64(time.Microsecond))
		}
	}
	if len(us) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", median(us))
}
