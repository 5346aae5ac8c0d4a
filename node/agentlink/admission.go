package agentlink

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	st "github.com/open-telemetry/opamp-go/server/types"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/storage"
)

// checkCert runs inside the TLS handshake for a verified agent
// certificate: a revoked one is refused before any HTTP is spoken.
func (s *Server) checkCert(leaf *x509.Certificate) error {
	var a agents.Agent
	var ok bool
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		a, ok = agents.Reader{Tx: tx}.ByFingerprint(pki.Fingerprint(leaf))
		return nil
	})
	if ok && a.Revoked {
		// Counted and logged by the gate (handshakeRefused).
		return fmt.Errorf("agent %s: %w", a.ID, errRevokedCert)
	}
	// A retired certificate is refused after the handshake, where the
	// refusal can be audited with the address it came from.
	return nil // unknown here: onConnecting checks again after a read barrier
}

// refusal is an HTTP refusal of an OpAMP connection. opamp-go writes no
// body for it, so the reason goes in headers: the machine code
// (agentwire.Code…) and a sentence.
func refusal(status int, retryAfter, code, reason string) st.ConnectionResponse {
	r := st.ConnectionResponse{Accept: false, HTTPStatusCode: status,
		HTTPResponseHeader: map[string]string{agentwire.HeaderCode: code, agentwire.HeaderReason: reason}}
	if retryAfter != "" {
		r.HTTPResponseHeader["Retry-After"] = retryAfter
	}
	return r
}

// refused logs a refusal of an agent connection at info, once a minute
// per address and reason (a refused agent retries).
func (s *Server) refused(reason, addr string, err error) {
	s.m.refused.WithLabelValues(reason).Inc()
	if s.logOnce("refused/"+reason+"/"+addr, time.Minute) {
		s.logger.Info("refused an agent connection", "reason", reason, "from", addr, "err", err)
	}
}

var (
	errNoCertificate = errors.New("a client certificate is required: enroll first (outpost-agent --token …)")
	errNotWebSocket  = errors.New("OpAMP is served over WebSocket only: connect with wss:// as outpost-agent does")
	errFull          = errors.New("this node holds its maximum of agents: attach to another node")
)

// identify returns the agent record a verified certificate belongs to,
// reading through a barrier when this node has not yet applied it (an
// agent enrolled a moment ago through another node).
func (s *Server) identify(ctx context.Context, leaf *x509.Certificate) (agents.Agent, error) {
	tenant, id, err := pki.AgentIdentity(leaf, s.cfg.Region)
	if err != nil {
		return agents.Agent{}, err
	}
	fp := pki.Fingerprint(leaf)
	lookup := func() (a agents.Agent, ok bool) {
		_ = s.cfg.Store.View(func(tx *storage.Tx) error {
			a, ok = agents.Reader{Tx: tx}.ByFingerprint(fp)
			return nil
		})
		return a, ok
	}
	a, ok := lookup()
	if !ok {
		bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := s.raft.ReadBarrier(bctx)
		cancel()
		if err != nil {
			return agents.Agent{}, fmt.Errorf("%w: %v", errUnavailable, err)
		}
		if a, ok = lookup(); !ok {
			return agents.Agent{}, errUnknownCert
		}
	}
	if a.ID != id || a.Tenant != tenant {
		return agents.Agent{}, errUnknownCert
	}
	if a.Revoked {
		return agents.Agent{}, errRevoked
	}
	if a.Fingerprint != fp {
		return a, errRetired
	}
	return a, nil
}

var (
	errUnavailable = errors.New("the region cannot confirm the certificate now")
	errUnknownCert = errors.New("certificate not registered to an agent (its enrollment did not complete): enroll again with a new bootstrap token")
	errRevoked     = errors.New("agent revoked: enroll again with a new bootstrap token if this host should report")
	errRetired     = errors.New("certificate replaced by a renewal: the agent uses the newest one in its state directory; if this host did not renew, its key may be copied: revoke the agent")
)

func (s *Server) onConnecting(r *http.Request) st.ConnectionResponse {
	addr := hostOf(r.RemoteAddr)
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		s.refused("no_certificate", addr, errNoCertificate)
		return refusal(http.StatusUnauthorized, "", agentwire.CodeCertRequired, errNoCertificate.Error())
	}
	if !websocket.IsWebSocketUpgrade(r) {
		s.refused("not_websocket", addr, errNotWebSocket)
		return refusal(http.StatusBadRequest, "", agentwire.CodeNotWebSocket, errNotWebSocket.Error())
	}
	leaf := r.TLS.PeerCertificates[0]
	a, err := s.identify(r.Context(), leaf)
	switch {
	case errors.Is(err, errUnavailable):
		s.refused("no_leader", addr, err)
		return refusal(http.StatusServiceUnavailable, "2", agentwire.CodeUnavailable, errUnavailable.Error())
	case err != nil:
		reason := "unknown_certificate"
		switch {
		case errors.Is(err, errRevoked):
			reason = "revoked"
		case errors.Is(err, errRetired):
			reason = "retired"
		}
		fp := pki.Fingerprint(leaf)
		s.m.refused.WithLabelValues(reason).Inc()
		s.logger.Warn("refused an agent connection", "reason", reason, "err", err, "from", addr, "fingerprint", fp)
		switch reason {
		case "unknown_certificate":
			s.auditOnce("cert/"+fp, "agent.connect_refused", "agent_cert/"+fp, "",
				map[string]string{"reason": err.Error(), "from": addr})
		case "retired":
			// Who uses a replaced certificate holds an old key of the
			// agent's: worth an operator's look (once a minute per
			// certificate, so the record count stays bounded).
			s.auditOnce("retired/"+fp, "agent.connect_refused", "agent/"+a.ID, a.Tenant,
				map[string]string{"reason": "retired certificate", "fingerprint": fp, "from": addr})
		}
		code := agentwire.CodeCertRefused
		if reason == "retired" {
			code = agentwire.CodeCertRetired
		}
		return refusal(http.StatusForbidden, "", code, err.Error())
	}
	if s.count.Load() >= int64(s.cfg.MaxAgents) {
		s.refused("full", addr, errFull)
		return refusal(http.StatusServiceUnavailable, "5", agentwire.CodeNodeFull, errFull.Error())
	}
	l := &link{s: s, agent: a, fp: pki.Fingerprint(leaf), addr: addr, id: newConnID(), since: s.cfg.Now().UTC(),
		certExpires: leaf.NotAfter}
	return st.ConnectionResponse{Accept: true, ConnectionCallbacks: st.ConnectionCallbacks{
		OnConnected:            l.onConnected,
		OnMessage:              l.onMessage,
		OnConnectionClose:      l.onClose,
		OnReadMessageError:     l.onReadError,
		OnMessageResponseError: l.onResponseError,
	}}
}

// plainOpAMP refuses OpAMP over plain HTTP: its body is read without a
// bound by opamp-go, and agents here always use WebSocket.
func (s *Server) plainOpAMP(w http.ResponseWriter, r *http.Request) {
	s.refused("not_websocket", hostOf(r.RemoteAddr), errNotWebSocket)
	writeJSON(w, http.StatusBadRequest, api.Error{Error: "OpAMP over plain HTTP is not served here",
		Hint: "connect with WebSocket (wss://) as outpost-agent does", Code: agentwire.CodeNotWebSocket})
}
