package dataplane

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-mesh/outpost/bpf"
)

// queueLen bounds the events waiting between the ring buffer reader and
// the aggregation; an event that finds it full is the "queue" loss stage.
const queueLen = 8192

// ebpfSource turns the kernel's connection table, counters and events
// into flow deltas.
type ebpfSource struct {
	f      *bpf.Flow
	logger *slog.Logger
	events chan bpf.Event
	// queueLost counts events dropped because the queue was full;
	// parseErrs counts ring buffer records that did not parse.
	queueLost, parseErrs atomic.Uint64

	mu    sync.Mutex // guards what follows, and the aggregator's pending map
	table map[bpf.Key]*tracked
	gone  map[bpf.Key]time.Time // since when not in the kernel's table
	done  map[bpf.Key]time.Time // finished by a poll; a late close event is ignored
	// forget are the counters of finished connections, deleted from the
	// kernel's table in one call at the end of the poll.
	forget []bpf.Key
}

// tracked is a connection the agent has seen, with its counters at the
// last read.
type tracked struct {
	conn     bpf.Conn
	last     bpf.Stats
	counted  bool          // its connection was attributed
	connect  time.Duration // its connect latency, from its established event
	timed    bool          // the latency was attributed
	lifetime time.Duration // established to closed, from the close event
}

func newEBPFSource(f *bpf.Flow, logger *slog.Logger) *ebpfSource {
	return &ebpfSource{f: f, logger: logger, events: make(chan bpf.Event, queueLen), table: map[bpf.Key]*tracked{},
		gone: map[bpf.Key]time.Time{}, done: map[bpf.Key]time.Time{}}
}

// readRing moves ring buffer events to the queue until the ring closes.
func (s *ebpfSource) readRing() {
	defer close(s.events)
	for {
		e, err := s.f.ReadEvent()
		switch {
		case bpf.Closed(err):
			return
		case err != nil:
			s.parseErrs.Add(1)
			continue
		}
		select {
		case s.events <- e:
		default:
			s.queueLost.Add(1)
		}
	}
}

// key is the exported flow of a connection. A connection adopted from
// before the agent started has no recorded direction: the end with the
// lower port is taken for the server (ephemeral ports are high).
func key(c bpf.Conn) FlowKey {
	k := FlowKey{Local: c.Local.Addr(), Remote: c.Remote.Addr(), Comm: c.Comm}
	in := c.Dir == bpf.DirIn || c.Dir == bpf.DirUnknown && c.Local.Port() < c.Remote.Port()
	if in {
		k.Dir, k.Port = "in", c.Local.Port()
	} else {
		k.Dir, k.Port = "out", c.Remote.Port()
	}
	return k
}

// handle applies one event to g.
func (s *ebpfSource) handle(g *aggregator, e bpf.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e.Type {
	case bpf.EventEstablished:
		if _, ok := s.done[e.Conn.Key]; ok {
			return // a poll finished it already
		}
		t := s.table[e.Conn.Key]
		if t == nil {
			t = &tracked{}
			s.table[e.Conn.Key] = t
		}
		t.learn(e.Conn)
		t.connect = time.Duration(e.ConnectNs)
	case bpf.EventFailed:
		if _, ok := s.done[e.Conn.Key]; ok {
			return
		}
		delete(s.table, e.Conn.Key)
		delete(s.gone, e.Conn.Key)
		k := key(e.Conn)
		k.Dir = "out"
		g.at(k).Failed++
		s.forget = append(s.forget, e.Conn.Key)
	case bpf.EventClosed:
		if _, ok := s.done[e.Conn.Key]; ok {
			return
		}
		// Finished now, so its counters leave the kernel's table at
		// once (a churn of connections would fill it in a poll's time).
		t := s.table[e.Conn.Key]
		if t == nil {
			t = &tracked{}
		}
		t.learn(e.Conn)
		if e.Conn.EstablishedNs > 0 && e.AtNs > e.Conn.EstablishedNs {
			t.lifetime = time.Duration(e.AtNs - e.Conn.EstablishedNs)
		}
		var st *bpf.Stats
		if got, ok, err := s.f.StatsOf(e.Conn.Key); err == nil && ok {
			st = &got
		}
		s.close(g, e.Conn.Key, t, st, time.Now())
		if len(s.forget) > 0 {
			_ = s.f.ForgetAll(s.forget)
			s.forget = s.forget[:0]
		}
	}
}

