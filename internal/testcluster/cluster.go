// Package testcluster is the one real test region the tests of raft,
// lease and node share, as hashicorp/raft's testing.go serves its suite:
// N nodes on loopback with Raft over mutual TLS, bbolt state files,
// raft-wal logs and memberlist gossip, each node logging to t.Log. Hooks
// let a package run its own services on every node (the lease manager,
// a whole node). Only tests import it (a test in internal/pkgdoc keeps
// it out of the binaries).
package testcluster

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// DefaultRegion names a test region.
const DefaultRegion = "test-region"

// Config shapes a cluster. The zero value is three nodes of the fast
// tuning, started and led.
type Config struct {
	Nodes  int    // default 3
	Region string // default DefaultRegion
	// Tuning, if set, replaces FastTuning.
	Tuning *raft.Tuning
	// Configure, if set, completes a node's Raft config before it opens
	// (FSM handlers, a leader-change hook).
	Configure func(n *Node, cfg *raft.Config)
	// Started, if set, runs after a node opened (services on top of
	// Raft); Stopping before it closes, Stopped after.
	Started, Stopping, Stopped func(n *Node)
	// NoLeader skips waiting for a leader after the first start.
	NoLeader bool
}

// FastTuning is raft.DefaultTuning with the waits tests cannot afford.
func FastTuning() raft.Tuning {
	t := raft.DefaultTuning()
	t.ServerStabilization = time.Second
	t.DeadServerGrace = 2 * time.Second
	return t
}

// Cluster is a test region.
type Cluster struct {
	t      testing.TB
	cfg    Config
	Region string
	CA     *pki.CA
	// Key is the gossip key given to nodes started from now on.
	Key []byte
	// Tuning is given to nodes started from now on.
	Tuning raft.Tuning
	// CertIDs issues node id's certificate for another id (impostor
	// tests), for nodes started from now on.
	CertIDs map[string]string

	mu    sync.Mutex
	nodes map[string]*Node
	order []string
	seed  string
}

// Node is one member of a cluster.
type Node struct {
	ID, Dir              string
	RaftAddr, GossipAddr string
	Store                *storage.Store
	// Raft is nil while the node is stopped.
	Raft     *raft.Region
	Registry *prometheus.Registry
	Logs     *Logs
	// Value holds what the caller's Started hook attached (a lease
	// manager, a node's services).
	Value any
}

// New starts cfg.Nodes nodes (n1, n2, …) that find each other by gossip
// from the first node's address and bootstrap together, waits for a
// leader, and stops them all when the test ends.
func New(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	ca, err := pki.NewCA(cfg.Region)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	c := &Cluster{t: t, cfg: cfg, Region: cfg.Region, CA: ca, Key: key, Tuning: FastTuning(), nodes: map[string]*Node{}}
	if cfg.Tuning != nil {
		c.Tuning = *cfg.Tuning
	}
	t.Cleanup(c.CloseAll)
	for i := 1; i <= cfg.Nodes; i++ {
		c.Start(fmt.Sprintf("n%d", i))
	}
	if !cfg.NoLeader {
		c.Leader(10 * time.Second)
	}
	return c
}

// Start opens node id (on its old data dir and ports if it ran before).
func (c *Cluster) Start(id string) *Node { c.t.Helper(); return c.StartWith(id, c.CA) }

