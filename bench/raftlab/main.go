// Command raftlab takes the region write path apart. It builds a replica of
// what raft.Open builds (hashicorp/raft over raft-wal, the Outpost FSM over
// a storage.Store, mutual TLS between three nodes on loopback, the same
// hraft.Config), times every step of each single-writer commit (leader log
// fsync, replication, follower fsync, commit, FSM transaction), counts log
// writes and FSM batches per node, and runs variants of the configuration
// side by side so a change can be measured before it is made in raft/.
//
// The comparison and the breakdown recorded in BENCHMARKS.md:
//
//	go run ./bench/raftlab -variants baseline,logcache,nolegacytelemetry,freelistnosync,inflight1,plaintcp,fsmnosync -repeat 3 -duration 4s
//	go run ./bench/raftlab -variants baseline,gogc400 -writers 1 -trace -repeat 3 -duration 5s
//
// -list names every variant; -cpuprofile and -memprofile profile a run.
// Variants marked "diagnostic" break a property Outpost keeps (fsync of
// the state file, TLS between nodes); they only show what a step costs.
//
// All three nodes share this process, so they share one Go runtime: with
// GOMAXPROCS=2, two followers sitting in fdatasync hold both Ps and delay
// the leader's network reads (~0.2 ms per commit). Use it for relative
// comparisons and breakdowns; bench/regionbench, one process per node, is
// the benchmark of record.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/outpost-mesh/outpost/bench/internal/hostload"
	"github.com/outpost-mesh/outpost/bench/internal/writeload"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

var variants = []variant{
	{name: "baseline", safe: true, note: "raft.Open today (state file synced every 100ms)", tweak: func(*labConfig) {}},
	{name: "fsmsyncbatch", safe: true, note: "state file fsynced every batch (fsm_sync_interval 0, before issue 20)",
		tweak: func(c *labConfig) { c.tuning.FSMSyncInterval = 0 }},
	{name: "logcache", safe: true, note: "hraft.NewLogCache(512) in front of raft-wal",
		tweak: func(c *labConfig) { c.logCache = 512 }},
	{name: "inflight1", safe: true, note: "MaxRPCsInFlight 1 (no pipelining)",
		tweak: func(c *labConfig) { c.inFlight = 1 }},
	{name: "inflight2", safe: true, note: "MaxRPCsInFlight 2 (pipelining, hashicorp/raft's default)",
		tweak: func(c *labConfig) { c.inFlight = 2 }},
	{name: "inflight8", safe: true, note: "MaxRPCsInFlight 8",
		tweak: func(c *labConfig) { c.inFlight = 8 }},
	{name: "commit1ms", safe: true, note: "CommitTimeout 1ms",
		tweak: func(c *labConfig) { c.tuning.CommitTimeout = time.Millisecond }},
	{name: "commit50ms", safe: true, note: "CommitTimeout 50ms",
		tweak: func(c *labConfig) { c.tuning.CommitTimeout = 50 * time.Millisecond }},
	{name: "maxappend64", safe: true, note: "MaxAppendEntries 64",
		tweak: func(c *labConfig) { c.tuning.MaxAppendEntries = 64 }},
	{name: "nolegacytelemetry", safe: true, note: "hraft NoLegacyTelemetry",
		tweak: func(c *labConfig) { c.raft = func(rc *hraft.Config) { rc.NoLegacyTelemetry = true } }},
	{name: "freelistnosync", safe: true, note: "bbolt NoFreelistSync (storage/, still fsyncs)",
		tweak: func(c *labConfig) { c.fsmNoFLSyn = true }},
	{name: "gogc400", safe: true, note: "GOGC=400 (process setting, not raft/)",
		tweak: func(c *labConfig) { c.gcPercent = 400 }},
	{name: "plaintcp", note: "diagnostic: no TLS between nodes",
		tweak: func(c *labConfig) { c.plainTCP = true }},
	{name: "fsmnosync", note: "diagnostic: state file without fsync (not crash safe)",
		tweak: func(c *labConfig) { c.fsmNoSync = true }},
}

type options struct {
	variants []variant
	writers  []int
	warmup   time.Duration
	duration time.Duration
	repeat   int
	trace    bool
}

