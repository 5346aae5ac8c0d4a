package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/outpost-mesh/outpost/lease"
	"github.com/outpost-mesh/outpost/node/apitypes"
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
	StaleProbe(ctx context.Context) (lease.Dispatch, error)
	Timings() raft.Tuning
}

func (s *server) drillState() apitypes.DrillState {
	f, heals := s.cfg.Drills.Faults()
	t := s.cfg.Drills.Timings()
	return apitypes.DrillState{Node: s.cfg.Region.NodeID(), Enabled: s.cfg.Drills.Enabled(), Isolated: f.Isolated, Blocked: f.Blocked,
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
	var req apitypes.DrillFault
	if !decodeBody(w, r, &req, `{"duration_ms":10000}`) {
		return
	}
	d := time.Duration(req.DurationMs) * time.Millisecond
	if max := s.cfg.Drills.MaxDuration(); d <= 0 || d > max {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("duration_ms must be in 1..%d", max.Milliseconds()), "drills.max_duration caps how long a node stays cut off")
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
	var req apitypes.DrillStop
	if !decodeBody(w, r, &req, `{"restart_after_ms":2000}`) {
		return
	}
	d := time.Duration(req.RestartAfterMs) * time.Millisecond
	if d < 0 || d > s.cfg.Drills.MaxDuration() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("restart_after_ms must be in 0..%d", s.cfg.Drills.MaxDuration().Milliseconds()), "")
		return
	}
	if _, ok := s.apply(w, r, change{p: c.p, action: "drill.stop", entity: "node/" + s.cfg.Region.NodeID(),
		detail: map[string]any{"restart_after_ms": req.RestartAfterMs}}, nil); !ok {
		return
	}
	// Answer first: the caller times the failover from this answer.
	writeJSON(w, http.StatusOK, s.drillState())
	_ = http.NewResponseController(w).Flush()
	s.cfg.Drills.Stop(d)
}

func (s *server) drillStale(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.drillAllowed(w, r, c, "stale") {
		return
	}
	timeout := 2 * time.Second
	if v := r.URL.Query().Get("timeout_ms"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 1 || ms > 10000 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("timeout_ms %q must be a whole number of milliseconds in 1..10000", v), "omit it for the default of 2000")
			return
		}
		timeout = time.Duration(ms) * time.Millisecond
	}
	// Fail fast: a node that knows no leader refuses at once (nothing was
	// appended) instead of waiting out the timeout for an election.
	ctx, cancel := context.WithTimeout(raft.FailFast(r.Context()), timeout)
	defer cancel()
	d, err := s.cfg.Drills.StaleProbe(ctx)
	v := apitypes.StaleProbe{ID: d.ID, Token: d.Token, Outcome: "accepted"}
	switch {
	case err == nil:
	case lease.IsStale(err), errors.Is(err, lease.ErrBadCommand):
		// Refused by the FSM: the fence worked.
		v.Outcome, v.Error = "refused", err.Error()
	case errors.Is(err, raft.ErrNoLeader), errors.Is(err, raft.ErrShutdown):
		// Provably never appended: this node reached no leader, so the
		// fence was not put to the test.
		v.Outcome, v.Error = "not_appended", err.Error()
	default:
		v.Outcome, v.Error = "unknown", err.Error()
	}
	writeJSON(w, http.StatusOK, v)
}
