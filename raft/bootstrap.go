package raft

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	hraft "github.com/hashicorp/raft"
)

func (r *Region) startGossip() error {
	host, port, _ := net.SplitHostPort(r.cfg.GossipBind)
	p, _ := strconv.Atoi(port)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{host}, BindPort: p,
		Logger: slogStd(r.logger.With("component", "gossip")),
	})
	if err != nil {
		return bindError("gossip.bind", r.cfg.GossipBind, err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = r.cfg.NodeID
	mc.Transport = nt
	mc.SecretKey = r.cfg.GossipKey
	mc.Delegate = r.meta
	mc.Events = r.members
	mc.Logger = slogStd(r.logger.With("component", "gossip"))
	advHost, advPort := host, nt.GetAutoBindPort()
	if r.cfg.GossipAdvertise != "" {
		h, ps, _ := net.SplitHostPort(r.cfg.GossipAdvertise)
		advHost = h
		advPort, _ = strconv.Atoi(ps)
	}
	if ip := net.ParseIP(advHost); ip == nil || ip.IsUnspecified() {
		nt.Shutdown()
		return fmt.Errorf("gossip.bind %s: set gossip.advertise to an address peers can reach", r.cfg.GossipBind)
	}
	mc.BindAddr, mc.BindPort = host, nt.GetAutoBindPort()
	mc.AdvertiseAddr, mc.AdvertisePort = advHost, advPort
	r.gossipAddr = net.JoinHostPort(advHost, strconv.Itoa(advPort))
	r.ml, err = memberlist.Create(mc)
	if err != nil {
		nt.Shutdown()
		return fmt.Errorf("start gossip: %w", err)
	}
	return nil
}

// discoveryLoop joins the seeds, bootstraps a new region when
// BootstrapExpect nodes are present, and (on the leader) adds newly seen
// nodes as non-voters.
func (r *Region) discoveryLoop() {
	defer r.wg.Done()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	joined := len(r.cfg.Seeds) == 0
	lastWait := -1
	for {
		if !joined {
			joined = r.joinSeeds()
		}
		if !r.meta.get().InRegion {
			lastWait = r.tryBootstrap(lastWait)
		} else if r.IsLeader() {
			r.addNewServers()
		}
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		case <-r.members.changed:
		}
	}
}

