package raft

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

// NodeStatus is one node of the region as this node sees it.
type NodeStatus struct {
	ID            string       `json:"id"`
	Address       string       `json:"address"`    // Raft address
	Suffrage      string       `json:"suffrage"`   // voter, nonvoter, or none (gossip only)
	RaftState     string       `json:"raft_state"` // leader, follower, candidate, shutdown, or unreachable
	LastContactMs int64        `json:"last_contact_ms"`
	AppliedIndex  uint64       `json:"applied_index"`
	CommitIndex   uint64       `json:"commit_index"` // the highest index the node knows committed
	Gossip        MemberStatus `json:"gossip"`
	APIURL        string       `json:"api_url,omitempty"`
	AgentURL      string       `json:"agent_url,omitempty"`
	FederationURL string       `json:"federation_addr,omitempty"`
	Agents        int          `json:"agents"`
	Error         string       `json:"error,omitempty"`
}

// Status is the region as this node sees it.
type Status struct {
	Region string       `json:"region"`
	Node   string       `json:"node"` // the node that answered
	Leader string       `json:"leader"`
	Nodes  []NodeStatus `json:"nodes"`
}

// Status gathers every known node's stats (Raft configuration and gossip
// members) over the node RPC port, one second per peer at most.
func (r *Region) Status(ctx context.Context) Status {
	st := Status{Region: r.cfg.Region, Node: r.cfg.NodeID}
	_, lid := r.raft.LeaderWithID()
	st.Leader = string(lid)
	byID := map[string]*NodeStatus{}
	if conf, err := r.Configuration(); err == nil {
		for _, s := range conf {
			suf := "voter"
			if s.Suffrage != hraft.Voter {
				suf = "nonvoter"
			}
			byID[string(s.ID)] = &NodeStatus{ID: string(s.ID), Address: string(s.Address), Suffrage: suf}
		}
	}
	for _, m := range r.members.list() {
		if m.Meta.Region != r.cfg.Region {
			continue
		}
		ns, ok := byID[m.ID]
		if !ok {
			ns = &NodeStatus{ID: m.ID, Address: m.Meta.RaftAddr, Suffrage: "none"}
			byID[m.ID] = ns
		}
		ns.Gossip = m.Status
		ns.APIURL, ns.AgentURL, ns.FederationURL, ns.Agents = m.Meta.APIURL, m.Meta.AgentURL, m.Meta.FederationURL, m.Meta.Agents
	}
	var wg sync.WaitGroup
	for _, ns := range byID {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s Stats
			if ns.ID == r.cfg.NodeID {
				s = r.localStats()
			} else {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				var err error
				if s, err = r.fetchStats(cctx, ns.Address, ns.ID); err != nil {
					ns.RaftState, ns.LastContactMs, ns.Error = "unreachable", -1, err.Error()
					return
				}
			}
			ns.RaftState, ns.LastContactMs, ns.AppliedIndex, ns.CommitIndex = s.RaftState, s.LastContactMs, s.AppliedIndex, s.CommitIndex
		}()
	}
	wg.Wait()
	for _, ns := range byID {
		if ns.Gossip == "" {
			ns.Gossip = "unknown"
		}
		st.Nodes = append(st.Nodes, *ns)
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].ID < st.Nodes[j].ID })
	return st
}

// ReadBarrier makes the next local read linearizable: on the leader it
// confirms leadership with a quorum and waits for the FSM to catch up; on
// a follower it asks the leader for its commit index (the leader confirms
// its leadership first) and waits until the local FSM has applied it.
func (r *Region) ReadBarrier(ctx context.Context) error {
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if r.IsLeader() {
		if err := r.VerifyLeader(); err != nil {
			return fmt.Errorf("confirm leadership: %w", err)
		}
		return r.Barrier(timeout)
	}
	addr, _ := r.raft.LeaderWithID()
	if addr == "" {
		return ErrNoLeader
	}
	idx, err := r.fetchReadIndex(ctx, string(addr))
	if err != nil {
		return fmt.Errorf("read index from leader: %w", err)
	}
	err = r.fsm.waitApplied(ctx, r.ctx.Done(), idx)
	if err != nil && !errors.Is(err, ErrShutdown) {
		return fmt.Errorf("waiting to apply index %d: %w", idx, err)
	}
	return err
}
