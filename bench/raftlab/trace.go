package main

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/outpost-mesh/outpost/bench/internal/writeload"
)

// span is one timed step on one node.
type span struct {
	node   int
	t0, t1 time.Time
}

// opTrace is everything that happened to one log entry. All nodes run in
// this process, so their monotonic clocks are the same clock.
type opTrace struct {
	submit, done time.Time
	stores       []span // log-store writes (append + fsync) containing the entry
	applies      []span // FSM batches containing the entry
}

// recorder collects opTraces while enabled.
type recorder struct {
	mu  sync.Mutex
	on  bool
	ops map[uint64]*opTrace
	all []span // every FSM apply while enabled, for contention counts
	// io holds the times TLS reads returned and writes completed on the
	// Raft connections, by stream; a stream's times are in order.
	io map[ioStream][]time.Time
	// per node: log writes, FSM batches and state-file syncs while enabled
	stores, applies, syncs map[int]*busy
}

// busy sums one kind of step on one node: calls, entries, time spent.
type busy struct {
	calls, entries int
	time           time.Duration
}

func (b *busy) add(n int, d time.Duration) {
	b.calls++
	b.entries += n
	b.time += d
}

func bump(m map[int]*busy, node, n int, d time.Duration) {
	if m[node] == nil {
		m[node] = &busy{}
	}
	m[node].add(n, d)
}

// ioStream names one direction of traffic: node's reads or writes on the
// connections it dialed to peer, or on the connections it accepted
// (peer -1: the caller is not known).
type ioStream struct {
	node, peer int
	write      bool
}

func newRecorder() *recorder {
	return &recorder{ops: map[uint64]*opTrace{}, io: map[ioStream][]time.Time{}, stores: map[int]*busy{}, applies: map[int]*busy{}, syncs: map[int]*busy{}}
}

func (r *recorder) ioEvent(s ioStream, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.on {
		r.io[s] = append(r.io[s], t)
	}
}

// after returns the first event of stream s after t, or the zero time.
func (r *recorder) afterLocked(s ioStream, t time.Time) time.Time {
	ts := r.io[s]
	i, _ := slices.BinarySearchFunc(ts, t, func(a, b time.Time) int { return a.Compare(b) })
	for ; i < len(ts); i++ {
		if ts[i].After(t) {
			return ts[i]
		}
	}
	return time.Time{}
}

// reset drops everything recorded, for a measurement that is run again.
func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on, r.ops, r.all, r.io = false, map[uint64]*opTrace{}, nil, map[ioStream][]time.Time{}
	r.stores, r.applies, r.syncs = map[int]*busy{}, map[int]*busy{}, map[int]*busy{}
}

func (r *recorder) enable(on bool) {
	r.mu.Lock()
	r.on = on
	r.mu.Unlock()
}

func (r *recorder) opLocked(idx uint64) *opTrace {
	t := r.ops[idx]
	if t == nil {
		t = &opTrace{}
		r.ops[idx] = t
	}
	return t
}

func (r *recorder) store(node int, logs []*hraft.Log, t0, t1 time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on {
		return
	}
	bump(r.stores, node, len(logs), t1.Sub(t0))
	for _, l := range logs {
		if l.Type == hraft.LogCommand {
			t := r.opLocked(l.Index)
			t.stores = append(t.stores, span{node, t0, t1})
		}
	}
}

func (r *recorder) apply(node int, logs []*hraft.Log, t0, t1 time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on {
		return
	}
	r.all = append(r.all, span{node, t0, t1})
	bump(r.applies, node, len(logs), t1.Sub(t0))
	for _, l := range logs {
		if l.Type == hraft.LogCommand {
			t := r.opLocked(l.Index)
			t.applies = append(t.applies, span{node, t0, t1})
		}
	}
}

// sync records one state-file sync (fsm_sync_interval) on node.
func (r *recorder) sync(node int, t0, t1 time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.on {
		bump(r.syncs, node, 0, t1.Sub(t0))
	}
}

func (r *recorder) op(idx uint64, submit, done time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on {
		return
	}
	t := r.opLocked(idx)
	t.submit, t.done = submit, done
}

// stage names the segments of one single-writer commit, in order.
var stages = []string{
	"Apply → leader log write starts",
	"leader log append + fsync",
	"  → AppendEntries written (replicator wakes, reads log, encodes, TLS)",
	"  → follower has read it (loopback, follower conn goroutine wakes)",
	"  → follower log write starts (decode, hand to follower's main loop)",
	"follower log append + fsync (quorum)",
	"  → response written (commit of earlier entries, hand back, encode, TLS)",
	"  → leader has read it (loopback, leader conn goroutine wakes)",
	"  → leader FSM batch starts (pipeline decoder, commit, leader loop, FSM goroutine)",
	"leader FSM bbolt txn (2 fsyncs)",
	"→ Apply returns",
}

// breakdown is the per-stage latency of traced single-writer commits.
type breakdown struct {
	ops        int
	mean, p50  []time.Duration // per stage
	tailMean   []time.Duration // per stage, over the slowest 1% of commits
	total      [3]time.Duration
	overlapped float64 // share of commits whose quorum follower write overlapped an FSM txn on any node
	fastF      [2]time.Duration
}

