// Command dataplanebench measures what the agent's data plane
// (agent/dataplane) costs on this machine, as the agent runs it:
//
//   - the agent's CPU per 10,000 kernel events/s in eBPF mode, at several
//     event rates (the aim is under 2% of one core per 10,000 events/s),
//     with the eBPF programs' own time in the kernel, losses by stage and
//     the agent's memory;
//   - the highest event rate it follows without losing an event, ramping
//     the send rate and the connection churn (each connection is four
//     ring buffer events: established and closed, at both ends) until a
//     loss stage moves or the load generator cannot go faster;
//   - the same workload observed in procfs mode (polling /proc at the
//     default 5 s and at 1 s), and the idle cost of both modes.
//
// The plane runs in this process; the load runs in a child process (this
// binary again), so the plane's CPU (getrusage of this process) holds
// none of the load's. The load is loopback TCP: persistent connections
// doing small request/response round trips, plus new connections per
// second that each make one round trip and close. Event rates are the
// plane's own kernel counters (Health().Events), not the generator's
// claim; the generator is steered to each target rate by measuring them.
// The programs' kernel time is read through the kernel's BPF run-time
// statistics, switched on for the run only (BPF_ENABLE_STATS, the
// descriptor form of the kernel.bpf_stats_enabled sysctl: it turns off
// when the descriptor closes, even if the run is killed).
//
// It needs root (loading eBPF and its statistics). The tables it prints
// are Markdown (BENCHMARKS.md, "Agent data plane (eBPF vs procfs)").
//
//	sudo go run ./bench/dataplanebench            # about 3.5 minutes on 2 cores
//	sudo go run ./bench/dataplanebench -short     # under a minute (make bench)
//	go run ./bench/dataplanebench -h
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is what one run measures.
type config struct {
	// duration is each measured window.
	duration time.Duration
	// rates are the target kernel event rates, events/s.
	rates []float64
	// churn is the new connections per second at every rate.
	churn float64
	// conns is the persistent connections that make the round trips.
	conns int
	// msg is the bytes each way per round trip.
	msg int
	// procfsPolls are the poll intervals procfs mode is measured at.
	procfsPolls []time.Duration
	// procfsRates is how many of rates procfs mode is measured at (the
	// first ones); 0 for all.
	procfsRates int
	// rampStep is each ramp step's measured window; rampSteps bounds the
	// steps (each doubles the send and connection rates). 0 steps: no ramp.
	rampStep  time.Duration
	rampSteps int
	// cpuProfile, if set, is where a CPU profile of this process (the
	// plane's side, not the generator's) is written.
	cpuProfile string
}

func defaultConfig() config {
	return config{
		duration:    10 * time.Second,
		rates:       []float64{10_000, 50_000, 100_000, 200_000},
		churn:       200,
		conns:       16,
		msg:         64,
		procfsPolls: []time.Duration{5 * time.Second, time.Second},
		rampStep:    5 * time.Second,
		rampSteps:   10,
	}
}

// shortConfig is what -short changes, for `make bench`: under a minute.
func shortConfig(c config) config {
	c.duration = 3 * time.Second
	c.rates = []float64{10_000, 100_000}
	c.procfsPolls = []time.Duration{time.Second}
	c.procfsRates = 1
	c.rampStep = 2 * time.Second
	c.rampSteps = 5
	return c
}

// validate rejects what cannot be measured, naming the flag.
func (c config) validate() error {
	switch {
	case c.duration < time.Second:
		return fmt.Errorf("-duration %v: use at least 1s", c.duration)
	case len(c.rates) == 0:
		return errors.New("-rates: give at least one rate")
	case c.churn < 0:
		return fmt.Errorf("-churn %v: use 0 or more connections/s", c.churn)
	case c.conns < 1 || c.conns > 4096:
		return fmt.Errorf("-conns %d: use 1..4096", c.conns)
	case c.msg < 1 || c.msg > 1<<20:
		return fmt.Errorf("-msg %d: use 1..1048576 bytes", c.msg)
	case c.rampSteps < 0 || c.rampSteps > 20:
		return fmt.Errorf("-ramp-steps %d: use 0..20", c.rampSteps)
	case c.rampSteps > 0 && c.rampStep < time.Second:
		return fmt.Errorf("-ramp-step %v: use at least 1s", c.rampStep)
	case c.procfsRates < 0:
		return fmt.Errorf("-procfs-rates %d: use 0 (all) or more", c.procfsRates)
	}
	for _, r := range c.rates {
		if r <= 0 {
			return fmt.Errorf("-rates: %v is not a rate; use events/s above 0", r)
		}
	}
	for _, d := range c.procfsPolls {
		if d < 100*time.Millisecond || d > time.Minute {
			return fmt.Errorf("-procfs-polls: %v; use 100ms..1m (the data plane's range)", d)
		}
	}
	return nil
}

