package drill

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []int64
		want api.DrillStat
	}{
		{"none", nil, api.DrillStat{}},
		{"one", []int64{42}, api.DrillStat{P50: 42, P99: 42, Max: 42}},
		{"two: p50 is the lower", []int64{30, 10}, api.DrillStat{P50: 10, P99: 30, Max: 30}},
		{"odd count, unsorted", []int64{5, 1, 3}, api.DrillStat{P50: 3, P99: 5, Max: 5}},
		{"ten", []int64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, api.DrillStat{P50: 5, P99: 10, Max: 10}},
		{"hundred: p99 is the 99th", seq(100), api.DrillStat{P50: 50, P99: 99, Max: 100}},
		{"two hundred", seq(200), api.DrillStat{P50: 100, P99: 198, Max: 200}},
		{"ties", []int64{7, 7, 7, 100}, api.DrillStat{P50: 7, P99: 100, Max: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			if got := summarize(tt.in); got != tt.want {
				t.Errorf("summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("summarize reordered its input")
			}
		})
	}
}

// seq is 1..n.
func seq(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

// TestBuildReport: times are summarized over completed rounds only; the
// safety counts add up over every round, failed ones included.
func TestBuildReport(t *testing.T) {
	rounds := []api.DrillRound{
		{Round: 1, LeaderElectedMs: 100, LeaseAcquiredMs: 1200, FirstDispatchMs: 1210, StaleAttempted: 6, StaleRefused: 6, AckedWrites: 40, ProbesCommitted: 9},
		{Round: 2, LeaderElectedMs: 300, LeaseAcquiredMs: 1400, FirstDispatchMs: 1450, StaleAttempted: 5, StaleRefused: 3, StaleBadCommand: 1, StaleAccepted: 1, AckedWrites: 30, AckedWritesLost: 2, ProbesCommitted: 7, ProbesLost: 1},
		{Round: 3, LeaderElectedMs: 200, LeaseAcquiredMs: -1, FirstDispatchMs: -1, StaleAttempted: 3, StaleRefused: 2, StaleNotAppended: 1, ProbesCommitted: 2, ProbesLost: 2, Error: "no dispatch"},
	}
	r := buildReport(ModeIsolate, rounds, api.DrillTimings{Node: "n1", LeaseDurationMs: 1000})
	want := api.DrillReport{
		Mode: "isolate", Rounds: 3,
		LeaderElectedMs: api.DrillStat{P50: 100, P99: 300, Max: 300},
		LeaseAcquiredMs: api.DrillStat{P50: 1200, P99: 1400, Max: 1400},
		FirstDispatchMs: api.DrillStat{P50: 1210, P99: 1450, Max: 1450},
		StaleAttempted:  14, StaleRefused: 11, StaleNotAppended: 1, StaleBadCommand: 1, StaleAccepted: 1, AckedWrites: 70, AckedWritesLost: 2,
		ProbesCommitted: 18, ProbesLost: 3,
		PerRound: rounds, Timings: api.DrillTimings{Node: "n1", LeaseDurationMs: 1000},
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("report\n got %+v\nwant %+v", r, want)
	}
}

// TestReportJSON: the report has exactly docs/cli.md's keys plus timings,
// the stale probes that did not test the fence (stale_not_appended,
// stale_bad_command) and the probe read-back (probes_committed,
// probes_lost), and per_round is an array even when empty.
func TestReportJSON(t *testing.T) {
	b, err := json.Marshal(buildReport(ModeTransfer, nil, api.DrillTimings{}))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"mode", "rounds", "leader_elected_ms", "lease_acquired_ms", "first_dispatch_ms", "stale_attempted",
		"stale_refused", "stale_not_appended", "stale_bad_command", "stale_accepted", "acked_writes", "acked_writes_lost",
		"probes_committed", "probes_lost", "per_round", "timings"}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("keys %v, want %v", got, want)
	}
	if string(m["per_round"]) != "[]" {
		t.Errorf("per_round = %s, want []", m["per_round"])
	}
	if string(m["leader_elected_ms"]) != `{"p50":0,"p99":0,"max":0}` {
		t.Errorf("leader_elected_ms = %s", m["leader_elected_ms"])
	}
}

