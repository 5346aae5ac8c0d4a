package agentlink

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/outpost-mesh/outpost/node/agents"
)

// TestQueueUpdateKeepsOneSlotPerLink: while a link's report waits in the
// presence queue, newer reports of that link replace its content instead
// of taking more slots, and the writer records the latest.
func TestQueueUpdateKeepsOneSlotPerLink(t *testing.T) {
	s := &Server{presence: make(chan agents.PresenceOp, 16), updates: map[string]*agents.LinkInfo{}}
	s.m, _ = newMetrics(nil, s)
	report := func(conn, health string) {
		s.queueUpdate(agents.PresenceOp{Kind: agents.Update, Agent: "ag-" + conn, Conn: conn, Info: &agents.LinkInfo{Health: health}})
	}
	for _, h := range []string{"a1", "a2", "a3"} {
		report("a", h)
	}
	report("b", "b1")
	s.queue(agents.PresenceOp{Kind: agents.Detach, Agent: "ag-c", Conn: "c"})
	report("a", "a4") // after the others: still a's one slot

	var got []string
	for len(s.presence) > 0 {
		op := s.resolve(<-s.presence)
		h := ""
		if op.Info != nil {
			h = op.Info.Health
		}
		got = append(got, op.Kind+":"+op.Conn+":"+h)
	}
	want := []string{"update:a:a4", "update:b:b1", "detach:c:"}
	if len(got) != len(want) {
		t.Fatalf("queued %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("queued %v, want %v", got, want)
		}
	}
	var m dto.Metric
	if err := s.m.presenceCoalesced.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 3 {
		t.Errorf("coalesced %v, want 3", n)
	}
	// Once taken, a link's next report takes a slot again.
	report("a", "a5")
	if len(s.presence) != 1 {
		t.Errorf("a report after the writer took the last one was not queued")
	}
}
