package federation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/outpost-mesh/outpost/federation/httpsig"
)

// Status of one peer in an answer.
const (
	StatusOK        = "ok"        // answered in time, its data fresh
	StatusStale     = "stale"     // answered, but its data is older than StaleAfter
	StatusTimeout   = "timeout"   // no full answer within the per-peer deadline
	StatusRefused   = "refused"   // TLS or signature refused (either side)
	StatusMalformed = "malformed" // the answer broke the shapes or limits
	StatusError     = "error"     // the peer answered an error, or could not be reached
)

// PeerStatus is how one peer contributed to an answer. Every global view
// carries one per peer it asked, so a consumer can tell a partial answer
// from a full one.
type PeerStatus struct {
	Peer      string  `json:"peer"`
	Status    string  `json:"status"`
	LatencyMs float64 `json:"latency_ms"`
	// DataAgeMs is how stale the peer said its answer may be.
	DataAgeMs int64     `json:"data_age_ms"`
	Rows      int       `json:"rows"`
	Error     string    `json:"error,omitempty"`
	At        time.Time `json:"at"`
	// CertExpires is when the peer's certificate (or its pinned CA, if
	// sooner) expires, as last seen.
	CertExpires time.Time `json:"cert_expires,omitzero"`
	// Call is what was asked: health, agents or query.
	Call string `json:"-"`
}

// OK reports whether the peer's rows are in the answer.
func (s PeerStatus) OK() bool { return s.Status == StatusOK || s.Status == StatusStale }

// Client calls peers. Its zero value is not usable: set Self and Cert.
type Client struct {
	// Self is this region's name: the key id of its signatures.
	Self string
	// Cert is this node's certificate.
	Cert func() *tls.Certificate
	// Timeout bounds one call to one peer (default 3 s), the body's
	// reading included, so a slow trickle ends with the rest.
	Timeout time.Duration
	// MaxBody bounds an answer (default 8 MiB).
	MaxBody int64
	// StaleAfter: an answer whose data is older is marked stale (default 15 s).
	StaleAfter time.Duration
	Now        func() time.Time
	// Observe sees every call's status (peer state, audit).
	Observe func(PeerStatus)
	// Transport builds the round tripper to call a peer with (default
	// HTTP/3 over QUIC); the benchmark sets an HTTP/2 one beside it.
	Transport func(tlsConf *tls.Config) http.RoundTripper
	// Tap, when set, sees every request sent and answer received.
	Tap func(r *http.Request, status int, body []byte)

	mu        sync.Mutex
	peers     map[string]*peerConn
	retired   map[*peerConn]*time.Timer // closed after their calls' deadline, or by Close
	closed    bool
	preferIdx map[string]int // peer → the index of its address that last answered
}

type peerConn struct {
	key string // what the transport was built for
	rt  http.RoundTripper
}

// Defaults of Client.
const (
	DefaultTimeout    = 3 * time.Second
	DefaultMaxBody    = 8 << 20
	DefaultStaleAfter = 15 * time.Second
)

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// HTTP3 is the default transport: HTTP/3 over QUIC.
func HTTP3(tlsConf *tls.Config) http.RoundTripper {
	return &http3.Transport{TLSClientConfig: tlsConf, QUICConfig: QUICConfig(), MaxResponseHeaderBytes: 16 << 10}
}

func (c *Client) transport(p Peer) *peerConn {
	h := sha256.New()
	h.Write([]byte(p.Addr))
	if p.CA != nil {
		h.Write(p.CA.Raw)
	}
	key := string(h.Sum(nil))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	if c.peers == nil {
		c.peers = map[string]*peerConn{}
	}
	if pc, ok := c.peers[p.Name]; ok && pc.key == key {
		return pc
	} else if ok {
		closeRT(pc.rt)
	}
	mk := c.Transport
	if mk == nil {
		mk = HTTP3
	}
	pc := &peerConn{key: key, rt: mk(clientTLS(p, c.Cert, c.now))}
	c.peers[p.Name] = pc
	return pc
}

// retire drops pc as the connection to peer name after a call on it timed
// out, so the next call dials afresh: a connection whose other end is
// gone without a word (the peer restarted, or a send error killed its
// side; it sends no stateless reset) would otherwise time out every call
// until QUIC's idle timeout. pc is closed once the calls already on it
// have had their own deadline.
func (c *Client) retire(name string, pc *peerConn, after time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		closeRT(pc.rt)
		return
	}
	if c.peers[name] == pc {
		delete(c.peers, name)
		if c.retired == nil {
			c.retired = map[*peerConn]*time.Timer{}
		}
		c.retired[pc] = time.AfterFunc(after, func() {
			c.mu.Lock()
			_, still := c.retired[pc]
			delete(c.retired, pc)
			c.mu.Unlock()
			if still {
				closeRT(pc.rt)
			}
		})
	}
}

