// Package gcpolicy sets the garbage collector's default for Outpost's
// node processes.
//
// A node's live heap is small (about 2 MB: the state lives in bbolt's
// mmap, not the heap), so Go's default GOGC=100 with its 4 MB minimum
// goal collects every 50-70 ms under write load, and bbolt's
// per-transaction allocations then pay mark assists on the commit path.
// GOGC=400 took the one-writer p99 from 1.54 to 1.0 ms and added 4-7%
// throughput at 1-64 writers (BENCHMARKS.md, "Recommendations"). The cost
// is a heap goal of about 16 MB instead of 4 MB at today's live heap;
// GOMEMLIMIT stays the operator's cap, and GOGC set in the environment
// wins over this default.
package gcpolicy

import (
	"os"
	"runtime/debug"
)

// Percent is the GOGC a node runs with when the environment sets none.
const Percent = 400

// Apply sets GOGC to Percent unless the GOGC environment variable is
// set, and returns the value in force and whether it came from the
// environment.
func Apply() (percent int, fromEnv bool) {
	if _, ok := os.LookupEnv("GOGC"); ok {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p, true
	}
	debug.SetGCPercent(Percent)
	return Percent, false
}
