package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/internal/strictjson"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// authorize resolves the caller and checks the route's role. For tenant
// routes it also mints the tenant handle the handler must use. It writes
// the refusal itself and reports false when the request may not proceed.
func (s *server) authorize(w http.ResponseWriter, r *http.Request, role Role) (*call, bool) {
	if role == Public {
		return &call{}, true
	}
	p, err := s.resolver().Resolve(r)
	if err != nil {
		hint := s.cfg.TokenHint
		switch {
		case errors.Is(err, auth.ErrNoCredentials):
			err = errors.New("missing credentials (API token or session)")
		case errors.Is(err, auth.ErrBadSession), errors.Is(err, auth.ErrSessionExpired):
			hint = "log in again: POST /api/v1/login, or use an API token"
		}
		s.m.denials.WithLabelValues(deniedUnauthenticated).Inc()
		s.cfg.Logger.Warn("API request refused: not authenticated", "remote", remote(r), "peer", r.RemoteAddr, "path", r.URL.Path, "reason", err)
		writeError(w, http.StatusUnauthorized, err.Error(), hint)
		return nil, false
	}
	c := &call{p: p}
	switch role {
	case Authenticated:
		return c, true
	case RegionAdmin:
		if !p.RegionAdmin {
			s.m.denials.WithLabelValues(deniedRegionAdmin).Inc()
			writeError(w, http.StatusForbidden, "this needs a region admin", "region admins run the region's infrastructure; tenant work is under /api/v1/tenants/{tenant}")
			return nil, false
		}
		return c, true
	}
	name := r.PathValue("tenant")
	var grants []auth.Grant
	err = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := auth.Reader{Tx: tx}
		var err error
		if c.tenant, err = rd.Tenant(name); err == nil {
			grants = rd.Grants(c.tenant.ID)
		}
		return err
	})
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no tenant %q that you can reach", name), "`outpostctl tenants list` shows your tenants")
		return nil, false
	}
	now := s.cfg.Now()
	c.h, c.via, err = p.Access(c.tenant, role.tenantRole(), grants, now)
	switch {
	case errors.Is(err, auth.ErrNoTenant):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no tenant %q that you can reach", name), "`outpostctl tenants list` shows your tenants")
		return nil, false
	case errors.Is(err, auth.ErrNeedsGrant):
		s.m.denials.WithLabelValues(deniedBreakGlass).Inc()
		s.refusal(r, change{p: p, tenant: c.tenant.ID, stream: audit.StreamProvider, action: "breakglass.refused",
			entity: "tenant/" + c.tenant.ID}, "")
		writeError(w, http.StatusForbidden, err.Error(), fmt.Sprintf("request a grant: outpostctl breakglass request %s --reason TEXT --duration 1h; the tenant's Admin approves it", name))
		return nil, false
	case err != nil:
		s.m.denials.WithLabelValues(deniedRole).Inc()
		s.refusal(r, change{p: p, tenant: c.tenant.ID, action: "auth.denied", entity: "tenant/" + c.tenant.ID}, role.String())
		writeError(w, http.StatusForbidden, err.Error(), "ask an Admin of the tenant for a higher role")
		return nil, false
	}
	if c.via != "role" {
		// Reach into tenant data under break-glass is recorded in the
		// provider stream before it happens; no record, no access.
		if _, ok := s.apply(w, r, change{p: p, tenant: c.tenant.ID, stream: audit.StreamProvider, action: "breakglass.access",
			entity: "tenant/" + c.tenant.ID, detail: map[string]string{"grant": string(c.via), "method": r.Method, "path": r.URL.Path}}, nil); !ok {
			return nil, false
		}
	}
	return c, true
}

func (s *server) resolver() *auth.Resolver {
	return &auth.Resolver{Store: s.cfg.Store, Sessions: s.cfg.Sessions, Now: s.cfg.Now}
}

// change is one audited state change.
type change struct {
	p      *auth.Principal // nil: actor says who
	actor  string
	tenant string // tenant id the change concerns
	action string
	entity string
	redact bool
	stream string
	detail any
}

