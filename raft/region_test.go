package raft_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestRegionReplicates(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-nodes", n), func(t *testing.T) {
			tr := newRegion(t, n)
			nodes := tr.live()
			var last uint64
			// Write through every node: followers forward to the leader.
			for i := 0; i < 60; i++ {
				res := put(t, nodes[i%len(nodes)].r, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
				last = res.Index
			}
			tr.waitApplied(last)
			want := dumpKV(t, nodes[0].store)
			if len(want) != 60 {
				t.Fatalf("node %s has %d keys, want 60", nodes[0].id, len(want))
			}
			for _, nd := range nodes[1:] {
				if got := dumpKV(t, nd.store); !reflect.DeepEqual(got, want) {
					t.Fatalf("node %s state differs from %s", nd.id, nodes[0].id)
				}
			}
			conf, err := tr.waitLeader(time.Second).r.Configuration()
			if err != nil || len(conf) != n {
				t.Fatalf("configuration has %d servers (err %v), want %d voters", len(conf), err, n)
			}
		})
	}
}

func TestLeaderFailoverAndCatchUp(t *testing.T) {
	tr := newRegion(t, 3)
	leader := tr.waitLeader(time.Second)
	for i := 0; i < 20; i++ {
		put(t, leader.r, fmt.Sprintf("before%02d", i), "x")
	}
	tr.kill(leader.id)
	start := time.Now()
	next := tr.waitLeader(10 * time.Second)
	if next.id == leader.id {
		t.Fatalf("killed node %s still leader", leader.id)
	}
	t.Logf("new leader %s elected %v after the kill", next.id, time.Since(start))
	var last uint64
	for i := 0; i < 20; i++ {
		last = put(t, next.r, fmt.Sprintf("after%02d", i), "y").Index
	}
	back := tr.restart(leader.id)
	tr.waitApplied(last)
	want := dumpKV(t, next.store)
	if len(want) != 40 {
		t.Fatalf("leader has %d keys, want 40", len(want))
	}
	if got := dumpKV(t, back.store); !reflect.DeepEqual(got, want) {
		t.Fatalf("restarted node's state differs: %d keys, want %d", len(got), len(want))
	}
}
