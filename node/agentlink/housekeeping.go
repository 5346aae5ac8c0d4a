package agentlink

import (
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// housekeeping advertises this node's agent count in gossip (at most
// once a second) and confirms the agents it holds through Raft.
func (s *Server) housekeeping() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastCount := int64(-1)
	lastSeen := s.cfg.Now()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		if n := s.count.Load(); n != lastCount {
			lastCount = n
			s.raft.SetMeta(func(m *raft.NodeMeta) { m.Agents = int(n) })
		}
		if now := s.cfg.Now(); now.Sub(lastSeen) >= agents.SeenEvery {
			lastSeen = now
			s.confirmSeen(now.UTC())
			s.closeStale(now)
			s.pruneRates(now)
		}
	}
}

func (s *Server) confirmSeen(now time.Time) {
	s.mu.Lock()
	ids := make([]string, 0, len(s.links))
	for id := range s.links {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	const chunk = 2000
	for len(ids) > 0 {
		n := min(chunk, len(ids))
		s.queue(agents.PresenceOp{Kind: agents.Seen, Node: s.cfg.NodeID, At: now, Agents: ids[:n]})
		ids = ids[n:]
	}
}

// closeStale closes links whose certificate is no longer the agent's
// (renewed or revoked) for longer than the retire grace: the commit
// notices do it at once, this catches what they miss (a node that caught
// up from a snapshot sees no notices).
func (s *Server) closeStale(now time.Time) {
	ls := s.snapshot()
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		rd := agents.Reader{Tx: tx}
		for _, l := range ls {
			a, ok := rd.Agent(l.agent.ID)
			// The current certificate's issue time, near enough: when the
			// renewal that replaced the link's happened.
			renewed := a.CertExpires.Add(-s.cfg.Lifetime)
			if ok && (a.Revoked || a.Fingerprint != l.fp && now.Sub(renewed) > s.cfg.RetireGrace) {
				s.logger.Info("closing a link on a revoked or replaced certificate", "agent", a.ID, "revoked", a.Revoked)
				go func() { _ = l.conn.Disconnect() }()
			}
		}
		return nil
	})
}

// pruneRates forgets rate-limit stamps older than a minute, so that
// refusals from many addresses do not grow them without bound.
func (s *Server) pruneRates(now time.Time) {
	for _, m := range []*sync.Map{&s.logRate, &s.auditRate} {
		m.Range(func(k, v any) bool {
			if now.Sub(v.(time.Time)) >= time.Minute {
				m.Delete(k)
			}
			return true
		})
	}
}

// auditOnce records a security-relevant event at most once a minute per
// key, so a misbehaving agent cannot flood the audit log.
func (s *Server) auditOnce(key, action, entity, tenant string, detail any) {
	now := s.cfg.Now()
	if prev, ok := s.auditRate.Load(key); ok && now.Sub(prev.(time.Time)) < time.Minute {
		return
	}
	s.auditRate.Store(key, now)
	s.audit(action, entity, tenant, detail)
}