func main() {
	if p := os.Getenv(loadEnv); p != "" {
		os.Exit(loadMain(p))
	}
	c, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "dataplanebench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dataplanebench:", err)
		stop()
		os.Exit(1)
	}
}

// loadMain is the load generator child's main (see loadEnv).
func loadMain(params string) int {
	var p loadParams
	if err := json.Unmarshal([]byte(params), &p); err != nil {
		fmt.Fprintf(os.Stderr, "dataplanebench load: %s=%q: %v\n", loadEnv, params, err)
		return 2
	}
	if err := runLoad(os.Stdin, os.Stdout, p); err != nil {
		fmt.Fprintln(os.Stderr, "dataplanebench load:", err)
		return 1
	}
	return 0
}

func parseFlags(fs *flag.FlagSet, args []string) (config, error) {
	c := defaultConfig()
	short := fs.Bool("short", false, "a quick run for make bench (under a minute): -duration 3s -rates 10000,100000 -procfs-polls 1s -procfs-rates 1 -ramp-step 2s -ramp-steps 5; flags given explicitly still win")
	fs.DurationVar(&c.duration, "duration", c.duration, "measured window at each rate and for each idle figure")
	rates := fs.String("rates", joinRates(c.rates), "target kernel event rates, events/s, comma-separated (measured by the plane's own counters)")
	fs.Float64Var(&c.churn, "churn", c.churn, "new loopback connections per second at every rate (each: handshake, one round trip, server closes; 4 ring buffer events)")
	fs.IntVar(&c.conns, "conns", c.conns, "persistent loopback connections making the round trips")
	fs.IntVar(&c.msg, "msg", c.msg, "bytes each way per round trip")
	polls := fs.String("procfs-polls", joinDurations(c.procfsPolls), "procfs mode's poll intervals to measure, comma-separated (the agent's default is 5s); empty: skip procfs mode under load")
	fs.IntVar(&c.procfsRates, "procfs-rates", c.procfsRates, "measure procfs mode at the first N of -rates (0: all)")
	fs.DurationVar(&c.rampStep, "ramp-step", c.rampStep, "measured window of each step of the zero-loss ramp")
	fs.IntVar(&c.rampSteps, "ramp-steps", c.rampSteps, "at most this many ramp steps, each doubling the send and connection rates (0: no ramp)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (this process: the plane, not the load generator) to this file")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sudo go run ./bench/dataplanebench [flags]\n\n"+
			"Measures the agent's data plane (agent/dataplane) on this machine: CPU per 10,000\n"+
			"events/s in eBPF mode, the highest event rate without loss, procfs mode under the\n"+
			"same load, and the idle cost of both. Needs root (eBPF). Prints Markdown tables.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	if c.rates, err = parseRates(*rates); err != nil {
		return config{}, err
	}
	if c.procfsPolls, err = parseDurations(*polls); err != nil {
		return config{}, err
	}
	if *short {
		s := shortConfig(c)
		for name, apply := range map[string]func(){
			"duration":     func() { c.duration = s.duration },
			"rates":        func() { c.rates = s.rates },
			"procfs-polls": func() { c.procfsPolls = s.procfsPolls },
			"procfs-rates": func() { c.procfsRates = s.procfsRates },
			"ramp-step":    func() { c.rampStep = s.rampStep },
			"ramp-steps":   func() { c.rampSteps = s.rampSteps },
		} {
			if !set[name] {
				apply()
			}
		}
	}
	return c, c.validate()
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(strings.ReplaceAll(f, "_", ""), 64)
		if err != nil {
			return nil, fmt.Errorf("-rates: %q is not a number of events/s", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil {
			return nil, fmt.Errorf("-procfs-polls: %q: %w", f, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func joinRates(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.FormatFloat(r, 'f', -1, 64)
	}
	return strings.Join(parts, ",")
}

func joinDurations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}

// ErrNotRoot: loading eBPF and reading its statistics need root.
var ErrNotRoot = errors.New("eBPF needs root: run it as root, e.g. `sudo env PATH=$PATH go run ./bench/dataplanebench` (loading the flow programs needs CAP_BPF and CAP_PERFMON, their run-time statistics CAP_SYS_ADMIN)")

// run measures and writes the tables to out, progress to progress.
func run(ctx context.Context, c config, out, progress io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	b, err := newBench(ctx, c, progress)
	if err != nil {
		return err
	}
	defer b.close()
	res, err := b.all()
	if err != nil {
		return err
	}
	return report(out, c, res)
}
