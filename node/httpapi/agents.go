package httpapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// AgentCA signs agent certificates (the region CA: *pki.CA).
type AgentCA interface {
	SignAgent(csr *x509.CertificateRequest, region, tenantID, agentID string, lifetime time.Duration) (*x509.Certificate, []byte, error)
	CertPEM() []byte
	Pin() string
}

// AgentLinks is the node's live view of connected agents and its hold on
// their connections (the agent port). Nil until the agent port runs.
type AgentLinks interface {
	// Live fills in what the node knows of a connected agent.
	Live(a *api.Agent)
	// Disconnect closes the agent's live connections on this node.
	Disconnect(agentID string) int
}

func tokenStatus(t agents.BootstrapToken, used string, now time.Time) (status, agent string) {
	switch {
	case used == agents.Revoked:
		return "revoked", ""
	case used != "":
		return "redeemed", used
	case !now.Before(t.Expires):
		return "expired", ""
	}
	return "unused", ""
}

// agentTokenCreate makes a bootstrap token for the route's tenant.
func (s *server) agentTokenCreate(w http.ResponseWriter, r *http.Request, c *call) {
	var in api.BootstrapTokenCreate
	if r.ContentLength != 0 && !decodeBody(w, r, &in, `{"ttl":"15m"}`) {
		return
	}
	ttl := agents.DefaultTokenTTL
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d < time.Minute || d > agents.MaxTokenTTL {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl %q: use a duration from 1m to %v", in.TTL, agents.MaxTokenTTL), "bootstrap tokens are meant to be used at once, e.g. 15m")
			return
		}
		ttl = d
	}
	now := s.cfg.Now().UTC()
	tok, id := agents.NewToken()
	rec := agents.BootstrapToken{ID: id, Tenant: c.tenant.ID, Created: now, Expires: now.Add(ttl), CreatedBy: auth.AccountActor(c.p.Owner), Hash: agents.HashToken(tok)}
	if _, ok := s.apply(w, r, change{p: c.p, tenant: c.tenant.ID, action: "agent_token.create", entity: "agent_token/" + id,
		detail: map[string]any{"ttl": ttl.String()}}, batch(agents.OpsCreateToken(rec))); !ok {
		return
	}
	writeJSON(w, http.StatusCreated, api.BootstrapToken{ID: id, Tenant: c.tenant.Name, Created: rec.Created, Expires: rec.Expires,
		CreatedBy: rec.CreatedBy, Status: "unused", Token: tok, CAPin: s.cfg.AgentCA.Pin(), Servers: s.agentServers()})
}

func (s *server) agentTokenList(w http.ResponseWriter, r *http.Request, c *call) {
	out := []api.BootstrapToken{}
	now := s.cfg.Now()
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := agents.Reader{Tx: tx}
		for _, t := range rd.Tokens(c.tenant.ID) {
			st, ag := tokenStatus(t, rd.Redeemed(t.ID), now)
			out = append(out, api.BootstrapToken{ID: t.ID, Tenant: c.tenant.Name, Created: t.Created, Expires: t.Expires, CreatedBy: t.CreatedBy, Status: st, Agent: ag})
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *server) agentTokenRevoke(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.PathValue("id")
	var t agents.BootstrapToken
	var found bool
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		t, found = agents.Reader{Tx: tx}.Token(id)
		return nil
	})
	if !found || t.Tenant != c.tenant.ID {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no bootstrap token %q in tenant %s", id, c.tenant.Name), "`outpostctl tokens list --tenant T` shows them")
		return
	}
	res, ok := s.apply(w, r, change{p: c.p, tenant: t.Tenant, action: "agent_token.revoke", entity: "agent_token/" + id}, batch(agents.OpsRevokeToken(id)))
	if !ok {
		return
	}
	if string(res.Value) != "1" {
		var used string
		_ = s.cfg.Store.View(func(tx *storage.Tx) error { used = agents.Reader{Tx: tx}.Redeemed(id); return nil })
		if used == agents.Revoked {
			writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": "revoked"})
			return
		}
		writeError(w, http.StatusConflict, fmt.Sprintf("bootstrap token %s was already redeemed by agent %s", id, used),
			fmt.Sprintf("revoke the agent instead: outpostctl agents revoke %s", used))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": "revoked"})
}

