package raft

import (
	"crypto/tls"
	"errors"
	"net"
	"sort"
	"sync"
	"time"
)

// Fault injection for failover drills and fault tests. Every connection
// of the node-to-node port (Raft and the node RPCs, both directions) goes
// through a faultConn, so a drill can cut this node off from all of its
// peers (Isolate) or from some of them (Partition), or slow everything it
// sends (SetDelay), without touching the operating system's network.
// Gossip is not affected: a drill exercises the Raft group and the lease,
// and gossip failure detection has its own grace periods.

// ErrPartitioned is the error a connection cut by a drill returns.
var ErrPartitioned = errors.New("connection cut by a drill (fault injection)")

// Faults describes the faults in force on this node.
type Faults struct {
	Isolated bool          `json:"isolated"`
	Blocked  []string      `json:"blocked,omitempty"` // peer node ids cut off
	Delay    time.Duration `json:"delay"`
}

// faults is the stream layer's fault state and the set of live
// connections it may have to cut.
type faults struct {
	mu       sync.Mutex
	isolated bool
	blocked  map[string]bool
	delay    time.Duration
	conns    map[*faultConn]struct{}
}

func newFaults() *faults {
	return &faults{blocked: map[string]bool{}, conns: map[*faultConn]struct{}{}}
}

// cut reports whether traffic to or from peer is refused.
func (f *faults) cut(peer string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.isolated || f.blocked[peer]
}

func (f *faults) sendDelay() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delay
}

// set replaces the fault state and closes every connection it now cuts.
func (f *faults) set(isolated bool, blocked []string, delay time.Duration) {
	f.mu.Lock()
	f.isolated, f.delay = isolated, delay
	f.blocked = map[string]bool{}
	for _, id := range blocked {
		f.blocked[id] = true
	}
	var doomed []*faultConn
	for c := range f.conns {
		if f.isolated || f.blocked[c.peer] {
			doomed = append(doomed, c)
		}
	}
	f.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
}

func (f *faults) state() Faults {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Faults{Isolated: f.isolated, Delay: f.delay}
	for id := range f.blocked {
		s.Blocked = append(s.Blocked, id)
	}
	sort.Strings(s.Blocked)
	return s
}

// wrap registers conn, a verified TLS connection to peer, or refuses it
// when a fault cuts that peer off.
func (f *faults) wrap(conn net.Conn, peer string) (net.Conn, error) {
	c := &faultConn{Conn: conn, f: f, peer: peer}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isolated || f.blocked[peer] {
		conn.Close()
		return nil, ErrPartitioned
	}
	f.conns[c] = struct{}{}
	return c, nil
}

// faultConn refuses reads and writes once a fault cuts its peer off and
// delays what it sends while a delay is set.
type faultConn struct {
	net.Conn
	f    *faults
	peer string
	once sync.Once
}

func (c *faultConn) Read(b []byte) (int, error) {
	if c.f.cut(c.peer) {
		c.Close()
		return 0, ErrPartitioned
	}
	n, err := c.Conn.Read(b)
	if err == nil && c.f.cut(c.peer) {
		// Data that arrived while the fault was set is dropped, as a
		// firewall would have dropped it.
		c.Close()
		return 0, ErrPartitioned
	}
	return n, err
}

func (c *faultConn) Write(b []byte) (int, error) {
	if d := c.f.sendDelay(); d > 0 {
		time.Sleep(d)
	}
	if c.f.cut(c.peer) {
		c.Close()
		return 0, ErrPartitioned
	}
	return c.Conn.Write(b)
}

// ConnectionState is the TLS state of the wrapped connection.
func (c *faultConn) ConnectionState() tls.ConnectionState {
	return c.Conn.(*tls.Conn).ConnectionState()
}

func (c *faultConn) Close() error {
	c.once.Do(func() {
		c.f.mu.Lock()
		delete(c.f.conns, c)
		c.f.mu.Unlock()
	})
	return c.Conn.Close()
}

// peerOf names the node at the other end of a verified TLS connection, or
// "" when its certificate names none (the handshake already checked the
// chain; an unnamed peer can only be cut by Isolate).
func peerOf(tc *tls.Conn, peerID func(*tls.ConnectionState) string) string {
	if peerID == nil {
		return ""
	}
	st := tc.ConnectionState()
	return peerID(&st)
}

// Isolate cuts this node off from every peer on the Raft port until Heal:
// existing connections close and new ones are refused in both directions.
func (r *Region) Isolate() {
	r.stream.faults.set(true, nil, r.stream.faults.sendDelay())
	r.logger.Warn("drill: this node is isolated from its peers (Raft port)")
}

// Partition cuts this node off from the named peers only, replacing any
// earlier partition; an empty list heals it.
func (r *Region) Partition(peers ...string) {
	r.stream.faults.set(false, peers, r.stream.faults.sendDelay())
	if len(peers) > 0 {
		r.logger.Warn("drill: this node is partitioned from some peers (Raft port)", "peers", peers)
	}
}

// SetDelay delays every message this node sends to its peers by d (0
// turns it off).
func (r *Region) SetDelay(d time.Duration) {
	st := r.stream.faults.state()
	r.stream.faults.set(st.Isolated, st.Blocked, d)
}

// Heal lifts every fault: isolation, partitions and delay.
func (r *Region) Heal() {
	r.stream.faults.set(false, nil, 0)
	r.logger.Info("drill: faults healed; this node talks to its peers again")
}

// Faults returns the faults in force.
func (r *Region) Faults() Faults { return r.stream.faults.state() }