// learn takes what the kernel says of t's connection, keeping the
// process it already knows when this report has none (a passive open's
// established event comes without it, and may be read after a poll that
// had it): a connection's flow does not change under it.
func (t *tracked) learn(c bpf.Conn) {
	if c.Comm == "" && t.conn.Comm != "" {
		c.PID, c.Comm, c.Cgroup = t.conn.PID, t.conn.Comm, t.conn.Cgroup
	}
	t.conn = c
}

// stateEstablished is the kernel's TCP_ESTABLISHED, as conn_info.state
// holds it from the handshake's end to the close.
const stateEstablished = 1

// attribute counts t's connection and connect latency once, under the
// flow it has by now. Only an established connection counts: a connect
// still in SYN_SENT (its SYN retransmitted, so it has counters) may yet
// fail, and is counted as failed then.
func (s *ebpfSource) attribute(g *aggregator, t *tracked) {
	if t.conn.State != stateEstablished {
		return
	}
	c := g.at(key(t.conn))
	if !t.counted {
		t.counted = true
		c.Connections++
	}
	if t.connect > 0 && !t.timed {
		t.timed = true
		c.Connect.observe(connectBounds, t.connect.Seconds())
	}
}

// unsettled reports whether t's flow may still change: a passive open
// whose process has not been learnt (it is learnt at the socket's first
// read or write; the kernel may count an RTT sample or a retransmit on
// it before). Its counts wait, so one connection is never split between
// two flows, unless final (it closed: counted where it is).
func unsettled(t *tracked) bool { return t.conn.Dir != bpf.DirOut && t.conn.Comm == "" }

