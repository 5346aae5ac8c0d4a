package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Connection kinds: the first byte a dialer writes after the TLS handshake.
// One listener carries Raft and the node-to-node RPCs, as Consul's server
// port does, so a region needs one port for its internal traffic.
const (
	connRaft  byte = 'R'
	connStats byte = 'S'
	connApply byte = 'A'
	// connReadIndex asks the leader for a linearizable read index.
	connReadIndex byte = 'I'
	// connHTTP carries HTTP between nodes (Config.NodeHTTP).
	connHTTP byte = 'H'
)

// handshakeTimeout bounds a peer's TLS handshake and its first byte so a
// slow or hostile client cannot hold an accept slot.
const handshakeTimeout = 5 * time.Second

var errStreamClosed = errors.New("stream layer closed")

// streamLayer is a hraft.StreamLayer over mutual TLS. Accept hands Raft
// only connections that announced themselves as Raft; the others are
// served by rpcHandler on their own goroutine.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	tls       *tls.Config
	logger    *slog.Logger
	rpc       func(kind byte, conn net.Conn)
	onTLSFail func()

	raftConns chan net.Conn
	connMu    sync.Mutex
	open      map[*trackedConn]struct{} // accepted Raft conns, closed with the layer
	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
	logOnce   *onceLog
	// faults cuts or delays connections for drills; peerID names the
	// node a verified connection belongs to.
	faults *faults
	peerID func(*tls.ConnectionState) string
}

var _ hraft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(ln net.Listener, advertise net.Addr, cfg *tls.Config, logger *slog.Logger) *streamLayer {
	s := &streamLayer{
		ln: ln, advertise: advertise, tls: cfg, logger: logger,
		raftConns: make(chan net.Conn, 16),
		open:      map[*trackedConn]struct{}{},
		closed:    make(chan struct{}),
		logOnce:   newOnceLog(),
		faults:    newFaults(),
	}
	return s
}

// serve accepts connections until Close. rpc handles non-Raft kinds.
func (s *streamLayer) serve(rpc func(kind byte, conn net.Conn)) {
	s.rpc = rpc
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				select {
				case <-s.closed:
					return
				default:
				}
				s.logger.Warn("raft listener accept failed", "err", err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handshake(c)
			}()
		}
	}()
}

func (s *streamLayer) handshake(raw net.Conn) {
	_ = raw.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Server(raw, s.tls)
	if err := tc.Handshake(); err != nil {
		s.handshakeFailed(raw.RemoteAddr(), "inbound", err)
		raw.Close()
		return
	}
	var kind [1]byte
	if _, err := io.ReadFull(tc, kind[:]); err != nil {
		tc.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	peer := peerOf(tc, s.peerID)
	conn, err := s.faults.wrap(tc, peer)
	if err != nil {
		return
	}
	switch kind[0] {
	case connRaft:
		tr := s.track(conn)
		if tr == nil {
			return
		}
		select {
		case s.raftConns <- tr:
		case <-s.closed:
			tr.Close()
		}
	case connHTTP:
		s.rpc(kind[0], peerConn{Conn: conn, peer: peer})
	case connStats, connApply, connReadIndex:
		s.rpc(kind[0], conn)
	default:
		s.logger.Debug("unknown connection kind from peer", "remote", raw.RemoteAddr().String(), "kind", kind[0])
		conn.Close()
	}
}

// handshakeFailed logs a failed handshake once per peer host and error, so
// a node started with another region's CA is reported clearly without
// flooding the log while it retries; repeats are counted and logged at
// debug level.
func (s *streamLayer) handshakeFailed(remote net.Addr, dir string, err error) {
	if s.onTLSFail != nil {
		s.onTLSFail()
	}
	host := remote.String()
	if h, _, e := net.SplitHostPort(host); e == nil {
		host = h
	}
	if s.logOnce.first(dir + "|" + host + "|" + err.Error()) {
		s.logger.Warn("refused peer: TLS handshake failed (is it using this region's CA? later repeats are logged at debug level)",
			"direction", dir, "peer", remote.String(), "err", err)
		return
	}
	s.logger.Debug("refused peer: TLS handshake failed", "direction", dir, "peer", remote.String(), "err", err)
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.raftConns:
		return c, nil
	case <-s.closed:
		return nil, errStreamClosed
	}
}

// Close stops accepting and closes every accepted Raft connection: Raft's
// NetworkTransport does not close the connections it accepted, and a
// stopped node must look stopped to its peers.
func (s *streamLayer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		err = s.ln.Close()
		s.connMu.Lock()
		open := s.open
		s.open = nil
		s.connMu.Unlock()
		for c := range open {
			c.Conn.Close()
		}
	})
	return err
}

// trackedConn removes itself from the layer's open set when closed.
type trackedConn struct {
	net.Conn
	s    *streamLayer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.connMu.Lock()
		delete(c.s.open, c)
		c.s.connMu.Unlock()
	})
	return c.Conn.Close()
}

func (s *streamLayer) track(c net.Conn) *trackedConn {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.open == nil { // closed
		c.Close()
		return nil
	}
	t := &trackedConn{Conn: c, s: s}
	s.open[t] = struct{}{}
	return t
}

// wait blocks until the accept loop and in-flight handshakes have ended.
func (s *streamLayer) wait() { s.wg.Wait() }

func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial opens a Raft connection to a peer.
func (s *streamLayer) Dial(addr hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dialKind(ctx, string(addr), connRaft)
}

// dialKind opens a mutual-TLS connection to addr and announces kind.
func (s *streamLayer) dialKind(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := tls.Client(raw, s.tls)
	if err := c.HandshakeContext(ctx); err != nil {
		// TCP connected but TLS failed: the peer is not one of ours.
		s.handshakeFailed(raw.RemoteAddr(), "outbound", err)
		raw.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	conn, err := s.faults.wrap(c, peerOf(c, s.peerID))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write([]byte{kind}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// onceLog remembers which messages were already logged at warn level.
type onceLog struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

func newOnceLog() *onceLog { return &onceLog{seen: map[string]struct{}{}} }

// first reports whether key is new; it forgets everything past 4096 keys
// so a hostile peer cycling addresses cannot grow it without bound.
func (o *onceLog) first(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.seen[key]; ok {
		return false
	}
	if len(o.seen) >= 4096 {
		o.seen = map[string]struct{}{}
	}
	o.seen[key] = struct{}{}
	return true
}
