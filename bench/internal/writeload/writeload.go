// Package writeload drives a fixed number of closed-loop writers against a
// write function for a fixed time and summarises what they saw: commits per
// second and the latency distribution. It knows nothing about the system
// under test, so Outpost and etcd run through exactly the same loop.
//
// Only the benchmark programs under bench/ import it.
package writeload

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// ValueSize is the size of every value the benchmarks write, in bytes.
const ValueSize = 100

// Value returns the ValueSize-byte payload every write carries. It is not
// compressible by a simple run-length scheme, so neither side gains from
// compression it would not see in production.
func Value() []byte {
	v := make([]byte, ValueSize)
	for i := range v {
		v[i] = byte('a' + (i*7+i/5)%26)
	}
	return v
}

// Key returns a distinct key for the seq-th write of writer w in a run named
// run, so no two writes of a benchmark ever touch the same key.
func Key(run string, w, seq int) []byte {
	return fmt.Appendf(nil, "bench/%s/%03d/%09d", run, w, seq)
}

// WriteFunc performs one durable write. It must return only once the write
// is acknowledged as committed (or has failed).
type WriteFunc func(ctx context.Context, writer, seq int) error

// Options sets the shape of one measurement.
type Options struct {
	Writers int           // concurrent closed-loop writers; at least 1
	Warmup  time.Duration // writes in this leading window are not recorded
	Measure time.Duration // recorded window; writers stop starting writes after it
	// OpTimeout bounds a single write. Default 10s.
	OpTimeout time.Duration
}

// Result summarises one measurement window.
type Result struct {
	Writers  int
	Ops      int           // writes started in the window and acknowledged
	Errors   int           // writes started in the window that failed
	FirstErr error         // the first failure, if any
	Elapsed  time.Duration // from the window's start to the last recorded acknowledgement
	P50, P99 time.Duration
	Max      time.Duration
}

// PerSecond is the acknowledged commit rate over the window.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// Run starts o.Writers writers, each issuing writes back to back (a new one
// as soon as the previous is acknowledged), discards the warm-up, and
// records every write started inside the measurement window. It returns
// once every writer has finished its last write.
func Run(ctx context.Context, o Options, write WriteFunc) Result {
	if o.Writers < 1 {
		o.Writers = 1
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 10 * time.Second
	}
	start := time.Now()
	from := start.Add(o.Warmup)
	until := from.Add(o.Measure)

	type writerStats struct {
		lat      []time.Duration
		errs     int
		firstErr error
		lastDone time.Time
	}
	stats := make([]writerStats, o.Writers)
	var wg sync.WaitGroup
	for w := range o.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[w]
			st.lat = make([]time.Duration, 0, 4096)
			for seq := 0; ctx.Err() == nil; seq++ {
				t0 := time.Now()
				if !t0.Before(until) {
					return
				}
				opCtx, cancel := context.WithTimeout(ctx, o.OpTimeout)
				err := write(opCtx, w, seq)
				cancel()
				t1 := time.Now()
				if t0.Before(from) {
					continue
				}
				st.lastDone = t1
				if err != nil {
					st.errs++
					if st.firstErr == nil {
						st.firstErr = err
					}
					continue
				}
				st.lat = append(st.lat, t1.Sub(t0))
			}
		}()
	}
	wg.Wait()

	r := Result{Writers: o.Writers}
	var all []time.Duration
	var last time.Time
	for _, st := range stats {
		all = append(all, st.lat...)
		r.Errors += st.errs
		if r.FirstErr == nil {
			r.FirstErr = st.firstErr
		}
		if st.lastDone.After(last) {
			last = st.lastDone
		}
	}
	r.Ops = len(all)
	if !last.IsZero() {
		r.Elapsed = last.Sub(from)
	}
	r.P50, r.P99, r.Max = Percentile(all, 0.50), Percentile(all, 0.99), Percentile(all, 1)
	return r
}

// Percentile returns the q-quantile (0..1) of ds by the nearest-rank
// method; it sorts ds in place. It returns 0 for an empty slice.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	if !slices.IsSorted(ds) {
		slices.Sort(ds)
	}
	i := max(0, min(int(math.Ceil(q*float64(len(ds))))-1, len(ds)-1))
	return ds[i]
}