// account adds what t's counters gained since the last read.
func (s *ebpfSource) account(g *aggregator, t *tracked, st bpf.Stats, final bool) {
	if !final && unsettled(t) {
		return
	}
	s.attribute(g, t)
	c := g.at(key(t.conn))
	c.Sent += sub(st.BytesSent, t.last.BytesSent)
	c.Recv += sub(st.BytesRecv, t.last.BytesRecv)
	c.Retransmits += sub(st.Retransmits, t.last.Retransmits)
	if n := sub(st.SrttSamples, t.last.SrttSamples); n > 0 {
		// The mean smoothed RTT over the samples since the last read:
		// long-lived connections report RTT all their life.
		mean := float64(sub(st.SrttSumUs, t.last.SrttSumUs)) / float64(n) / 1e6
		c.RTT.observe(rttBounds, mean)
		c.SrttSeconds, c.srttAt = float64(st.SrttLastUs)/1e6, time.Now()
	}
	t.last = st
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// poll reads the kernel's tables: it learns connections whose events it
// missed, adds every connection's new counters, and finishes counters
// left by connections whose close it never saw.
// snapshot is one read of the kernel's tables.
type snapshot struct {
	stats map[bpf.Key]bpf.Stats
	live  map[bpf.Key]bpf.Conn
}

// read reads the kernel's tables; it takes no lock, so events are
// applied meanwhile.
func (s *ebpfSource) read() (snapshot, error) {
	// Counters first, connections second: a connection whose counters
	// were read is then read with what the kernel knew of it by then (its
	// process, when it has read or written). A passive open read before
	// that waits (unsettled).
	snap := snapshot{stats: map[bpf.Key]bpf.Stats{}, live: map[bpf.Key]bpf.Conn{}}
	if err := s.f.Stats(func(k bpf.Key, st bpf.Stats) { snap.stats[k] = st }); err != nil {
		return snap, err
	}
	if err := s.f.Conns(func(c bpf.Conn) { snap.live[c.Key] = c }); err != nil {
		// An iteration the kernel's deletions cut short leaves connections
		// unseen: with them taken for closed, a live one would be
		// finished. Nothing is decided this poll; the next reads again.
		return snap, err
	}
	return snap, nil
}

// apply applies a read of the kernel's tables to g.
func (s *ebpfSource) apply(g *aggregator, snap snapshot) {
	stats, live := snap.stats, snap.live
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for k, at := range s.done {
		if now.Sub(at) > time.Minute {
			delete(s.done, k)
		}
	}
	for k, c := range live {
		if _, ok := s.done[k]; ok {
			continue // closed since the read
		}
		t := s.table[k]
		if t == nil {
			t = &tracked{}
			s.table[k] = t
		}
		t.learn(c)
		delete(s.gone, k)
	}
	for k, st := range stats {
		if _, ok := s.done[k]; ok {
			continue // finished since the read
		}
		if t := s.table[k]; t != nil {
			if _, ok := live[k]; ok {
				s.account(g, t, st, false)
			}
			// A connection the kernel closed is finished below.
			continue
		}
		// Counters without a connection: its events have not been read
		// yet, or were lost (ring full) — after lostAfter, the latter.
		if !s.lost(k, now) {
			continue
		}
		c := g.at(unknownKey)
		c.Sent += st.BytesSent
		c.Recv += st.BytesRecv
		c.Retransmits += st.Retransmits
		s.finish(k, now)
	}
	// A connection the kernel no longer holds whose close event has not
	// finished it within lostAfter closed while its event was lost.
	for k, t := range s.table {
		if _, ok := live[k]; ok {
			continue
		}
		if !s.lost(k, now) {
			continue
		}
		var st *bpf.Stats
		if got, ok := stats[k]; ok {
			st = &got
		}
		s.close(g, k, t, st, now)
	}
	// Forget when each missing connection went missing once it is
	// nowhere any more (finished by its close event meanwhile).
	for k := range s.gone {
		if _, ok := s.table[k]; !ok {
			if _, ok := stats[k]; !ok {
				delete(s.gone, k)
			}
		}
	}
	if len(s.forget) > 0 {
		_ = s.f.ForgetAll(s.forget)
		s.forget = s.forget[:0]
	}
}

// close finishes a connection the kernel no longer holds, with its last
// counters (nil: it had none).
func (s *ebpfSource) close(g *aggregator, k bpf.Key, t *tracked, st *bpf.Stats, now time.Time) {
	if st != nil {
		s.account(g, t, *st, true)
	}
	if t.conn.State == stateEstablished {
		s.attribute(g, t)
		c := g.at(key(t.conn))
		c.Closed++
		c.DurationSum += t.lifetime.Seconds()
	} else {
		fk := key(t.conn)
		fk.Dir = "out"
		g.at(fk).Failed++
	}
	s.finish(k, now)
}

// lostAfter is how long a connection may be missing from the kernel's
// table before its events are taken for lost: well past the ring
// buffer's event latency and the queue's drain.
const lostAfter = 8 * bpf.EventLatency

// lost reports whether k has been missing from the kernel's table for
// lostAfter, noting when it went missing first.
func (s *ebpfSource) lost(k bpf.Key, now time.Time) bool {
	since, ok := s.gone[k]
	if !ok {
		s.gone[k] = now
		return false
	}
	return now.Sub(since) >= lostAfter
}

// finish forgets a connection the poll closed; a close event that comes
// after all is ignored.
func (s *ebpfSource) finish(k bpf.Key, now time.Time) {
	delete(s.table, k)
	delete(s.gone, k)
	s.done[k] = now
	s.forget = append(s.forget, k)
}

// losses are the kernel's losses by stage plus the agent's queue, given
// the kernel's event counters (seen).
func (s *ebpfSource) losses(seen map[string]uint64) map[string]uint64 {
	out, err := s.f.Losses()
	if err != nil {
		out = map[string]uint64{}
		s.logger.Warn("could not read the kernel's loss counters", "err", err)
	}
	out["queue"] = s.queueLost.Load()
	out["parse"] = s.parseErrs.Load()
	// Sends and receives on connections the agent never saw established
	// (they predate it): their bytes are in no flow.
	out["untracked"] = seen["untracked"]
	return out
}

// seen are the kernel's event counters by kind (empty if unreadable).
func (s *ebpfSource) seen() map[string]uint64 {
	out, err := s.f.Seen()
	if err != nil {
		return map[string]uint64{}
	}
	return out
}
