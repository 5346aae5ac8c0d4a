// Command regionbench measures the region write path (issue 3): commits/s
// and p50/p99 commit latency of a 3-node Outpost region on loopback with
// fsync on, at 1, 16 and 64 concurrent closed-loop writers, then runs a
// 3-member etcd cluster (the etcd binary, Debian's etcd-server) through the
// same workload in the same run and prints the throughput ratio. It also
// kills the leader of each a few times and reports how long until a new
// leader exists and until a write through a survivor is acknowledged.
//
// Reproduce the tables in BENCHMARKS.md (about 65 seconds) with:
//
//	go run ./bench/regionbench
//
// which is what `make bench` runs. Useful flags: -writers 1,16,64,
// -duration 5s, -failover-rounds 5, -etcd PATH, -no-etcd, -keep (keeps the
// data dir with every node's log).
//
// Every Outpost node runs in its own process (this binary, started again
// with OUTPOST_BENCH_NODE naming the node's config), as every etcd member does, and is killed with SIGKILL in
// the failover rounds, as the etcd leader is. Outpost writes go through
// raft.Region.Apply inside the leader's process; etcd writes go through the
// official Go client (clientv3, gRPC) to the leader's client URL. Either is
// acknowledged only once a quorum has the entry on disk. If no etcd binary
// is found the Outpost half still runs and the table says etcd was not
// measured.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/bench/internal/hostload"
	"github.com/outpost-mesh/outpost/bench/internal/writeload"
	"github.com/outpost-mesh/outpost/raft"
)

type config struct {
	writers         []int
	pairs           int // measurements of each system per level, interleaved
	warmup          time.Duration
	duration        time.Duration
	failoverRounds  int
	leaseRounds     int
	failoverAttempt time.Duration
	etcd            etcdOptions
	etcdClients     int
	outpostGOGC     string
	profileDir      string
	bareFSM         bool
	noEtcd          bool
	noAPI           bool
	outpostBin      string
	dir             string
	keep            bool
	guard           hostload.Guard
}

