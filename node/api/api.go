package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outpost-mesh/outpost/node/apitypes"
	"github.com/outpost-mesh/outpost/node/audit"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// AdminTokenKey is the system-bucket key holding the hex SHA-256 of the
// region-admin API token. The token itself is never stored.
var AdminTokenKey = []byte("admin_token_sha256")

// Region is what the API needs from the node's region membership.
type Region interface {
	Status(ctx context.Context) raft.Status
	Members() []raft.Member
	Apply(ctx context.Context, cmd []byte) (raft.Result, error)
	ReadBarrier(ctx context.Context) error
	AppliedIndex() uint64
	IsLeader() bool
	Leader() (id, addr string)
	NodeID() string
}

// Store is the read side of the state store.
type Store interface {
	View(fn func(*storage.Tx) error) error
}

// AuditLog is the read side of the region's audit log.
type AuditLog interface {
	Entries(from, n int64, limit int) ([]audit.Entry, error)
	Checkpoint() ([]byte, error)
	VerifierKey() string
}

// DevControl stops and starts nodes of an `outpost dev` region. Nil
// outside dev mode, and then its routes do not exist.
type DevControl interface {
	StopNode(id string) error
	StartNode(id string) error
}

// Config wires the API.
type Config struct {
	Region   Region
	Store    Store
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	Dev      DevControl
	Audit    AuditLog
	// TokenHint tells a caller without credentials where the token is.
	TokenHint string
}

// Role is what a route requires of its caller.
type Role int

const (
	// Public routes need no credentials: liveness and self-metrics only.
	Public Role = iota
	// RegionAdmin routes need the region-admin token.
	RegionAdmin
)

func (r Role) String() string {
	if r == Public {
		return "public"
	}
	return "region-admin"
}

// Route is one entry of the route table.
type Route struct {
	Method  string
	Pattern string
	Role    Role
	handler func(*server, http.ResponseWriter, *http.Request)
}

// Routes is the API's route table. Every route names its role explicitly.
func Routes(dev bool) []Route {
	rs := []Route{
		{"GET", "/api/v1/health", Public, (*server).health},
		{"GET", "/metrics", Public, nil}, // served by promhttp
		{"GET", "/api/v1/region", RegionAdmin, (*server).region},
		{"GET", "/api/v1/members", RegionAdmin, (*server).members},
		{"GET", "/api/v1/kv", RegionAdmin, (*server).kvList},
		{"GET", "/api/v1/kv/{key...}", RegionAdmin, (*server).kvGet},
		{"PUT", "/api/v1/kv/{key...}", RegionAdmin, (*server).kvPut},
		{"DELETE", "/api/v1/kv/{key...}", RegionAdmin, (*server).kvDelete},
		{"GET", "/api/v1/audit", RegionAdmin, (*server).auditEntries},
		{"GET", "/api/v1/audit/checkpoint", RegionAdmin, (*server).auditCheckpoint},
		{"GET", "/api/v1/audit/key", RegionAdmin, (*server).auditKey},
	}
	if dev {
		rs = append(rs,
			Route{"POST", "/api/v1/dev/nodes/{id}/stop", RegionAdmin, (*server).devStop},
			Route{"POST", "/api/v1/dev/nodes/{id}/start", RegionAdmin, (*server).devStart},
		)
	}
	return rs
}

type server struct{ cfg Config }

// New returns the API handler.
func New(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{cfg: cfg}
	mux := http.NewServeMux()
	for _, rt := range Routes(cfg.Dev != nil) {
		pattern := rt.Method + " " + rt.Pattern
		if rt.handler == nil {
			mux.Handle(pattern, promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
			continue
		}
		h := rt.handler
		role := rt.Role
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if role != Public && !s.authorized(w, r) {
				return
			}
			h(s, w, r)
		})
	}
	// A known path with the wrong method is a 405 listing the allowed
	// methods; anything else is a 404.
	allowed := map[string][]string{}
	paths := http.NewServeMux()
	for _, rt := range Routes(cfg.Dev != nil) {
		if _, seen := allowed[rt.Pattern]; !seen {
			paths.HandleFunc(rt.Pattern, func(http.ResponseWriter, *http.Request) {})
		}
		allowed[rt.Pattern] = append(allowed[rt.Pattern], rt.Method)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := paths.Handler(r); pattern != "" {
			w.Header().Set("Allow", strings.Join(allowed[pattern], ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path), "allowed: "+strings.Join(allowed[pattern], ", "))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path), "see docs/api.md for the API's routes")
	})
	return mux
}

