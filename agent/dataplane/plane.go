// Package dataplane is the agent's view of the host's TCP traffic: it
// loads the eBPF flow observer (package bpf) or, when that cannot load,
// reads procfs, aggregates connections into flows under a budget (the
// top-K flows by bytes kept exactly, the rest folded into an "other"
// flow that is counted), and encodes each export as OTLP metrics: flows,
// RTT and connect-latency histograms, probe results, and the agent's own
// health (CPU, memory, events, losses by stage, mode).
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"

	"github.com/outpost-mesh/outpost/agent/probe"
	"github.com/outpost-mesh/outpost/agent/procfs"
	"github.com/outpost-mesh/outpost/bpf"
)

// Modes.
const (
	ModeAuto   = "auto"
	ModeEBPF   = "ebpf"
	ModeProcfs = "procfs"
)

// Defaults.
const (
	DefaultMaxFlows     = 200
	DefaultPollInterval = 5 * time.Second
)

// Config configures the data plane.
type Config struct {
	// Mode is auto (eBPF, else procfs; the default), ebpf (procfs only
	// when eBPF fails, said loudly) or procfs.
	Mode string
	// MaxFlows is how many flows are exported per agent; the rest fold
	// into the "other" flow. Default 200: each flow is about 33 series,
	// inside the node's default budget of 10,000 series per agent.
	MaxFlows int
	// PollInterval is how often the kernel's tables are read. Default 5s.
	PollInterval time.Duration
	// ProcRoot is where net/tcp, net/snmp… are read (default
	// /proc/thread-self: the network namespace of the reading thread,
	// which is the agent's own; /proc/self follows the process's first
	// thread, which a library may have moved into another namespace).
	ProcRoot string
	// MaxConns bounds the kernel's connection table (default 65536).
	MaxConns uint32
	Logger   *slog.Logger
	// Load replaces bpf.Load (tests make loading fail).
	Load func(bpf.Options) (*bpf.Flow, error)
}

// Validate checks a config.
func (c Config) Validate() error {
	switch c.Mode {
	case "", ModeAuto, ModeEBPF, ModeProcfs:
	default:
		return fmt.Errorf("data plane mode %q: use auto, ebpf or procfs", c.Mode)
	}
	if c.MaxFlows < 0 || c.MaxFlows > 100_000 {
		return fmt.Errorf("max flows %d: use 1..100000 (0 for the default %d)", c.MaxFlows, DefaultMaxFlows)
	}
	if c.PollInterval != 0 && (c.PollInterval < 100*time.Millisecond || c.PollInterval > time.Minute) {
		return fmt.Errorf("poll interval %v: use 100ms..1m", c.PollInterval)
	}
	return nil
}

// Plane is a running data plane.
type Plane struct {
	cfg    Config
	logger *slog.Logger
	start  time.Time
	mode   string
	reason string

	flow *bpf.Flow
	eb   *ebpfSource
	pf   *procfsSource

	mu      sync.Mutex // guards agg and lastErr
	agg     *aggregator
	lastErr error

	encodeErrs atomic.Uint64 // exports that could not be encoded (lost)

	stop   context.CancelFunc
	polls  sync.WaitGroup // the poll loop
	events sync.WaitGroup // the ring reader and the drain
}