// TestWatch feeds a round's watch the events of a failover and checks
// what it takes from them.
func TestWatch(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	leader := func(node, l string, ms int) sighting {
		return sighting{node: node, at: at(ms), ev: api.Event{Kind: "leader", Node: node, Leader: l}}
	}
	lease := func(node, holder string, token uint64, ms int, initial bool) sighting {
		return sighting{node: node, at: at(ms), initial: initial, ev: api.Event{Kind: "lease", Node: node, Lease: &api.Lease{Holder: holder, Token: token}}}
	}
	dispatch := func(node, id, from string, token uint64, ms int) sighting {
		return sighting{node: node, at: at(ms), ev: api.Event{Kind: "dispatch", Node: node, Dispatch: &api.Dispatch{ID: id, Node: from, Token: token}}}
	}
	type firsts struct{ leader, lease, dispatch string }
	tests := []struct {
		name   string
		events []sighting
		want   firsts // "who@ms" or ""
		stale  []string
	}{
		{"failover", []sighting{
			leader("n1", "", 10), leader("n2", "", 12), // n1 is the node under fault
			leader("n1", "n3", 500), leader("n2", "n3", 505),
			lease("n2", "", 5, 600, false), // a release is no new lease
			lease("n3", "n3", 6, 1600, false), lease("n2", "n3", 6, 1602, false),
			dispatch("n1", "d1", "n3", 6, 1700), dispatch("n2", "d1", "n3", 6, 1701),
		}, firsts{"n3@505", "n3@1600", "n3@1701"}, nil},
		{"the node under fault's own stream does not count", []sighting{
			leader("n1", "n2", 100), lease("n1", "n2", 6, 200, false), dispatch("n1", "d", "n2", 6, 300),
		}, firsts{}, nil},
		{"a reopened stream's opening state times what it missed", []sighting{
			lease("n3", "n3", 6, 900, true), dispatch("n3", "d", "n3", 6, 950),
		}, firsts{"", "n3@900", "n3@950"}, nil},
		{"an old-token dispatch after the new lease is stale", []sighting{
			lease("n2", "n3", 6, 900, false),
			dispatch("n2", "late", "n1", 5, 950), dispatch("n3", "early", "n1", 5, 960),
		}, firsts{"", "n3@900", ""}, []string{"late"}},
		{"an opening lease event does not order the log", []sighting{
			lease("n1", "n3", 6, 900, true), dispatch("n1", "replayed", "n1", 5, 950),
		}, firsts{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWatch("n1", 5)
			w.injected, w.t0 = base, base
			for _, s := range tt.events {
				w.record(s)
			}
			show := func(s *seen) string {
				if s == nil {
					return ""
				}
				return fmt.Sprintf("%s@%d", s.who, s.at.Sub(base).Milliseconds())
			}
			got := firsts{show(w.leader), show(w.lease), show(w.dispatch)}
			if got != tt.want {
				t.Errorf("firsts = %+v, want %+v", got, tt.want)
			}
			var stale []string
			for id := range w.stale {
				stale = append(stale, id)
			}
			if !slices.Equal(stale, tt.stale) {
				t.Errorf("stale = %v, want %v", stale, tt.stale)
			}
		})
	}

	t.Run("a change before the fault disturbs the round", func(t *testing.T) {
		w := newWatch("n1", 5)
		w.record(leader("n2", "n3", 10))
		if w.disturbed == "" || w.leader != nil {
			t.Errorf("disturbed = %q, leader = %v; want a disturbance and no sighting", w.disturbed, w.leader)
		}
	})
	t.Run("times are clamped at t0", func(t *testing.T) {
		if got := ms(at(100), at(40)); got != 0 {
			t.Errorf("ms before t0 = %d, want 0", got)
		}
		if got := ms(at(100), at(340)); got != 240 {
			t.Errorf("ms = %d, want 240", got)
		}
	})
}

// TestConfigValidateDurations: the durations a drill sends are bounded
// before they become milliseconds on the wire, naming the field.
func TestConfigValidateDurations(t *testing.T) {
	for _, c := range []struct {
		name  string
		cfg   Config
		field string // "" when valid
	}{
		{"defaults", Config{Addr: "n1", Mode: ModeIsolate, Rounds: 1, IsolateFor: 5 * time.Second}, ""},
		{"isolate at the cap", Config{Addr: "n1", Mode: ModeIsolate, Rounds: 1, IsolateFor: MaxFault}, ""},
		{"isolate past the cap", Config{Addr: "n1", Mode: ModeIsolate, Rounds: 1, IsolateFor: MaxFault + time.Millisecond}, "IsolateFor"},
		{"isolate for centuries", Config{Addr: "n1", Mode: ModeIsolate, Rounds: 1, IsolateFor: time.Duration(math.MaxInt64)}, "IsolateFor"},
		{"isolate too short", Config{Addr: "n1", Mode: ModeIsolate, Rounds: 1, IsolateFor: time.Millisecond}, "IsolateFor"},
		{"restart past the cap", Config{Addr: "n1", Mode: ModeStop, Rounds: 1, IsolateFor: time.Second, RestartAfter: MaxFault + 1}, "RestartAfter"},
		{"restart negative", Config{Addr: "n1", Mode: ModeStop, Rounds: 1, IsolateFor: time.Second, RestartAfter: -1}, "RestartAfter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			switch {
			case c.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.field != "" && (err == nil || !strings.Contains(err.Error(), c.field)):
				t.Fatalf("got %v, want an error naming %s", err, c.field)
			}
		})
	}
}
