// Package hostload measures how much CPU other processes used on the host
// while a benchmark ran, so a measurement disturbed by someone else's
// compile or test run can be retried or flagged instead of recorded as
// the system's speed. It reads /proc and works on Linux only; elsewhere
// Take returns ErrUnsupported and callers measure without the check.
//
// Only the benchmark programs under bench/ import it.
package hostload

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// ErrUnsupported means the host has no /proc to read.
var ErrUnsupported = errors.New("hostload: /proc is not available")

// ticksPerSecond is USER_HZ, the unit of /proc/<pid>/stat times; it is 100
// on every Linux architecture Go supports.
const ticksPerSecond = 100

// Snapshot is the CPU time each user-space process had used, including
// the time of its reaped children, so short-lived compiler processes are
// counted through the go command that waited for them.
type Snapshot map[int]proc

type proc struct {
	ppid  int
	ticks uint64
}

// Take reads every process's CPU time.
func Take() (Snapshot, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, ErrUnsupported
	}
	s := Snapshot{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		if p, ok := parseStat(string(b)); ok && p.ppid != 2 && pid != 2 {
			s[pid] = p // pid 2 is kthreadd; its children are kernel threads
		}
	}
	return s, nil
}

// parseStat reads ppid and utime+stime+cutime+cstime from /proc/<pid>/stat.
func parseStat(s string) (proc, bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return proc{}, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return proc{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return proc{}, false
	}
	var t uint64
	for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, err := strconv.ParseUint(f[k], 10, 64)
		if err != nil {
			return proc{}, false
		}
		t += v
	}
	return proc{ppid: ppid, ticks: t}, true
}

// Foreign returns the CPU time processes other than ours used between
// before and after. A process is ours if ours(pid) is true or its parent
// is ours, so the benchmark passes its own pid and its children's.
func Foreign(before, after Snapshot, ours func(pid int) bool) time.Duration {
	var ticks uint64
	for pid, a := range after {
		if ours(pid) || ours(a.ppid) {
			continue
		}
		if b, ok := before[pid]; ok && b.ticks <= a.ticks {
			ticks += a.ticks - b.ticks
		} else if !ok {
			ticks += a.ticks // started during the window
		}
	}
	return time.Duration(ticks) * time.Second / ticksPerSecond
}

// Self reports whether pid is this process; with Foreign's parent rule it
// also claims this process's direct children.
func Self(pid int) bool { return pid == os.Getpid() }

// Guard runs measurements on a host others may be using.
type Guard struct {
	// Limit is the share of one CPU other processes may use during a
	// measurement before it counts as disturbed (0.05 = 5%).
	Limit float64
	// Attempts is how often a disturbed measurement is run again; the
	// least disturbed attempt is kept. At least 1.
	Attempts int
	// QuietWait bounds the wait for a quiet second before each attempt.
	QuietWait time.Duration
	// Ours claims the benchmark's own processes (default Self).
	Ours func(pid int) bool
}

// Run calls measure until other processes used at most g.Limit of a CPU
// during it, and returns the least disturbed result with the share of a
// CPU others used meanwhile (-1 where /proc is missing: measured once,
// unchecked).
func Run[T any](g Guard, measure func() T) (T, float64) {
	if g.Ours == nil {
		g.Ours = Self
	}
	var best T
	bestShare := -1.0
	for range max(1, g.Attempts) {
		g.waitQuiet()
		before, err := Take()
		start := time.Now()
		res := measure()
		if err != nil {
			return res, -1
		}
		after, err := Take()
		if err != nil {
			return res, -1
		}
		// A reaped child's whole CPU time lands in its parent's at once, so
		// the estimate can exceed what the window held; cap it at the host.
		share := min(Foreign(before, after, g.Ours).Seconds()/time.Since(start).Seconds(), float64(runtime.NumCPU()))
		if bestShare < 0 || share < bestShare {
			best, bestShare = res, share
		}
		if share <= g.Limit {
			break
		}
	}
	return best, bestShare
}

// waitQuiet waits, one second at a time, until a second passes in which
// other processes stay under the limit, or QuietWait runs out.
func (g Guard) waitQuiet() {
	deadline := time.Now().Add(g.QuietWait)
	for time.Now().Before(deadline) {
		before, err := Take()
		if err != nil {
			return
		}
		time.Sleep(time.Second)
		after, err := Take()
		if err != nil || Foreign(before, after, g.Ours).Seconds() <= g.Limit {
			return
		}
	}
}

// Used is the CPU time pid used between before and after (its own and
// its reaped children's); 0 if it is missing from either.
func Used(before, after Snapshot, pid int) time.Duration {
	b, okb := before[pid]
	a, oka := after[pid]
	if !okb || !oka || a.ticks < b.ticks {
		return 0
	}
	return time.Duration(a.ticks-b.ticks) * time.Second / ticksPerSecond
}