func closeRT(rt http.RoundTripper) {
	switch t := rt.(type) {
	case io.Closer:
		_ = t.Close()
	case interface{ CloseIdleConnections() }:
		t.CloseIdleConnections()
	}
}

// preferred is the address of peer to try first: the one that last
// answered.
func (c *Client) preferred(peer string, n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.preferIdx[peer]; ok && i < n {
		return i
	}
	return 0
}

func (c *Client) prefer(peer string, i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.preferIdx == nil {
		c.preferIdx = map[string]int{}
	}
	c.preferIdx[peer] = i
}

// Forget drops the connections to peers not in keep.
func (c *Client) Forget(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, pc := range c.peers {
		if !keep[name] {
			closeRT(pc.rt)
			delete(c.peers, name)
		}
	}
}

// Close closes every peer connection.
// Calls after Close fail at once (no connection is made again).
func (c *Client) Close() {
	c.Forget(nil)
	c.mu.Lock()
	c.closed = true
	retired := c.retired
	c.retired = nil
	c.mu.Unlock()
	for pc, t := range retired {
		t.Stop()
		closeRT(pc.rt)
	}
}

// errClosed: a call after Close.
var errClosed = errors.New("federation client closed: the node is stopping")

// Health asks p for its region's health (the zero Health unless the
// status is OK: a refused answer's rows are not handed on).
func (c *Client) Health(ctx context.Context, p Peer) (Health, PeerStatus) {
	var h Health
	st := c.get(ctx, p, PathHealth, nil, &h, func() (int64, int, error) { return h.AgeMs, len(h.Nodes), h.Validate(p.Name) })
	if !st.OK() {
		return Health{}, st
	}
	return h, st
}

// Agents asks p for the agents of the tenant it links to link (the zero
// Agents unless the status is OK).
func (c *Client) Agents(ctx context.Context, p Peer, link string) (Agents, PeerStatus) {
	var a Agents
	st := c.get(ctx, p, "/fed/v1/links/"+url.PathEscape(link)+"/agents", nil, &a, func() (int64, int, error) { return a.AgeMs, len(a.Agents), a.Validate(link) })
	if !st.OK() {
		return Agents{}, st
	}
	return a, st
}

// Query asks p to evaluate q at ts for the tenant it links to link (the
// zero Query unless the status is OK).
func (c *Client) Query(ctx context.Context, p Peer, link, q string, ts time.Time) (Query, PeerStatus) {
	var res Query
	v := url.Values{"query": {q}, "time": {strconv.FormatInt(ts.UnixMilli(), 10)}}
	st := c.get(ctx, p, "/fed/v1/links/"+url.PathEscape(link)+"/query", v, &res, func() (int64, int, error) {
		return res.AgeMs, len(res.Samples), res.Validate(link)
	})
	if !st.OK() {
		return Query{}, st
	}
	return res, st
}

// errTooLarge: the answer is over MaxBody.
var errTooLarge = errors.New("answer too large")

