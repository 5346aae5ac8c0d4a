package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/outpost-mesh/outpost/agent/dataplane"
	"github.com/outpost-mesh/outpost/agent/procfs"
)

// Settling times: after a plane starts, and after the load's rates
// change, before anything is measured.
const (
	settle      = time.Second
	rateSettle  = 500 * time.Millisecond
	probeWindow = 1500 * time.Millisecond // the calibration's windows
)

// initialEventsPerRoundTrip is the first guess of kernel events per
// round trip (a send and a receive at each end, and tcp_probe as each
// segment arrives); steer measures the real figure.
const initialEventsPerRoundTrip = 6

// short is how far below the asked rate the generator may fall before
// it counts as the limit.
const short = 0.9

// bench runs the phases and holds what they share.
type bench struct {
	ctx      context.Context
	c        config
	progress io.Writer
	logger   *slog.Logger
	stats    io.Closer // the kernel's BPF run-time statistics, on while open
	phase    int
	phases   int
	partial  string              // why eBPF mode is partial on this kernel, if it is
	epr      float64             // events per round trip, last measured
	opsFor   map[float64]float64 // round trips/s that reached each target rate
}

func newBench(ctx context.Context, c config, progress io.Writer) (*bench, error) {
	st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("switching on the kernel's BPF run-time statistics (BPF_ENABLE_STATS, Linux 5.8+): %w", err)
	}
	procfsRuns := len(c.rates)
	if c.procfsRates > 0 {
		procfsRuns = min(procfsRuns, c.procfsRates)
	}
	phases := 2 + len(c.rates) + procfsRuns*len(c.procfsPolls)
	if c.rampSteps > 0 {
		phases++
	}
	return &bench{ctx: ctx, c: c, progress: progress, stats: st, phases: phases, epr: initialEventsPerRoundTrip, opsFor: map[float64]float64{},
		logger: slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelWarn}))}, nil
}

// close switches the statistics off again.
func (b *bench) close() { _ = b.stats.Close() }

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "dataplanebench: "+format+"\n", args...)
}

func (b *bench) nextPhase(format string, args ...any) {
	b.phase++
	b.logf("[%d/%d] "+format, append([]any{b.phase, b.phases}, args...)...)
}

// wait sleeps d unless the run is interrupted.
func (b *bench) wait(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-b.ctx.Done():
		return errInterrupted
	case <-t.C:
		return nil
	}
}

// measure measures one window of d.
func (b *bench) measure(p *dataplane.Plane, ps programs, l *load, d time.Duration) (window, error) {
	return measure(p, ps, l, d, b.ctx.Done())
}

// running is a started plane (with its programs in eBPF mode) and,
// once started, its load.
type running struct {
	plane *dataplane.Plane
	progs programs
	load  *load
}

