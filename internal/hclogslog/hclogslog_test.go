package hclogslog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
)

// TestValuesAndKeys: what the HashiCorp libraries pass reaches the text
// and JSON handlers as values a tool reads, each key once per line.
func TestValuesAndKeys(t *testing.T) {
	srv := hraft.Server{Suffrage: hraft.Voter, ID: "n2", Address: "127.0.0.1:7002"}
	cases := []struct {
		name string
		log  func(hclog.Logger)
		text string // the line's attributes in the text handler
		json string // and in the JSON handler
	}{
		{"a raft server is a group",
			func(l hclog.Logger) { l.Error("failed to appendEntries to", "peer", srv, "error", errors.New("EOF")) },
			`peer.id=n2 peer.address=127.0.0.1:7002 peer.suffrage=voter err=EOF`,
			`"peer":{"id":"n2","address":"127.0.0.1:7002","suffrage":"voter"},"err":"EOF"`},
		{"a configuration is one line",
			func(l hclog.Logger) {
				l.Info("updating configuration", "server-id", hraft.ServerID("n3"), "servers",
					hclog.Fmt("%+v", []hraft.Server{srv, {Suffrage: hraft.Nonvoter, ID: "n3", Address: "127.0.0.1:7003"}}))
			},
			`server_id=n3 servers="n2 127.0.0.1:7002 voter, n3 127.0.0.1:7003 nonvoter"`,
			`"server_id":"n3","servers":"n2 127.0.0.1:7002 voter, n3 127.0.0.1:7003 nonvoter"`},
		{"slog's time key is not reused",
			func(l hclog.Logger) {
				l.Warn("failed to contact", "server-id", hraft.ServerID("n2"), "time", 500*time.Millisecond)
			},
			`server_id=n2 elapsed=500ms`,
			`"server_id":"n2","elapsed":500000000`},
		{"keys with spaces are snake_case",
			func(l hclog.Logger) {
				l.Warn("failed to heartbeat to", "peer", hraft.ServerAddress("127.0.0.1:7002"), "backoff time", time.Second)
			},
			`peer=127.0.0.1:7002 backoff_time=1s`,
			`"peer":"127.0.0.1:7002","backoff_time":1000000000`},
		{"a call's argument replaces an implied one",
			func(l hclog.Logger) { l.With("id", "a", "size", 1).With("id", "b").Info("opening", "size", 2) },
			`id=b size=2`,
			`"id":"b","size":2`},
		{"node and component are the logger's",
			func(l hclog.Logger) { l.Info("x", "node", "other", "component", "y") },
			`arg_node=other arg_component=y`,
			`"arg_node":"other","arg_component":"y"`},
		{"Named twice is one subcomponent",
			func(l hclog.Logger) { l.Named("snapshot").Named("restore").Info("restoring") },
			`subcomponent=snapshot.restore`,
			`"subcomponent":"snapshot.restore"`},
		{"a Stringer is its string",
			func(l hclog.Logger) { l.Info("state", "suffrage", hraft.Nonvoter, "state", hraft.Candidate) },
			`suffrage=nonvoter state=Candidate`,
			`"suffrage":"nonvoter","state":"Candidate"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tb, jb bytes.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}}
			c.log(New(slog.New(slog.NewTextHandler(&tb, opts)).With("node", "n1"), "raft", hclog.Debug))
			c.log(New(slog.New(slog.NewJSONHandler(&jb, opts)).With("node", "n1"), "raft", hclog.Debug))
			if got := tb.String(); !strings.Contains(got, c.text) || strings.Count(got, " node=") != 1 {
				t.Errorf("text:\n got %s\nwant %s (and node= once)", got, c.text)
			}
			if got := jb.String(); !strings.Contains(got, c.json) || strings.Count(got, `"node":`) != 1 {
				t.Errorf("json:\n got %s\nwant %s (and \"node\" once)", got, c.json)
			}
		})
	}
}
