package federation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/outpost-mesh/outpost/federation/httpsig"
)

// View is what the federation server may read of its region: reads only,
// so the server cannot compile a write. The node implements it over its
// FSM, agent registry and query engine.
type View interface {
	// Health is the region's health as this node sees it.
	Health(ctx context.Context) (Health, error)
	// LinkTenant returns the local tenant that peer's link is configured
	// against (false: no such link for that peer). The tenant id stays in
	// the node: it is only handed back to Agents and Query.
	LinkTenant(peer, link string) (tenantID string, ok bool)
	// Agents lists the tenant's agents (Link is filled in by the server).
	Agents(ctx context.Context, tenantID string) (Agents, error)
	// Query evaluates an instant query for the tenant at ts.
	Query(ctx context.Context, tenantID, query string, ts time.Time) (Query, error)
}

// ErrBadQuery marks a query View.Query refuses as the asker's mistake.
var ErrBadQuery = errors.New("bad query")

// Refusal is a request the server refused for its identity or its
// signature: the node audits it.
type Refusal struct {
	// Peer is the region the request's certificate named, "" if none.
	Peer   string
	Remote string
	// Reason is a code: tls, method, signature, keyid.
	Reason string
	Err    error
}

// ServerConfig configures a federation server.
type ServerConfig struct {
	// Cert is this node's certificate (its region's CA issued it).
	Cert func() *tls.Certificate
	// Peer returns the configured peer of a region name.
	Peer func(name string) (Peer, bool)
	View View
	// Refused is called for every refused request (nil: not recorded).
	Refused func(Refusal)
	// Now is the clock (default time.Now); Verifier checks signatures
	// (its Key is set by the server).
	Now    func() time.Time
	Logger *slog.Logger
	// Tap, when set, sees every request and response the handler serves
	// (tests scan them for tenant ids).
	Tap func(r *http.Request, status int, body []byte)
}

// Server is a federation endpoint: GET routes only, over HTTP/3.
type Server struct {
	cfg      ServerConfig
	verifier *httpsig.Verifier

	mu     sync.Mutex
	h3     *http3.Server // made by the first Serve
	closed bool
}

// Paths of the federation API.
const (
	PathHealth = "/fed/v1/health"
	PathAgents = "/fed/v1/links/{link}/agents"
	PathQuery  = "/fed/v1/links/{link}/query"
)

// NewServer returns a server for cfg.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg}
	s.verifier = &httpsig.Verifier{
		Now: cfg.Now,
		Key: func(keyID string) ([]byte, bool) {
			p, ok := cfg.Peer(keyID)
			return p.Secret, ok && len(p.Secret) > 0
		},
	}
	return s
}

// TLSConfig is the server's TLS configuration: TLS 1.3, a client
// certificate required, and refused at the handshake unless the peer its
// region names has it issued by that peer's pinned CA.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cfg.Cert(), nil
		},
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := identify(cs.PeerCertificates, s.cfg.Peer, s.cfg.Now())
			if err != nil {
				s.refuse(Refusal{Peer: named(cs.PeerCertificates), Reason: "tls", Err: err})
			}
			return err
		},
	}
}

// QUICConfig bounds what one peer connection may hold open.
func QUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  5 * time.Second,
		MaxIdleTimeout:        60 * time.Second,
		KeepAlivePeriod:       15 * time.Second,
		MaxIncomingStreams:    64,
		MaxIncomingUniStreams: 8,
	}
}

// Serve serves HTTP/3 on conn until Close (at once if Close came first).
func (s *Server) Serve(conn net.PacketConn) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if s.h3 == nil {
		s.h3 = &http3.Server{
			Handler:        s.Handler(),
			TLSConfig:      http3.ConfigureTLSConfig(s.TLSConfig()),
			QUICConfig:     QUICConfig(),
			MaxHeaderBytes: 16 << 10,
			IdleTimeout:    60 * time.Second,
		}
	}
	h3 := s.h3
	s.mu.Unlock()
	err := h3.Serve(conn)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, quic.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops serving, closing open connections.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	h3 := s.h3
	s.mu.Unlock()
	if h3 == nil {
		return nil
	}
	return h3.Close()
}

// named is the region a chain's node certificate names, "" if none: a
// refusal records it even when that region is no peer.
func named(chain []*x509.Certificate) string {
	if len(chain) == 0 {
		return ""
	}
	region, _, _ := certRegion(chain[0])
	return region
}

func (s *Server) refuse(r Refusal) {
	s.cfg.Logger.Warn("federation request refused", "peer", r.Peer, "remote", r.Remote, "reason", r.Reason, "err", r.Err)
	if s.cfg.Refused != nil {
		s.cfg.Refused(r)
	}
}

