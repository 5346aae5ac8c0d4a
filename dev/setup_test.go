package dev

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/node"
)

// TestStartThroughLeadershipChanges: a three-node dev region with an
// agent finishes its setup (dev account, tenant, login, bootstrap token,
// enrollment) while leadership moves between the nodes every few hundred
// milliseconds. Setup writes that landed on a leadership change ended
// `outpost dev --nodes 3` (503 write outcome unknown).
func TestStartThroughLeadershipChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node region; run without -short")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var moved atomic.Int32
	opts := Options{HTTP: "127.0.0.1:0", DataDir: t.TempDir(), Nodes: 3, Agents: 1,
		beforeSetup: func(d *Region) {
			transfer := func() {
				var leader *node.Node
				d.mu.Lock()
				for _, n := range d.nodes {
					if n != nil && n.Region().IsLeader() {
						leader = n
					}
				}
				d.mu.Unlock()
				err := errors.New("no leader")
				if leader != nil {
					err = leader.Region().TransferLeadership()
				}
				if err == nil {
					moved.Add(1)
				}
			}
			// One transfer before the setup starts, so that its first
			// writes meet an election however fast the machine is.
			for deadline := time.Now().Add(30 * time.Second); moved.Load() == 0 && time.Now().Before(deadline); {
				transfer()
				time.Sleep(20 * time.Millisecond)
			}
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(300 * time.Millisecond):
					}
					transfer()
				}
			})
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := Start(ctx, opts)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("dev region start with leadership moving (%d transfers): %v", moved.Load(), err)
	}
	defer d.Stop(context.Background())
	if moved.Load() == 0 {
		t.Fatal("leadership never moved during the setup: the test exercised nothing")
	}
	if len(d.Agents()) != 1 || d.Agents()[0].Status().AgentID == "" {
		t.Fatalf("the dev agent did not enroll: %+v", d.Agents())
	}
	t.Logf("setup finished through %d leadership transfers", moved.Load())
}
