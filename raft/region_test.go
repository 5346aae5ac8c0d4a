package raft_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/testcluster"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

func TestRegionReplicates(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-nodes", n), func(t *testing.T) {
			tr := newRegion(t, n)
			nodes := tr.Live()
			var last uint64
			// Write through every node: followers forward to the leader.
			for i := 0; i < 60; i++ {
				res := put(t, nodes[i%len(nodes)].Raft, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
				last = res.Index
			}
			tr.WaitApplied(last)
			want := dumpKV(t, nodes[0].Store)
			if len(want) != 60 {
				t.Fatalf("node %s has %d keys, want 60", nodes[0].ID, len(want))
			}
			for _, nd := range nodes[1:] {
				if got := dumpKV(t, nd.Store); !reflect.DeepEqual(got, want) {
					t.Fatalf("node %s state differs from %s", nd.ID, nodes[0].ID)
				}
			}
			conf, err := tr.Leader(time.Second).Raft.Configuration()
			if err != nil || len(conf) != n {
				t.Fatalf("configuration has %d servers (err %v), want %d voters", len(conf), err, n)
			}
		})
	}
}

func TestLeaderFailoverAndCatchUp(t *testing.T) {
	tr := newRegion(t, 3)
	leader := tr.Leader(time.Second)
	for i := 0; i < 20; i++ {
		put(t, leader.Raft, fmt.Sprintf("before%02d", i), "x")
	}
	tr.Kill(leader.ID)
	start := time.Now()
	next := tr.Leader(10 * time.Second)
	if next.ID == leader.ID {
		t.Fatalf("killed node %s still leader", leader.ID)
	}
	t.Logf("new leader %s elected %v after the kill", next.ID, time.Since(start))
	var last uint64
	for i := 0; i < 20; i++ {
		last = put(t, next.Raft, fmt.Sprintf("after%02d", i), "y").Index
	}
	back := tr.Restart(leader.ID)
	tr.WaitApplied(last)
	want := dumpKV(t, next.Store)
	if len(want) != 40 {
		t.Fatalf("leader has %d keys, want 40", len(want))
	}
	if got := dumpKV(t, back.Store); !reflect.DeepEqual(got, want) {
		t.Fatalf("restarted node's state differs: %d keys, want %d", len(got), len(want))
	}
}

// TestDeposedLeaderRestartsAfterTruncation is the failover drill's
// isolate-then-stop sequence in miniature: a leader is cut off while it
// appends entries no one else sees, the others elect a new leader and
// commit over those indexes, the old leader rejoins and truncates its
// log's unreplicated suffix, and then it is killed and restarted. The
// restart must open the truncated log (raft-wal v0.4.0 sealed the tail
// segment without its index block here and panicked on open,
// hashicorp/raft-wal#31) and catch up to the same state.
func TestDeposedLeaderRestartsAfterTruncation(t *testing.T) {
	tr := newRegion(t, 3)
	old := tr.Leader(5 * time.Second)
	for i := 0; i < 5; i++ {
		put(t, old.Raft, fmt.Sprintf("before%d", i), "x")
	}

	old.Raft.Isolate()
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := raft.KVCommand{Op: raft.KVPut, Bucket: storage.BucketKV, Key: fmt.Appendf(nil, "lost%d", i), Value: []byte("x")}.Encode()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if _, err := old.Raft.Apply(ctx, b); err == nil {
				t.Errorf("an isolated leader's write lost%d was acknowledged", i)
			}
		}()
	}
	wg.Wait()

	var next *testcluster.Node
	testcluster.WaitFor(t, 10*time.Second, "a new leader on the majority side", func() bool {
		for _, n := range tr.Live() {
			if n.ID != old.ID && n.Raft.IsLeader() {
				next = n
				return true
			}
		}
		return false
	})
	var last uint64
	for i := 0; i < 10; i++ {
		last = put(t, next.Raft, fmt.Sprintf("after%d", i), "y").Index
	}
	old.Raft.Heal()
	tr.WaitApplied(last) // the old leader has replaced its suffix

	tr.Kill(old.ID)
	back := tr.Restart(old.ID)
	tr.WaitApplied(last)
	want := dumpKV(t, next.Store)
	if len(want) != 15 {
		t.Fatalf("leader has %d keys, want 15 (5 before, 10 after, none of the isolated writes)", len(want))
	}
	if got := dumpKV(t, back.Store); !reflect.DeepEqual(got, want) {
		t.Fatalf("restarted node's state differs from the leader's: %v, want %v", got, want)
	}
}

