package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/lease"
	"github.com/outpost-mesh/outpost/raft"
)

// Drills runs failover drills on this node (node.drills).
type Drills interface {
	Enabled() bool
	MaxDuration() time.Duration
	// Faults returns the faults in force and how long until they heal.
	Faults() (raft.Faults, time.Duration)
	// Isolate cuts this node off (from peers only, if any) for d.
	Isolate(d time.Duration, peers []string)
	Heal()
	// Transfer releases the lease and hands Raft leadership to another
	// node.
	Transfer(ctx context.Context) error
	// Stop stops this node abruptly; it restarts after restartAfter where
	// it can.
	Stop(restartAfter time.Duration)
	// StaleProbe proposes a dispatch with id (made by the node when
	// empty) under the last token this node held, bypassing its fence.
	StaleProbe(ctx context.Context, id string) (lease.Dispatch, error)
	Timings() raft.Tuning
}

func (s *server) drillState() api.DrillState {
	f, heals := s.cfg.Drills.Faults()
	t := s.cfg.Drills.Timings()
	return api.DrillState{Node: s.cfg.Region.NodeID(), Enabled: s.cfg.Drills.Enabled(), Isolated: f.Isolated, Blocked: f.Blocked,
		HealsInMs: heals.Milliseconds(), Lease: leaseView(s.cfg.Lease.Status(), s.cfg.Lease.Config()),
		HeartbeatTimeoutMs: t.HeartbeatTimeout.Milliseconds(), ElectionTimeoutMs: t.ElectionTimeout.Milliseconds()}
}

// drillAllowed refuses (and records the refusal) when drills are off.
func (s *server) drillAllowed(w http.ResponseWriter, r *http.Request, c *call, action string) bool {
	if s.cfg.Drills.Enabled() {
		return true
	}
	s.record(r, change{p: c.p, action: "drill.refused", entity: "node/" + s.cfg.Region.NodeID(), detail: map[string]string{"drill": action}})
	writeError(w, http.StatusForbidden, "drills are disabled on this node", "set `drills: {enabled: true}` in its config for a game day (outpost dev enables them)")
	return false
}

func (s *server) drillsGet(w http.ResponseWriter, r *http.Request, c *call) {
	writeJSON(w, http.StatusOK, s.drillState())
}

func (s *server) drillIsolate(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.drillAllowed(w, r, c, "isolate") {
		return
	}
	const example = `{"duration_ms":10000}`
	field := msRange{field: "duration_ms", lo: time.Millisecond, hi: s.cfg.Drills.MaxDuration(),
		hint: "drills.max_duration caps how long a node stays cut off; send " + example}
	var req api.DrillFault
	if !decodeDrill(w, r, &req, example, field) {
		return
	}
	d, ok := field.duration(w, req.DurationMs)
	if !ok {
		return
	}
	self := s.cfg.Region.NodeID()
	known := map[string]bool{}
	for _, m := range s.cfg.Region.Members() {
		known[m.ID] = true
	}
	for _, p := range req.Peers {
		if p == self || !known[p] {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("peer %q is not another node of this region", p), "`outpostctl status` lists the nodes")
			return
		}
	}
	// A node already cut off could not record the new drill, so the
	// request would hang on the audit entry until it timed out. Say so.
	if f, heals := s.cfg.Drills.Faults(); f.Isolated || len(f.Blocked) > 0 {
		writeError(w, http.StatusConflict, fmt.Sprintf("node %s is already cut off (heals by itself in %v)", self, heals.Round(time.Millisecond)),
			"heal it first (POST /api/v1/drills/heal), then isolate it again for the new duration")
		return
	}
	action := "drill.isolate"
	if len(req.Peers) > 0 {
		action = "drill.partition"
	}
	// Recorded before the cut: once cut off, this node cannot commit.
	if _, ok := s.apply(w, r, change{p: c.p, action: action, entity: "node/" + self,
		detail: map[string]any{"duration_ms": req.DurationMs, "peers": req.Peers}}, nil); !ok {
		return
	}
	s.cfg.Drills.Isolate(d, slices.Clone(req.Peers))
	writeJSON(w, http.StatusOK, s.drillState())
}

func (s *server) drillHeal(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.drillAllowed(w, r, c, "heal") {
		return
	}
	s.cfg.Drills.Heal()
	// Recorded after healing: it could not commit before.
	go s.record(r.WithContext(context.WithoutCancel(r.Context())), change{p: c.p, action: "drill.heal", entity: "node/" + s.cfg.Region.NodeID()})
	writeJSON(w, http.StatusOK, s.drillState())
}

func (s *server) drillTransfer(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.drillAllowed(w, r, c, "transfer") {
		return
	}
	if !s.cfg.Region.IsLeader() {
		leader, _ := s.cfg.Region.Leader()
		writeError(w, http.StatusConflict, "this node is not the Raft leader", fmt.Sprintf("run the transfer drill on the leader, %s", leader))
		return
	}
	if _, ok := s.apply(w, r, change{p: c.p, action: "drill.transfer", entity: "node/" + s.cfg.Region.NodeID()}, nil); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Drills.Transfer(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, "leadership transfer failed: "+err.Error(), "this node keeps (and re-acquires) the lease; retry")
		return
	}
	writeJSON(w, http.StatusOK, s.drillState())
}