// agentEnroll redeems a bootstrap token: the CSR's key gets a certificate
// naming the token's tenant and a new agent id. Public: the bootstrap
// token is the credential.
func (s *server) agentEnroll(rw http.ResponseWriter, r *http.Request, c *call) {
	from := remote(r)
	// Only refusals add up against an address: a fleet behind one NAT
	// enrolling at once is not refused. Attempts in flight are bounded
	// apart (generously), so parallel guesses cannot outrun the count.
	if ok, wait := s.enrollRefusals.Ready(from, s.cfg.Now()); !ok {
		secs := int(wait/time.Second) + 1
		rw.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(rw, http.StatusTooManyRequests, "too many refused enrollments from your address",
			fmt.Sprintf("check the token (`outpostctl tokens list --tenant T` shows whether it is used, revoked or expired) and retry in %d seconds", secs))
		return
	}
	if !s.enrollInFlight.Acquire(from) {
		rw.Header().Set("Retry-After", "1")
		writeError(rw, http.StatusTooManyRequests, fmt.Sprintf("more than %d enrollments in flight from your address", s.enrollInFlight.Max),
			"enroll fewer agents at once from one address, and retry in a second")
		return
	}
	defer s.enrollInFlight.Release(from)
	w := &statusWriter{ResponseWriter: rw}
	defer func() {
		if w.code/100 == 4 {
			s.enrollRefusals.Count(from, s.cfg.Now())
		}
	}()
	var in agentwire.EnrollRequest
	if !decodeBody(w, r, &in, `{"token":"opb_…","csr":"-----BEGIN CERTIFICATE REQUEST-----…","host":"web-1","version":"0.1.0"}`) {
		return
	}
	if s.cfg.AgentCA == nil {
		writeError(w, http.StatusServiceUnavailable, "this node cannot sign agent certificates", "enroll against another node of the region")
		return
	}
	if err := agents.ValidateSelf(in.Host, in.Version); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "the agent reports its host name and version")
		return
	}
	if err := agents.ValidateSelf("-", in.InstanceUID); len(in.InstanceUID) > 64 || err != nil {
		writeError(w, http.StatusBadRequest, "instance_uid must be up to 64 printable characters without spaces", "")
		return
	}
	tokenID, err := agents.TokenID(in.Token)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error(), "pass the whole token `outpostctl tokens create` printed")
		return
	}
	// A token this node does not know is refused before the read
	// barrier below, which costs a replicated log entry: a stranger's
	// random token must not cost the region a write.
	var known bool
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		_, rerr := agents.Reader{Tx: tx}.Redeemable(in.Token, s.cfg.Now())
		known = !errors.Is(rerr, agents.ErrUnknownToken)
		return nil
	})
	if !known {
		s.cfg.Logger.Warn("agent enrollment with an unknown bootstrap token", "token_id", tokenID, "from", from, "peer", r.RemoteAddr)
		writeJSON(w, http.StatusUnauthorized, api.Error{Error: agents.ErrUnknownToken.Error(), Code: agentwire.CodeTokenNotSeen,
			Hint: "a token created a moment ago on another node may not have reached this one yet: retry in a second"})
		return
	}
	// A linearizable read: a token revoked (or redeemed) a moment ago on
	// another node is seen here. The FSM decides a race anyway.
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	err = s.cfg.Region.ReadBarrier(ctx)
	cancel()
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "cannot check the token now: "+err.Error(), "the region has no leader; retry in a second")
		return
	}
	now := s.cfg.Now().UTC()
	var rec agents.BootstrapToken
	var tenantName string
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rec, err = agents.Reader{Tx: tx}.Redeemable(in.Token, now)
		tenantName = tenantNames(tx)[rec.Tenant]
		return nil
	})
	refuse := func(status int, reason, msg, hint string) {
		// A few records per token and minute: who replays an old token
		// cannot grow the audit log without bound.
		if ok, _ := s.enrollAudits.Allow(tokenID, s.cfg.Now()); ok {
			s.record(r, change{actor: "agent_token/" + tokenID, tenant: rec.Tenant, action: "agent.enroll_refused", entity: "agent_token/" + tokenID,
				detail: withPeer(r, map[string]string{"reason": reason, "from": from, "host": in.Host})})
		} else {
			s.cfg.Logger.Warn("agent enrollment refused (not audited: this token's refusals are being recorded too often)",
				"token_id", tokenID, "reason", reason, "from", from, "peer", r.RemoteAddr)
		}
		writeJSON(w, status, api.Error{Error: msg, Hint: hint, Code: tokenCode(err)})
	}
	switch {
	case errors.Is(err, agents.ErrUnknownToken):
		// Not audited: it names nothing of ours, and anyone can send one.
		s.cfg.Logger.Warn("agent enrollment with an unknown bootstrap token", "token_id", tokenID, "from", from, "peer", r.RemoteAddr)
		writeJSON(w, http.StatusUnauthorized, api.Error{Error: err.Error(), Code: agentwire.CodeTokenUnknown,
			Hint: "create a new one with `outpostctl tokens create --tenant T`"})
		return
	case errors.Is(err, agents.ErrTokenUsed) && s.repeatEnrollment(w, r, in, tokenID, rec, tenantName, from):
		return
	case err != nil:
		refuse(http.StatusForbidden, err.Error(), err.Error(), "")
		return
	}
	agentID := agents.NewAgentID()
	csr, err := pki.ParseCSR([]byte(in.CSR), nil)
	if err != nil {
		refuse(http.StatusBadRequest, err.Error(), err.Error(), "send a PEM request for an ECDSA P-256/P-384 or Ed25519 key, without names: the CA assigns the identity")
		return
	}
	keyHash, err := pki.KeyHash(csr.PublicKey)
	if err != nil {
		refuse(http.StatusBadRequest, err.Error(), err.Error(), "send a PEM request for an ECDSA P-256/P-384 or Ed25519 key")
		return
	}
	cert, certPEM, err := s.cfg.AgentCA.SignAgent(csr, s.cfg.RegionName, rec.Tenant, agentID, s.cfg.AgentCertLifetime)
	if err != nil {
		s.cfg.Logger.Error("signing an agent certificate failed", "err", err)
		writeError(w, http.StatusInternalServerError, "signing the certificate failed: "+err.Error(), "retry; if it persists check the node's CA key")
		return
	}
	a := agents.Agent{ID: agentID, Tenant: rec.Tenant, Host: in.Host, Version: in.Version, InstanceUID: in.InstanceUID, TokenID: tokenID,
		Enrolled: now, Fingerprint: pki.Fingerprint(cert), CertExpires: cert.NotAfter.UTC(), EnrolledFrom: from,
		KeyHash: keyHash, Cert: string(certPEM)}
	res, ok := s.apply(w, r, change{actor: "agent_token/" + tokenID, tenant: rec.Tenant, action: "agent.enroll", entity: "agent/" + agentID,
		detail: withPeer(r, map[string]string{"host": in.Host, "version": in.Version, "fingerprint": a.Fingerprint, "from": from})}, batch(agents.OpsEnroll(tokenID, a)))
	if !ok {
		return
	}
	if string(res.Value) != "1" {
		// Another redemption or a revocation won the race; when the
		// winner was this same key asking twice, it gets its answer.
		_ = s.cfg.Store.View(func(tx *storage.Tx) error {
			rec, err = agents.Reader{Tx: tx}.Redeemable(in.Token, now)
			return nil
		})
		if errors.Is(err, agents.ErrTokenUsed) && s.repeatEnrollment(w, r, in, tokenID, rec, tenantName, from) {
			return
		}
		if err == nil {
			err = agents.ErrTokenUsed
		}
		refuse(http.StatusForbidden, "lost the race for the token", err.Error(), "")
		return
	}
	writeJSON(w, http.StatusCreated, agentwire.Enrollment{AgentID: agentID, Region: s.cfg.RegionName, Tenant: tenantName,
		Certificate: string(certPEM), CA: string(s.cfg.AgentCA.CertPEM()), CertExpires: a.CertExpires, Servers: s.agentServers()})
}