// StartWith is Start with a node certificate from ca (a stranger's CA).
func (c *Cluster) StartWith(id string, ca *pki.CA) *Node {
	c.t.Helper()
	c.mu.Lock()
	old := c.nodes[id]
	seed := c.seed
	certID := id
	if c.CertIDs[id] != "" {
		certID = c.CertIDs[id]
	}
	c.mu.Unlock()
	n := &Node{ID: id, Dir: filepath.Join(c.t.TempDir(), id), RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", Logs: &Logs{}}
	if old != nil {
		n.Dir, n.RaftAddr, n.GossipAddr = old.Dir, old.RaftAddr, old.GossipAddr
	}
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	store, err := storage.Open(filepath.Join(n.Dir, "state.db"), storage.Options{Region: c.Region})
	if err != nil {
		c.t.Fatalf("open the store of %s: %v", id, err)
	}
	cert, err := ca.IssueNode(c.Region, certID, []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		store.Close()
		c.t.Fatal(err)
	}
	n.Registry = prometheus.NewRegistry()
	cfg := raft.Config{
		Region: c.Region, NodeID: id, DataDir: n.Dir,
		RaftBind: n.RaftAddr, GossipBind: n.GossipAddr, GossipKey: c.Key, BootstrapExpect: c.cfg.Nodes,
		TLS: pki.NodeTLS(ca, cert, c.Region), Tuning: c.Tuning,
		PeerID:     func(x *x509.Certificate) (string, error) { return pki.NodeID(x, c.Region) },
		Logger:     n.Logs.Logger(c.t).With("node", id),
		Registerer: n.Registry,
	}
	if seed != "" {
		cfg.Seeds = []string{seed}
	}
	if c.cfg.Configure != nil {
		c.cfg.Configure(n, &cfg)
	}
	// A restarted node may find its old port held for a moment: retry.
	var r *raft.Region
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err = raft.Open(cfg, store)
		if err == nil || old == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		store.Close()
		c.t.Fatalf("open node %s: %v", id, err)
	}
	n.Store, n.Raft = store, r
	n.RaftAddr, n.GossipAddr = r.RaftAddr(), r.GossipAddr()
	if c.cfg.Started != nil {
		c.cfg.Started(n)
	}
	c.mu.Lock()
	if old == nil {
		c.order = append(c.order, id)
	}
	c.nodes[id] = n
	if c.seed == "" {
		c.seed = r.GossipAddr()
	}
	c.mu.Unlock()
	return n
}

// Kill stops node id abruptly (no leave, no handoff), keeping its data
// dir and ports for Restart.
func (c *Cluster) Kill(id string) *Node {
	c.mu.Lock()
	n := c.nodes[id]
	if n == nil || n.Raft == nil {
		c.mu.Unlock()
		return n
	}
	r := n.Raft
	n.Raft = nil
	c.mu.Unlock()
	if c.cfg.Stopping != nil {
		c.cfg.Stopping(n)
	}
	r.Close()
	if c.cfg.Stopped != nil {
		c.cfg.Stopped(n)
	}
	n.Store.Close()
	return n
}

// Handles returns n's Raft group and store while it runs, or false; safe
// against a concurrent Kill.
func (c *Cluster) Handles(n *Node) (*raft.Region, *storage.Store, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.Raft, n.Store, n.Raft != nil
}

// T is the test the cluster belongs to.
func (c *Cluster) T() testing.TB { return c.t }

// Restart opens a killed node again on its data dir and ports.
func (c *Cluster) Restart(id string) *Node { c.t.Helper(); return c.Start(id) }

// CloseAll stops every node.
func (c *Cluster) CloseAll() {
	for _, n := range c.Live() {
		c.Kill(n.ID)
	}
}

// Node returns node id as last started (nil if never).
func (c *Cluster) Node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// Live returns the running nodes, in the order they first started.
func (c *Cluster) Live() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, id := range c.order {
		if n := c.nodes[id]; n.Raft != nil {
			out = append(out, n)
		}
	}
	return out
}

// Leader waits up to timeout for a live node that leads, and returns it.
func (c *Cluster) Leader(timeout time.Duration) *Node {
	c.t.Helper()
	var leader *Node
	WaitFor(c.t, timeout, "a leader", func() bool {
		for _, n := range c.Live() {
			if n.Raft.IsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// WaitApplied waits until every live node has applied index.
func (c *Cluster) WaitApplied(index uint64) {
	c.t.Helper()
	WaitFor(c.t, 10*time.Second, fmt.Sprintf("all nodes at index %d", index), func() bool {
		for _, n := range c.Live() {
			if n.Raft.AppliedIndex() < index {
				return false
			}
		}
		return true
	})
}

// Settle waits until a leader answers a barrier and every live node has
// applied what the leader has.
func (c *Cluster) Settle(timeout time.Duration) {
	c.t.Helper()
	WaitFor(c.t, timeout, "the region to settle", func() bool {
		var leader *Node
		for _, n := range c.Live() {
			if n.Raft.IsLeader() {
				leader = n
			}
		}
		if leader == nil || leader.Raft.Barrier(time.Second) != nil {
			return false
		}
		want := leader.Raft.AppliedIndex()
		for _, n := range c.Live() {
			if n.Raft.AppliedIndex() < want {
				return false
			}
		}
		return true
	})
}

// Partition cuts node id off from every peer on the Raft port (both
// directions) until Heal; gossip still flows.
func (c *Cluster) Partition(id string) { c.Node(id).Raft.Isolate() }

// Heal lifts the faults on node id.
func (c *Cluster) Heal(id string) { c.Node(id).Raft.Heal() }

// WaitFor polls cond until it holds, failing the test after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