func (ch change) meta(node string, now time.Time) ([]byte, error) {
	m := audit.Meta{Time: now, Node: node, Actor: ch.actor, Tenant: ch.tenant, Action: ch.action, Entity: ch.entity, Redact: ch.redact, Stream: ch.stream}
	if ch.p != nil {
		m.Actor = ch.p.Actor
	}
	if ch.detail != nil {
		d, err := json.Marshal(ch.detail)
		if err != nil {
			return nil, err
		}
		m.Detail = d
	}
	return audit.EncodeMeta(m)
}

// apply commits inner (a plain command; nil for a record-only change)
// with its audit record, writing the error answer itself when it fails.
func (s *server) apply(w http.ResponseWriter, r *http.Request, ch change, inner []byte) (raft.Result, bool) {
	res, err := s.commit(r.Context(), ch, inner)
	switch {
	case errors.Is(err, raft.ErrOutcomeUnknown):
		writeError(w, http.StatusServiceUnavailable, err.Error(), "leadership changed during the write; read back to see whether it was applied")
	case errors.Is(err, raft.ErrNoLeader), errors.Is(err, raft.ErrShutdown):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, err.Error(), "the region has no leader (an election takes about a second, or a quorum is down); retry")
	case errors.Is(err, raft.ErrBadCommand):
		writeError(w, http.StatusBadRequest, err.Error(), "")
	case err != nil:
		s.cfg.Logger.Error("write failed", "err", err, "action", ch.action)
		writeError(w, http.StatusServiceUnavailable, "write failed: "+err.Error(), "retry; if it persists check `outpostctl status`")
	case res.Err != nil:
		writeError(w, http.StatusBadRequest, res.Err.Error(), "")
	default:
		return res, true
	}
	return res, false
}

func (s *server) commit(ctx context.Context, ch change, inner []byte) (raft.Result, error) {
	if inner == nil {
		inner = []byte{byte(raft.CmdNoop)}
	}
	meta, err := ch.meta(s.cfg.Region.NodeID(), s.cfg.Now())
	if err != nil {
		return raft.Result{}, err
	}
	cmd, err := raft.Audited(meta, inner)
	if err != nil {
		return raft.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return s.cfg.Region.Apply(ctx, cmd)
}

// record appends a record-only change, best effort (refusals): the
// refusal stands whether or not the record commits.
func (s *server) record(r *http.Request, ch change) {
	if _, err := s.commit(r.Context(), ch, nil); err != nil {
		s.cfg.Logger.Warn("could not record a refusal in the audit log", "action", ch.action, "err", err)
	}
}

// refusal records a refused request: at once if it is its identity's
// first in the denial window, else counted into the window's record.
func (s *server) refusal(r *http.Request, ch change, needs string) {
	if !s.denials.refused(ch, r, needs) {
		return
	}
	d := map[string]any{"method": r.Method, "path": r.URL.Path, "count": 1}
	if needs != "" {
		d["needs"] = needs
	}
	ch.detail = d
	s.record(r, ch)
}

// batch encodes an auth batch for apply.
func batch(b raft.Batch) []byte {
	enc, err := b.Encode()
	if err != nil {
		// The auth package builds valid batches; a failure here is a bug
		// the FSM would refuse anyway.
		return []byte{byte(raft.CmdBatch)}
	}
	return enc
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any, example string) bool {
	return decodeBodyLimit(w, r, v, 64<<10, example)
}

// decodeBodyLimit decodes a JSON body of at most limit bytes strictly:
// exact field names, no repeated or unknown field, nothing after the
// value (internal/strictjson). It answers 400 or 413 itself.
func decodeBodyLimit(w http.ResponseWriter, r *http.Request, v any, limit int64, example string) bool {
	err := strictjson.Decode(http.MaxBytesReader(w, r.Body, limit), v)
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", tooLarge.Limit), "send "+example)
	case errors.Is(err, strictjson.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error(), "send "+example)
	default:
		writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error(), "send "+example)
	}
	return false
}
