package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// aimPer10k is the aim: the agent's CPU per 10,000 events/s, % of a core.
const aimPer10k = 2.0

// report writes the results as Markdown.
func report(w io.Writer, c config, r *results) error {
	p := &printer{w: w}
	p.f("Agent data plane on this machine: %d CPUs, kernel %s. Load (a child process): %d persistent loopback TCP connections "+
		"making %d-byte request/response round trips, plus %s new connections/s (handshake, one round trip, the server closes). "+
		"Events/s are the plane's own kernel counters (Health().Events, every tracepoint hit on a TCP socket, this machine's other traffic included). "+
		"Agent CPU is this process's user+sys time (the plane; the load is not in it); eBPF time is the programs' run time in the kernel "+
		"(BPF run-time statistics), charged to whichever process or softirq triggered them, mostly the load. Windows of %v.\n\n",
		r.cpus, r.kernel, c.conns, c.msg, count(c.churn), c.duration)
	if r.partial != "" {
		p.f("**eBPF mode was partial on this kernel (%s): what those tracepoints feed was not measured.**\n\n", r.partial)
	}

	p.f("### eBPF mode: CPU per event rate\n\n")
	p.f("| target events/s | events/s | round trips/s | new conns/s | agent CPU, %% of a core (sys) | per 10k events/s | eBPF in kernel, %% of a core | eBPF ns/event | losses | agent RSS | generator CPU | others' CPU |\n")
	p.f("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n")
	worst, exports := 0.0, []time.Duration{}
	for _, pt := range r.rates {
		w := pt.w
		mark := ""
		if pt.limited {
			mark = " †"
		}
		p.f("| %s | %s%s | %s | %s | %.2f%% (%.2f%%) | **%.2f%%** | %.2f%% | %.0f | %s | %s | %.0f%% | %s |\n",
			count(pt.target), count(w.events), mark, count(w.ops), count(w.conns), w.cpu, w.sys, per10k(w), w.bpfPct, w.bpfNs,
			w.lossText(), mib(w.rss), w.genCPU, others(w))
		worst = math.Max(worst, per10k(w))
		if pt.exportErr == nil {
			exports = append(exports, pt.export)
		}
	}
	p.f("\n")
	if slices.ContainsFunc(r.rates, func(pt ratePoint) bool { return pt.w.losses["untracked"] > 0 }) {
		p.f("untracked: %s.\n\n", notCapacity["untracked"])
	}
	if slices.ContainsFunc(r.rates, func(pt ratePoint) bool { return pt.limited }) {
		p.f("† the generator fell short of the round trips or connections asked (below %.0f%%).\n\n", 100*short)
	}
	verdict := "met at every rate"
	if worst >= aimPer10k {
		verdict = "**not met** at every rate"
	}
	p.f("Aim, under %.0f%% of a core per 10,000 events/s: %s (worst %.2f%%).", aimPer10k, verdict, worst)
	if len(exports) > 0 {
		p.f(" One export (Plane.Export: a poll, then OTLP encoding of the flows and health), made after each window: %s–%s of CPU.",
			ms(slices.Min(exports)), ms(slices.Max(exports)))
	}
	for _, pt := range r.rates {
		if pt.exportErr != nil {
			p.f(" **The export after the %s events/s window failed: %v.**", count(pt.target), pt.exportErr)
		}
	}
	p.f("\n\n")
	p.split(r.rates)
	if n := len(r.rates); n > 0 {
		p.progs(r.rates[n-1])
	}

	if len(r.ramp) > 0 {
		p.ramp(r)
	}
	if len(r.procfs) > 0 {
		p.procfs(r)
	}
	p.f("### Idle (no load of ours)\n\n")
	p.f("| mode | agent CPU, %% of a core | agent RSS | events/s (the machine's own traffic) | sockets in /proc/net/tcp{,6} | others' CPU |\n|---|---:|---:|---:|---:|---:|\n")
	for _, pt := range r.idle {
		ev := count(pt.w.events)
		if pt.mode != "ebpf" {
			ev = "–"
		}
		p.f("| %s (poll 5s) | %.3f%% | %s | %s | %s | %s |\n", pt.mode, pt.w.cpu, mib(pt.w.rss), ev, count(float64(pt.sockets)), others(pt.w))
	}
	return p.err
}

// split separates what new connections cost from what the events of
// established connections cost: the calibration's churn-only windows
// give the first, the slope between the lowest and highest rate (same
// churn) the second.
func (p *printer) split(rates []ratePoint) {
	var cpu, conns float64
	var n int
	for _, pt := range rates {
		if w := pt.churnOnly; w.secs > 0 && w.conns > 0 {
			cpu += w.cpu
			conns += w.conns
			n++
		}
	}
	if n > 0 {
		p.f("Where the agent's CPU goes: new connections alone (%s/s, no round trips; the calibration's %.1f s windows, mean of %d) cost %.2f%% of a core, "+
			"%.0f µs per connection (4 ring buffer events).", count(conns/float64(n)), probeWindow.Seconds(), n, cpu/float64(n), 1e4*cpu/conns)
	}
	if len(rates) > 1 {
		lo, hi := rates[0].w, rates[len(rates)-1].w
		if d := hi.events - lo.events; d > 0 {
			p.f(" Each further 10,000 events/s of round trips on open connections (from %s to %s events/s) changed the agent's CPU by %+.2f%% of a core.",
				count(lo.events), count(hi.events), (hi.cpu-lo.cpu)/(d/10_000))
		}
	}
	p.f("\n\n")
}

