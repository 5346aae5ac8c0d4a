package probe

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// MaxConcurrent bounds how many probes of a Runner run at once; the
// others wait for a slot, their schedule slipping rather than piling up.
const MaxConcurrent = 16

// maxJitter bounds the random delay before a probe's first run, which
// spreads a new set's probes over their interval instead of firing them
// together.
const maxJitter = 30 * time.Second

// Runner runs a set of probes, each every Interval(p), and keeps each
// probe's latest Result. Set replaces the set at any time; Start runs
// it. Its methods are safe for concurrent use.
type Runner struct {
	logger *slog.Logger
	sem    chan struct{} // MaxConcurrent slots
	base   Guard         // the guard each set copies, with its Allow
	jitter func(time.Duration) time.Duration

	mu      sync.Mutex
	cur     *probeSet
	ctx     context.Context // Start's, while it runs
	stopped bool            // Start's ctx ended: start no more goroutines
	wg      sync.WaitGroup  // the probe goroutines
}

// probeSet is one Set's probes and their latest results.
type probeSet struct {
	probes  []agentwire.Probe
	guard   Guard
	results []Result // by probe; a zero At means no run yet
	cancel  context.CancelFunc
}

// NewRunner returns a Runner with no probes; logger may be nil.
func NewRunner(logger *slog.Logger) *Runner {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{
		logger: logger,
		sem:    make(chan struct{}, MaxConcurrent),
		jitter: func(every time.Duration) time.Duration { return rand.N(min(every, maxJitter)) },
		cur:    &probeSet{},
	}
}

// Set replaces the probes (from a newly applied config) and the ranges
// the guard allows them (Config.ProbeAllow). The old set's probes stop,
// a run in flight abandoned and unrecorded; the new ones start, after a
// jitter, if Start is running. Results then holds only the new set's.
func (r *Runner) Set(probes []agentwire.Probe, allow []netip.Prefix) {
	g := r.base
	g.Allow = slices.Clone(allow)
	s := &probeSet{probes: slices.Clone(probes), guard: g, results: make([]Result, len(probes))}
	r.mu.Lock()
	old := r.cur
	r.cur = s
	r.startLocked(s)
	r.mu.Unlock()
	if old.cancel != nil {
		old.cancel()
	}
	r.logger.Info("probe set applied", "probes", len(probes), "probe_allow", len(allow))
}

// Start runs the probes until ctx ends, then returns once every probe
// goroutine has exited. Call it once.
func (r *Runner) Start(ctx context.Context) {
	r.mu.Lock()
	if r.ctx != nil {
		r.mu.Unlock()
		r.logger.Error("probe runner started twice; ignoring the second start")
		return
	}
	r.ctx = ctx
	r.startLocked(r.cur)
	r.mu.Unlock()

	<-ctx.Done()
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.wg.Wait()
}

// startLocked starts s's goroutines if the runner runs; r.mu is held.
// Every wg.Add happens under r.mu before stopped is set, so none races
// Start's final Wait.
func (r *Runner) startLocked(s *probeSet) {
	if r.ctx == nil || r.stopped {
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	s.cancel = cancel
	for i := range s.probes {
		r.wg.Add(1)
		go r.loop(ctx, s, i)
	}
}

// Results are the latest result of each probe of the current set that
// has run, in the set's order.
func (r *Runner) Results() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Result, 0, len(r.cur.results))
	for _, res := range r.cur.results {
		if !res.At.IsZero() {
			out = append(out, res)
		}
	}
	return out
}

// loop runs probe i of s every interval until ctx ends.
func (r *Runner) loop(ctx context.Context, s *probeSet, i int) {
	defer r.wg.Done()
	p := s.probes[i]
	every := Interval(p)
	t := time.NewTimer(r.jitter(every))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case r.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		res := Run(ctx, p, s.guard)
		<-r.sem
		if ctx.Err() != nil {
			return // stopped mid-run: the result is the cancellation's, not the target's
		}
		r.record(s, i, res)
		t.Reset(max(0, time.Until(res.At.Add(every))))
	}
}

// record keeps res as probe i's latest, and logs it: a guard refusal at
// warn the first time (a config problem an operator should see), other
// outcomes at debug.
func (r *Runner) record(s *probeSet, i int, res Result) {
	r.mu.Lock()
	wasRefused := s.results[i].Refused != ""
	s.results[i] = res
	r.mu.Unlock()
	switch {
	case res.Refused != "" && !wasRefused:
		r.logger.Warn("probe refused by the SSRF guard",
			"kind", res.Kind, "target", res.Target, "rule", res.Refused)
	case res.Success:
		r.logger.Debug("probe", "kind", res.Kind, "target", res.Target, "duration", res.Duration)
	default:
		r.logger.Debug("probe failed", "kind", res.Kind, "target", res.Target, "duration", res.Duration, "err", res.Error)
	}
}
