package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/outpost-mesh/outpost/agent/dataplane"
	"github.com/outpost-mesh/outpost/bench/internal/hostload"
)

// programNames are the flow observer's programs (bpf/src/flow.bpf.c).
var programNames = []string{"on_state", "on_send", "on_recv", "on_retransmit", "on_probe"}

// programs are this process's loaded flow programs, opened again by ID
// so their run-time statistics can be read: package bpf does not expose
// its programs. Only programs this process holds a descriptor for are
// taken (/proc/self/fdinfo), so another agent or test loading the same
// object elsewhere on the machine is not counted.
type programs map[string]*ebpf.Program

// ownPrograms finds the flow programs among this process's descriptors.
func ownPrograms() (programs, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	out := programs{}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err != nil || target != "anon_inode:bpf-prog" {
			continue
		}
		id, err := progID(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			continue
		}
		info, err := p.Info()
		if err != nil || !slices.Contains(programNames, info.Name) || out[info.Name] != nil {
			_ = p.Close()
			continue
		}
		out[info.Name] = p
	}
	if len(out) != len(programNames) {
		out.Close()
		return nil, fmt.Errorf("found %d of the %d flow programs among this process's descriptors", len(out), len(programNames))
	}
	return out, nil
}

// progID reads prog_id from a bpf-prog descriptor's fdinfo.
func progID(path string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseProgID(f)
}

// errNoProgID: the fdinfo has no prog_id line.
var errNoProgID = errors.New("no prog_id in fdinfo")

func parseProgID(r io.Reader) (uint32, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "prog_id" {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("prog_id %q: %w", v, err)
		}
		return uint32(id), nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errNoProgID
}

// progStat is one program's cumulative statistics.
type progStat struct {
	runtime time.Duration
	runs    uint64
	misses  uint64 // not run because another program ran on that CPU
}

func (ps programs) stats() (map[string]progStat, error) {
	out := make(map[string]progStat, len(ps))
	for name, p := range ps {
		s, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("statistics of %s: %w", name, err)
		}
		out[name] = progStat{runtime: s.Runtime, runs: s.RunCount, misses: s.RecursionMisses}
	}
	return out, nil
}

// Close closes the programs' second descriptors.
func (ps programs) Close() {
	for _, p := range ps {
		_ = p.Close()
	}
}

// snapshot is everything read at one end of a window.
type snapshot struct {
	at        time.Time
	user, sys float64 // this process's CPU seconds (the plane's)
	health    dataplane.Health
	progs     map[string]progStat // nil without eBPF
	load      loadCounts          // zero without a generator
	host      hostload.Snapshot   // nil where /proc cannot be read
}

// take reads a snapshot. The host's processes are read first at the
// start and last at the end (outer), so that reading /proc is not
// counted as the plane's CPU.
func take(p *dataplane.Plane, ps programs, l *load, first bool) (snapshot, error) {
	var s snapshot
	var err error
	readHost := func() {
		if h, err := hostload.Take(); err == nil {
			s.host = h
		}
	}
	if first {
		readHost()
	}
	if l != nil {
		if s.load, err = l.report(); err != nil {
			return s, err
		}
	}
	if ps != nil {
		if s.progs, err = ps.stats(); err != nil {
			return s, err
		}
	}
	s.health = p.Health()
	s.at = time.Now()
	s.user, s.sys = rusage()
	if !first {
		readHost()
	}
	return s, nil
}

// window is what happened between two snapshots.
type window struct {
	secs      float64
	events    float64 // kernel events the plane counted, per second
	ops       float64 // generator round trips per second
	conns     float64 // generator new connections per second
	errs      uint64  // generator errors
	cpu       float64 // the plane's process, user+sys, % of one core
	sys       float64 // of which in the kernel (syscalls), % of one core
	genCPU    float64 // the generator's, % of one core
	bpfPct    float64 // eBPF programs' run time, % of one core (−1: not measured)
	bpfNs     float64 // eBPF run time per counted event, ns
	bpfRuns   float64 // program runs per second (all, filtered ones too)
	bpfByProg map[string]progStat
	misses    uint64
	losses    map[string]uint64 // by stage, in the window
	rss       int64             // at the end
	others    float64           // other processes' CPU, % of one core (−1: unknown)
}

func between(a, b snapshot) window {
	w := window{secs: b.at.Sub(a.at).Seconds(), bpfPct: -1, others: -1, losses: map[string]uint64{}, rss: b.health.MemoryBytes}
	if w.secs <= 0 {
		return w
	}
	w.events = float64(b.health.Events-a.health.Events) / w.secs
	w.ops = float64(b.load.ops-a.load.ops) / w.secs
	w.conns = float64(b.load.conns-a.load.conns) / w.secs
	w.errs = b.load.errs - a.load.errs
	w.genCPU = 100 * (b.load.cpu - a.load.cpu) / w.secs
	w.cpu = 100 * (b.user + b.sys - a.user - a.sys) / w.secs
	w.sys = 100 * (b.sys - a.sys) / w.secs
	for stage, n := range b.health.Losses {
		w.losses[stage] = n - a.health.Losses[stage]
	}
	if a.progs != nil && b.progs != nil {
		var rt time.Duration
		var runs uint64
		w.bpfByProg = map[string]progStat{}
		for name, s := range b.progs {
			d := progStat{runtime: s.runtime - a.progs[name].runtime, runs: s.runs - a.progs[name].runs, misses: s.misses - a.progs[name].misses}
			w.bpfByProg[name] = d
			rt += d.runtime
			runs += d.runs
			w.misses += d.misses
		}
		w.bpfPct = 100 * rt.Seconds() / w.secs
		w.bpfRuns = float64(runs) / w.secs
		if n := b.health.Events - a.health.Events; n > 0 {
			w.bpfNs = float64(rt.Nanoseconds()) / float64(n)
		}
	}
	if a.host != nil && b.host != nil {
		// Self also claims its children: the load generator is ours.
		w.others = 100 * hostload.Foreign(a.host, b.host, hostload.Self).Seconds() / w.secs
		w.others = min(w.others, 100*float64(runtime.NumCPU()))
	}
	return w
}

// lossText lists the stages that lost, or "0".
func (w window) lossText() string {
	var parts []string
	for _, stage := range slices.Sorted(maps.Keys(w.losses)) {
		if n := w.losses[stage]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", stage, n))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, ", ")
}

// measure takes a snapshot, waits d (or until stop closes) and takes
// another.
func measure(p *dataplane.Plane, ps programs, l *load, d time.Duration, stop <-chan struct{}) (window, error) {
	a, err := take(p, ps, l, true)
	if err != nil {
		return window{}, err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return window{}, errInterrupted
	case <-t.C:
	}
	b, err := take(p, ps, l, false)
	if err != nil {
		return window{}, err
	}
	return between(a, b), nil
}

// errInterrupted: the run was interrupted (a signal).
var errInterrupted = errors.New("interrupted")