// analyse splits each traced commit into stages. leader is the node that
// led throughout.
func (r *recorder) analyse(leader int) breakdown {
	r.mu.Lock()
	defer r.mu.Unlock()
	type row struct {
		seg     []time.Duration
		total   time.Duration
		overlap bool
	}
	var rows []row
	var fOverlap, fClear []time.Duration
	for _, t := range r.ops {
		if t.submit.IsZero() {
			continue
		}
		var L, F, A span
		var haveL, haveF, haveA bool
		for _, s := range t.stores {
			switch {
			case s.node == leader:
				L, haveL = s, true
			case !haveF || s.t1.Before(F.t1):
				F, haveF = s, true
			}
		}
		for _, s := range t.applies {
			if s.node == leader {
				A, haveA = s, true
			}
		}
		if !haveL || !haveF || !haveA {
			continue
		}
		reqW := r.afterLocked(ioStream{leader, F.node, true}, L.t1)
		reqR := r.afterLocked(ioStream{F.node, -1, false}, reqW)
		respW := r.afterLocked(ioStream{F.node, -1, true}, F.t1)
		respR := r.afterLocked(ioStream{leader, F.node, false}, respW)
		if reqW.IsZero() || reqR.IsZero() || respW.IsZero() || respR.IsZero() || reqR.After(F.t0) || respR.After(A.t0) {
			continue // a heartbeat or a late read got in the way; skip the commit
		}
		seg := []time.Duration{
			L.t0.Sub(t.submit), L.t1.Sub(L.t0),
			reqW.Sub(L.t1), reqR.Sub(reqW), F.t0.Sub(reqR),
			F.t1.Sub(F.t0),
			respW.Sub(F.t1), respR.Sub(respW), A.t0.Sub(respR),
			A.t1.Sub(A.t0), t.done.Sub(A.t1),
		}
		overlap := false
		for _, a := range r.all {
			if a.t0.Before(F.t1) && a.t1.After(F.t0) {
				overlap = true
				break
			}
		}
		if overlap {
			fOverlap = append(fOverlap, F.t1.Sub(F.t0))
		} else {
			fClear = append(fClear, F.t1.Sub(F.t0))
		}
		rows = append(rows, row{seg, t.done.Sub(t.submit), overlap})
	}
	b := breakdown{ops: len(rows)}
	if len(rows) == 0 {
		return b
	}
	slices.SortFunc(rows, func(x, y row) int { return cmp.Compare(x.total, y.total) })
	tail := rows[len(rows)-max(1, len(rows)/100):]
	var totals []time.Duration
	n := 0
	for _, rw := range rows {
		totals = append(totals, rw.total)
		if rw.overlap {
			n++
		}
	}
	b.overlapped = float64(n) / float64(len(rows))
	b.total = [3]time.Duration{mean(totals), writeload.Percentile(totals, 0.5), writeload.Percentile(totals, 0.99)}
	b.fastF = [2]time.Duration{writeload.Percentile(fClear, 0.5), writeload.Percentile(fOverlap, 0.5)}
	for i := range stages {
		var all, tl []time.Duration
		for _, rw := range rows {
			all = append(all, rw.seg[i])
		}
		for _, rw := range tail {
			tl = append(tl, rw.seg[i])
		}
		b.mean = append(b.mean, mean(all))
		b.p50 = append(b.p50, writeload.Percentile(all, 0.5))
		b.tailMean = append(b.tailMean, mean(tl))
	}
	return b
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s / time.Duration(len(ds))
}

// tracedLogStore times StoreLogs (raft-wal appends and fsyncs inside it).
// It forwards IsMonotonic so Raft treats it exactly like raft-wal.
type tracedLogStore struct {
	hraft.LogStore
	node int
	rec  *recorder
}

var _ hraft.MonotonicLogStore = (*tracedLogStore)(nil)

func (s *tracedLogStore) StoreLog(l *hraft.Log) error { return s.StoreLogs([]*hraft.Log{l}) }

func (s *tracedLogStore) StoreLogs(logs []*hraft.Log) error {
	t0 := time.Now()
	err := s.LogStore.StoreLogs(logs)
	s.rec.store(s.node, logs, t0, time.Now())
	return err
}

func (s *tracedLogStore) IsMonotonic() bool {
	m, ok := s.LogStore.(hraft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// tracedConn records when reads return and writes complete, above TLS.
type tracedConn struct {
	net.Conn
	rec    *recorder
	stream ioStream // write is set per call
}

func (c *tracedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		s := c.stream
		s.write = false
		c.rec.ioEvent(s, time.Now())
	}
	return n, err
}

func (c *tracedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	s := c.stream
	s.write = true
	c.rec.ioEvent(s, time.Now())
	return n, err
}

// utilisation describes, for the leader and the followers, how many log
// writes and FSM batches ran per second, their mean size, and the share
// of the window each node spent in them.
func (r *recorder) utilisation(leader int, window time.Duration) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, kind := range []struct {
		name string
		m    map[int]*busy
	}{{"log writes", r.stores}, {"FSM batches", r.applies}, {"state syncs", r.syncs}} {
		for node := range 3 {
			u := kind.m[node]
			if u == nil || u.calls == 0 {
				continue
			}
			role := "follower"
			if node == leader {
				role = "leader  "
			}
			fmt.Fprintf(&b, "  %s %-11s %6.0f/s, %5.1f entries each, %4.0f%% busy, %s each\n", role, kind.name,
				float64(u.calls)/window.Seconds(), float64(u.entries)/float64(u.calls), 100*u.time.Seconds()/window.Seconds(),
				(u.time / time.Duration(u.calls)).Round(time.Microsecond))
		}
	}
	return b.String()
}
