package lease

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// cluster is a region of real nodes on loopback for fault tests: real
// Raft over mutual TLS, real bbolt and raft-wal, real gossip, each with
// the lease FSM and a Manager on the real clock.
type cluster struct {
	t      *testing.T
	ca     *pki.CA
	key    []byte
	n      int
	trace  func(Trace)
	mu     sync.Mutex
	nodes  map[string]*cnode
	seed   string
	logger *slog.Logger
}

type cnode struct {
	id, dir              string
	raftAddr, gossipAddr string
	store                *storage.Store
	r                    *raft.Region
	hub                  *Hub
	m                    *Manager
	stop                 context.CancelFunc
	done                 chan struct{}
}

const clusterRegion = "lease-test"

func newCluster(t *testing.T, n int, trace func(Trace)) *cluster {
	t.Helper()
	ca, err := pki.NewCA(clusterRegion)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("OUTPOST_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	c := &cluster{t: t, ca: ca, key: key, n: n, trace: trace, nodes: map[string]*cnode{}, logger: logger}
	t.Cleanup(c.closeAll)
	for i := 1; i <= n; i++ {
		c.start(fmt.Sprintf("n%d", i))
	}
	return c
}

// start opens node id, on its old data dir and ports if it ran before.
func (c *cluster) start(id string) *cnode {
	c.t.Helper()
	c.mu.Lock()
	old := c.nodes[id]
	seed := c.seed
	c.mu.Unlock()
	nd := &cnode{id: id, dir: filepath.Join(c.t.TempDir(), id), raftAddr: "127.0.0.1:0", gossipAddr: "127.0.0.1:0"}
	if old != nil {
		nd.dir, nd.raftAddr, nd.gossipAddr = old.dir, old.raftAddr, old.gossipAddr
	}
	if err := os.MkdirAll(nd.dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	store, err := storage.Open(filepath.Join(nd.dir, "state.db"), storage.Options{Region: clusterRegion})
	if err != nil {
		c.t.Fatal(err)
	}
	cert, err := c.ca.IssueNode(clusterRegion, id, []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	nd.hub = NewHub()
	fsm := NewFSM(id, nd.hub, nil)
	var mgr atomic.Pointer[Manager]
	tuning := raft.DefaultTuning()
	tuning.ServerStabilization = time.Second
	tuning.DeadServerGrace = time.Hour // killed nodes keep their seats
	cfg := raft.Config{
		Region: clusterRegion, NodeID: id, DataDir: nd.dir,
		RaftBind: nd.raftAddr, GossipBind: nd.gossipAddr, GossipKey: c.key, BootstrapExpect: c.n,
		TLS: pki.NodeTLS(c.ca, cert, clusterRegion), Tuning: tuning,
		PeerID:   func(x *x509.Certificate) (string, error) { return pki.NodeID(x, clusterRegion) },
		Handlers: fsm.Handlers(),
		OnLeaderChange: func(string) {
			if m := mgr.Load(); m != nil {
				m.Wake()
			}
		},
		Logger: c.logger.With("node", id),
	}
	if seed != "" {
		cfg.Seeds = []string{seed}
	}
	// A restarted node may find its old port briefly held; retry.
	var r *raft.Region
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err = raft.Open(cfg, store)
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		store.Close()
		c.t.Fatalf("open node %s: %v", id, err)
	}
	nd.store, nd.r = store, r
	nd.raftAddr, nd.gossipAddr = r.RaftAddr(), r.GossipAddr()
	nd.m = NewManager(DefaultConfig(), r, store, fsm, Options{Hub: nd.hub, Trace: c.trace, Logger: c.logger.With("node", id, "component", "lease")})
	mgr.Store(nd.m)
	ctx, cancel := context.WithCancel(context.Background())
	nd.stop, nd.done = cancel, make(chan struct{})
	go func() {
		defer close(nd.done)
		nd.m.Run(ctx)
	}()
	c.mu.Lock()
	c.nodes[id] = nd
	if c.seed == "" {
		c.seed = r.GossipAddr()
	}
	c.mu.Unlock()
	return nd
}

// kill stops node id abruptly, keeping its data dir and ports.
func (c *cluster) kill(id string) {
	c.mu.Lock()
	nd := c.nodes[id]
	if nd == nil || nd.r == nil {
		c.mu.Unlock()
		return
	}
	r := nd.r
	nd.r = nil
	c.mu.Unlock()
	nd.stop()
	r.Close()
	<-nd.done
	nd.store.Close()
}

// handles returns a live node's region and store, or false.
func (c *cluster) handles(nd *cnode) (*raft.Region, *storage.Store, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return nd.r, nd.store, nd.r != nil
}

func (c *cluster) closeAll() {
	for _, nd := range c.live() {
		c.kill(nd.id)
	}
}

func (c *cluster) live() []*cnode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*cnode
	for i := 1; i <= c.n; i++ {
		if nd := c.nodes[fmt.Sprintf("n%d", i)]; nd != nil && nd.r != nil {
			out = append(out, nd)
		}
	}
	return out
}

// holder waits until a live node holds the lease with a token above
// after, and returns it.
func (c *cluster) holder(after uint64, timeout time.Duration) (*cnode, uint64) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, nd := range c.live() {
			if tok, ok := nd.m.Holding(); ok && tok > after {
				return nd, tok
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("no node acquired a lease above token %d within %v", after, timeout)
	return nil, 0
}

// settle waits until every live node has applied what the leader has.
func (c *cluster) settle(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var leader *cnode
		for _, nd := range c.live() {
			if nd.r.IsLeader() {
				leader = nd
			}
		}
		if leader != nil && leader.r.Barrier(time.Second) == nil {
			want, ok := leader.r.AppliedIndex(), true
			for _, nd := range c.live() {
				ok = ok && nd.r.AppliedIndex() >= want
			}
			if ok {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("region did not settle within %v", timeout)
}

// dispatches returns node nd's committed region-wide dispatches and
// lease, read after a barrier through the region's read index.
func (c *cluster) log(nd *cnode) ([]Dispatch, State) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := nd.r.ReadBarrier(ctx); err != nil {
		c.t.Fatalf("read barrier on %s: %v", nd.id, err)
	}
	var ds []Dispatch
	var st State
	_ = nd.store.View(func(tx *storage.Tx) error {
		ds = List(tx, storage.Tenant{}, 0, 1<<30)
		st, _ = ReadState(tx)
		return nil
	})
	return ds, st
}

// TestPartitionedHolderCannotDispatch: the holder is cut off from its
// peers while it keeps dispatching, through its fence and around it. None
// of its dispatches commits or is delivered after the new lease exists.
func TestPartitionedHolderCannotDispatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node region; skipped in -short mode")
	}
	c := newCluster(t, 3, nil)
	old, oldToken := c.holder(0, 20*time.Second)
	var subs []*Sub
	for _, nd := range c.live() {
		s := nd.hub.Subscribe(1 << 16)
		defer s.Close()
		subs = append(subs, s)
	}

	// The old holder dispatches every few ms, alternating its normal path
	// and the drill's stale probe (which skips its own fence).
	var (
		mu       sync.Mutex
		attempts []struct {
			id string
			at time.Time
		}
		newLeaseAt atomic.Pointer[time.Time]
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			var d Dispatch
			if i%2 == 0 {
				d, _ = old.m.StaleProbe(ctx)
			} else {
				d = Dispatch{ID: fmt.Sprintf("old-%d", i), Kind: "config"}
				if _, err := old.m.Dispatch(ctx, storage.Tenant{}, d); err == nil {
					d.ID = fmt.Sprintf("old-%d", i)
				}
			}
			cancel()
			mu.Lock()
			attempts = append(attempts, struct {
				id string
				at time.Time
			}{d.ID, time.Now()})
			mu.Unlock()
		}
	}()
	time.Sleep(100 * time.Millisecond)
	old.r.Isolate()
	newHolder, newToken := c.holder(oldToken, 20*time.Second)
	now := time.Now()
	newLeaseAt.Store(&now)
	if newHolder == old {
		t.Fatal("the isolated node kept the lease")
	}
	// The new holder dispatches; the old keeps trying for a while.
	for i := range 20 {
		if _, err := newHolder.m.Dispatch(context.Background(), storage.Tenant{}, Dispatch{ID: fmt.Sprintf("new-%d", i), Kind: "config"}); err != nil {
			t.Fatalf("new holder's dispatch: %v", err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	old.r.Heal()
	time.Sleep(500 * time.Millisecond) // the old node's queued attempts now reach the new leader
	close(stop)
	wg.Wait()
	c.settle(20 * time.Second)

	ds, st := c.log(newHolder)
	if st.Token < newToken {
		t.Fatalf("final lease token %d below the new holder's %d", st.Token, newToken)
	}
	var acquiredAt, refused uint64
	_ = newHolder.store.View(func(tx *storage.Tx) error {
		var s State
		s, refused = ReadState(tx)
		if s.Token == newToken {
			acquiredAt = s.Index
		}
		return nil
	})
	// After the heal the old node's probes reached the new leader: the FSM
	// itself must have refused them, not just the partition.
	if refused == 0 {
		t.Error("the FSM refused no stale entry; the old holder's probes never reached it after the heal")
	}
	committed := map[string]Dispatch{}
	for _, d := range ds {
		committed[d.ID] = d
		if d.Token < newToken && acquiredAt > 0 && d.Index > acquiredAt {
			t.Errorf("dispatch %s with old token %d committed at index %d, after the new lease (index %d)", d.ID, d.Token, d.Index, acquiredAt)
		}
	}
	mu.Lock()
	late := 0
	for _, a := range attempts {
		if a.at.After(*newLeaseAt.Load()) {
			late++
			if d, ok := committed[a.id]; ok {
				t.Errorf("old holder's dispatch %s, attempted after the new lease existed, committed with token %d", a.id, d.Token)
			}
		}
	}
	mu.Unlock()
	if late < 10 {
		t.Fatalf("the old holder attempted only %d dispatches after the new lease; the test did not exercise the fence", late)
	}
	// No node delivered an old-token dispatch after it applied the new lease.
	for i, s := range subs {
		seenNew := false
	drain:
		for {
			select {
			case e := <-s.C:
				switch {
				case e.Kind == EventLease && e.Lease.Token >= newToken:
					seenNew = true
				case e.Kind == EventDispatch && seenNew && e.Dispatch.Token < newToken:
					t.Errorf("subscriber %d: delivered %s with token %d after the lease with token %d", i, e.Dispatch.ID, e.Dispatch.Token, newToken)
				}
			default:
				break drain
			}
		}
		if !seenNew {
			t.Errorf("subscriber %d never saw the new lease", i)
		}
	}
	t.Logf("old holder %s (token %d) isolated; %s took token %d; %d late attempts by the old holder, none committed; the FSM refused %d stale entries", old.id, oldToken, newHolder.id, newToken, late, refused)
}