func (r *Region) joinSeeds() bool {
	var seeds []string
	for _, s := range r.cfg.Seeds {
		if s != r.gossipAddr {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return true
	}
	n, err := r.ml.Join(seeds)
	if n > 0 {
		r.logger.Info("joined gossip", "seeds_reached", n)
		return true
	}
	if r.refused.first("join|" + fmt.Sprint(err)) {
		r.logger.Warn("cannot reach any gossip seed yet; retrying every 500ms", "seeds", seeds, "err", err)
	}
	return false
}

// regionMembers returns live members of this region with usable metadata,
// logging once about nodes gossiping from another region.
func (r *Region) regionMembers(status MemberStatus) []Member {
	var out []Member
	for _, m := range r.members.list() {
		if m.Status != status {
			continue
		}
		if m.MetaErr != "" || m.Meta.Region != r.cfg.Region || m.Meta.RaftAddr == "" {
			if r.refused.first("region|" + m.ID + "|" + m.Meta.Region + m.MetaErr) {
				r.logger.Warn("ignoring gossip member that is not a node of this region", "member", m.ID, "its_region", m.Meta.Region, "meta_err", m.MetaErr)
			}
			continue
		}
		out = append(out, m)
	}
	return out
}

// tryBootstrap bootstraps a new region once exactly BootstrapExpect nodes,
// none yet in a region, are visible and pass mutual TLS. Every one of them
// computes the same server set, so their bootstraps agree.
func (r *Region) tryBootstrap(lastWait int) int {
	if cfg, err := r.Configuration(); err == nil && len(cfg) > 0 {
		r.SetMeta(func(m *NodeMeta) { m.InRegion = true })
		return lastWait
	}
	alive := r.regionMembers(MemberAlive)
	for _, m := range alive {
		if m.Meta.InRegion {
			if r.refused.first("wait-add") {
				r.logger.Info("found an existing region; waiting for its leader to add this node", "via", m.ID)
			}
			return lastWait
		}
	}
	want := r.cfg.BootstrapExpect
	if len(alive) < want {
		if len(alive) != lastWait {
			r.logger.Info("waiting for nodes to bootstrap the region", "seen", len(alive), "bootstrap_expect", want)
		}
		return len(alive)
	}
	if len(alive) > want {
		if r.refused.first(fmt.Sprintf("toomany|%d", len(alive))) {
			r.logger.Error("more nodes than bootstrap_expect are waiting; refusing to bootstrap an ambiguous region (set the same bootstrap_expect on every node)",
				"seen", len(alive), "bootstrap_expect", want)
		}
		return len(alive)
	}
	var servers []hraft.Server
	for _, m := range alive {
		if m.ID != r.cfg.NodeID {
			if err := r.probe(m); err != nil {
				return len(alive)
			}
		}
		servers = append(servers, hraft.Server{ID: hraft.ServerID(m.ID), Address: hraft.ServerAddress(m.Meta.RaftAddr), Suffrage: hraft.Voter})
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	err := r.await(r.raft.BootstrapCluster(hraft.Configuration{Servers: servers}))
	if err != nil && r.ctx.Err() != nil {
		return len(alive) // stopping
	}
	if err != nil && !errors.Is(err, hraft.ErrCantBootstrap) {
		r.logger.Error("bootstrap failed; will retry", "err", err)
		return len(alive)
	}
	r.logger.Info("region bootstrapped", "voters", len(servers))
	r.SetMeta(func(m *NodeMeta) { m.InRegion = true })
	return len(alive)
}

// probe checks that a peer completes mutual TLS with this region's CA,
// presents a certificate for the node id it gossips, and answers the stats
// RPC. A failure is logged once per peer and error.
func (r *Region) probe(m Member) error {
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	defer cancel()
	_, err := r.fetchStats(ctx, m.Meta.RaftAddr, m.ID)
	key := "probe|" + m.ID
	if err != nil {
		if r.refused.first(key + "|" + err.Error()) {
			r.logger.Warn("not adding node: it failed the mutual-TLS check (it needs a certificate from this region's CA for its own node id)", "peer", m.ID, "raft_addr", m.Meta.RaftAddr, "err", err)
		}
		return err
	}
	return nil
}

// addNewServers adds live region members missing from the Raft
// configuration as non-voters; autopilot promotes them once stable.
func (r *Region) addNewServers() {
	conf, err := r.Configuration()
	if err != nil {
		return
	}
	have := map[string]hraft.Server{}
	for _, s := range conf {
		have[string(s.ID)] = s
	}
	for _, m := range r.regionMembers(MemberAlive) {
		cur, ok := have[m.ID]
		if ok && string(cur.Address) == m.Meta.RaftAddr {
			continue
		}
		if err := r.probe(m); err != nil {
			continue
		}
		id, addr := hraft.ServerID(m.ID), hraft.ServerAddress(m.Meta.RaftAddr)
		if ok && cur.Suffrage == hraft.Voter {
			// A voter that moved keeps its vote; AddVoter updates its address.
			if err := r.await(r.raft.AddVoter(id, addr, 0, 5*time.Second)); err != nil {
				if r.ctx.Err() != nil {
					return
				}
				r.logger.Warn("updating node address failed; will retry", "peer", m.ID, "err", err)
			} else {
				r.logger.Info("node moved; updated its Raft address", "peer", m.ID, "raft_addr", addr)
			}
			continue
		}
		if err := r.await(r.raft.AddNonvoter(id, addr, 0, 5*time.Second)); err != nil {
			if r.ctx.Err() != nil {
				return
			}
			r.logger.Warn("adding node failed; will retry", "peer", m.ID, "err", err)
			continue
		}
		r.logger.Info("added node to the region as a non-voter; autopilot promotes it once it is stable", "peer", m.ID, "raft_addr", m.Meta.RaftAddr)
	}
}
