package agentlink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/internal/strictjson"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/node/pki"
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg, hint string) {
	writeJSON(w, code, api.Error{Error: msg, Hint: hint})
}

// renew signs a new certificate for the agent presenting its current
// one: same tenant and agent id, the new key's request. The change goes
// through Raft (compare-and-set on the current fingerprint) and is
// audited.
func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	a, retired, ok := s.requireAgentOrRetired(w, r)
	if !ok {
		return
	}
	var in agentwire.RenewRequest
	if err := strictjson.Decode(http.MaxBytesReader(w, r.Body, 2*pki.MaxCSRBytes), &in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), `send {"csr":"-----BEGIN CERTIFICATE REQUEST-----…"}`)
		return
	}
	fp := pki.Fingerprint(r.TLS.PeerCertificates[0])
	csr, err := pki.ParseCSR([]byte(in.CSR), nil)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "send a PEM request for an ECDSA P-256/P-384 or Ed25519 key, without names")
		return
	}
	keyHash, err := pki.KeyHash(csr.PublicKey)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "send a PEM request for an ECDSA P-256/P-384 or Ed25519 key")
		return
	}
	if retired {
		// The agent lost the answer to a renewal that took effect and
		// asks again for the same new key: it gets the certificate the
		// renewal made. Only the holder of both the retired key (the
		// handshake) and the new one (the request's signature) can.
		if a.Cert != "" && a.KeyHash == keyHash {
			s.auditOnce("renew-repeated/"+a.Fingerprint, "agent.renew_repeated", "agent/"+a.ID, a.Tenant,
				map[string]string{"fingerprint": a.Fingerprint, "from": hostOf(r.RemoteAddr)})
			writeJSON(w, http.StatusOK, agentwire.Renewal{Certificate: a.Cert, CA: string(s.cfg.CA.CertPEM()), CertExpires: a.CertExpires})
			return
		}
		writeError(w, http.StatusConflict, "this certificate was already renewed", "use the newest certificate (the agent keeps it in its state directory)")
		return
	}
	cert, certPEM, err := s.cfg.CA.SignAgent(csr, s.cfg.Region, a.Tenant, a.ID, s.cfg.Lifetime)
	if err != nil {
		s.logger.Error("signing a renewed agent certificate failed", "err", err)
		writeError(w, http.StatusInternalServerError, "signing failed: "+err.Error(), "retry later")
		return
	}
	newFP := pki.Fingerprint(cert)
	cmd, err := agents.Op{Renew: &agents.RenewOp{Agent: a.ID, Old: fp, Fingerprint: newFP, Expires: cert.NotAfter.UTC(),
		KeyHash: keyHash, Cert: string(certPEM)}}.Encode()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error(), "")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	res, err := s.cfg.Commit(ctx, "agent/"+a.ID, "agent.renew", "agent/"+a.ID, a.Tenant,
		map[string]string{"old_fingerprint": fp, "fingerprint": newFP, "expires": cert.NotAfter.UTC().Format(time.RFC3339)}, cmd)
	switch {
	case err != nil:
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, "could not record the renewal: "+err.Error(), "retry in a few seconds; the current certificate stays valid")
		return
	case res.Err != nil:
		writeError(w, http.StatusBadRequest, res.Err.Error(), "")
		return
	}
	var out agents.Result
	if json.Unmarshal(res.Value, &out) != nil || !out.Applied {
		writeError(w, http.StatusConflict, "the agent was revoked or renewed meanwhile", "")
		return
	}
	s.logger.Info("renewed an agent certificate", "agent", a.ID, "expires", cert.NotAfter)
	writeJSON(w, http.StatusOK, agentwire.Renewal{Certificate: string(certPEM), CA: string(s.cfg.CA.CertPEM()), CertExpires: cert.NotAfter.UTC()})
}

// opampLogger sends opamp-go's messages to slog at debug level: what
// matters is logged by the callbacks with the agent's identity.
type opampLogger struct{ l *slog.Logger }

func (o opampLogger) Debugf(ctx context.Context, format string, v ...any) {
	o.l.Log(ctx, slog.LevelDebug, fmt.Sprintf(format, v...))
}

func (o opampLogger) Errorf(ctx context.Context, format string, v ...any) {
	o.l.Log(ctx, slog.LevelDebug, "opamp: "+fmt.Sprintf(format, v...))
}
