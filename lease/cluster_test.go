package lease

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/testcluster"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// cluster is the shared test region (internal/testcluster: real Raft
// over mutual TLS, real bbolt and raft-wal, real gossip, logs to t.Log)
// with the lease FSM and a Manager on the real clock on every node.
type cluster struct {
	*testcluster.Cluster
}

// cnode is a cluster node with its lease manager.
type cnode struct {
	*testcluster.Node
	hub   *Hub
	m     *Manager
	start func()
	stop  context.CancelFunc
	done  chan struct{}
}

const clusterRegion = "lease-test"

func newCluster(t *testing.T, n int, trace func(Trace)) *cluster {
	t.Helper()
	tuning := testcluster.FastTuning()
	tuning.DeadServerGrace = time.Hour // killed nodes keep their seats
	tc := testcluster.New(t, testcluster.Config{Nodes: n, Region: clusterRegion, Tuning: &tuning, NoLeader: true,
		Configure: func(node *testcluster.Node, cfg *raft.Config) {
			nd := &cnode{Node: node, hub: NewHub()}
			node.Value = nd
			fsm := NewFSM(node.ID, nd.hub, nil)
			cfg.Handlers = fsm.Handlers()
			var mgr atomic.Pointer[Manager]
			cfg.OnLeaderChange = func(string) {
				if m := mgr.Load(); m != nil {
					m.Wake()
				}
			}
			nd.stop = func() {}
			nd.done = make(chan struct{})
			// Started completes the node once Raft is open.
			nd.start = func() {
				nd.m = NewManager(DefaultConfig(), node.Raft, node.Store, fsm, Options{Hub: nd.hub, Trace: trace,
					Logger: node.Logs.Logger(t).With("node", node.ID, "component", "lease")})
				mgr.Store(nd.m)
				ctx, cancel := context.WithCancel(context.Background())
				nd.stop = cancel
				go func() {
					defer close(nd.done)
					nd.m.Run(ctx)
				}()
			}
		},
		Started:  func(node *testcluster.Node) { node.Value.(*cnode).start() },
		Stopping: func(node *testcluster.Node) { node.Value.(*cnode).stop() },
		Stopped:  func(node *testcluster.Node) { <-node.Value.(*cnode).done },
	})
	return &cluster{tc}
}

// start opens node id, on its old data dir and ports if it ran before.
func (c *cluster) start(id string) *cnode { c.T().Helper(); return c.Start(id).Value.(*cnode) }

// kill stops node id abruptly, keeping its data dir and ports.
func (c *cluster) kill(id string) { c.Kill(id) }

// handles returns a live node's region and store, or false.
func (c *cluster) handles(nd *cnode) (*raft.Region, *storage.Store, bool) { return c.Handles(nd.Node) }

func (c *cluster) live() []*cnode {
	var out []*cnode
	for _, n := range c.Live() {
		out = append(out, n.Value.(*cnode))
	}
	return out
}

// holder waits until a live node holds the lease with a token above
// after, and returns it.
func (c *cluster) holder(after uint64, timeout time.Duration) (*cnode, uint64) {
	c.T().Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, nd := range c.live() {
			if tok, ok := nd.m.Holding(); ok && tok > after {
				return nd, tok
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.T().Fatalf("no node acquired a lease above token %d within %v", after, timeout)
	return nil, 0
}

// settle waits until every live node has applied what the leader has.
func (c *cluster) settle(timeout time.Duration) { c.T().Helper(); c.Settle(timeout) }

// dispatches returns node nd's committed region-wide dispatches and
// lease, read after a barrier through the region's read index.
func (c *cluster) log(nd *cnode) ([]Dispatch, State) {
	c.T().Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := nd.Raft.ReadBarrier(ctx); err != nil {
		c.T().Fatalf("read barrier on %s: %v", nd.ID, err)
	}
	var ds []Dispatch
	var st State
	_ = nd.Store.View(func(tx *storage.Tx) error {
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
	old.Raft.Isolate()
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
	old.Raft.Heal()
	time.Sleep(500 * time.Millisecond) // the old node's queued attempts now reach the new leader
	close(stop)
	wg.Wait()
	c.settle(20 * time.Second)

	ds, st := c.log(newHolder)
	if st.Token < newToken {
		t.Fatalf("final lease token %d below the new holder's %d", st.Token, newToken)
	}
	var acquiredAt, refused uint64
	_ = newHolder.Store.View(func(tx *storage.Tx) error {
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
	t.Logf("old holder %s (token %d) isolated; %s took token %d; %d late attempts by the old holder, none committed; the FSM refused %d stale entries", old.ID, oldToken, newHolder.ID, newToken, late, refused)
}