// repeatEnrollment answers a redemption of an already redeemed token
// that comes with a request for the very key the token was redeemed
// for, while the token is still within its lifetime: the agent lost the
// first answer (a timeout, a node that died after committing) and gets
// the same certificate again. Only the holder of that private key can
// sign such a request, so a copied token gains nothing. It reports
// whether it answered.
func (s *server) repeatEnrollment(w http.ResponseWriter, r *http.Request, in agentwire.EnrollRequest, tokenID string, rec agents.BootstrapToken, tenantName, from string) bool {
	csr, err := pki.ParseCSR([]byte(in.CSR), nil)
	if err != nil {
		return false
	}
	keyHash, err := pki.KeyHash(csr.PublicKey)
	if err != nil {
		return false
	}
	var a agents.Agent
	var ok bool
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := agents.Reader{Tx: tx}
		a, ok = rd.Agent(rd.Redeemed(tokenID))
		return nil
	})
	if !ok || a.Revoked || a.Cert == "" || a.KeyHash != keyHash || !s.cfg.Now().Before(rec.Expires) {
		return false
	}
	if ok, _ := s.enrollAudits.Allow(tokenID, s.cfg.Now()); ok {
		s.record(r, change{actor: "agent_token/" + tokenID, tenant: rec.Tenant, action: "agent.enroll_repeated", entity: "agent/" + a.ID,
			detail: withPeer(r, map[string]string{"host": in.Host, "fingerprint": a.Fingerprint, "from": from})})
	}
	writeJSON(w, http.StatusCreated, agentwire.Enrollment{AgentID: a.ID, Region: s.cfg.RegionName, Tenant: tenantName,
		Certificate: a.Cert, CA: string(s.cfg.AgentCA.CertPEM()), CertExpires: a.CertExpires, Servers: s.agentServers()})
	return true
}