func main() {
	if path := os.Getenv(nodeEnv); path != "" {
		nodeMain(path)
		return
	}
	cfg := config{guard: defaultGuard}
	var writers string
	flag.StringVar(&writers, "writers", "1,16,64", "comma-separated concurrent writer counts, one table row each")
	flag.IntVar(&cfg.pairs, "pairs", 3, "measurements per system and level, run interleaved (outpost, etcd, outpost, etcd, …); the table gives medians and the spread")
	flag.DurationVar(&cfg.warmup, "warmup", time.Second, "unrecorded warm-up before each level")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured time per level")
	flag.IntVar(&cfg.failoverRounds, "failover-rounds", 5, "leader kills per system (0 skips failover)")
	flag.IntVar(&cfg.leaseRounds, "lease-rounds", 0, "dispatch-lease failover drill rounds per mode (transfer, isolate, stop) on a 3-node dev region (0 skips them)")
	flag.DurationVar(&cfg.failoverAttempt, "failover-attempt", 100*time.Millisecond, "per-attempt timeout of the client retrying a write after a kill (same for both systems)")
	flag.StringVar(&cfg.etcd.Bin, "etcd", "", "etcd binary (default: etcd on PATH, then /usr/bin/etcd)")
	flag.DurationVar(&cfg.etcd.Heartbeat, "etcd-heartbeat", 100*time.Millisecond, "etcd --heartbeat-interval (etcd's default)")
	flag.DurationVar(&cfg.etcd.Election, "etcd-election", time.Second, "etcd --election-timeout (etcd's default)")
	flag.BoolVar(&cfg.etcd.PeerTLS, "etcd-peer-tls", true, "mutual TLS between etcd members, as between Outpost nodes")
	flag.IntVar(&cfg.etcdClients, "etcd-clients", 1, "etcd client connections the writers share (1 was etcd's best here; more connections lowered its throughput)")
	flag.BoolVar(&cfg.noEtcd, "no-etcd", false, "measure Outpost only")
	flag.BoolVar(&cfg.noAPI, "no-api", false, "skip the table through the HTTP API of `outpost serve` nodes")
	flag.StringVar(&cfg.outpostBin, "outpost-bin", "", "outpost binary for the API table (default: bin/outpost, from make build, else outpost on PATH)")
	flag.StringVar(&cfg.outpostGOGC, "outpost-gogc", "", "GOGC for the Outpost node processes only (default: the daemon's, internal/gcpolicy)")
	flag.StringVar(&cfg.profileDir, "api-cpuprofile-dir", "", "write a CPU profile of each `outpost serve` node of the API table into `DIR` (OUTPOST_CPU_PROFILE)")
	flag.BoolVar(&cfg.bareFSM, "bare-fsm", false, "in-process writes without their audit record (the table before issue 20 asked for the full FSM)")
	flag.StringVar(&cfg.dir, "dir", "", "data directory (default: a new temp dir, removed afterwards)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the data directory")
	flag.IntVar(&cfg.guard.Attempts, "busy-attempts", defaultGuard.Attempts, "times a measurement other processes disturbed (over 10% of a CPU) is run again")
	flag.DurationVar(&cfg.guard.QuietWait, "busy-wait", defaultGuard.QuietWait, "longest wait for a quiet second before each measurement")
	flag.Parse()
	var err error
	if cfg.writers, err = parseInts(writers); err != nil {
		fmt.Fprintf(os.Stderr, "regionbench: -writers: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "regionbench: %v\n", err)
		os.Exit(1)
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// systemResult is everything measured for one system.
type systemResult struct {
	levels   [][]writeload.Result // per level, one per pair in the order run
	cpu      [][]cpuUse           // per level and pair, as levels
	busy     []float64            // per level: most of a CPU other processes used in one of its measurements (-1: unknown)
	rpc      time.Duration        // etcd only: p50 of a client round trip that writes nothing
	failover failoverSummary
	skipped  string // why the system was not measured
}

// defaultGuard retries a level that another process disturbed: a shared CI
// or dev machine running a compile in parallel would otherwise be recorded
// as the region's speed.
var defaultGuard = hostload.Guard{Limit: 0.10, Attempts: 3, QuietWait: 30 * time.Second}

// measured is one level's result or the error that stopped it.
type measured struct {
	res writeload.Result
	cpu cpuUse
	err error
}

// cpuUse is the CPU a measurement took, warm-up included: the system's
// server processes together, and this process (the writers' client for
// etcd and the API; for Outpost in-process the writers run in the
// leader, and this process only waits).
type cpuUse struct {
	nodes, client, wall time.Duration
}

// meter runs load and takes the CPU the processes pids and this process
// used meanwhile.
func meter(pids []int, load func() measured) measured {
	before, err := hostload.Take()
	start := time.Now()
	m := load()
	if err != nil {
		return m
	}
	after, err := hostload.Take()
	if err != nil {
		return m
	}
	m.cpu.wall = time.Since(start)
	for _, pid := range pids {
		m.cpu.nodes += hostload.Used(before, after, pid)
	}
	m.cpu.client = hostload.Used(before, after, os.Getpid())
	return m
}

// perWrite spreads a CPU time over the writes made in the whole call,
// warm-up included, at the measured window's rate; 0 if unknown.
func (c cpuUse) perWrite(d time.Duration, r writeload.Result) time.Duration {
	writes := r.PerSecond() * c.wall.Seconds()
	if c.wall <= 0 || writes <= 0 {
		return 0
	}
	return time.Duration(float64(d) / writes)
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	dir := cfg.dir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	} else {
		d, err := os.MkdirTemp("", "regionbench-")
		if err != nil {
			return err
		}
		dir = d
		if !cfg.keep {
			defer os.RemoveAll(dir)
		}
	}
	loadStart := loadAvg()
	fsyncP50, err := measureFsync(dir)
	if err != nil {
		return err
	}
	etcdVer, etcdSkip := "", ""
	if cfg.noEtcd {
		etcdSkip = "-no-etcd was given"
	} else {
		cfg.etcd.Bin, etcdVer, err = findEtcd(cfg.etcd.Bin)
		if err != nil {
			fmt.Fprintf(out, "etcd NOT MEASURED: %v\n", err)
			fmt.Fprintln(out, "  install it with `apt-get install etcd-server` or pass -etcd PATH; printing Outpost's numbers only.")
			cfg.noEtcd, etcdSkip = true, err.Error()
		}
	}
	tuning := raft.DefaultTuning()
	printHeader(out, cfg, tuning, etcdVer, fsyncP50)

	op, et, ap, err := benchWrites(ctx, cfg, dir, etcdSkip, out)
	if err != nil {
		return err
	}
	var drills []api.DrillReport
	if cfg.leaseRounds > 0 {
		fmt.Fprintln(out, "running dispatch-lease failover drills …")
		if drills, err = benchLease(ctx, cfg, leaseDir(dir), out); err != nil {
			return fmt.Errorf("lease drills: %w (node data: %s; rerun with -keep)", err, leaseDir(dir))
		}
	}
	fsyncEnd, err := measureFsync(dir)
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	printTable(out, cfg, op, et, ap)
	printLeaseTable(out, drills, et)
	fmt.Fprintf(out, "\nfsync p50 here: %s before the run, %s after; load average before: %s, after: %s\n", fmtDur(fsyncP50), fmtDur(fsyncEnd), loadStart, loadAvg())
	return nil
}

// loadAvg is the first three fields of /proc/loadavg ("" elsewhere).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func findEtcd(bin string) (path, version string, err error) {
	if bin == "" {
		if p, err := exec.LookPath("etcd"); err == nil {
			bin = p
		} else {
			bin = "/usr/bin/etcd"
		}
	}
	if _, err := os.Stat(bin); err != nil {
		return "", "", fmt.Errorf("no etcd binary at %s", bin)
	}
	v, err := etcdVersion(bin)
	return bin, v, err
}

// benchWrites runs both systems side by side and measures each level
// interleaved: outpost, etcd, outpost, etcd, … cfg.pairs times, so that a
// noisy minute (a fsync slowdown, another job) falls on both and a
// ratio is taken within each pair. Then each system's failover.
func benchWrites(ctx context.Context, cfg config, dir, etcdSkip string, out io.Writer) (op, et, ap systemResult, err error) {
	et.skipped = etcdSkip
	var a *apiRegion
	if cfg.noAPI {
		ap.skipped = "-no-api was given"
	} else if bin, err := findOutpost(cfg.outpostBin); err != nil {
		ap.skipped = err.Error()
	} else {
		fmt.Fprintf(out, "starting outpost serve (%s) …\n", bin)
		if a, err = startAPIRegion(ctx, bin, filepath.Join(dir, "api"), 3, cfg.outpostGOGC, cfg.profileDir); err != nil {
			return op, et, ap, fmt.Errorf("outpost serve: %w", err)
		}
		defer a.Close()
	}
	fmt.Fprintln(out, "starting outpost …")
	if err := os.MkdirAll(filepath.Join(dir, "outpost"), 0o700); err != nil {
		return op, et, ap, err
	}
	o, err := startOutpost(ctx, filepath.Join(dir, "outpost"), 3, cfg.outpostGOGC, cfg.bareFSM)
	if err != nil {
		return op, et, ap, fmt.Errorf("outpost: %w (node logs: %s; rerun with -keep to inspect)", err, filepath.Join(dir, "outpost"))
	}
	defer o.Close()
	var c *etcdCluster
	if !cfg.noEtcd {
		fmt.Fprintln(out, "starting etcd …")
		if err := os.MkdirAll(filepath.Join(dir, "etcd"), 0o700); err != nil {
			return op, et, ap, err
		}
		if c, err = startEtcd(ctx, filepath.Join(dir, "etcd"), 3, cfg.etcd); err != nil {
			return op, et, ap, fmt.Errorf("etcd: %w (member logs: %s; rerun with -keep to inspect)", err, filepath.Join(dir, "etcd"))
		}
		defer c.Close()
	}
	for _, n := range cfg.writers {
		var ol, el, al []writeload.Result
		var oc, ec, ac []cpuUse
		var ob, eb, abusy float64
		for pair := range max(1, cfg.pairs) {
			m, busy := measureOutpost(ctx, cfg, o, n, pair)
			if m.err != nil {
				return op, et, ap, fmt.Errorf("outpost: %w", m.err)
			}
			r := m.res
			ol, oc, ob = append(ol, r), append(oc, m.cpu), max(ob, busy)
			fmt.Fprintf(out, "  %2d writers, pair %d: outpost %6.0f/s p99 %s", n, pair+1, r.PerSecond(), fmtDur(r.P99))
			if c != nil {
				m, busy := measureEtcd(ctx, cfg, c, n, pair)
				if m.err != nil {
					return op, et, ap, fmt.Errorf("etcd: %w", m.err)
				}
				r := m.res
				el, ec, eb = append(el, r), append(ec, m.cpu), max(eb, busy)
				fmt.Fprintf(out, ", etcd %6.0f/s p99 %s, ratio %.2f×", r.PerSecond(), fmtDur(r.P99), ol[pair].PerSecond()/r.PerSecond())
			}
			if a != nil {
				m, busy := hostload.Run(cfg.guard, func() measured {
					return meter(a.pids(), func() measured {
						r, err := a.load(ctx, cfg, n, fmt.Sprintf("api-w%d-%d", n, pair))
						return measured{res: r, err: err}
					})
				})
				if m.err != nil {
					return op, et, ap, fmt.Errorf("outpost serve: %w", m.err)
				}
				r := m.res
				al, ac, abusy = append(al, r), append(ac, m.cpu), max(abusy, busy)
				fmt.Fprintf(out, ", api %6.0f/s p99 %s", r.PerSecond(), fmtDur(r.P99))
				if c != nil {
					fmt.Fprintf(out, " (%.2f×)", r.PerSecond()/el[pair].PerSecond())
				}
			}
			fmt.Fprintln(out)
		}
		op.levels, op.cpu, op.busy = append(op.levels, ol), append(op.cpu, oc), append(op.busy, ob)
		if c != nil {
			et.levels, et.cpu, et.busy = append(et.levels, el), append(et.cpu, ec), append(et.busy, eb)
		}
		if a != nil {
			ap.levels, ap.cpu, ap.busy = append(ap.levels, al), append(ap.cpu, ac), append(ap.busy, abusy)
		}
	}
	rounds, err := failovers(ctx, cfg.failoverRounds, func(i int) (failoverRound, error) {
		return outpostFailover(ctx, o, i, cfg.failoverAttempt)
	})
	op.failover = summarizeFailover(rounds)
	if err != nil {
		return op, et, ap, fmt.Errorf("outpost: %w", err)
	}
	if c == nil {
		return op, et, ap, nil
	}
	if et.rpc, err = etcdRoundTrip(ctx, c); err != nil {
		return op, et, ap, fmt.Errorf("etcd: %w", err)
	}
	rounds, err = failovers(ctx, cfg.failoverRounds, func(i int) (failoverRound, error) {
		return etcdFailover(ctx, c, i, cfg.failoverAttempt)
	})
	et.failover = summarizeFailover(rounds)
	if err != nil {
		return op, et, ap, fmt.Errorf("etcd: %w", err)
	}
	return op, et, ap, nil
}

// measureOutpost runs one level on the region's leader, measured again
// (up to the guard's attempts) if other processes were busy meanwhile.
func measureOutpost(ctx context.Context, cfg config, o *outpostRegion, n, pair int) (measured, float64) {
	attempt := 0
	return hostload.Run(cfg.guard, func() measured {
		attempt++
		ld, err := o.settle(ctx, 30*time.Second)
		if err != nil {
			return measured{err: err}
		}
		return meter(o.pids(), func() measured {
			r, err := o.load(ctx, ld, loadRequest{Run: fmt.Sprintf("w%d-%d-%d", n, pair, attempt), Writers: n, Warmup: cfg.warmup, Measure: cfg.duration})
			return measured{res: r, err: err}
		})
	})
}

// measureEtcd runs one level against etcd's leader through its Go client.
func measureEtcd(ctx context.Context, cfg config, c *etcdCluster, n, pair int) (measured, float64) {
	value := string(writeload.Value())
	attempt := 0
	return hostload.Run(cfg.guard, func() measured {
		attempt++
		ld, err := c.settle(ctx, 30*time.Second)
		if err != nil {
			return measured{err: err}
		}
		clis, err := etcdClients(max(1, cfg.etcdClients), ld)
		if err != nil {
			return measured{err: err}
		}
		defer func() {
			for _, cli := range clis {
				cli.Close()
			}
		}()
		run := fmt.Sprintf("w%d-%d-%d", n, pair, attempt)
		return meter(c.pids(), func() measured {
			return measured{res: writeload.Run(ctx, writeload.Options{Writers: n, Warmup: cfg.warmup, Measure: cfg.duration},
				func(ctx context.Context, w, seq int) error {
					_, err := clis[w%len(clis)].Put(ctx, string(writeload.Key(run, w, seq)), value)
					return err
				})}
		})
	})
}

func failovers(ctx context.Context, n int, round func(i int) (failoverRound, error)) ([]failoverRound, error) {
	var out []failoverRound
	for i := range n {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		r, err := round(i)
		if err != nil {
			return out, fmt.Errorf("failover round %d: %w", i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// measureFsync times fsync after a 150-byte write (about one log entry)
// into an already allocated file in dir, the way raft-wal and etcd's WAL
// write into preallocated segments.
func measureFsync(dir string) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, 1<<20)); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	buf := make([]byte, 150)
	var ds []time.Duration
	for i := range 500 {
		if _, err := f.WriteAt(buf, int64(i*len(buf))); err != nil {
			return 0, err
		}
		t := time.Now()
		if err := f.Sync(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(t))
	}
	return writeload.Percentile(ds, 0.5), nil
}

func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "(unknown version)"
}
