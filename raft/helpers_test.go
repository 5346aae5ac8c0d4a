package raft_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// memberlist and raft-wal leave short-lived timers that end on their own.
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	)
}

const region = "test-region"

// testRegion is a set of real nodes on loopback: real TLS, real bbolt,
// real raft-wal, real memberlist.
type testRegion struct {
	t      *testing.T
	ca     *pki.CA
	key    []byte
	tuning raft.Tuning
	walSeg int // raft-wal segment size; 0 for the default
	// certIDs issues a node's certificate for another id (impostor tests).
	certIDs map[string]string
	expect  int
	mu      sync.Mutex
	nodes   map[string]*testNode
	seed    string
}

type testNode struct {
	id         string
	dir        string
	raftAddr   string
	gossipAddr string
	store      *storage.Store
	r          *raft.Region
	logs       *logCapture
}

func fastTuning() raft.Tuning {
	t := raft.DefaultTuning()
	t.ServerStabilization = time.Second
	t.DeadServerGrace = 2 * time.Second
	return t
}

// newRegion starts n nodes that find each other by gossip from the first
// node's address alone and bootstrap with bootstrap_expect n.
func newRegion(t *testing.T, n int) *testRegion {
	t.Helper()
	return newRegionTuned(t, n, nil)
}

// newRegionTuned is newRegion with a change to the test tuning.
func newRegionTuned(t *testing.T, n int, tune func(*testRegion)) *testRegion {
	t.Helper()
	ca, err := pki.NewCA(region)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	tr := &testRegion{t: t, ca: ca, key: key, tuning: fastTuning(), expect: n, nodes: map[string]*testNode{}}
	if tune != nil {
		tune(tr)
	}
	t.Cleanup(tr.closeAll)
	for i := 1; i <= n; i++ {
		tr.start(fmt.Sprintf("n%d", i), "", "")
	}
	tr.waitLeader(10 * time.Second)
	return tr
}

// start opens node id; raftAddr/gossipAddr reuse a previous node's ports.
func (tr *testRegion) start(id, raftAddr, gossipAddr string) *testNode {
	tr.t.Helper()
	return tr.startWith(id, tr.ca, raftAddr, gossipAddr)
}

func (tr *testRegion) startWith(id string, ca *pki.CA, raftAddr, gossipAddr string) *testNode {
	tr.t.Helper()
	dir := filepath.Join(tr.t.TempDir(), id)
	tr.mu.Lock()
	if old, ok := tr.nodes[id]; ok {
		dir = old.dir
	}
	tr.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tr.t.Fatal(err)
	}
	store, err := storage.Open(filepath.Join(dir, "state.db"), storage.Options{Region: region})
	if err != nil {
		tr.t.Fatalf("open store: %v", err)
	}
	certID := id
	if tr.certIDs != nil && tr.certIDs[id] != "" {
		certID = tr.certIDs[id]
	}
	cert, err := ca.IssueNode(region, certID, []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		tr.t.Fatal(err)
	}
	if raftAddr == "" {
		raftAddr = "127.0.0.1:0"
	}
	if gossipAddr == "" {
		gossipAddr = "127.0.0.1:0"
	}
	logs := &logCapture{}
	cfg := raft.Config{
		Region: region, NodeID: id, DataDir: dir,
		RaftBind: raftAddr, GossipBind: gossipAddr,
		GossipKey: tr.key, BootstrapExpect: tr.expect,
		TLS: pki.NodeTLS(ca, cert, region), Tuning: tr.tuning,
		PeerID: func(c *x509.Certificate) (string, error) { return pki.NodeID(c, region) },
		Logger: slog.New(newTeeHandler(tr.t, logs)),
	}
	if tr.seed != "" {
		cfg.Seeds = []string{tr.seed}
	}
	if tr.walSeg > 0 {
		raft.SetWALSegmentSize(&cfg, tr.walSeg)
	}
	r, err := raft.Open(cfg, store)
	if err != nil {
		store.Close()
		tr.t.Fatalf("open node %s: %v", id, err)
	}
	n := &testNode{id: id, dir: dir, raftAddr: r.RaftAddr(), gossipAddr: r.GossipAddr(), store: store, r: r, logs: logs}
	tr.mu.Lock()
	tr.nodes[id] = n
	if tr.seed == "" {
		tr.seed = r.GossipAddr()
	}
	tr.mu.Unlock()
	return n
}

// kill stops a node abruptly (no leave, no handoff), keeping its data dir.
func (tr *testRegion) kill(id string) *testNode {
	tr.mu.Lock()
	n := tr.nodes[id]
	tr.mu.Unlock()
	n.r.Close()
	n.store.Close()
	n.r = nil
	return n
}

// restart reopens a killed node on its old ports and data dir.
func (tr *testRegion) restart(id string) *testNode {
	tr.t.Helper()
	tr.mu.Lock()
	old := tr.nodes[id]
	tr.mu.Unlock()
	return tr.start(id, old.raftAddr, old.gossipAddr)
}

func (tr *testRegion) closeAll() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, n := range tr.nodes {
		if n.r != nil {
			n.r.Close()
			n.store.Close()
			n.r = nil
		}
	}
}

func (tr *testRegion) live() []*testNode {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []*testNode
	for _, n := range tr.nodes {
		if n.r != nil {
			out = append(out, n)
		}
	}
	return out
}

func (tr *testRegion) waitLeader(timeout time.Duration) *testNode {
	tr.t.Helper()
	var leader *testNode
	waitFor(tr.t, timeout, "a leader", func() bool {
		for _, n := range tr.live() {
			if n.r.IsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// waitApplied waits until every live node has applied index.
func (tr *testRegion) waitApplied(index uint64) {
	tr.t.Helper()
	waitFor(tr.t, 10*time.Second, fmt.Sprintf("all nodes at index %d", index), func() bool {
		for _, n := range tr.live() {
			if n.r.AppliedIndex() < index {
				return false
			}
		}
		return true
	})
}

func put(t *testing.T, r *raft.Region, key, val string) raft.Result {
	t.Helper()
	b, err := raft.KVCommand{Op: raft.KVPut, Bucket: storage.BucketKV, Key: []byte(key), Value: []byte(val)}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := r.Apply(ctx, b)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	if res.Err != nil {
		t.Fatalf("put %s: entry error %v", key, res.Err)
	}
	return res
}

func dumpKV(t *testing.T, s *storage.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := s.View(func(tx *storage.Tx) error {
		tx.ForEach(storage.BucketKV, nil, func(k, v []byte) bool { out[string(k)] = string(v); return true })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
