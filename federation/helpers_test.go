package federation

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/node/pki"
)

// region is one test region: its CA, one node's certificate, a federation
// server on real QUIC on loopback, and a client.
type region struct {
	name   string
	ca     *pki.CA
	cert   tls.Certificate
	view   *fakeView
	server *Server
	addr   string
	client *Client

	mu       sync.Mutex
	peers    map[string]Peer
	refusals []Refusal
}

func newRegion(t *testing.T, name string) *region {
	t.Helper()
	ca, err := pki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueNode(name, "n1", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &region{name: name, ca: ca, cert: cert, peers: map[string]Peer{}, view: newFakeView(name)}
	r.server = NewServer(ServerConfig{
		Cert: func() *tls.Certificate { return &r.cert },
		Peer: r.peer,
		View: r.view,
		Refused: func(f Refusal) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.refusals = append(r.refusals, f)
		},
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = pc.LocalAddr().String()
	done := make(chan error, 1)
	go func() { done <- r.server.Serve(pc) }()
	r.client = &Client{Self: name, Cert: func() *tls.Certificate { return &r.cert }, Timeout: 2 * time.Second}
	t.Cleanup(func() {
		r.client.Close()
		_ = r.server.Close()
		_ = pc.Close()
		if err := <-done; err != nil && !strings.Contains(err.Error(), "closed") {
			t.Errorf("%s: serve: %v", name, err)
		}
	})
	return r
}

func (r *region) peer(name string) (Peer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.peers[name]
	return p, ok
}

func (r *region) refused() []Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Refusal(nil), r.refusals...)
}

// pair configures a and b as peers of each other with one shared secret
// and returns it.
func pair(t *testing.T, a, b *region) []byte {
	t.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	a.mu.Lock()
	a.peers[b.name] = Peer{Name: b.name, Addr: b.addr, CA: b.ca.Cert, Secret: secret}
	a.mu.Unlock()
	b.mu.Lock()
	b.peers[a.name] = Peer{Name: a.name, Addr: a.addr, CA: a.ca.Cert, Secret: secret}
	b.mu.Unlock()
	return secret
}

// link configures link on b for calls from peer a against b's tenant.
func link(b *region, peer, link, tenantID string) {
	b.view.mu.Lock()
	defer b.view.mu.Unlock()
	b.view.links[peer+"/"+link] = tenantID
}

// fakeView is a region's read view in unit tests (the node's real one is
// tested with real nodes in node/).
type fakeView struct {
	name   string
	mu     sync.Mutex
	links  map[string]string     // peer/link -> tenant id
	agents map[string][]AgentRow // tenant id -> rows
	age    int64
}

func newFakeView(name string) *fakeView {
	return &fakeView{name: name, links: map[string]string{}, agents: map[string][]AgentRow{}}
}

func (v *fakeView) Health(context.Context) (Health, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return Health{Region: v.name, Node: "n1", Leader: "n1", Nodes: []NodeHealth{{ID: "n1", RaftState: "Leader"}},
		Lease: LeaseHealth{Holder: "n1", Token: 7, ExpiresInMs: 3000}, AgeMs: v.age}, nil
}

func (v *fakeView) LinkTenant(peer, link string) (string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.links[peer+"/"+link]
	return t, ok
}

func (v *fakeView) Agents(_ context.Context, tenantID string) (Agents, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return Agents{AgeMs: v.age, Agents: v.agents[tenantID]}, nil
}

func (v *fakeView) Query(_ context.Context, tenantID, q string, ts time.Time) (Query, error) {
	if q == "bad(" {
		return Query{}, fmt.Errorf("%w: parse error", ErrBadQuery)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var s []Sample
	for _, a := range v.agents[tenantID] {
		s = append(s, Sample{Labels: map[string]string{"__name__": "up", "agent": a.ID}, T: ts.UnixMilli(), V: "1"})
	}
	return Query{AgeMs: v.age, ResultType: "vector", Samples: s, Complete: true}, nil
}

// rawGet sends an unsigned GET (or method) to r's server with cert.
func rawRequest(t *testing.T, method string, to *region, cert *tls.Certificate, path string, sign func(*http.Request)) (int, string) {
	t.Helper()
	c := &Client{Self: "x", Cert: func() *tls.Certificate { return cert }}
	p := Peer{Name: to.name, Addr: to.addr, CA: to.ca.Cert}
	rt := HTTP3(clientTLS(p, c.Cert, time.Now))
	defer closeRT(rt)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, "https://"+to.addr+path, nil)
	if sign != nil {
		sign(req)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	return resp.StatusCode, string(buf[:n])
}
