package agentlink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// gate is the agent port's listener: it runs the TLS handshakes itself,
// at most maxHandshakes at once (half of them per source address), each
// within the handshake timeout, and admits connections without a client
// certificate (enrollment) only while fewer than maxUnauth are open (half
// of them per address). What it sheds it closes at once and counts. A
// connection with a verified agent certificate is not capped here: it is
// an agent (max_connections caps the links).
//
// The *tls.Conn itself is handed to net/http (which reads r.TLS from
// that type), so an admitted connection's slot is given back by the
// server's ConnState hook (connState) when it closes or is hijacked.
type gate struct {
	ln      net.Listener
	tls     *tls.Config
	timeout time.Duration // per handshake
	s       *Server

	maxHandshakes, maxUnauth int

	mu         sync.Mutex
	handshakes map[string]int // address -> handshakes in flight
	hsTotal    int
	unauth     map[string]int // address -> connections without a certificate
	unauthAll  int
	held       map[net.Conn]string // admitted without a certificate -> address

	conns  chan net.Conn
	errc   chan error
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newGate(s *Server, ln net.Listener, cfg *tls.Config) *gate {
	g := &gate{ln: ln, tls: cfg, s: s, timeout: handshakeTimeout(s.cfg.ReadTimeout),
		maxHandshakes: s.cfg.MaxHandshakes, maxUnauth: s.cfg.MaxUnauthenticated,
		handshakes: map[string]int{}, unauth: map[string]int{}, held: map[net.Conn]string{},
		conns: make(chan net.Conn), errc: make(chan error, 1)}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.wg.Add(1)
	go g.acceptLoop()
	return g
}

// handshakeTimeout bounds a TLS handshake and a request's headers.
func handshakeTimeout(read time.Duration) time.Duration { return min(10*time.Second, read) }

// perAddr is one address's share of a cap.
func perAddr(n int) int { return max(1, n/2) }

func (g *gate) acceptLoop() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			g.errc <- err
			return
		}
		addr := hostOf(c.RemoteAddr().String())
		if !g.take(g.handshakes, &g.hsTotal, addr, g.maxHandshakes) {
			g.s.m.shed.WithLabelValues("handshakes").Inc()
			_ = c.Close()
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.handshake(c, addr)
		}()
	}
}

func (g *gate) take(m map[string]int, total *int, addr string, limit int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if *total >= limit || m[addr] >= perAddr(limit) {
		return false
	}
	*total++
	m[addr]++
	return true
}

func (g *gate) give(m map[string]int, total *int, addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	*total--
	if m[addr]--; m[addr] <= 0 {
		delete(m, addr)
	}
}

func (g *gate) handshake(c net.Conn, addr string) {
	tc := tls.Server(c, g.tls)
	_ = tc.SetDeadline(time.Now().Add(g.timeout))
	ctx, cancel := context.WithTimeout(g.ctx, g.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	g.give(g.handshakes, &g.hsTotal, addr)
	if err != nil {
		g.s.handshakeRefused(addr, err)
		_ = tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	if len(tc.ConnectionState().PeerCertificates) == 0 {
		if !g.take(g.unauth, &g.unauthAll, addr, g.maxUnauth) {
			g.s.m.shed.WithLabelValues("unauthenticated").Inc()
			_ = tc.Close()
			return
		}
		g.mu.Lock()
		g.held[tc] = addr
		g.mu.Unlock()
	}
	select {
	case g.conns <- tc:
	case <-g.ctx.Done():
		g.release(tc)
		_ = tc.Close()
	}
}

// release gives back the slot of a connection admitted without a
// certificate (no-op for others, and on the second call).
func (g *gate) release(c net.Conn) {
	g.mu.Lock()
	addr, ok := g.held[c]
	delete(g.held, c)
	g.mu.Unlock()
	if ok {
		g.give(g.unauth, &g.unauthAll, addr)
	}
}

// connState is the http.Server's ConnState hook.
func (g *gate) connState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		g.release(c)
	}
}

// Accept returns the next admitted connection, handshake done.
func (g *gate) Accept() (net.Conn, error) {
	select {
	case c := <-g.conns:
		return c, nil
	case err := <-g.errc:
		g.errc <- err
		return nil, err
	}
}

// Close stops accepting and waits for the handshakes in flight.
func (g *gate) Close() error {
	g.cancel()
	err := g.ln.Close()
	g.wg.Wait()
	return err
}

func (g *gate) Addr() net.Addr { return g.ln.Addr() }

// errRevokedCert is checkCert's refusal of a revoked agent's certificate.
var errRevokedCert = errors.New("agent certificate revoked")

// handshakeRefused logs a failed handshake at info with its reason, once
// a minute per address and reason. TLS alerts carry no text, so the log
// is where an operator learns why an agent was refused.
func (s *Server) handshakeRefused(addr string, err error) {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	reason := "handshake_failed"
	switch {
	case errors.Is(err, errRevokedCert):
		reason = "revoked"
	case errors.As(err, &ua):
		reason = "foreign_ca"
	case errors.As(err, &ci):
		reason = "invalid_certificate"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		reason = "handshake_timeout"
	}
	s.m.refused.WithLabelValues(reason).Inc()
	if !s.logOnce("tls/"+reason+"/"+addr, time.Minute) {
		return
	}
	s.logger.Info("refused a TLS handshake on the agent port", "reason", reason, "from", addr, "err", err)
}

// logOnce reports whether key was not logged within every.
func (s *Server) logOnce(key string, every time.Duration) bool {
	now := s.cfg.Now()
	if prev, ok := s.logRate.Load(key); ok && now.Sub(prev.(time.Time)) < every {
		return false
	}
	s.logRate.Store(key, now)
	return true
}