// agentServers lists the agent endpoints the region's nodes advertise.
func (s *server) agentServers() []string {
	out := []string{}
	for _, m := range s.cfg.Region.Members() {
		if u := m.Meta.AgentURL; u != "" && m.Meta.Region == s.cfg.RegionName && !m.Meta.Leaving {
			out = append(out, u)
		}
	}
	return out
}

// tokenCode is the machine code (agentwire.Code…) of an enrollment
// refusal of a known token, "" for other refusals.
func tokenCode(err error) string {
	switch {
	case errors.Is(err, agents.ErrTokenExpired):
		return agentwire.CodeTokenExpired
	case errors.Is(err, agents.ErrTokenRevoked):
		return agentwire.CodeTokenRevoked
	case errors.Is(err, agents.ErrTokenUsed):
		return agentwire.CodeTokenUsed
	}
	return ""
}

// agentView is an agent as the list shows it: its record, where the
// region last recorded it attached (presence, through Raft), and what
// this node knows live when the agent is attached here.
func (s *server) agentView(a agents.Agent, p agents.Presence, tenantName string) api.Agent {
	v := api.Agent{ID: a.ID, Tenant: tenantName, Host: a.Host, Version: a.Version, InstanceUID: a.InstanceUID, Fingerprint: a.Fingerprint,
		Enrolled: a.Enrolled, CertExpires: a.CertExpires, Mode: "unknown", Health: "disconnected", Revoked: a.Revoked, RevokedAt: a.RevokedAt,
		LastSeen: p.LastSeen}
	for _, f := range p.Flags {
		v.Flags = append(v.Flags, flagText(f))
	}
	if c := p.Config; c != nil {
		v.Config = &api.AgentConfigStatus{Dispatch: c.Dispatch, Token: c.Token, Status: c.Status, Error: c.Error, Node: c.Node, At: c.At}
	}
	if p.Info.InstanceUID != "" {
		v.InstanceUID = p.Info.InstanceUID
	}
	if p.Node != "" && s.memberAlive(p.Node) {
		v.Node, v.SourceAddr, v.RTTMs = p.Node, p.Addr, p.Info.RTT()
		if p.Info.Mode != "" {
			v.Mode = p.Info.Mode
		}
		if p.Info.Host != "" {
			v.Host = p.Info.Host
		}
		if p.Info.Version != "" {
			v.Version = p.Info.Version
		}
		v.Health = p.Info.HealthText()
		// From the registry, so every node shows them; Live refines them
		// on the node that holds the link.
		v.Capabilities = p.Info.CapabilityNames()
	}
	if a.Revoked {
		v.Health, v.Node = "revoked", ""
	} else if s.cfg.AgentLinks != nil {
		s.cfg.AgentLinks.Live(&v)
	}
	return v
}

func (s *server) memberAlive(id string) bool {
	for _, m := range s.cfg.Region.Members() {
		if m.ID == id {
			return m.Status == raft.MemberAlive
		}
	}
	return false
}

