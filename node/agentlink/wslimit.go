package agentlink

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
)

// errMessageTooLarge fails the read of a WebSocket message over the
// limit. opamp-go v0.23.0 never sets a read limit on its connections, so
// the limit is enforced under it: the connection the upgrade hijacks
// parses the agent's frame headers and fails as soon as one announces a
// message over the limit, before the payload is read or buffered.
var errMessageTooLarge = errors.New("agent message exceeds the size limit")

// limitHijack wraps h so that the connection a WebSocket upgrade
// hijacks enforces max bytes per message (compression must be off, so
// frame lengths are message bytes).
func limitHijack(h http.HandlerFunc, max int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(&hijacker{ResponseWriter: w, max: max}, r)
	}
}

type hijacker struct {
	http.ResponseWriter
	max int64
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the response writer cannot be hijacked")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	// gorilla/websocket may read through the returned bufio.Reader
	// (v1.5.4 reuses it as is) or the returned conn: both must pass Read
	// below. Bytes the server had already buffered go through it first.
	var pre []byte
	if n := brw.Reader.Buffered(); n > 0 {
		pre, _ = brw.Reader.Peek(n)
		pre = append([]byte(nil), pre...)
	}
	lc := &limitConn{Conn: &prefixConn{Conn: c, pre: pre}, max: uint64(h.max)}
	return lc, bufio.NewReadWriter(bufio.NewReaderSize(lc, 4096), brw.Writer), nil
}

// prefixConn reads pre before the connection.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// limitConn parses client frame headers (RFC 6455 §5.2) as bytes pass.
type limitConn struct {
	net.Conn
	max uint64

	hdr     [14]byte // the frame header being read
	hdrLen  int
	payload uint64 // payload bytes left in the current frame
	msgSize uint64 // bytes so far in the current (maybe fragmented) message
	err     error
}

// ConnectionState is the TLS state of the wrapped connection.
func (c *limitConn) ConnectionState() tls.ConnectionState {
	conn := c.Conn
	if pc, ok := conn.(*prefixConn); ok {
		conn = pc.Conn
	}
	if tc, ok := conn.(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

func (c *limitConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if serr := c.scan(p[:n]); serr != nil {
		c.err = serr
		_ = c.Conn.Close()
		return 0, serr
	}
	return n, err
}

func (c *limitConn) scan(b []byte) error {
	for len(b) > 0 {
		if c.payload > 0 {
			k := min(uint64(len(b)), c.payload)
			c.payload -= k
			b = b[k:]
			continue
		}
		c.hdr[c.hdrLen] = b[0]
		c.hdrLen++
		b = b[1:]
		if c.hdrLen < 2 {
			continue
		}
		need := 2
		switch c.hdr[1] & 0x7f {
		case 126:
			need += 2
		case 127:
			need += 8
		}
		if c.hdr[1]&0x80 != 0 {
			need += 4 // the masking key every client frame carries
		}
		if c.hdrLen < need {
			continue
		}
		var n uint64
		switch l := c.hdr[1] & 0x7f; l {
		case 126:
			n = uint64(c.hdr[2])<<8 | uint64(c.hdr[3])
		case 127:
			for i := 2; i < 10; i++ {
				n = n<<8 | uint64(c.hdr[i])
			}
		default:
			n = uint64(l)
		}
		fin, opcode := c.hdr[0]&0x80 != 0, c.hdr[0]&0x0f
		c.hdrLen, c.payload = 0, n
		if opcode >= 8 { // control frames interleave and are ≤125 bytes
			if n > 125 {
				return errMessageTooLarge
			}
			continue
		}
		if n > c.max || c.msgSize+n > c.max {
			return errMessageTooLarge
		}
		c.msgSize += n
		if fin {
			c.msgSize = 0
		}
	}
	return nil
}
