package agents

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/raft"
)

// FuzzDecodeOp: hostile log bytes never panic the agents FSM's decoder;
// what decodes is valid and survives a round trip.
func FuzzDecodeOp(f *testing.F) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, o := range []Op{
		{Revoke: &RevokeOp{Agent: "ag-1", At: at, By: "user/admin"}},
		{Renew: &RenewOp{Agent: "ag-1", Old: "aa", Fingerprint: "bb", Expires: at}},
		{ClearFlags: &ClearFlagsOp{Agent: "ag-1", Through: at, At: at, By: "user:alice"}},
		{Presence: []PresenceOp{{Kind: Attach, Agent: "ag-1", Node: "n1", Conn: "c1", Addr: "10.0.0.1", At: at},
			{Kind: Status, Agent: "ag-1", Node: "n1", At: at, Status: &ConfigStatus{Dispatch: "d1", Token: 3, Status: ConfigApplied}}}},
	} {
		b, _ := o.Encode()
		f.Add(b[1:])
	}
	f.Add([]byte(`{"revoke":{},"renew":{}}`))
	f.Add([]byte(`{"presence":[{"kind":"status","node":"n1"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := DecodeOp(data)
		if err != nil {
			if !errors.Is(err, raft.ErrBadCommand) {
				t.Fatalf("error without ErrBadCommand: %v", err)
			}
			return
		}
		b, err := o.Encode()
		if err != nil {
			t.Fatalf("decoded op does not encode: %v", err)
		}
		o2, err := DecodeOp(b[1:])
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		j1, _ := json.Marshal(o)
		j2, _ := json.Marshal(o2)
		if string(j1) != string(j2) {
			t.Fatalf("round trip changed the op:\n%s\n%s", j1, j2)
		}
	})
}

// FuzzParseSelector: no selector panics, and a parsed one matches only
// attributes that hold every term.
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"", "*", "none", "os=linux", "host=a,mode=ebpf", "os=", "=x", "colour=blue", "a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			if MatchSelector(s, map[string]string{}) {
				t.Fatal("a bad selector matched")
			}
			return
		}
		if sel.none && sel.Matches(map[string]string{"os": "linux"}) {
			t.Fatal("none matched")
		}
	})
}