// authorized checks the bearer token against the stored hash in constant
// time and writes a 401 when it does not match.
func (s *server) authorized(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		writeError(w, http.StatusUnauthorized, "missing API token", s.cfg.TokenHint)
		return false
	}
	var want []byte
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		want = append(want, tx.Get(storage.BucketSystem, AdminTokenKey)...)
		return nil
	})
	sum := sha256.Sum256([]byte(tok))
	got := []byte(hex.EncodeToString(sum[:]))
	if len(want) == 0 || subtle.ConstantTimeCompare(got, want) != 1 {
		s.cfg.Logger.Warn("API request refused: invalid token", "remote", r.RemoteAddr, "path", r.URL.Path)
		writeError(w, http.StatusUnauthorized, "invalid API token", s.cfg.TokenHint)
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, code int, msg, hint string) {
	writeJSON(w, code, apitypes.Error{Error: msg, Hint: hint})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	leader, _ := s.cfg.Region.Leader()
	writeJSON(w, http.StatusOK, apitypes.Health{
		Status: "ok", Node: s.cfg.Region.NodeID(), Leader: leader,
		IsLeader: s.cfg.Region.IsLeader(), AppliedIndex: s.cfg.Region.AppliedIndex(),
	})
}

func (s *server) region(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	st := s.cfg.Region.Status(ctx)
	v := apitypes.Region{Region: st.Region, Node: st.Node, Leader: st.Leader, Nodes: []apitypes.Node{}}
	for _, n := range st.Nodes {
		v.Nodes = append(v.Nodes, apitypes.Node{
			ID: n.ID, Address: n.Address, APIURL: n.APIURL, Suffrage: n.Suffrage, RaftState: n.RaftState,
			Gossip: string(n.Gossip), LastContactMs: n.LastContactMs, AppliedIndex: n.AppliedIndex,
			Agents: n.Agents, AgentURL: n.AgentURL, FederationAddr: n.FederationURL, Error: n.Error,
		})
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) members(w http.ResponseWriter, r *http.Request) {
	out := []apitypes.Member{}
	for _, m := range s.cfg.Region.Members() {
		out = append(out, apitypes.Member{ID: m.ID, GossipAddr: m.GossipAddr, Status: string(m.Status), Since: m.Since,
			Region: m.Meta.Region, RaftAddr: m.Meta.RaftAddr, APIURL: m.Meta.APIURL, InRegion: m.Meta.InRegion})
	}
	writeJSON(w, http.StatusOK, out)
}

func validKey(w http.ResponseWriter, key string) bool {
	if key == "" || len(key) > raft.MaxKeyLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("key must be 1..%d bytes", raft.MaxKeyLen), "PUT /api/v1/kv/NAME with the value as the body")
		return false
	}
	return true
}

// readConsistency applies ?consistent=true (a linearizable read through
// the leader's read index) and reports staleness in headers otherwise.
func (s *server) readConsistency(w http.ResponseWriter, r *http.Request) bool {
	if c := r.URL.Query().Get("consistent"); c == "true" || c == "1" {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.cfg.Region.ReadBarrier(ctx); err != nil {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "consistent read failed: "+err.Error(), "the region may be electing a leader; retry in a second")
			return false
		}
		w.Header().Set("X-Outpost-Consistency", "linearizable")
	} else {
		w.Header().Set("X-Outpost-Consistency", "stale")
	}
	leader, _ := s.cfg.Region.Leader()
	w.Header().Set("X-Outpost-Known-Leader", leader)
	w.Header().Set("X-Outpost-Applied-Index", strconv.FormatUint(s.cfg.Region.AppliedIndex(), 10))
	return true
}

func (s *server) kvGet(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !validKey(w, key) || !s.readConsistency(w, r) {
		return
	}
	var val []byte
	found := false
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		if v := tx.Get(storage.BucketKV, []byte(key)); v != nil {
			val, found = append([]byte{}, v...), true
		}
		return nil
	})
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("key %q not found", key), "")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(val)
}

// maxListKeys caps one GET /api/v1/kv answer; X-Outpost-Truncated says
// when more keys match (narrow the prefix to see them).
const maxListKeys = 1000

func (s *server) kvList(w http.ResponseWriter, r *http.Request) {
	if !s.readConsistency(w, r) {
		return
	}
	prefix := r.URL.Query().Get("prefix")
	out := []apitypes.KVEntry{}
	truncated := false
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		tx.ForEach(storage.BucketKV, []byte(prefix), func(k, v []byte) bool {
			if len(out) == maxListKeys {
				truncated = true
				return false
			}
			out = append(out, apitypes.KVEntry{Key: string(k), Size: len(v)})
			return true
		})
		return nil
	})
	if truncated {
		// The list is cut short: say so, and where to continue.
		w.Header().Set("X-Outpost-Truncated", "true")
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) kvPut(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !validKey(w, key) {
		return
	}
	val, err := io.ReadAll(http.MaxBytesReader(w, r.Body, raft.MaxValueLen+1))
	if err != nil || len(val) > raft.MaxValueLen {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value exceeds %d bytes", raft.MaxValueLen), "")
		return
	}
	s.applyKV(w, r, raft.KVCommand{Op: raft.KVPut, Bucket: storage.BucketKV, Key: []byte(key), Value: val})
}

