package dataplane

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSeconds is the CPU time this process used (user and system).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// rssBytes is this process's resident memory (/proc/self/statm), or the
// Go runtime's view of it where statm is not readable.
func rssBytes() int64 {
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return pages * int64(os.Getpagesize())
			}
		}
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.Sys)
}

// Health is the data plane's own state, for the agent's description and
// health report.
type Health struct {
	Mode        string // ebpf | procfs
	Reason      string // why procfs, when it is
	Since       time.Time
	Events      uint64            // kernel events handled so far (ebpf)
	Seen        map[string]uint64 // the same, by kind
	Losses      map[string]uint64 // by stage, cumulative
	Flows       int               // exported flows
	Folded      uint64            // flow-intervals folded into other
	CPUSeconds  float64
	MemoryBytes int64
	LastError   string
}

// Lost is the sum of all losses.
func (h Health) Lost() uint64 {
	var n uint64
	for _, v := range h.Losses {
		n += v
	}
	return n
}