func main() {
	var o options
	var names, writers string
	flag.StringVar(&names, "variants", "", "comma-separated variants (default: all); see -list")
	flag.StringVar(&writers, "writers", "1,16,64", "comma-separated concurrent writer counts")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unrecorded warm-up per measurement")
	flag.DurationVar(&o.duration, "duration", 4*time.Second, "measured time per measurement")
	flag.IntVar(&o.repeat, "repeat", 1, "rounds; each round runs every variant once, in turn, and the median round is reported")
	flag.BoolVar(&o.trace, "trace", false, "print the stage breakdown of single-writer commits")
	list := flag.Bool("list", false, "list the variants and exit")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memprofile := flag.String("memprofile", "", "write an allocation profile of the whole run to this file")
	flag.Parse()
	if *list {
		for _, v := range variants {
			fmt.Printf("%-18s %s\n", v.name, v.note)
		}
		return
	}
	var err error
	if o.variants, err = pickVariants(names); err == nil {
		o.writers, err = parseInts(writers)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "raftlab: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "raftlab: -cpuprofile: %v\n", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if *memprofile != "" {
		defer func() {
			f, err := os.Create(*memprofile)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "raftlab: -memprofile: %v\n", err)
			}
		}()
	}
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "raftlab: %v\n", err)
		os.Exit(1)
	}
}

