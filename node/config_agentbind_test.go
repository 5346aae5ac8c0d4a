package node

import (
	"strings"
	"testing"
)

// agents.bind left out follows raft.bind's host, so several nodes on one
// machine (127.0.0.2, 127.0.0.3, …: deploy/README.md's e2e test) do not
// all try 0.0.0.0:7443; an explicit agents.bind is kept as written.
func TestParseConfigAgentBindDefault(t *testing.T) {
	const base = "region: eu\nnode_id: n1\ngossip:\n  bind: 127.0.0.2:7302\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"follows raft.bind's host", "raft:\n  bind: 127.0.0.2:7301\n", "127.0.0.2:7443"},
		{"IPv6 raft.bind", "raft:\n  bind: \"[::1]:7301\"\n", "[::1]:7443"},
		{"wildcard raft.bind", "raft:\n  bind: 0.0.0.0:7301\n  advertise: 10.0.1.11:7301\n", "0.0.0.0:7443"},
		{"explicit agents.bind", "raft:\n  bind: 127.0.0.2:7301\nagents:\n  bind: 127.0.0.9:8443\n", "127.0.0.9:8443"},
		{"explicit wildcard agents.bind", "raft:\n  bind: 127.0.0.2:7301\nagents:\n  bind: 0.0.0.0:7443\n", "0.0.0.0:7443"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(strings.NewReader(base + tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if c.Agents.Bind != tc.want {
				t.Fatalf("agents.bind = %q, want %q", c.Agents.Bind, tc.want)
			}
		})
	}
}
