package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/bench/internal/writeload"
	"github.com/outpost-mesh/outpost/raft"
)

func printHeader(out io.Writer, cfg config, t raft.Tuning, etcdVer string, fsyncP50 time.Duration) {
	fmt.Fprintln(out, "Region write path: 3 nodes on loopback, fsync on, closed-loop writers, distinct keys, 100-byte values")
	fmt.Fprintf(out, "  host:    %d CPUs, GOMAXPROCS %d, %s %s/%s; fsync after a 150-byte write here: p50 %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, fmtDur(fsyncP50))
	fmt.Fprintf(out, "  levels:  %v writers; %s warm-up, then %s measured each\n", cfg.writers, cfg.warmup, cfg.duration)
	gogc := "Go's default GOGC"
	if cfg.outpostGOGC != "" {
		gogc = "GOGC=" + cfg.outpostGOGC
	}
	fmt.Fprintf(out, "  outpost: 3 node processes (%s); hashicorp/raft %s, raft-wal %s, bbolt FSM (fsync per batch), node mTLS;\n"+
		"           raft.Region.Apply on the leader, in its process; heartbeat %s, election %s\n",
		gogc, moduleVersion("github.com/hashicorp/raft"), moduleVersion("github.com/hashicorp/raft-wal"), t.HeartbeatTimeout, t.ElectionTimeout)
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

func printTable(out io.Writer, cfg config, op, et systemResult) {
	fmt.Fprintln(out, "| writers | outpost commits/s | p50 | p99 | etcd commits/s | p50 | p99 | throughput ratio |")
	fmt.Fprintln(out, "|--------:|------------------:|----:|----:|---------------:|----:|----:|-----------------:|")
	for i, n := range cfg.writers {
		o := op.levels[i]
		row := fmt.Sprintf("| %7d | %17s | %s | %s |", n, fmtRate(o), fmtDur(o.P50), fmtDur(o.P99))
		if et.skipped != "" {
			row += fmt.Sprintf(" %14s | – | – | – |", "not measured")
		} else {
			e := et.levels[i]
			row += fmt.Sprintf(" %14s | %s | %s | %15.2f× |", fmtRate(e), fmtDur(e.P50), fmtDur(e.P99), o.PerSecond()/e.PerSecond())
		}
		fmt.Fprintln(out, row)
	}
	if et.skipped != "" {
		fmt.Fprintf(out, "\netcd: not measured (%s).\n", et.skipped)
	} else {
		fmt.Fprintf(out, "\netcd latencies include its client's gRPC round trip to the leader (p50 %s for a read that writes nothing);\n"+
			"Outpost's writers call raft.Region.Apply inside the leader's process and pay none.\n", fmtDur(et.rpc))
	}
	for i, n := range cfg.writers {
		for _, s := range []struct {
			name string
			r    systemResult
		}{{"outpost", op}, {"etcd", et}} {
			if i < len(s.r.busy) && s.r.busy[i] > cfg.guard.Limit {
				fmt.Fprintf(out, "\nWARNING: other processes used %.0f%% of a CPU during the %s row at %d writers (best of %d attempts); rerun on a quiet machine.\n",
					100*s.r.busy[i], s.name, n, max(1, cfg.guard.Attempts))
			}
		}
	}
	for _, r := range append(append([]writeload.Result{}, op.levels...), et.levels...) {
		if r.Errors > 0 {
			fmt.Fprintf(out, "\nWARNING: %d failed writes at %d writers (first: %v); those rows are not trustworthy.\n", r.Errors, r.Writers, r.FirstErr)
		}
	}
	if cfg.failoverRounds == 0 {
		return
	}
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

func fmtRate(r writeload.Result) string { return fmt.Sprintf("%.0f", r.PerSecond()) }

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