func (s *server) drillStop(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.drillAllowed(w, r, c, "stop") {
		return
	}
	const example = `{"restart_after_ms":2000}`
	field := msRange{field: "restart_after_ms", lo: 0, hi: s.cfg.Drills.MaxDuration(),
		hint: "drills.max_duration caps how long a stopped node stays down; send " + example}
	var req api.DrillStop
	if !decodeDrill(w, r, &req, example, field) {
		return
	}
	d, ok := field.duration(w, req.RestartAfterMs)
	if !ok {
		return
	}
	if _, ok := s.apply(w, r, change{p: c.p, action: "drill.stop", entity: "node/" + s.cfg.Region.NodeID(),
		detail: map[string]any{"restart_after_ms": req.RestartAfterMs}}, nil); !ok {
		return
	}
	// Answer in full first: the caller times the failover from this
	// answer, and stopping closes every connection at once, which cuts a
	// chunked answer short of its last chunk (the caller read "unexpected
	// EOF"). 202: the stop happens after the answer. Connection: close, so
	// the caller does not send its next request down a dying connection.
	w.Header().Set("Connection", "close")
	writeComplete(w, http.StatusAccepted, s.drillState())
	s.cfg.Drills.Stop(d)
}

// msRange is a drill request's field of milliseconds and the range it
// may hold. A count is range-checked as a count, before it becomes a
// time.Duration: from 9223372036855 ms on, the product overflows int64
// and wraps, possibly into range (18446744073710 ms is 448µs), so a check
// of the converted duration passes a value the audit record then shows
// as it was sent.
type msRange struct {
	field  string
	lo, hi time.Duration
	hint   string
}

// duration returns ms as a duration, or answers 400 naming the field
// and its range.
func (m msRange) duration(w http.ResponseWriter, ms int64) (time.Duration, bool) {
	if ms < m.lo.Milliseconds() || ms > m.hi.Milliseconds() {
		m.refuse(w, strconv.FormatInt(ms, 10))
		return 0, false
	}
	return time.Duration(ms) * time.Millisecond, true
}

// refuse answers 400 for value, which is not a count of milliseconds in
// the field's range.
func (m msRange) refuse(w http.ResponseWriter, value string) {
	writeError(w, http.StatusBadRequest, fmt.Sprintf("%s %s is out of range: it must be a whole number of milliseconds in %d..%d",
		m.field, value, m.lo.Milliseconds(), m.hi.Milliseconds()), m.hint)
}

// decodeDrill is decodeBody for a drill request whose number field is f:
// a value JSON cannot put in it (beyond int64, a fraction, a string) is
// answered like an out-of-range one, naming the field and its range.
func decodeDrill(w http.ResponseWriter, r *http.Request, v any, example string, f msRange) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return true
	case errors.As(err, &te) && te.Field == f.field:
		f.refuse(w, te.Value)
	default:
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error(), "send "+example)
	}
	return false
}

// writeComplete writes v with a Content-Length and flushes it, so the
// answer is whole on the wire before the handler does anything else,
// even if the connection is then closed under it.
func writeComplete(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error(), "")
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
	_ = http.NewResponseController(w).Flush()
}

func (s *server) drillStale(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.drillAllowed(w, r, c, "stale") {
		return
	}
	timeout := 2 * time.Second
	if v := r.URL.Query().Get("timeout_ms"); v != "" {
		field := msRange{field: "timeout_ms", lo: time.Millisecond, hi: 10 * time.Second, hint: "omit it for the default of 2000"}
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			field.refuse(w, v)
			return
		}
		var ok bool
		if timeout, ok = field.duration(w, ms); !ok {
			return
		}
	}
	id := r.URL.Query().Get("id")
	if id != "" && !staleIDPattern.MatchString(id) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("id %q must be stale- then 1..58 of A-Z a-z 0-9 . _ -", id),
			"choose a fresh id per probe (e.g. stale-RUN-ROUND-SEQ), or omit it and the node makes one")
		return
	}
	// Fail fast: a node that knows no leader refuses at once (nothing was
	// appended) instead of waiting out the timeout for an election.
	ctx, cancel := context.WithTimeout(raft.FailFast(r.Context()), timeout)
	defer cancel()
	d, err := s.cfg.Drills.StaleProbe(ctx, id)
	v := api.StaleProbe{ID: d.ID, Token: d.Token, Outcome: staleOutcome(err)}
	if err != nil {
		v.Error = err.Error()
	}
	writeJSON(w, http.StatusOK, v)
}

// staleIDPattern is a client-chosen stale probe id: a dispatch id (at most
// 64 bytes) in a namespace of its own, so it cannot name a real dispatch,
// which a retry of that id would be answered with as if it committed.
var staleIDPattern = regexp.MustCompile(`^stale-[A-Za-z0-9._-]{1,58}$`)

// staleOutcome classifies a stale probe's error. Only the FSM's refusal
// of the token is "refused": that alone shows the fence working. A
// malformed entry or one never appended did not test it.
func staleOutcome(err error) string {
	switch {
	case err == nil:
		return api.StaleOutcomeAccepted
	case lease.IsStale(err):
		return api.StaleOutcomeRefused
	case errors.Is(err, lease.ErrBadCommand), errors.Is(err, raft.ErrBadCommand):
		return api.StaleOutcomeBadCommand
	case errors.Is(err, raft.ErrOutcomeUnknown):
		// In flight when the region closed: it may still commit.
		return api.StaleOutcomeUnknown
	case errors.Is(err, raft.ErrNoLeader), errors.Is(err, raft.ErrShutdown):
		// Provably never appended: this node reached no leader.
		return api.StaleOutcomeNotAppended
	}
	return api.StaleOutcomeUnknown
}
