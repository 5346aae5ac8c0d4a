package raft

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// nodeHTTP serves Config.NodeHTTP on the node port's connections of kind
// 'H': HTTP/1.1 over the same mutual TLS as Raft, so only nodes of this
// region reach it and no other port is opened.
type nodeHTTP struct {
	srv   *http.Server
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

// peerConn is an accepted node connection and the node it belongs to.
type peerConn struct {
	net.Conn
	peer string
}

type peerKey struct{}

// PeerNode names the node that sent a NodeHTTP request ("" if its
// certificate names none).
func PeerNode(ctx context.Context) string {
	s, _ := ctx.Value(peerKey{}).(string)
	return s
}

func newNodeHTTP(h http.Handler, addr net.Addr, logger *slog.Logger) *nodeHTTP {
	n := &nodeHTTP{conns: make(chan net.Conn), done: make(chan struct{}), addr: addr}
	n.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(peerConn); ok {
				return context.WithValue(ctx, peerKey{}, pc.peer)
			}
			return ctx
		},
	}
	return n
}

// deliver hands an accepted connection to the server (closed if there is
// none or it is stopping).
func (n *nodeHTTP) deliver(c net.Conn) {
	if n == nil {
		c.Close()
		return
	}
	select {
	case n.conns <- c:
	case <-n.done:
		c.Close()
	}
}

// Accept, Close and Addr make nodeHTTP the server's net.Listener.
func (n *nodeHTTP) Accept() (net.Conn, error) {
	select {
	case c := <-n.conns:
		return c, nil
	case <-n.done:
		return nil, net.ErrClosed
	}
}

func (n *nodeHTTP) Close() error {
	n.once.Do(func() { close(n.done) })
	return nil
}

func (n *nodeHTTP) Addr() net.Addr { return n.addr }

// stop lets requests in flight finish for up to a second, then closes
// every connection.
func (n *nodeHTTP) stop() {
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if n.srv.Shutdown(ctx) != nil {
		n.srv.Close()
	}
	n.Close()
}

// DialNode opens a connection for NodeHTTP to the node whose node port is
// addr, over mutual TLS (the peer must be a node of this region).
func (r *Region) DialNode(ctx context.Context, addr string) (net.Conn, error) {
	return r.stream.dialKind(ctx, addr, connHTTP)
}
