package node

import (
	"os"
	"strings"
	"testing"
)

// TestCheckConfigListsEveryProblem: each problem of a file is listed once,
// with the line and the field as YAML writes them, in words.
func TestCheckConfigListsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []ConfigProblem // Line and Field; Msg must contain Field
	}{
		{"valid", "region: eu\nnode_id: n1\nbootstrap_expect: 1\nraft:\n  bind: 127.0.0.1:7301\ngossip:\n  bind: 127.0.0.1:7302\n", nil},
		{"syntax", "region: [\n", []ConfigProblem{{Line: 1}}},
		{"unknown fields at two depths", "region: eu\nnode_id: n1\nbootstrap_expct: 1\nraft:\n  bind: 127.0.0.1:7301\n  heartbeat: 1s\ngossip:\n  bind: 127.0.0.1:7302\n",
			[]ConfigProblem{{Line: 3, Field: "bootstrap_expct"}, {Line: 6, Field: "raft.heartbeat"}}},
		{"wrong kinds", "region: eu\nnode_id: n1\nbootstrap_expect: one\nraft:\n  bind: 127.0.0.1:7301\n  heartbeat_timeout: 10\ngossip:\n  bind: 127.0.0.1:7302\n  seeds: a:1\n",
			[]ConfigProblem{{Line: 3, Field: "bootstrap_expect"}, {Line: 6, Field: "raft.heartbeat_timeout"}, {Line: 9, Field: "gossip.seeds"}}},
		{"checks of Validate, all of them", "region: eu\nnode_id: N1\nbootstrap_expect: 1\nraft:\n  bind: 127.0.0.1:7301\ngossip:\n  bind: 127.0.0.1:7302\nlog:\n  format: xml\nagents:\n  max_handshakes: 1\n",
			[]ConfigProblem{{Line: 2, Field: "node_id"}, {Line: 9, Field: "log.format"}, {Line: 11, Field: "agents.max_handshakes"}}},
		{"a default at fault has no line", "region: eu\nnode_id: n1\nbootstrap_expect: 1\ngossip:\n  bind: 127.0.0.1:7302\n",
			[]ConfigProblem{{Line: 0, Field: "raft.bind"}, {Line: 0, Field: "agents.bind"}}},
		{"a field set twice", "region: eu\nregion: us\nnode_id: n1\nbootstrap_expect: 1\nraft:\n  bind: 127.0.0.1:7301\ngossip:\n  bind: 127.0.0.1:7302\n",
			[]ConfigProblem{{Line: 2, Field: "region"}}},
		{"a list for a section", "lease: [1, 2]\nregion: eu\nnode_id: n1\nbootstrap_expect: 1\nraft:\n  bind: 127.0.0.1:7301\ngossip:\n  bind: 127.0.0.1:7302\n",
			[]ConfigProblem{{Line: 1, Field: "lease"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckConfig(strings.NewReader(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d: %v", len(got), len(tt.want), got)
			}
			for i, p := range got {
				w := tt.want[i]
				if p.Line != w.Line || p.Field != w.Field || !strings.Contains(p.Msg, w.Field) {
					t.Errorf("problem %d = %+v, want line %d, field %q", i, p, w.Line, w.Field)
				}
				for _, goName := range []string{"node.", "time.Duration", "int", "!!", "struct"} {
					if strings.Contains(p.Msg, goName) && !strings.Contains(w.Field, goName) {
						t.Errorf("problem %d names Go's %q: %s", i, goName, p.Msg)
					}
				}
			}
			_, perr := ParseConfig(strings.NewReader(tt.yaml))
			if (perr == nil) != (len(got) == 0) {
				t.Errorf("ParseConfig says %v, CheckConfig %d problems", perr, len(got))
			}
		})
	}
}

// The shipped example config has no problem.
func TestCheckExampleConfig(t *testing.T) {
	ps, err := CheckConfigFile("../deploy/node.example.yaml")
	if err != nil || len(ps) != 0 {
		t.Fatalf("%v %v", err, ps)
	}
	if _, err := os.Stat("../deploy/node.example.yaml"); err != nil {
		t.Fatal(err)
	}
}

// FuzzCheckConfig: CheckConfig never fails on any input, and finds no
// problem exactly when ParseConfig accepts the file.
func FuzzCheckConfig(f *testing.F) {
	f.Add("region: eu\nnode_id: n1\n")
	f.Add("raft:\n  heartbeat_timeout: 1s\ngossip:\n  seeds: [a, b]\n")
	f.Add("region: [\n")
	f.Add("a: &x [*x]\n")
	f.Add("lease: {duration: 1s}\n---\nregion: x\n")
	// An alias bomb: each level nine of the one before.
	f.Add("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ngossip: {seeds: *h}\n")
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := CheckConfig(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		if _, perr := ParseConfig(strings.NewReader(s)); (perr == nil) != (len(ps) == 0) {
			t.Fatalf("ParseConfig says %v, CheckConfig %v", perr, ps)
		}
	})
}