// progs lists the eBPF time by program at a rate.
func (p *printer) progs(pt ratePoint) {
	w := pt.w
	if w.bpfByProg == nil {
		return
	}
	p.f("eBPF time by program at %s events/s (runs include hits the program filters out, e.g. UDP and Unix sockets):", count(w.events))
	for _, name := range slices.Sorted(maps.Keys(w.bpfByProg)) {
		s := w.bpfByProg[name]
		nsPerRun := 0.0
		if s.runs > 0 {
			nsPerRun = float64(s.runtime.Nanoseconds()) / float64(s.runs)
		}
		p.f(" %s %s runs/s at %.0f ns;", name, count(float64(s.runs)/w.secs), nsPerRun)
	}
	if w.misses > 0 {
		p.f(" %d runs missed (recursion: another program ran on that CPU; those events were not seen).", w.misses)
	}
	p.f("\n\n")
}

func (p *printer) ramp(r *results) {
	p.f("### Highest event rate without loss (eBPF: ring buffer 256 KiB, agent queue 8192 events)\n\n")
	p.f("Each step doubles the round trips and the new connections (4 ring buffer events each: established and closed at both ends). ")
	for _, stage := range slices.Sorted(maps.Keys(notCapacity)) {
		p.f("The %s stage is shown but does not end the ramp: %s. ", stage, notCapacity[stage])
	}
	p.f("\n\n")
	p.f("| step | asked round trips/s | asked conns/s | events/s | round trips/s | new conns/s | ring events/s (≈) | agent CPU, %% of a core | eBPF in kernel | generator CPU | losses |\n")
	p.f("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	var best *rampPoint
	for i := range r.ramp {
		pt := &r.ramp[i]
		w := pt.w
		p.f("| %d | %s | %s | %s | %s | %s | %s | %.2f%% | %.2f%% | %.0f%% | %s |\n", i+1, count(pt.askOps), count(pt.askConns),
			count(w.events), count(w.ops), count(w.conns), count(4*w.conns), w.cpu, w.bpfPct, w.genCPU, lossesText(pt.lost))
		if capacityLost(pt.lost) == 0 && (best == nil || w.events > best.w.events) {
			best = pt
		}
	}
	p.f("\n")
	last := r.ramp[len(r.ramp)-1]
	if best == nil {
		p.f("Losses from the first step (%s). ", lossesText(last.lost))
	} else {
		p.f("**Highest rate with zero loss (capacity stages): %s events/s with %s new connections/s (≈%s ring buffer events/s).** ",
			count(best.w.events), count(best.w.conns), count(4*best.w.conns))
	}
	switch r.rampEnd {
	case rampLost:
		p.f("Step %d lost events (%s).\n\n", len(r.ramp), lossesText(last.lost))
	case rampGeneratorLimit:
		p.f("No capacity loss stage moved: the load generator was the limit (it reached %s round trips/s and %s connections/s of the %s and %s asked, using %.0f%% of a core, with the agent on the same %d cores), so the plane's own limit is higher.\n\n",
			count(last.w.ops), count(last.w.conns), count(last.askOps), count(last.askConns), last.w.genCPU, r.cpus)
	default:
		p.f("No capacity loss stage moved in %d steps (the -ramp-steps limit); the plane's limit is higher.\n\n", len(r.ramp))
	}
}

func (p *printer) procfs(r *results) {
	p.f("### The same load observed in procfs mode\n\n")
	p.f("procfs mode counts no events (it reads open sockets and the host's counters at each poll): its cost follows the sockets listed, not the event rate.\n\n")
	p.f("| load (eBPF target events/s) | round trips/s | new conns/s | mode | agent CPU, %% of a core | agent RSS | sockets in /proc/net/tcp{,6} | others' CPU |\n")
	p.f("|---:|---:|---:|---|---:|---:|---:|---:|\n")
	for _, target := range uniqueTargets(r.procfs) {
		for _, pt := range r.rates {
			if pt.target == target {
				p.f("| %s | %s | %s | eBPF (poll 5s) | %.2f%% | %s | | %s |\n", count(target), count(pt.w.ops), count(pt.w.conns), pt.w.cpu, mib(pt.w.rss), others(pt.w))
			}
		}
		for _, pt := range r.procfs {
			if pt.target == target {
				p.f("| %s | %s | %s | procfs (poll %v) | %.2f%% | %s | %s | %s |\n", count(target), count(pt.w.ops), count(pt.w.conns), pt.poll,
					pt.w.cpu, mib(pt.w.rss), count(float64(pt.sockets)), others(pt.w))
			}
		}
	}
	p.f("\n")
}

func uniqueTargets(pts []procfsPoint) []float64 {
	var out []float64
	for _, pt := range pts {
		if !slices.Contains(out, pt.target) {
			out = append(out, pt.target)
		}
	}
	return out
}

// printer writes and keeps the first error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// capacityLost sums the stages that say the plane fell behind.
func capacityLost(m map[string]uint64) uint64 {
	var n uint64
	for stage, v := range m {
		if _, ok := notCapacity[stage]; !ok {
			n += v
		}
	}
	return n
}

// per10k is the agent's CPU per 10,000 events/s, % of a core.
func per10k(w window) float64 {
	if w.events <= 0 {
		return math.Inf(1)
	}
	return w.cpu / (w.events / 10_000)
}

func lossesText(m map[string]uint64) string {
	return window{losses: m}.lossText()
}

func others(w window) string {
	if w.others < 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", w.others)
}

// count formats a rate or count with thousands separators.
func count(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
