package node

import (
	"testing"

	"github.com/outpost-mesh/outpost/lease"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/raft"
)

// TestCommandTypesDistinct: the packages that add Raft command types
// (auth, lease, agents) claim distinct numbers, all of them reach the
// FSM, and each is at or above raft.FirstCustomCommand. Giving two
// packages the same number fails here (and makes the node refuse to
// start) instead of one handler silently replacing the other.
func TestCommandTypesDistinct(t *testing.T) {
	sets := []map[raft.CommandType]raft.HandlerFunc{
		auth.Handlers(), lease.NewFSM("n1", lease.NewHub(), nil).Handlers(), agents.NewFSM(nil).Handlers(),
	}
	merged, err := commandHandlers(sets[1], sets[2])
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, s := range sets {
		want += len(s)
		for ct := range s {
			if ct < raft.FirstCustomCommand {
				t.Errorf("command type %d is below raft.FirstCustomCommand", ct)
			}
		}
	}
	if len(merged) != want {
		t.Fatalf("%d handlers reach the FSM, want %d", len(merged), want)
	}
}
