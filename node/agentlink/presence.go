package agentlink

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/raft"
)

// queue hands a presence change to the writer; it never blocks (a full
// queue drops the change and counts it: presence is advisory, and the
// next attach or confirmation corrects it).
func (s *Server) queue(op agents.PresenceOp) bool {
	select {
	case s.presence <- op:
		return true
	default:
		s.m.presenceDropped.Inc()
		return false
	}
}

// queueUpdate queues what a link reported, at most one change per link
// in the queue: while one waits, a newer report replaces its content
// (counted as coalesced), so an agent changing its health on every
// message takes one slot of the queue all agents share, not thousands.
// The writer reads the latest content when it takes the change (resolve).
func (s *Server) queueUpdate(op agents.PresenceOp) {
	s.updMu.Lock()
	if _, waiting := s.updates[op.Conn]; waiting {
		s.updates[op.Conn] = op.Info
		s.updMu.Unlock()
		s.m.presenceCoalesced.Inc()
		return
	}
	s.updates[op.Conn] = op.Info
	s.updMu.Unlock()
	if !s.queue(op) {
		s.updMu.Lock()
		delete(s.updates, op.Conn)
		s.updMu.Unlock()
	}
}

// resolve gives a queued update the latest content its link reported.
func (s *Server) resolve(op agents.PresenceOp) agents.PresenceOp {
	if op.Kind != agents.Update {
		return op
	}
	s.updMu.Lock()
	defer s.updMu.Unlock()
	if info, ok := s.updates[op.Conn]; ok {
		op.Info = info
		delete(s.updates, op.Conn)
	}
	return op
}

// writePresence commits queued presence changes through Raft, batching
// what arrives within presenceFlushInterval into one entry.
func (s *Server) writePresence() {
	for {
		var batch []agents.PresenceOp
		select {
		case <-s.ctx.Done():
			return
		case op := <-s.presence:
			batch = append(batch, op)
		}
		deadline := time.NewTimer(presenceFlushInterval)
	collect:
		for len(batch) < agents.MaxPresenceOps {
			select {
			case op := <-s.presence:
				batch = append(batch, op)
			case <-deadline.C:
				break collect
			case <-s.ctx.Done():
				deadline.Stop()
				return
			}
		}
		deadline.Stop()
		// Late, so that reports arriving while the batch filled are
		// folded into it.
		for i := range batch {
			batch[i] = s.resolve(batch[i])
		}
		s.commitPresence(batch)
	}
}

func (s *Server) commitPresence(batch []agents.PresenceOp) {
	cmd, err := agents.Op{Presence: batch}.Encode()
	if err != nil {
		s.logger.Error("dropping presence changes the FSM would refuse", "err", err, "changes", len(batch))
		return
	}
	backoff := 250 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		res, err := s.raft.Apply(ctx, cmd)
		cancel()
		switch {
		case err == nil && res.Err != nil:
			s.logger.Error("the FSM refused presence changes", "err", res.Err, "changes", len(batch))
			return
		case err == nil:
			s.m.presenceWrites.Add(float64(len(batch)))
			s.afterPresence(res.Value)
			return
		case s.ctx.Err() != nil:
			return
		case errors.Is(err, raft.ErrBadCommand):
			s.logger.Error("the FSM refused presence changes", "err", err, "changes", len(batch))
			return
		}
		// No leader, or the outcome is unknown: presence changes are
		// idempotent, so retry them.
		s.logger.Debug("recording agent presence failed; retrying", "err", err, "changes", len(batch))
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// afterPresence audits what the FSM flagged: a certificate used from two
// addresses or a new one, an agent refusing a stale fencing token.
func (s *Server) afterPresence(v []byte) {
	var res agents.Result
	if json.Unmarshal(v, &res) != nil {
		return
	}
	for _, f := range res.Flags {
		if f.InstanceUID != "" {
			s.assignInstanceUID(f.Agent, f.InstanceUID)
		}
		if f.Repeat {
			continue
		}
		s.m.flags.WithLabelValues(f.Flag.Kind).Inc()
		s.logger.Warn("flagged an agent certificate", "agent", f.Agent, "flag", f.Flag.Kind, "detail", f.Flag.Detail)
		s.audit("agent.flagged", "agent/"+f.Agent, f.Tenant, f.Flag)
	}
	for _, r := range res.Refused {
		s.logger.Warn("an agent refused a stale dispatch", "agent", r.Agent, "dispatch", r.Status.Dispatch, "token", r.Status.Token, "error", r.Status.Error)
		s.audit("agent.dispatch_refused", "agent/"+r.Agent, r.Tenant, r.Status)
	}
}

// audit commits an audited record-only change in the background.
func (s *Server) audit(action, entity, tenant string, detail any) {
	if s.cfg.Commit == nil || s.ctx.Err() != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		defer cancel()
		if _, err := s.cfg.Commit(ctx, "node/"+s.cfg.NodeID, action, entity, tenant, detail, nil); err != nil {
			s.logger.Warn("could not record an agent event in the audit log", "action", action, "entity", entity, "err", err)
		}
	}()
}