func (s *server) kvDelete(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !validKey(w, key) {
		return
	}
	s.applyKV(w, r, raft.KVCommand{Op: raft.KVDelete, Bucket: storage.BucketKV, Key: []byte(key)})
}

// actor names the caller in audit records. One region-admin token exists
// until accounts and API tokens do.
const actor = "region-admin"

func (s *server) applyKV(w http.ResponseWriter, r *http.Request, c raft.KVCommand) {
	inner, err := c.Encode()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	action := "kv.put"
	if c.Op == raft.KVDelete {
		action = "kv.delete"
	}
	b, err := s.audited(action, "kv/"+string(c.Key), inner)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	res, err := s.cfg.Region.Apply(ctx, b)
	switch {
	case errors.Is(err, raft.ErrOutcomeUnknown):
		writeError(w, http.StatusServiceUnavailable, err.Error(), "leadership changed during the write; read the key to see whether it was applied")
		return
	case errors.Is(err, raft.ErrNoLeader), errors.Is(err, raft.ErrShutdown):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, err.Error(), "the region has no leader (an election takes about a second, or a quorum is down); retry")
		return
	case err != nil:
		s.cfg.Logger.Error("write failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "write failed: "+err.Error(), "retry; if it persists check `outpostctl status`")
		return
	case res.Err != nil:
		writeError(w, http.StatusBadRequest, res.Err.Error(), "")
		return
	}
	writeJSON(w, http.StatusOK, apitypes.WriteResult{Index: res.Index})
}

// audited wraps an encoded command with its audit record.
func (s *server) audited(action, entity string, inner []byte) ([]byte, error) {
	meta, err := audit.EncodeMeta(audit.Meta{Time: time.Now(), Node: s.cfg.Region.NodeID(), Actor: actor, Action: action, Entity: entity})
	if err != nil {
		return nil, err
	}
	return raft.Audited(meta, inner)
}

const maxAuditPage = 1000

func (s *server) auditEntries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err1 := strconv.ParseInt(cmpOr(q.Get("from"), "0"), 10, 64)
	size, err2 := strconv.ParseInt(cmpOr(q.Get("size"), strconv.FormatInt(1<<62, 10)), 10, 64)
	limit, err3 := strconv.Atoi(cmpOr(q.Get("limit"), strconv.Itoa(maxAuditPage)))
	if err1 != nil || err2 != nil || err3 != nil || from < 0 || size < 0 || limit < 1 {
		writeError(w, http.StatusBadRequest, "from, size and limit must be non-negative integers (limit at least 1)", "GET /api/v1/audit?from=0&size=N&limit=1000")
		return
	}
	es, err := s.cfg.Audit.Entries(from, size, min(limit, maxAuditPage))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading the audit log: "+err.Error(), "")
		return
	}
	if es == nil {
		es = []audit.Entry{}
	}
	writeJSON(w, http.StatusOK, audit.Page{Entries: es, Size: size})
}

func (s *server) auditCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := s.cfg.Audit.Checkpoint()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "signing a checkpoint: "+err.Error(), "")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(cp)
}

func (s *server) auditKey(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, s.cfg.Audit.VerifierKey()+"\n")
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (s *server) devStop(w http.ResponseWriter, r *http.Request) {
	s.devAction(w, r, s.cfg.Dev.StopNode, "dev.node_stop", "stopped")
}

func (s *server) devStart(w http.ResponseWriter, r *http.Request) {
	s.devAction(w, r, s.cfg.Dev.StartNode, "dev.node_start", "started")
}

func (s *server) devAction(w http.ResponseWriter, r *http.Request, fn func(string) error, action, done string) {
	id := r.PathValue("id")
	// Record the drill before acting: the node stopped may be this one.
	rec, err := s.audited(action, "node/"+id, []byte{byte(raft.CmdNoop)})
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		_, err = s.cfg.Region.Apply(ctx, rec)
		cancel()
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "recording the action in the audit log failed: "+err.Error(), "retry once the region has a leader")
		return
	}
	if err := fn(id); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "`outpostctl status` lists the nodes")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"node": id, "state": done})
}
