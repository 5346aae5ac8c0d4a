package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/testcluster/nodes"
	"github.com/outpost-mesh/outpost/node"
)

// lockedBuffer is a log sink the nodes' goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lineProblems decodes one JSON value from dec and names what a log tool
// would trip on: a key twice in one object (encoding/json keeps the last
// silently), and an object key in Go's field spelling ("Suffrage": a Go
// struct marshalled as it is) or a string holding a %+v struct dump.
func lineProblems(dec *json.Decoder, path string) ([]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	var out []string
	switch tok := tok.(type) {
	case json.Delim:
		if tok == '[' {
			for dec.More() {
				sub, err := lineProblems(dec, path)
				if err != nil {
					return nil, err
				}
				out = append(out, sub...)
			}
			_, err = dec.Token()
			return out, err
		}
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key := k.(string)
			if seen[key] {
				out = append(out, fmt.Sprintf("key %q repeated", path+key))
			}
			if key != "" && key[0] >= 'A' && key[0] <= 'Z' {
				out = append(out, fmt.Sprintf("key %q is a Go field name (a struct marshalled as it is)", path+key))
			}
			seen[key] = true
			sub, err := lineProblems(dec, path+key+".")
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
		_, err = dec.Token()
		return out, err
	case string:
		if goDump.MatchString(tok) {
			out = append(out, fmt.Sprintf("%q holds a Go value dump: %s", strings.TrimSuffix(path, "."), tok))
		}
	}
	return out, nil
}

// goDump matches what %v and %+v make of a struct or pointer:
// "{Suffrage:Voter ID:n1 …}", "&{…}", "map[…]", "%!v(…)".
var goDump = regexp.MustCompile(`(^|[\s\[])(&?\{[A-Z][A-Za-z]*:|map\[)|%!`)

// TestLogLinesParse runs a 3-node region with the JSON logs `outpost
// serve` writes, at debug level, through a start, a write, a leader
// change and a stop, and decodes every line: each key appears once per
// object, and no value is a Go struct dump (raft's Server, its own
// *Raft).
//
//	go test -race -run TestLogLinesParse ./node
func TestLogLinesParse(t *testing.T) {
	var buf lockedBuffer
	logger := node.NewLogger(node.LogConfig{Level: "debug", Format: "json"}, &buf)
	region := nodes.StartRegion(t, nodes.RegionConfig{Nodes: 3, Options: node.Options{Keys: mustKeys(t, newMasterKey(t), nil), Logger: logger}})
	tn := fromShared(region[0])
	tn.must(t, 200, "PUT", "/api/v1/kv/logs-test", tn.token, "written")

	leader := -1
	eventually(t, 10*time.Second, "a leader", func() bool {
		for i, n := range region {
			if n.Region().IsLeader() {
				leader = i
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := region[leader].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a new leader", func() bool {
		for i, n := range region {
			if i != leader && n.Region().IsLeader() {
				return true
			}
		}
		return false
	})
	for i, n := range region {
		if i != leader {
			if err := n.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}

	lines, leaders := 0, map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		lines++
		var rec struct {
			Msg  string          `json:"msg"`
			Node json.RawMessage `json:"node"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		if rec.Msg == "this node is now the region leader" {
			leaders[string(rec.Node)] = true
		}
		problems, err := lineProblems(json.NewDecoder(strings.NewReader(line)), "")
		if err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		for _, p := range problems {
			t.Errorf("%s in: %s", p, line)
		}
	}
	if len(leaders) < 2 {
		t.Errorf("the logs show leaders %v; the test needs a leader change", leaders)
	}
	t.Logf("%d lines", lines)
}