func pickVariants(names string) ([]variant, error) {
	if names == "" {
		return variants, nil
	}
	var out []variant
	for n := range strings.SplitSeq(names, ",") {
		i := slices.IndexFunc(variants, func(v variant) bool { return v.name == strings.TrimSpace(n) })
		if i < 0 {
			return nil, fmt.Errorf("unknown variant %q (see -list)", n)
		}
		out = append(out, variants[i])
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-writers: %q is not a positive count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// guard retries a measurement another process disturbed.
var guard = hostload.Guard{Limit: 0.10, Attempts: 3, QuietWait: 30 * time.Second}

// measurement is one variant at one writer count in one round.
type measurement struct {
	res   writeload.Result
	trace breakdown
	util  string
}

func run(ctx context.Context, o options, out io.Writer) error {
	dir, err := os.MkdirTemp("", "raftlab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// results[variant][writers level] over rounds
	results := make([][][]measurement, len(o.variants))
	for i := range results {
		results[i] = make([][]measurement, len(o.writers))
	}
	for round := range o.repeat {
		for vi, v := range o.variants {
			fmt.Fprintf(os.Stderr, "round %d/%d: %s\n", round+1, o.repeat, v.name)
			ms, err := runVariant(ctx, filepath.Join(dir, fmt.Sprintf("r%d-%s", round, v.name)), v, o)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			for li, m := range ms {
				results[vi][li] = append(results[vi][li], m)
			}
		}
	}
	fmt.Fprintf(out, "Replica of the region write path, 3 nodes on loopback, fsync on; %s warm-up + %s per measurement; median of %d round(s)\n\n",
		o.warmup, o.duration, o.repeat)
	fmt.Fprintln(out, "| variant | writers | commits/s | p50 | p99 | vs baseline commits/s | p99 |")
	fmt.Fprintln(out, "|---|--:|--:|--:|--:|--:|--:|")
	base := slices.IndexFunc(o.variants, func(v variant) bool { return v.name == "baseline" })
	for vi, v := range o.variants {
		for li, n := range o.writers {
			m := median(results[vi][li])
			rel := "–"
			relP99 := "–"
			if base >= 0 && vi != base {
				b := median(results[base][li])
				rel = fmt.Sprintf("%+.0f%%", 100*(m.PerSecond()/b.PerSecond()-1))
				relP99 = fmt.Sprintf("%+.0f%%", 100*(float64(m.P99)/float64(b.P99)-1))
			}
			name := v.name
			if !v.safe {
				name += " (diagnostic)"
			}
			fmt.Fprintf(out, "| %s | %d | %.0f | %s | %s | %s | %s |\n", name, n, m.PerSecond(), ms(m.P50), ms(m.P99), rel, relP99)
		}
	}
	if !o.trace {
		return nil
	}
	fmt.Fprintln(out, "\nLog writes and FSM batches per node (last round):")
	for vi, v := range o.variants {
		for li, n := range o.writers {
			ms := results[vi][li]
			fmt.Fprintf(out, "%s, %d writers:\n%s", v.name, n, ms[len(ms)-1].util)
		}
	}
	li := slices.Index(o.writers, 1)
	if li < 0 {
		return nil
	}
	for vi, v := range o.variants {
		b := medianTrace(results[vi][li])
		fmt.Fprintf(out, "\nWhere a single writer's commit goes: %s (%d commits traced; total mean %s, p50 %s, p99 %s)\n\n",
			v.name, b.ops, ms(b.total[0]), ms(b.total[1]), ms(b.total[2]))
		fmt.Fprintln(out, "| stage | mean | p50 | mean of slowest 1% |")
		fmt.Fprintln(out, "|---|--:|--:|--:|")
		for i, s := range stages {
			fmt.Fprintf(out, "| %s | %s | %s | %s |\n", s, ms(b.mean[i]), ms(b.p50[i]), ms(b.tailMean[i]))
		}
		fmt.Fprintf(out, "\nquorum follower's log write overlapped an FSM transaction in %.0f%% of commits; its p50 was %s without and %s with overlap\n",
			100*b.overlapped, ms(b.fastF[0]), ms(b.fastF[1]))
	}
	return nil
}

// runVariant starts a fresh cluster for v and measures every writer level.
func runVariant(ctx context.Context, dir string, v variant, o options) ([]measurement, error) {
	cfg := defaultLabConfig()
	v.tweak(&cfg)
	if err := cfg.tuning.Validate(); err != nil {
		return nil, err
	}
	if cfg.gcPercent > 0 {
		defer debug.SetGCPercent(debug.SetGCPercent(cfg.gcPercent))
	}
	rec := newRecorder()
	c, err := startLab(dir, 3, cfg, rec)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ld, err := c.leader(lctx)
	if err != nil {
		return nil, err
	}
	value := writeload.Value()
	var out []measurement
	for _, n := range o.writers {
		traced := o.trace
		attempt := 0
		r, busy := hostload.Run(guard, func() writeload.Result {
			attempt++
			rec.reset()
			run := fmt.Sprintf("w%d-%d", n, attempt)
			from := time.Now().Add(o.warmup)
			return writeload.Run(ctx, writeload.Options{Writers: n, Warmup: o.warmup, Measure: o.duration},
				func(ctx context.Context, w, seq int) error {
					cmd, err := raft.KVCommand{Op: raft.KVPut, Bucket: storage.BucketKV, Key: writeload.Key(run, w, seq), Value: value}.Encode()
					if err != nil {
						return err
					}
					t0 := time.Now()
					if traced && !t0.Before(from) && !t0.After(from.Add(o.duration)) {
						rec.enable(true)
					}
					f := ld.raft.Apply(cmd, 10*time.Second)
					if err := f.Error(); err != nil {
						return err
					}
					if traced {
						rec.op(f.Index(), t0, time.Now())
					}
					if res, ok := f.Response().(raft.Result); ok && res.Err != nil {
						return res.Err
					}
					return nil
				})
		})
		if busy > guard.Limit {
			fmt.Fprintf(os.Stderr, "warning: %s at %d writers: other processes used %.0f%% of a CPU (best of %d attempts)\n", v.name, n, 100*busy, guard.Attempts)
		}
		if r.Errors > 0 {
			return nil, fmt.Errorf("%d failed writes at %d writers: %w", r.Errors, n, r.FirstErr)
		}
		if ld.raft.State() != hraft.Leader {
			return nil, fmt.Errorf("leader changed during the %d-writer measurement; rerun", n)
		}
		m := measurement{res: r}
		if traced {
			rec.enable(false)
			if n == 1 {
				m.trace = rec.analyse(ld.id)
			}
			m.util = rec.utilisation(ld.id, r.Elapsed)
		}
		out = append(out, m)
	}
	return out, nil
}

// median returns the round with the median throughput.
func median(ms []measurement) writeload.Result {
	s := slices.Clone(ms)
	slices.SortFunc(s, func(a, b measurement) int { return cmp.Compare(a.res.PerSecond(), b.res.PerSecond()) })
	return s[len(s)/2].res
}

// medianTrace returns the breakdown of the round with the median total.
func medianTrace(ms []measurement) breakdown {
	s := slices.Clone(ms)
	slices.SortFunc(s, func(a, b measurement) int { return cmp.Compare(a.trace.total[0], b.trace.total[0]) })
	return s[len(s)/2].trace
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }
