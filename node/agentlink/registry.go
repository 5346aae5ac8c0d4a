package agentlink

import (
	"sort"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/node/agents"
)

// Count is the number of live agent connections here.
func (s *Server) Count() int { return int(s.count.Load()) }

func (s *Server) register(l *link) {
	s.mu.Lock()
	ls := s.links[l.agent.ID]
	if ls == nil {
		ls = map[*link]struct{}{}
		s.links[l.agent.ID] = ls
	}
	ls[l] = struct{}{}
	b := s.rates[l.agent.ID]
	if b == nil {
		b = &bucket{tokens: s.burst(), last: s.cfg.Now()}
		s.rates[l.agent.ID] = b
	}
	l.rate = b
	s.mu.Unlock()
	s.count.Add(1)
}

func (s *Server) unregister(l *link) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := s.links[l.agent.ID]
	if _, ok := ls[l]; !ok {
		return false
	}
	delete(ls, l)
	if len(ls) == 0 {
		delete(s.links, l.agent.ID)
		delete(s.rates, l.agent.ID)
	}
	s.count.Add(-1)
	return true
}

// snapshot returns every live link.
func (s *Server) snapshot() []*link {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*link, 0, s.count.Load())
	for _, ls := range s.links {
		for l := range ls {
			out = append(out, l)
		}
	}
	return out
}

func (s *Server) linksOf(agentID string) []*link {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*link, 0, len(s.links[agentID]))
	for l := range s.links[agentID] {
		out = append(out, l)
	}
	return out
}

// Disconnect closes the agent's live connections here (revocation).
func (s *Server) Disconnect(agentID string) int {
	ls := s.linksOf(agentID)
	for _, l := range ls {
		_ = l.conn.Disconnect()
	}
	if len(ls) > 0 {
		s.logger.Info("closed a revoked agent's connections", "agent", agentID, "connections", len(ls))
	}
	return len(ls)
}

// OnAgentsEvent is the agents FSM's commit notice (wired by the node).
func (s *Server) OnAgentsEvent(ev agents.Event) {
	if ev.Revoked != "" {
		s.Disconnect(ev.Revoked)
	}
	if r := ev.Retired; r != nil {
		// The renewed agent moves its link to the new certificate on its
		// own; what still uses the old one after the grace is closed.
		time.AfterFunc(s.cfg.RetireGrace, func() {
			if s.ctx.Err() == nil {
				s.closeRetired(r.Agent, r.Fingerprint)
			}
		})
	}
}

// closeRetired closes the agent's links that use a retired certificate.
func (s *Server) closeRetired(agentID, fp string) {
	n := 0
	for _, l := range s.linksOf(agentID) {
		if l.fp == fp {
			_ = l.conn.Disconnect()
			n++
		}
	}
	if n > 0 {
		s.logger.Info("closed links on a renewed agent's retired certificate", "agent", agentID, "connections", n)
	}
}

// Live fills in what this node knows of a connected agent.
func (s *Server) Live(a *api.Agent) {
	ls := s.linksOf(a.ID)
	if len(ls) == 0 {
		return
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].since.After(ls[j].since) })
	l := ls[0]
	l.mu.Lock()
	defer l.mu.Unlock()
	a.Node, a.SourceAddr, a.LastSeen = s.cfg.NodeID, l.addr, l.lastSeen
	a.RTTMs, a.Mode, a.Health = l.info.RTT(), orUnknown(l.info.Mode), l.info.HealthText()
	if l.info.Mode == "procfs" {
		a.ModeReason = l.info.ModeReason
	}
	a.Capabilities = l.info.CapabilityNames()
	if l.info.Host != "" {
		a.Host = l.info.Host
	}
	if l.info.Version != "" {
		a.Version = l.info.Version
	}
	if len(ls) > 1 {
		a.Connections = len(ls)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
