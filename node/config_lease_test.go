package node

import (
	"strings"
	"testing"
	"time"
)

// raft.leader_lease_timeout left out follows the heartbeat timeout (its
// default equals it), so a config that only lowers heartbeat_timeout is
// valid; an explicit lease is kept, and one above the heartbeat timeout
// is still refused.
func TestParseConfigLeaderLeaseDefault(t *testing.T) {
	const base = "region: eu\nnode_id: n1\ngossip:\n  bind: 127.0.0.2:7302\nraft:\n  bind: 127.0.0.2:7301\n"
	cases := []struct {
		name, yaml string
		want       time.Duration
		wantErr    bool
	}{
		{"defaults", "", 500 * time.Millisecond, false},
		{"follows a lower heartbeat timeout", "  heartbeat_timeout: 200ms\n  election_timeout: 200ms\n", 200 * time.Millisecond, false},
		{"explicit lease kept", "  heartbeat_timeout: 1s\n  election_timeout: 1s\n  leader_lease_timeout: 300ms\n", 300 * time.Millisecond, false},
		{"lease above the heartbeat timeout", "  heartbeat_timeout: 200ms\n  election_timeout: 200ms\n  leader_lease_timeout: 300ms\n", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(strings.NewReader(base + tc.yaml))
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "leader_lease_timeout") {
					t.Fatalf("got %v, want an error naming leader_lease_timeout", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Raft.LeaderLeaseTimeout != tc.want {
				t.Fatalf("leader_lease_timeout = %v, want %v", c.Raft.LeaderLeaseTimeout, tc.want)
			}
		})
	}
}