// Start starts the data plane. It does not fail when eBPF cannot load:
// it runs in procfs mode and says why (Health().Reason).
func Start(ctx context.Context, cfg Config) (*Plane, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeAuto
	}
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc/thread-self"
		if _, err := os.Stat(cfg.ProcRoot + "/net"); err != nil {
			cfg.ProcRoot = "/proc" // before Linux 3.17
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Load == nil {
		cfg.Load = bpf.Load
	}
	now := time.Now()
	p := &Plane{cfg: cfg, logger: cfg.Logger, start: now, agg: newAggregator(cfg.MaxFlows, now)}
	if cfg.Mode == ModeProcfs {
		p.mode, p.reason = ModeProcfs, "configured"
	} else {
		mountTracefs(p.logger)
		f, err := cfg.Load(bpf.Options{MaxConns: cfg.MaxConns})
		if err != nil {
			p.mode, p.reason = ModeProcfs, bpf.Reason(err)
			lvl := slog.LevelWarn
			if cfg.Mode == ModeEBPF {
				lvl = slog.LevelError
			}
			p.logger.Log(ctx, lvl, "eBPF could not load; observing through procfs (connection states and host counters only, no bytes or RTT per flow)",
				"reason", p.reason)
		} else {
			p.mode, p.flow, p.eb = ModeEBPF, f, newEBPFSource(f, cfg.Logger)
			if missing := f.Missing(); len(missing) > 0 {
				p.reason = "partial: " + strings.Join(missing, "; ")
				p.logger.Warn("some tracepoints are not usable on this kernel; what they feed is not reported", "missing", missing)
			}
		}
	}
	if p.mode == ModeProcfs {
		p.pf = &procfsSource{root: cfg.ProcRoot}
	}
	p.logger.Info("data plane started", "mode", p.mode, "reason", p.reason, "max_flows", cfg.MaxFlows)
	ctx, p.stop = context.WithCancel(context.WithoutCancel(ctx))
	if p.eb != nil {
		p.events.Add(2)
		go func() { defer p.events.Done(); p.eb.readRing() }()
		go func() { defer p.events.Done(); p.drain() }()
	}
	p.polls.Add(1)
	go func() { defer p.polls.Done(); p.pollLoop(ctx) }()
	return p, nil
}

// mountTracefs mounts tracefs where the kernel's tracepoints are found,
// when it is not mounted and this process may: the programs cannot be
// attached without it.
func mountTracefs(logger *slog.Logger) {
	const dir = "/sys/kernel/tracing"
	if _, err := os.Stat(dir + "/events"); err == nil || os.Geteuid() != 0 {
		return
	}
	if err := syscall.Mount("tracefs", dir, "tracefs", 0, ""); err != nil {
		logger.Warn("tracefs is not mounted and mounting it failed; eBPF tracepoints cannot be attached", "dir", dir, "err", err)
		return
	}
	logger.Info("mounted tracefs", "dir", dir)
}

// Mode is ebpf or procfs, and the reason for procfs (or, in ebpf mode,
// the tracepoints this kernel could not give).
func (p *Plane) Mode() (mode, reason string) { return p.mode, p.reason }

// drain applies queued ring buffer events until the ring is closed.
func (p *Plane) drain() {
	for e := range p.eb.events {
		p.mu.Lock()
		p.eb.handle(p.agg, e)
		p.mu.Unlock()
	}
}

func (p *Plane) pollLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.Poll()
		}
	}
}