// agentsList lists every agent (region route) or the tenant's.
func (s *server) agentsList(w http.ResponseWriter, r *http.Request, c *call) {
	out := []api.Agent{}
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		names := tenantNames(tx)
		rd := agents.Reader{Tx: tx}
		for _, a := range rd.Agents(c.tenant.ID) {
			p, _ := rd.Presence(a.ID)
			out = append(out, s.agentView(a, p, names[a.Tenant]))
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

// agentRevoke revokes an agent: recorded through Raft (every node refuses
// its certificate from then on) and its live connection on this node is
// closed at once; the other nodes close theirs when they apply it.
func (s *server) agentRevoke(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.PathValue("id")
	a, _, tenantName, ok := s.callerAgent(w, c, id)
	if !ok {
		return
	}
	if !a.Revoked {
		a.Revoked, a.RevokedAt, a.RevokedBy = true, s.cfg.Now().UTC(), c.p.Actor
		cmd, err := agents.Op{Revoke: &agents.RevokeOp{Agent: id, At: a.RevokedAt, By: a.RevokedBy}}.Encode()
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error(), "")
			return
		}
		if _, ok := s.apply(w, r, change{p: c.p, tenant: a.Tenant, action: "agent.revoke", entity: "agent/" + id,
			detail: map[string]string{"host": a.Host, "fingerprint": a.Fingerprint}}, cmd); !ok {
			return
		}
	}
	if s.cfg.AgentLinks != nil {
		s.cfg.AgentLinks.Disconnect(id)
	}
	s.answerAgent(w, a, tenantName)
}

// callerAgent reads agent id with its presence and tenant name, answering
// 404 when it does not exist or is not in the caller's tenant.
func (s *server) callerAgent(w http.ResponseWriter, c *call, id string) (a agents.Agent, p agents.Presence, tenantName string, ok bool) {
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := agents.Reader{Tx: tx}
		a, ok = rd.Agent(id)
		p, _ = rd.Presence(id)
		tenantName = tenantNames(tx)[a.Tenant]
		return nil
	})
	if !ok || (c.tenant.ID != "" && a.Tenant != c.tenant.ID) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no agent %q here", id), "`outpostctl agents list` shows the agents")
		return a, p, "", false
	}
	return a, p, tenantName, true
}

// answerAgent answers with the agent as the list shows it now.
func (s *server) answerAgent(w http.ResponseWriter, a agents.Agent, tenantName string) {
	var p agents.Presence
	_ = s.cfg.Store.View(func(tx *storage.Tx) error { p, _ = agents.Reader{Tx: tx}.Presence(a.ID); return nil })
	writeJSON(w, http.StatusOK, s.agentView(a, p, tenantName))
}

// flagText is a flag as the agent list and the audit show it.
func flagText(f agents.Flag) string {
	if f.Kind == agents.FlagInstanceUID && !f.Tenanted {
		// Raised when uids were region-wide: its detail may name another
		// tenant's agent.
		return fmt.Sprintf("%s at %s: reported an instance uid another agent reported first", f.Kind, f.At.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s at %s: %s", f.Kind, f.At.UTC().Format(time.RFC3339), f.Detail)
}

// agentClearFlags acknowledges an agent's flags (a host that moved, a
// clone that was dealt with): those shown are removed and audited with
// what they said; a flag raised since stays.
func (s *server) agentClearFlags(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.PathValue("id")
	a, p, tenantName, ok := s.callerAgent(w, c, id)
	if !ok {
		return
	}
	if len(p.Flags) > 0 {
		cleared := make([]string, 0, len(p.Flags))
		var through time.Time
		for _, f := range p.Flags {
			cleared = append(cleared, flagText(f))
			if f.At.After(through) {
				through = f.At
			}
		}
		cmd, err := agents.Op{ClearFlags: &agents.ClearFlagsOp{Agent: id, Through: through, At: s.cfg.Now().UTC(), By: c.p.Actor}}.Encode()
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error(), "")
			return
		}
		if _, ok := s.apply(w, r, change{p: c.p, tenant: a.Tenant, action: "agent.flags_cleared", entity: "agent/" + id,
			detail: map[string]any{"host": a.Host, "flags": cleared}}, cmd); !ok {
			return
		}
	}
	s.answerAgent(w, a, tenantName)
}

// statusWriter remembers the status code a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
