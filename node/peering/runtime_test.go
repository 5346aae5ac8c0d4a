package peering

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/federation"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/storage"
)

// The runtime's own logic, without QUIC: its client's transport answers
// from a function, its store is a real state file holding one peer
// (eu-west) and one link of tenant t1 to it.

const testLink = "lnk-aaaaaaaaaaaaaaaa"

type plainKeys struct{}

func (plainKeys) Unwrap(_, _ string, sealed []byte) ([]byte, error) { return sealed, nil }

type answerRT func(path string) string

func (f answerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(f(r.URL.Path))), Request: r}, nil
}

type auditRecord struct {
	action, entity string
	detail         map[string]any
}

type auditLog struct {
	mu  sync.Mutex
	got []auditRecord
}

func (a *auditLog) audit(_ context.Context, action, entity string, detail any) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, auditRecord{action, entity, detail.(map[string]any)})
	return nil
}

func (a *auditLog) records() []auditRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]auditRecord(nil), a.got...)
}

func testRuntime(t *testing.T, answer answerRT) (*Runtime, *auditLog) {
	t.Helper()
	st, err := storage.Open(filepath.Join(t.TempDir(), "state.db"), storage.Options{Region: "us-east"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ca, err := pki.NewCA("eu-west")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := json.Marshal(Peer{Name: "eu-west", Addr: "127.0.0.1:9", CAPEM: string(ca.CertPEM())})
	l, _ := json.Marshal(Link{ID: testLink, Peer: "eu-west", Tenant: "t1"})
	if err := st.Update(func(tx *storage.Tx) error {
		return errors.Join(tx.Put(BucketPeers, []byte("eu-west"), p), tx.Put(BucketSecrets, []byte("eu-west"), []byte(strings.Repeat("s", 32))),
			tx.Put(BucketLinks, []byte("eu-west/"+testLink), l))
	}); err != nil {
		t.Fatal(err)
	}
	log := &auditLog{}
	rt := New(Config{Region: "us-east", NodeID: "n1", Store: st, Keys: plainKeys{}, Audit: log.audit, PollEvery: time.Second,
		Cert: func() *tls.Certificate { return &tls.Certificate{} }})
	rt.client.Transport = func(*tls.Config) http.RoundTripper { return answer }
	t.Cleanup(rt.Close)
	return rt, log
}

// Every remote row is labelled with the peer it came from (never local),
// and a peer's own incompleteness makes the view incomplete.
func TestGlobalViewsLabelRemoteRows(t *testing.T) {
	rt, _ := testRuntime(t, func(path string) string {
		switch {
		case path == federation.PathHealth:
			return `{"region":"eu-west","node":"e1","leader":"e1","nodes":[],"lease":{"holder":"e1","token":1,"expires_in_ms":1},"age_ms":0}`
		case strings.HasSuffix(path, "/agents"):
			return `{"link":"` + testLink + `","age_ms":0,"agents":[{"id":"ag1","host":"web-eu","cert_expires":"2030-01-01T00:00:00Z"}]}`
		default:
			return `{"link":"` + testLink + `","age_ms":0,"result_type":"vector","samples":[{"labels":{"host":"web-eu"},"t":1,"v":"2"}],"complete":false,"warnings":["node e2: timeout"]}`
		}
	})
	ctx := context.Background()
	h := rt.GlobalHealth(ctx, api.RegionHealth{Source: "local", Region: "us-east"})
	if len(h.Regions) != 2 || h.Regions[1].Source != "peer:eu-west" || h.Regions[1].Region != "eu-west" || !h.Complete {
		t.Errorf("global health: %+v", h)
	}
	a := rt.GlobalAgents(ctx, "t1", nil)
	if len(a.Agents) != 1 || a.Agents[0].Source != "peer:eu-west" || a.Agents[0].Region != "eu-west" || a.Agents[0].Host != "web-eu" || !a.Complete {
		t.Errorf("global agents: %+v", a)
	}
	q := rt.GlobalQuery(ctx, "t1", "up", time.Now(), federation.Query{ResultType: "vector", Complete: true})
	if len(q.Samples) != 1 || q.Samples[0].Labels[federation.PeerLabel] != "eu-west" || q.Samples[0].Labels["host"] != "web-eu" {
		t.Errorf("global query samples: %+v", q.Samples)
	}
	if q.Complete || len(q.Warnings) != 1 || q.Warnings[0] != "peer eu-west: node e2: timeout" {
		t.Errorf("a peer's incomplete answer: complete %v, warnings %q", q.Complete, q.Warnings)
	}
	if other := rt.GlobalAgents(ctx, "t2", nil); len(other.Peers) != 0 || len(other.Agents) != 0 {
		t.Errorf("a tenant without links asked peers: %+v", other)
	}
}

// A peer unheard for three polls is stale, never ok, in peers list.
func TestStateStaleWhenUnheard(t *testing.T) {
	rt, _ := testRuntime(t, nil)
	if s := rt.State("eu-west"); s.State != "unknown" || s.Node != "n1" {
		t.Errorf("never asked: %+v", s)
	}
	rt.observe(federation.PeerStatus{Peer: "eu-west", Status: federation.StatusOK, At: time.Now(), Call: "health"})
	if s := rt.State("eu-west"); s.State != federation.StatusOK {
		t.Errorf("just answered: %+v", s)
	}
	// A tenant's call that failed (an unknown link) is not the peer's state.
	rt.observe(federation.PeerStatus{Peer: "eu-west", Status: federation.StatusError, Error: "HTTP 404 unknown_link", At: time.Now(), Call: "agents"})
	if s := rt.State("eu-west"); s.State != federation.StatusOK || s.LastError != "" {
		t.Errorf("a tenant's unknown link changed the peer's state: %+v", s)
	}
	rt.observe(federation.PeerStatus{Peer: "eu-west", Status: federation.StatusOK, At: time.Now().Add(-4 * time.Second), Call: "health"})
	if s := rt.State("eu-west"); s.State != federation.StatusStale {
		t.Errorf("unheard for four polls: %+v", s)
	}
}

// Refusals are audited without flooding: the first of a peer and reason
// at once, the rest counted into one record per period; a region that is
// no peer names itself freely in its certificate, so such refusals are
// counted together, whatever region each claims.
func TestRefusalsAggregated(t *testing.T) {
	rt, log := testRuntime(t, nil)
	for range 20 {
		rt.refused(federation.Refusal{Peer: "eu-west", Reason: "signature", Err: fmt.Errorf("bad")})
	}
	for i := range 20 {
		rt.refused(federation.Refusal{Peer: fmt.Sprintf("made-up-%d", i), Reason: "tls", Err: fmt.Errorf("%w: %d", federation.ErrUnknownPeer, i)})
	}
	got := log.records()
	if len(got) != 2 || got[0].entity != "peer/eu-west" || got[1].entity != "peer/unknown" || got[1].detail["claimed"] != "made-up-0" {
		t.Fatalf("records at once: %+v, want the first of each peer and reason (the unknown regions as one)", got)
	}
	rt.flush()
	got = log.records()[2:]
	counts := map[string]any{}
	for _, r := range got {
		counts[r.entity] = r.detail["counts"]
	}
	if len(got) != 2 || fmt.Sprint(counts["peer/eu-west"]) != "map[signature:19]" || fmt.Sprint(counts["peer/unknown"]) != "map[tls:19]" {
		t.Fatalf("records of the period: %+v", got)
	}
	rt.refused(federation.Refusal{Peer: "eu-west", Reason: "signature", Err: fmt.Errorf("bad")})
	if n := len(log.records()); n != 5 {
		t.Fatalf("the first refusal of the next period: %d records, want it written at once", n)
	}
}

// A peer this node cannot open (its secret sealed under another key) is
// not silently left out: its call fails saying why, the view is not
// complete, and peers list shows the error.
func TestUnopenablePeerIsReported(t *testing.T) {
	rt, _ := testRuntime(t, func(string) string { return "" })
	rt.cfg.Keys = failKeys{}
	h := rt.GlobalHealth(t.Context(), api.RegionHealth{Source: "local"})
	if h.Complete || len(h.Peers) != 1 || h.Peers[0].Status != federation.StatusError || !strings.Contains(h.Peers[0].Error, "master_key_file") {
		t.Fatalf("global health with an unopenable peer: %+v", h)
	}
	a := rt.GlobalAgents(t.Context(), "t1", nil)
	if a.Complete || len(a.Peers) != 1 || a.Peers[0].Status != federation.StatusError {
		t.Fatalf("global agents with an unopenable peer: %+v", a)
	}
	rt.poll(make(chan struct{}))
	if s := rt.State("eu-west"); s.State != federation.StatusError || s.LastError == "" {
		t.Fatalf("peers list state: %+v", s)
	}
}

type failKeys struct{}

func (failKeys) Unwrap(string, string, []byte) ([]byte, error) {
	return nil, errors.New("sealed under another master key")
}
