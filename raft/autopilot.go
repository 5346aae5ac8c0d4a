package raft

import (
	"context"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// apDelegate is autopilot's view of the region: servers come from gossip,
// health from the stats RPC. It runs only on the leader.
type apDelegate struct{ r *Region }

var _ autopilot.ApplicationIntegration = (*apDelegate)(nil)

func (d *apDelegate) AutopilotConfig() *autopilot.Config {
	t := d.r.cfg.Tuning
	threshold := 4 * t.HeartbeatTimeout
	if threshold < 2*time.Second {
		threshold = 2 * time.Second
	}
	return &autopilot.Config{
		CleanupDeadServers:      true,
		LastContactThreshold:    threshold,
		MaxTrailingLogs:         1000,
		MinQuorum:               uint(t.MinQuorum),
		ServerStabilizationTime: t.ServerStabilization,
	}
}

func (d *apDelegate) NotifyState(s *autopilot.State) {
	if s == nil {
		return
	}
	d.r.metrics.setAutopilot(s.Healthy, s.FailureTolerance)
}

func (d *apDelegate) FetchServerStats(ctx context.Context, servers map[hraft.ServerID]*autopilot.Server) map[hraft.ServerID]*autopilot.ServerStats {
	out := map[hraft.ServerID]*autopilot.ServerStats{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st Stats
			if string(id) == d.r.cfg.NodeID {
				st = d.r.localStats()
			} else {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				var err error
				if st, err = d.r.fetchStats(cctx, string(srv.Address), string(id)); err != nil {
					return
				}
			}
			lc := time.Duration(st.LastContactMs) * time.Millisecond
			if st.LastContactMs < 0 {
				lc = time.Hour
			}
			mu.Lock()
			out[id] = &autopilot.ServerStats{LastContact: lc, LastTerm: st.LastTerm, LastIndex: st.LastIndex}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// KnownServers reports every server of the region with its gossip status.
// A server that failed or left is reported alive until it has been gone for
// DeadServerGrace, so a reboot does not cost it its seat; a server in the
// Raft configuration that gossip has never seen gets the same grace,
// counted from when this leader first missed it.
func (d *apDelegate) KnownServers() map[hraft.ServerID]*autopilot.Server {
	r := d.r
	now := time.Now()
	grace := r.cfg.Tuning.DeadServerGrace
	_, leaderID := r.raft.LeaderWithID()
	out := map[hraft.ServerID]*autopilot.Server{}
	for _, m := range r.members.list() {
		if m.Meta.Region != r.cfg.Region || m.Meta.RaftAddr == "" {
			continue
		}
		// A node that left gracefully (SIGTERM) gets the same grace as a
		// failed one: a rolling restart must not cost a voter its seat.
		st := autopilot.NodeAlive
		if m.Status != MemberAlive && now.Sub(m.Since) >= grace {
			st = autopilot.NodeFailed
			if m.Status == MemberLeft {
				st = autopilot.NodeLeft
			}
		}
		if m.ID == r.cfg.NodeID {
			st = autopilot.NodeAlive
		}
		out[hraft.ServerID(m.ID)] = &autopilot.Server{
			ID: hraft.ServerID(m.ID), Name: m.ID, Address: hraft.ServerAddress(m.Meta.RaftAddr),
			NodeStatus: st, NodeType: autopilot.NodeVoter, RaftVersion: hraft.ProtocolVersionMax, IsLeader: hraft.ServerID(m.ID) == leaderID,
		}
	}
	conf, err := r.Configuration()
	if err != nil {
		return out
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, s := range conf {
		id := string(s.ID)
		seen[id] = true
		if _, ok := out[s.ID]; ok {
			delete(r.missingFrom, id)
			continue
		}
		since, ok := r.missingFrom[id]
		if !ok {
			since = now
			r.missingFrom[id] = now
		}
		st := autopilot.NodeAlive
		if now.Sub(since) >= grace {
			st = autopilot.NodeFailed
		}
		out[s.ID] = &autopilot.Server{ID: s.ID, Name: id, Address: s.Address, NodeStatus: st, NodeType: autopilot.NodeVoter, RaftVersion: hraft.ProtocolVersionMax, IsLeader: s.ID == leaderID}
	}
	for id := range r.missingFrom {
		if !seen[id] {
			delete(r.missingFrom, id)
		}
	}
	return out
}

func (d *apDelegate) RemoveFailedServer(srv *autopilot.Server) {
	r := d.r
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		// Through await: a future raft never answers after a shutdown
		// would otherwise keep Close waiting on r.wg for good (CI17).
		if err := r.await(r.raft.RemoveServer(srv.ID, 0, 5*time.Second)); err != nil {
			if r.ctx.Err() == nil {
				r.logger.Warn("removing dead server failed; autopilot will retry", "peer", string(srv.ID), "err", err)
			}
			return
		}
		r.logger.Warn("removed server from the region: unreachable for longer than raft.dead_server_grace", "peer", string(srv.ID), "status", string(srv.NodeStatus))
	}()
}
