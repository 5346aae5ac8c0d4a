// Package nodes is the shared test cluster one level up from
// internal/testcluster: whole Outpost nodes (node.Start: API, agent port,
// auth, lease, Raft over mutual TLS, bbolt, gossip) in the test process
// on loopback. The node package's tests build their regions here. It is
// a package of its own because internal/testcluster is imported by the
// lease and raft tests, below node.
package nodes

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/freeport"
	"github.com/outpost-mesh/outpost/internal/testcluster"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/pki"
)

// Region is the region name Config gives nodes.
const Region = "sec"

// GossipKey is the gossip key nodes get unless the options name one.
var GossipKey = bytes.Repeat([]byte{7}, 32)

// Node is a running node and the first region admin's credentials.
type Node struct {
	*node.Node
	Config          node.Config
	URL             string // the API's base URL
	Token, Password string // the first region admin's API token and password
	GossipKey       []byte
}

// Config is a single node's config in dir on free loopback ports: region
// Region, node n1, bootstrap_expect 1, log level warn.
func Config(t testing.TB, dir string) node.Config {
	t.Helper()
	addrs, err := freeport.Addrs("127.0.0.1", 3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.Region, cfg.NodeID, cfg.DataDir, cfg.BootstrapExpect = Region, "n1", dir, 1
	cfg.AdminTokenFile = filepath.Join(dir, "admin.token")
	cfg.HTTP.Bind, cfg.Raft.Bind, cfg.Gossip.Bind = addrs[0], addrs[1], addrs[2]
	cfg.Agents.Bind = "127.0.0.1:0"
	cfg.Log.Level = "warn"
	return cfg
}

// Start starts one node (opts.Keys is required), kills it when the test
// ends, and waits for the first admin's credentials.
func Start(t testing.TB, cfg node.Config, opts node.Options) *Node {
	t.Helper()
	if opts.GossipKey == nil {
		opts.GossipKey = GossipKey
	}
	n, err := node.Start(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Kill)
	tn := &Node{Node: n, Config: cfg, URL: n.APIURL(), GossipKey: opts.GossipKey}
	testcluster.WaitFor(t, 20*time.Second, "the first admin's credentials", func() bool {
		tok, err1 := os.ReadFile(cfg.AdminTokenFile)
		pw, err2 := os.ReadFile(n.AdminPasswordFile())
		tn.Token, tn.Password = strings.TrimSpace(string(tok)), strings.TrimSpace(string(pw))
		return err1 == nil && err2 == nil
	})
	return tn
}

// RegionConfig shapes a region of several nodes.
type RegionConfig struct {
	Nodes int // default 3
	// Options are every node's (Keys is required); CA, if nil, is made.
	Options node.Options
	// Configure, if set, adjusts node i's config (0-based).
	Configure func(i int, cfg *node.Config)
	// Started, if set, is told of node i once it runs.
	Started func(i int, n *Node)
}

// StartRegion starts a region of nodes n1… that find each other by
// gossip (each seeds from the next), sharing a CA, a gossip key and the
// first admin's token file; it waits until every node accepts that token
// (the file is written by whichever node led first; the others accept it
// once they applied the entry that stored it).
func StartRegion(t testing.TB, rc RegionConfig) []*Node {
	t.Helper()
	if rc.Nodes == 0 {
		rc.Nodes = 3
	}
	opts := rc.Options
	if opts.CA == nil {
		ca, err := pki.NewCA(Region)
		if err != nil {
			t.Fatal(err)
		}
		opts.CA = ca
	}
	if opts.GossipKey == nil {
		opts.GossipKey = GossipKey
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	cfgs := make([]node.Config, rc.Nodes)
	for i := range cfgs {
		cfg := Config(t, filepath.Join(dir, fmt.Sprintf("n%d", i+1)))
		cfg.NodeID, cfg.BootstrapExpect, cfg.AdminTokenFile = fmt.Sprintf("n%d", i+1), rc.Nodes, tokenFile
		if rc.Configure != nil {
			rc.Configure(i, &cfg)
		}
		cfgs[i] = cfg
	}
	for i := range cfgs {
		cfgs[i].Gossip.Seeds = []string{cfgs[(i+1)%len(cfgs)].Gossip.Bind}
	}
	var out []*Node
	for i, cfg := range cfgs {
		n, err := node.Start(cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Kill)
		tn := &Node{Node: n, Config: cfg, URL: n.APIURL(), GossipKey: opts.GossipKey}
		out = append(out, tn)
		if rc.Started != nil {
			rc.Started(i, tn)
		}
	}
	testcluster.WaitFor(t, 30*time.Second, "a leader and the first admin's token", func() bool {
		b, err := os.ReadFile(tokenFile)
		return err == nil && len(b) > 0
	})
	b, _ := os.ReadFile(tokenFile)
	for _, tn := range out {
		tn.Token = strings.TrimSpace(string(b))
	}
	testcluster.WaitFor(t, 10*time.Second, "every node to accept the first admin's token", func() bool {
		for _, tn := range out {
			if !accepts(tn.URL, tn.Token) {
				return false
			}
		}
		return true
	})
	return out
}