func (c *Client) get(ctx context.Context, p Peer, path string, q url.Values, out any, check func() (age int64, rows int, err error)) (st PeerStatus) {
	start := c.now()
	st = PeerStatus{Peer: p.Name, At: start.UTC(), Call: path[strings.LastIndex(path, "/")+1:]}
	defer func() {
		st.LatencyMs = float64(c.now().Sub(start).Microseconds()) / 1000
		if c.Observe != nil {
			c.Observe(st)
		}
	}()
	timeout, maxBody, staleAfter := c.Timeout, c.MaxBody, c.StaleAfter
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	if staleAfter <= 0 {
		staleAfter = DefaultStaleAfter
	}
	if p.CA == nil || len(p.Secret) == 0 || p.Addr == "" {
		st.Status, st.Error = StatusError, "this node cannot use its configuration of the peer (its CA, secret or address cannot be opened: see the node's log; check keys.master_key_file)"
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pc := c.transport(p)
	if pc == nil {
		st.Status, st.Error = StatusError, errClosed.Error()
		return st
	}
	defer func() {
		if st.Status == StatusTimeout {
			c.retire(p.Name, pc, timeout)
		}
	}()
	// Each address of the peer in turn, from the last one that answered.
	// An address gets its share of what is left of the deadline to
	// answer with its headers (the last one all of it); once it has, the
	// body may take the rest.
	addrs := p.Addrs()
	first := c.preferred(p.Name, len(addrs))
	var resp *http.Response
	var req *http.Request
	var failed []string
	for i := range addrs {
		at := (first + i) % len(addrs)
		actx, acancel := context.WithCancel(ctx)
		defer acancel()
		cut := &atomic.Bool{}
		var timer *time.Timer
		var share time.Duration
		if left := len(addrs) - i; left > 1 {
			if dl, ok := ctx.Deadline(); ok {
				share = time.Until(dl) / time.Duration(left)
				timer = time.AfterFunc(share, func() { cut.Store(true); acancel() })
			}
		}
		u := url.URL{Scheme: "https", Host: addrs[at], Path: path, RawQuery: q.Encode()}
		var err error
		if req, err = http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil); err == nil {
			err = httpsig.Sign(req, c.Self, p.Secret, c.now())
		}
		if err == nil {
			resp, err = pc.rt.RoundTrip(req)
		}
		if timer != nil && !timer.Stop() && err == nil {
			resp.Body.Close()
			err = context.DeadlineExceeded
		}
		if err == nil {
			c.prefer(p.Name, at)
			break
		}
		st.Status = classify(ctx, err)
		if cut.Load() {
			st.Status = StatusTimeout
			err = fmt.Errorf("no answer within its share of the deadline (%v)", share.Round(time.Millisecond))
		}
		failed = append(failed, fmt.Sprintf("%s: %v", addrs[at], err))
		if ctx.Err() != nil || st.Status == StatusRefused {
			break
		}
	}
	if resp == nil {
		st.Error = strings.Join(failed, "; ")
		return st
	}
	defer resp.Body.Close()
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		st.CertExpires = resp.TLS.PeerCertificates[0].NotAfter.UTC()
		if p.CA != nil && p.CA.NotAfter.Before(st.CertExpires) {
			st.CertExpires = p.CA.NotAfter.UTC()
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if c.Tap != nil {
		c.Tap(req, resp.StatusCode, body)
	}
	switch {
	case err != nil:
		st.Status, st.Error = classify(ctx, err), "reading the answer: "+err.Error()
		return st
	case int64(len(body)) > maxBody:
		st.Status, st.Error = StatusMalformed, fmt.Sprintf("%v: over %d bytes", errTooLarge, maxBody)
		return st
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg += " " + e.Code + ": " + truncate(e.Error, MaxString)
		}
		st.Status, st.Error = StatusError, msg
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			st.Status = StatusRefused
		}
		return st
	}
	age, rows, err := decodeAnswer(body, out, check)
	if err != nil {
		st.Status, st.Error = StatusMalformed, truncate(err.Error(), 4*MaxString)
		return st
	}
	st.Status, st.DataAgeMs, st.Rows = StatusOK, age, rows
	if time.Duration(age)*time.Millisecond > staleAfter {
		st.Status = StatusStale
		st.Error = fmt.Sprintf("data %v old (stale after %v): the answering node has not heard from its leader", (time.Duration(age) * time.Millisecond).Round(time.Millisecond), staleAfter)
	}
	return st
}

// decodeAnswer strictly decodes body, one JSON value and nothing after
// it, into out (unknown fields refused), then checks it with check (the
// answer's Validate; it returns the answer's age and row count). Every
// error wraps ErrMalformed.
func decodeAnswer(body []byte, out any, check func() (age int64, rows int, err error)) (int64, int, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrMalformed, truncate(err.Error(), MaxString))
	}
	// Not dec.More: it reports false before a stray ']' or '}', which
	// would let such bytes after the answer through.
	if len(bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")) > 0 {
		return 0, 0, fmt.Errorf("%w: data after the answer", ErrMalformed)
	}
	age, rows, err := check()
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			err = fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return 0, 0, err
	}
	return age, rows, nil
}

// classify names a transport failure.
func classify(ctx context.Context, err error) string {
	var idle *quic.IdleTimeoutError
	var hs *quic.HandshakeTimeoutError
	var ne net.Error
	var te *quic.TransportError
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		// The caller went away (or the node is stopping): not the peer's
		// doing, and not a reason to drop its connection.
		return StatusError
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.As(err, &idle), errors.As(err, &hs):
		return StatusTimeout
	case errors.As(err, &ne) && ne.Timeout():
		return StatusTimeout
	case errors.Is(err, ErrPeerCert), errors.As(err, new(*tls.CertificateVerificationError)):
		return StatusRefused
	case errors.As(err, &te) && te.ErrorCode.IsCryptoError():
		return StatusRefused
	}
	return StatusError
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Each calls fn for every peer at once and returns the answers and
// statuses in the peers' order. fn bounds its own call (Client's calls
// do, by Timeout), so one slow peer delays no other's answer past it.
func Each[T any](ctx context.Context, peers []Peer, fn func(context.Context, Peer) (T, PeerStatus)) ([]T, []PeerStatus) {
	return EachN(ctx, len(peers), func(ctx context.Context, i int) (T, PeerStatus) { return fn(ctx, peers[i]) })
}

// EachN is Each over n calls by index (a tenant may have several links
// to one peer).
func EachN[T any](ctx context.Context, n int, fn func(context.Context, int) (T, PeerStatus)) ([]T, []PeerStatus) {
	out, sts := make([]T, n), make([]PeerStatus, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], sts[i] = fn(ctx, i)
		}()
	}
	wg.Wait()
	return out, sts
}

// Complete reports whether every peer's status is ok (fresh rows from
// every peer asked).
func Complete(sts []PeerStatus) bool {
	for _, s := range sts {
		if s.Status != StatusOK {
			return false
		}
	}
	return true
}