func (r *running) stop() error {
	var err error
	if r.load != nil {
		err = r.load.stop()
	}
	r.progs.Close()
	if cerr := r.plane.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// start starts a plane in mode (poll 0: the default) after collecting
// the previous phase's garbage, so its memory is this phase's.
func (b *bench) start(mode string, poll time.Duration) (*running, error) {
	runtime.GC()
	debug.FreeOSMemory()
	p, err := dataplane.Start(b.ctx, dataplane.Config{Mode: mode, PollInterval: poll, Logger: b.logger})
	if err != nil {
		return nil, err
	}
	r := &running{plane: p}
	got, reason := p.Mode()
	if got != mode {
		_ = r.stop()
		return nil, fmt.Errorf("data plane started in %s mode, not %s: %s", got, mode, reason)
	}
	if mode == dataplane.ModeEBPF && reason != "" && b.partial == "" {
		// Some tracepoints could not be used: what they feed is not measured.
		b.partial = reason
		b.logf("    eBPF mode is partial on this kernel: %s", reason)
	}
	if mode == dataplane.ModeEBPF {
		if r.progs, err = ownPrograms(); err != nil {
			_ = r.stop()
			return nil, err
		}
	}
	return r, nil
}

// withLoad starts the generator after the plane, so the plane sees its
// connections open (none is "untracked").
func (b *bench) withLoad(r *running) error {
	l, err := startLoad(loadParams{Conns: b.c.conns, Msg: b.c.msg})
	if err != nil {
		return err
	}
	r.load = l
	return nil
}

// results are everything a run measured.
type results struct {
	kernel  string
	cpus    int
	partial string // eBPF mode's reason for being partial, if it was
	idle    []idlePoint
	rates   []ratePoint
	procfs  []procfsPoint
	ramp    []rampPoint
	rampEnd rampEnd
}

type idlePoint struct {
	mode    string
	w       window
	sockets int // sockets procfs lists at the window's end (−1: unread)
}

type ratePoint struct {
	target    float64
	askOps    float64
	w         window
	export    time.Duration // CPU of one Plane.Export after the window
	exportErr error         // what that export returned
	limited   bool          // the generator fell short of the asked rates
	churnOnly window        // the calibration's first window: new connections alone
}

type procfsPoint struct {
	target  float64
	poll    time.Duration
	w       window
	sockets int // sockets procfs lists at the window's end
}

type rampPoint struct {
	askOps, askConns float64
	w                window
	lost             map[string]uint64 // by stage, from the rate change on
}

// notCapacity are loss stages that do not say the plane fell behind, so
// they do not end the ramp (they are still shown), with why.
var notCapacity = map[string]string{
	"untracked": "sends and receives on connections older than the plane (other processes' long-lived connections), not a rate limit",
	"encode":    "exports that could not be encoded; the ramp makes none",
}

// rampEnd says why the ramp stopped.
type rampEnd int

const (
	rampAllSteps       rampEnd = iota // ran every step without loss
	rampLost                          // a loss stage moved
	rampGeneratorLimit                // the generator could not reach the asked rates
)

func (b *bench) all() (*results, error) {
	res := &results{cpus: runtime.NumCPU(), kernel: kernelRelease()}
	b.logf("%d CPUs, kernel %s; %d phases (-duration %v)", res.cpus, res.kernel, b.phases, b.c.duration)
	for _, mode := range []string{dataplane.ModeEBPF, dataplane.ModeProcfs} {
		w, err := b.idle(mode)
		if err != nil {
			return nil, err
		}
		res.idle = append(res.idle, idlePoint{mode: mode, w: w, sockets: sockets()})
	}
	for _, target := range b.c.rates {
		pt, err := b.rate(target)
		if err != nil {
			return nil, err
		}
		res.rates = append(res.rates, pt)
	}
	targets := b.c.rates
	if b.c.procfsRates > 0 {
		targets = targets[:min(len(targets), b.c.procfsRates)]
	}
	for _, target := range targets {
		for _, poll := range b.c.procfsPolls {
			pt, err := b.procfsUnderLoad(target, poll)
			if err != nil {
				return nil, err
			}
			res.procfs = append(res.procfs, pt)
		}
	}
	if b.c.rampSteps > 0 {
		var err error
		if res.ramp, res.rampEnd, err = b.ramp(); err != nil {
			return nil, err
		}
	}
	res.partial = b.partial
	return res, nil
}

// idle measures a plane with no load of ours.
func (b *bench) idle(mode string) (window, error) {
	b.nextPhase("idle, %s mode: %v", mode, b.c.duration)
	r, err := b.start(mode, 0)
	if err != nil {
		return window{}, err
	}
	if err := b.wait(settle); err != nil {
		_ = r.stop()
		return window{}, err
	}
	w, err := b.measure(r.plane, r.progs, nil, b.c.duration)
	if serr := r.stop(); err == nil {
		err = serr
	}
	b.logf("    agent CPU %.3f%% of a core, RSS %s", w.cpu, mib(w.rss))
	return w, err
}

// rate measures eBPF mode at a target event rate.
func (b *bench) rate(target float64) (ratePoint, error) {
	b.nextPhase("eBPF mode at %s events/s with %s new connections/s", count(target), count(b.c.churn))
	r, err := b.start(dataplane.ModeEBPF, 0)
	if err != nil {
		return ratePoint{}, err
	}
	pt, err := b.rateOn(r, target)
	if serr := r.stop(); err == nil {
		err = serr
	}
	return pt, err
}

func (b *bench) rateOn(r *running, target float64) (ratePoint, error) {
	if err := b.withLoad(r); err != nil {
		return ratePoint{}, err
	}
	ops, base, err := b.steer(r, target)
	if err != nil {
		return ratePoint{}, err
	}
	b.opsFor[target] = ops
	b.logf("    measuring %v at %s round trips/s", b.c.duration, count(ops))
	w, err := b.measure(r.plane, r.progs, r.load, b.c.duration)
	if err != nil {
		return ratePoint{}, err
	}
	pt := ratePoint{target: target, askOps: ops, w: w, churnOnly: base, limited: w.ops < short*ops || w.conns < short*b.c.churn}
	c0 := cpuSeconds()
	// A failed export is a finding, not the end of the run.
	if _, pt.exportErr = r.plane.Export(time.Now(), map[string]string{"host.name": "dataplanebench"}, nil, dataplane.ExportStats{}); pt.exportErr != nil {
		b.logf("    export failed: %v", pt.exportErr)
	}
	pt.export = time.Duration((cpuSeconds() - c0) * float64(time.Second))
	b.logf("    %s events/s: agent CPU %.2f%% of a core (%.2f%% per 10k events/s), eBPF %.2f%%, losses %s, generator %.0f%%%s",
		count(w.events), w.cpu, per10k(w), w.bpfPct, w.lossText(), w.genCPU, limitedNote(pt.limited))
	return pt, nil
}

func limitedNote(limited bool) string {
	if limited {
		return " (the generator fell short of the asked rate)"
	}
	return ""
}

// steer sets the generator so that the plane counts about target
// events/s: the churn alone first (with whatever else the machine does),
// then round trips for the rest at the last known events per round
// trip, measured and corrected once. It returns the round trips/s and
// the window of the churn alone.
func (b *bench) steer(r *running, target float64) (float64, window, error) {
	l := r.load
	if err := l.set(0, b.c.churn); err != nil {
		return 0, window{}, err
	}
	if err := b.wait(settle); err != nil {
		return 0, window{}, err
	}
	churnOnly, err := b.measure(r.plane, nil, l, probeWindow)
	if err != nil {
		return 0, window{}, err
	}
	base := churnOnly.events
	ops := math.Max(0, (target-base)/b.epr)
	b.logf("    calibrating: churn alone makes %s events/s; trying %s round trips/s", count(base), count(ops))
	if ops == 0 {
		return 0, churnOnly, nil
	}
	if err := l.set(ops, b.c.churn); err != nil {
		return 0, window{}, err
	}
	if err := b.wait(rateSettle); err != nil {
		return 0, window{}, err
	}
	w, err := b.measure(r.plane, nil, l, probeWindow)
	if err != nil {
		return 0, window{}, err
	}
	if w.ops > 0 && w.events > base {
		if epr := (w.events - base) / w.ops; epr >= 1 {
			b.epr = epr
			ops = (target - base) / epr
		}
	}
	b.logf("    %.2f events per round trip; asking %s round trips/s", b.epr, count(ops))
	if err := l.set(ops, b.c.churn); err != nil {
		return 0, window{}, err
	}
	return ops, churnOnly, b.wait(rateSettle)
}

// procfsUnderLoad measures procfs mode under the load that reached
// target events/s in eBPF mode. The window spans at least two polls.
func (b *bench) procfsUnderLoad(target float64, poll time.Duration) (procfsPoint, error) {
	d := max(b.c.duration, 2*poll)
	b.nextPhase("procfs mode, poll %v, under the %s events/s load: %v", poll, count(target), d)
	r, err := b.start(dataplane.ModeProcfs, poll)
	if err != nil {
		return procfsPoint{}, err
	}
	pt, err := b.procfsOn(r, target, poll, d)
	if serr := r.stop(); err == nil {
		err = serr
	}
	return pt, err
}

func (b *bench) procfsOn(r *running, target float64, poll, d time.Duration) (procfsPoint, error) {
	if err := b.withLoad(r); err != nil {
		return procfsPoint{}, err
	}
	if err := r.load.set(b.opsFor[target], b.c.churn); err != nil {
		return procfsPoint{}, err
	}
	if err := b.wait(settle); err != nil {
		return procfsPoint{}, err
	}
	w, err := b.measure(r.plane, nil, r.load, d)
	if err != nil {
		return procfsPoint{}, err
	}
	pt := procfsPoint{target: target, poll: poll, w: w, sockets: sockets()}
	b.logf("    agent CPU %.2f%% of a core, %d sockets in /proc/net/tcp{,6}", w.cpu, pt.sockets)
	return pt, nil
}

// ramp doubles the round trips and the connection churn each step until
// a loss stage moves or the generator falls short.
func (b *bench) ramp() ([]rampPoint, rampEnd, error) {
	b.nextPhase("zero-loss ramp: up to %d steps of %v, doubling round trips and new connections", b.c.rampSteps, b.c.rampStep)
	r, err := b.start(dataplane.ModeEBPF, 0)
	if err != nil {
		return nil, 0, err
	}
	pts, end, err := b.rampOn(r)
	if serr := r.stop(); err == nil {
		err = serr
	}
	return pts, end, err
}

func (b *bench) rampOn(r *running) ([]rampPoint, rampEnd, error) {
	if err := b.withLoad(r); err != nil {
		return nil, 0, err
	}
	ops0, ok := b.opsFor[b.c.rates[0]]
	if !ok || ops0 <= 0 {
		ops0 = b.c.rates[0] / b.epr
	}
	churn0 := max(b.c.churn, 100)
	var pts []rampPoint
	for k := range b.c.rampSteps {
		f := math.Pow(2, float64(k))
		pt := rampPoint{askOps: ops0 * f, askConns: churn0 * f}
		h0 := r.plane.Health()
		if err := r.load.set(pt.askOps, pt.askConns); err != nil {
			return pts, 0, err
		}
		if err := b.wait(settle); err != nil {
			return pts, 0, err
		}
		w, err := b.measure(r.plane, r.progs, r.load, b.c.rampStep)
		if err != nil {
			return pts, 0, err
		}
		pt.w = w
		pt.lost = map[string]uint64{}
		h1 := r.plane.Health()
		for stage, n := range h1.Losses {
			if d := n - h0.Losses[stage]; d > 0 {
				pt.lost[stage] = d
			}
		}
		lost := capacityLost(pt.lost)
		pts = append(pts, pt)
		b.logf("    step %d: asked %s round trips/s + %s connections/s → %s events/s, %s connections/s; agent CPU %.1f%%, generator %.0f%%, losses %s",
			k+1, count(pt.askOps), count(pt.askConns), count(w.events), count(w.conns), w.cpu, w.genCPU, lossesText(pt.lost))
		switch {
		case lost > 0:
			return pts, rampLost, nil
		case w.ops < short*pt.askOps || w.conns < short*pt.askConns:
			return pts, rampGeneratorLimit, nil
		}
	}
	return pts, rampAllSteps, nil
}

// sockets counts the sockets procfs mode reads (/proc/net/tcp and tcp6),
// or −1.
func sockets() int {
	snap, err := procfs.Read("/proc/thread-self")
	if err != nil {
		return -1
	}
	return len(snap.Sockets)
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
