package raft_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/testcluster"
	"github.com/outpost-mesh/outpost/raft"
)

// A forwarded-write frame that claims a huge length is refused without
// allocating it, and the node keeps serving.
func TestOversizedFrameRefused(t *testing.T) {
	tr := newRegion(t, 3)
	leader := tr.Leader(time.Second)
	var follower *testcluster.Node
	for _, n := range tr.Live() {
		if n != leader {
			follower = n
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := raft.DialKind(follower.Raft, ctx, leader.RaftAddr, raft.ConnApply)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(binary.AppendUvarint(nil, 1<<40)) // a 1 TiB frame
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := io.ReadAll(conn); err != nil || len(n) != 0 {
		t.Fatalf("leader answered an oversized frame: %d bytes, err %v", len(n), err)
	}
	put(t, follower.Raft, "after", "fine") // forwarded through the same port
}

// A node with the wrong gossip key never becomes a member, and the
// decryption failures it causes are not logged in a loop.
func TestWrongGossipKeyCannotJoin(t *testing.T) {
	tr := newRegion(t, 3)
	good := tr.Key
	tr.Key = make([]byte, 32)
	rand.Read(tr.Key)
	stranger := tr.Start("stranger")
	tr.Key = good
	leader := tr.Leader(time.Second)
	time.Sleep(5 * time.Second)
	for _, m := range leader.Raft.Members() {
		if m.ID == "stranger" {
			t.Fatal("a node with another gossip key became a gossip member")
		}
	}
	if _, ok := suffrage(t, tr, "stranger"); ok {
		t.Fatal("a node with another gossip key joined Raft")
	}
	warned := 0
	for _, n := range tr.Live() {
		warned += n.Logs.Count(slog.LevelWarn, "memberlist") + n.Logs.Count(slog.LevelError, "memberlist")
	}
	// Each node may report the problem once per distinct message; the
	// stranger retries its seed every 500ms, so a loop would be ~10 per node.
	if warned > 3*len(tr.Live()) {
		t.Fatalf("%d gossip warnings in 5s: the failure is logged in a loop", warned)
	}
	_ = stranger
}