// TestFailFastApplyWithoutLeader: a node cut off from its region, once it
// knows no leader, answers a FailFast write with ErrNoLeader at once
// instead of waiting out the caller's deadline; without FailFast it
// waits for an election as before.
func TestFailFastApplyWithoutLeader(t *testing.T) {
	tr := newRegion(t, 3)
	leader := tr.Leader(5 * time.Second)
	cut := followers(tr, leader)[0]
	cut.Raft.Isolate()
	defer cut.Raft.Heal()
	testcluster.WaitFor(t, 10*time.Second, "the cut-off node to know no leader", func() bool {
		id, _ := cut.Raft.Leader()
		return id == "" && !cut.Raft.IsLeader()
	})
	b, _ := raft.KVCommand{Op: raft.KVPut, Bucket: storage.BucketKV, Key: []byte("k"), Value: []byte("v")}.Encode()

	ctx, cancel := context.WithTimeout(raft.FailFast(context.Background()), time.Minute)
	defer cancel()
	_, err := cut.Raft.Apply(ctx, b)
	if !errors.Is(err, raft.ErrNoLeader) || ctx.Err() != nil {
		t.Fatalf("FailFast apply on a leaderless node: %v (ctx %v); want ErrNoLeader before the deadline", err, ctx.Err())
	}

	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if _, err := cut.Raft.Apply(short, b); !errors.Is(err, raft.ErrNoLeader) || short.Err() == nil {
		t.Fatalf("plain apply on a leaderless node: %v (ctx %v); want it to wait until its deadline", err, short.Err())
	}
}

// TestForwardedWriteIsReadableAtOnce: a write through a follower answers
// only once that follower applied it, so a read there right after sees
// it (read your writes), every time.
func TestForwardedWriteIsReadableAtOnce(t *testing.T) {
	tr := newRegion(t, 3)
	leader := tr.Leader(5 * time.Second)
	follower := followers(tr, leader)[0]
	for i := range 30 {
		key := fmt.Sprintf("ryw%02d", i)
		put(t, follower.Raft, key, "v")
		if got := dumpKV(t, follower.Store)[key]; got != "v" {
			t.Fatalf("write %d through follower %s: not readable there right after it answered", i, follower.ID)
		}
	}
}

// TestForwardedEntryErrorKeepsItsIdentity: an entry refused by its
// handler on the leader, written through a follower over the real
// node-to-node port, reaches the follower's caller as an error that
// errors.Is matches against the sentinel (here raft.ErrBadCommand for a
// command type no handler knows), not as text to search.
func TestForwardedEntryErrorKeepsItsIdentity(t *testing.T) {
	tr := newRegion(t, 3)
	leader := tr.Leader(5 * time.Second)
	follower := followers(tr, leader)[0]
	res, err := follower.Raft.Apply(context.Background(), []byte{99, 1, 2, 3})
	if err != nil {
		t.Fatalf("apply through follower %s: %v", follower.ID, err)
	}
	var re *raft.RemoteError
	if !errors.As(res.Err, &re) {
		t.Fatalf("result error %#v: want a raft.RemoteError (was the write forwarded?)", res.Err)
	}
	if !errors.Is(res.Err, raft.ErrBadCommand) || re.Code != "raft.bad_command" {
		t.Fatalf("forwarded refusal %#v does not match raft.ErrBadCommand", res.Err)
	}
}