// apiError is the body of every refusal and failure.
type apiError struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// Handler is the federation API over any transport that sets r.TLS with
// the client's verified chain (HTTP/3 here; HTTP/2 in the benchmark).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathHealth, s.health)
	mux.HandleFunc("GET "+PathAgents, s.agents)
	mux.HandleFunc("GET "+PathQuery, s.query)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Tap != nil {
			rec := &tapWriter{ResponseWriter: w, status: http.StatusOK}
			defer func() { s.cfg.Tap(r, rec.status, rec.body) }()
			w = rec
		}
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			s.refuse(Refusal{Remote: r.RemoteAddr, Reason: "tls", Err: ErrPeerCert})
			writeErr(w, http.StatusUnauthorized, "unauthenticated", "a client certificate of a configured peer is required")
			return
		}
		p, err := identify(r.TLS.PeerCertificates, s.cfg.Peer, s.cfg.Now())
		if err != nil {
			// A peer removed (or its CA changed) since the handshake.
			s.refuse(Refusal{Peer: named(r.TLS.PeerCertificates), Remote: r.RemoteAddr, Reason: "tls", Err: err})
			writeErr(w, http.StatusUnauthorized, "unauthenticated", err.Error())
			return
		}
		if r.Method != http.MethodGet {
			s.refuse(Refusal{Peer: p.Name, Remote: r.RemoteAddr, Reason: "method", Err: fmt.Errorf("method %s", r.Method)})
			w.Header().Set("Allow", http.MethodGet)
			writeErr(w, http.StatusMethodNotAllowed, "method_not_allowed", "federation is read-only: GET only")
			return
		}
		v, err := s.verifier.Verify(r)
		if err != nil {
			s.refuse(Refusal{Peer: p.Name, Remote: r.RemoteAddr, Reason: "signature", Err: err})
			writeErr(w, http.StatusUnauthorized, "bad_signature", err.Error())
			return
		}
		if v.KeyID != p.Name {
			err := fmt.Errorf("signed with the key of %q by a certificate of %q", v.KeyID, p.Name)
			s.refuse(Refusal{Peer: p.Name, Remote: r.RemoteAddr, Reason: "keyid", Err: err})
			writeErr(w, http.StatusForbidden, "keyid_mismatch", err.Error())
			return
		}
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, p.Name)))
	})
}

type peerKey struct{}

func callerPeer(r *http.Request) string { s, _ := r.Context().Value(peerKey{}).(string); return s }

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	h, err := s.cfg.View.Health(r.Context())
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	writeJSON(w, h)
}

// link resolves the request's link for the calling peer.
func (s *Server) link(w http.ResponseWriter, r *http.Request) (link, tenantID string, ok bool) {
	link = r.PathValue("link")
	tenantID, ok = s.cfg.View.LinkTenant(callerPeer(r), link)
	if !ok {
		writeErr(w, http.StatusNotFound, "unknown_link", "no link "+strconv.Quote(link)+" for your region here: a tenant admin here configures it with `outpostctl links create --tenant TENANT --peer YOUR_REGION --link-id ID`")
	}
	return link, tenantID, ok
}

func (s *Server) agents(w http.ResponseWriter, r *http.Request) {
	link, tenant, ok := s.link(w, r)
	if !ok {
		return
	}
	a, err := s.cfg.View.Agents(r.Context(), tenant)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	a.Link = link
	a.fit()
	writeJSON(w, a)
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("query")
	if q == "" || len(q) > MaxQueryLen {
		writeErr(w, http.StatusBadRequest, "bad_query", fmt.Sprintf("query is required, at most %d bytes", MaxQueryLen))
		return
	}
	ts := s.cfg.Now()
	if v := r.URL.Query().Get("time"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "bad_query", "time is milliseconds since the epoch")
			return
		}
		ts = time.UnixMilli(ms)
	}
	link, tenant, ok := s.link(w, r)
	if !ok {
		return
	}
	res, err := s.cfg.View.Query(r.Context(), tenant, q, ts)
	switch {
	case errors.Is(err, ErrBadQuery):
		writeErr(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	case err != nil:
		writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	res.Link = link
	res.fit()
	writeJSON(w, res)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(apiError{Code: code, Error: msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

type tapWriter struct {
	http.ResponseWriter
	status int
	body   []byte
}

func (t *tapWriter) WriteHeader(code int) { t.status = code; t.ResponseWriter.WriteHeader(code) }
func (t *tapWriter) Write(b []byte) (int, error) {
	t.body = append(t.body, b...)
	return t.ResponseWriter.Write(b)
}