// Poll reads the kernel's tables now (Export does too).
func (p *Plane) Poll() {
	// The kernel is read without the lock, so the ring buffer's events
	// are applied meanwhile; only the result is applied under it.
	var err error
	switch {
	case p.eb != nil:
		var snap snapshot
		if snap, err = p.eb.read(); err == nil {
			p.mu.Lock()
			p.eb.apply(p.agg, snap)
			p.mu.Unlock()
		}
	case p.pf != nil:
		var snap procfs.Snapshot
		if snap, err = procfs.Read(p.pf.root); err == nil {
			p.mu.Lock()
			p.pf.apply(p.agg, snap)
			p.mu.Unlock()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil && p.lastErr == nil {
		// Logged when reading starts failing, not at every poll.
		p.logger.Warn("reading the kernel's view failed", "mode", p.mode, "err", err)
	}
	p.lastErr = err
}

// ExportStats are the exporter's own counts, reported with the health.
type ExportStats struct {
	DroppedBatches map[string]uint64 // by reason: spool_full, rejected_<code>, corrupt
	QueuedBatches  int
	QueuedBytes    int64
}

// Export polls, closes the interval, and encodes the export: every kept
// flow, the other bucket, the probes' latest results and the agent's
// health, as an OTLP ExportMetricsServiceRequest with resource attrs.
func (p *Plane) Export(now time.Time, resource map[string]string, probes []probe.Result, ex ExportStats) ([]byte, error) {
	p.Poll()
	p.mu.Lock()
	p.agg.flush(now)
	b := newBuilder(now, p.start)
	keys := make([]FlowKey, 0, len(p.agg.series))
	for k := range p.agg.series {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return compareKeys(keys[i], keys[j]) < 0 })
	procfsMode := p.mode == ModeProcfs
	for _, k := range keys {
		b.flow(k, p.agg.series[k], procfsMode)
	}
	if p.agg.other.lastSeen.After(time.Time{}) {
		b.flow(otherKey, p.agg.other, procfsMode)
	}
	folded := p.agg.folded
	flows := len(p.agg.series)
	p.mu.Unlock()

	h := p.Health()
	b.counter("outpost.agent.flows_folded", "{flow}", "Flow intervals folded into the other flow by the max_flows budget.", p.start, float64(folded), nil)
	b.gauge("outpost.agent.flows", "{flow}", "Flows exported on their own (at most max_flows).", float64(flows), nil)
	for _, stage := range sortedKeys(h.Losses) {
		b.counter("outpost.agent.losses", "{event}", "Events lost, by stage: ringbuf (kernel ring buffer full), conns_full and stats_full (kernel tables full), recursion (skipped by the kernel while another program ran), queue (agent's event queue full), parse, untracked (sends and receives on connections that predate the agent), encode (exports that could not be encoded).",
			p.start, float64(h.Losses[stage]), attrs("stage", stage))
	}
	for _, kind := range sortedKeys(h.Seen) {
		b.counter("outpost.agent.events", "{event}", "Kernel events the eBPF programs handled, by kind.", p.start, float64(h.Seen[kind]), attrs("kind", kind))
	}
	for _, reason := range sortedKeys(ex.DroppedBatches) {
		b.counter("outpost.agent.export.dropped_batches", "{batch}", "Export batches dropped, by reason: spool_full, corrupt, rejected_<HTTP code>.",
			p.start, float64(ex.DroppedBatches[reason]), attrs("reason", reason))
	}
	b.gauge("outpost.agent.export.queued", "{batch}", "Export batches waiting in the on-disk spool.", float64(ex.QueuedBatches), nil)
	b.counter("outpost.agent.cpu", "s", "CPU time the agent used (user and system).", p.start, h.CPUSeconds, nil)
	b.gauge("outpost.agent.memory", "By", "The agent's resident memory.", float64(h.MemoryBytes), nil)
	b.gauge("outpost.agent.mode", "", "1 for the mode the agent observes in (ebpf or procfs), with the reason for procfs.", 1,
		attrs("mode", h.Mode, "reason", h.Reason))
	if p.pf != nil {
		host := p.pf.hostCounters()
		for _, c := range hostCounters {
			if v, ok := host[c.name]; ok {
				b.counter(c.name, "{segment}", c.desc, time.Time{}, float64(v), nil)
			}
		}
	}
	for _, r := range probes {
		b.probe(r)
	}
	var res []*commonpb.KeyValue
	for _, k := range sortedKeys(resource) {
		res = append(res, attrs(k, resource[k])...)
	}
	out, err := b.encode(res)
	if err != nil {
		p.encodeErrs.Add(1)
	}
	return out, err
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Health reports the data plane's state.
func (p *Plane) Health() Health {
	h := Health{Mode: p.mode, Reason: p.reason, Since: p.start, CPUSeconds: cpuSeconds(), MemoryBytes: rssBytes(), Losses: map[string]uint64{}}
	if p.eb != nil {
		h.Seen = p.eb.seen()
		h.Losses = p.eb.losses(h.Seen)
		for _, v := range h.Seen {
			h.Events += v
		}
	}
	h.Losses["encode"] = p.encodeErrs.Load()
	p.mu.Lock()
	h.Flows, h.Folded = len(p.agg.series), p.agg.folded
	if p.lastErr != nil {
		h.LastError = p.lastErr.Error()
	}
	p.mu.Unlock()
	return h
}

// Close stops the data plane and detaches the programs. Nothing reads
// the kernel's maps once they are freed: the poll loop ends first, then
// the ring buffer's reader and the drain.
func (p *Plane) Close() error {
	p.stop()
	p.polls.Wait()
	if p.flow == nil {
		return nil
	}
	err := p.flow.StopEvents()
	p.events.Wait()
	return errors.Join(err, p.flow.Close())
}
