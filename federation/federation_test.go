package federation

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/federation/httpsig"
)

func TestGlobalReadsOverQUIC(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	pair(t, a, b)
	link(b, "us-east", "lnk-1", "tenant-b-local")
	b.view.mu.Lock() // the server's handlers read it under mu
	b.view.agents["tenant-b-local"] = []AgentRow{{ID: "ag1", Host: "web-1", Mode: "ebpf"}, {ID: "ag2", Host: "web-2", Mode: "procfs"}}
	b.view.mu.Unlock()
	ctx := context.Background()
	p, _ := a.peer("eu-west")

	h, st := a.client.Health(ctx, p)
	if st.Status != StatusOK || h.Region != "eu-west" || h.Lease.Token != 7 {
		t.Fatalf("health: %+v %+v", st, h)
	}
	if st.CertExpires.IsZero() {
		t.Errorf("health status has no certificate expiry: %+v", st)
	}
	ag, st := a.client.Agents(ctx, p, "lnk-1")
	if st.Status != StatusOK || st.Rows != 2 || len(ag.Agents) != 2 || ag.Agents[0].Host != "web-1" {
		t.Fatalf("agents: %+v %+v", st, ag)
	}
	q, st := a.client.Query(ctx, p, "lnk-1", "up", time.Now())
	if st.Status != StatusOK || len(q.Samples) != 2 {
		t.Fatalf("query: %+v %+v", st, q)
	}
	if _, st := a.client.Agents(ctx, p, "lnk-unknown"); st.Status != StatusError {
		t.Fatalf("unknown link: %+v", st)
	}
	if _, st := a.client.Query(ctx, p, "lnk-1", "bad(", time.Now()); st.Status != StatusError {
		t.Fatalf("bad query: %+v", st)
	}
	// A link configured for another peer does not answer this one.
	link(b, "ap-south", "lnk-2", "tenant-b-local")
	if _, st := a.client.Agents(ctx, p, "lnk-2"); st.Status != StatusError {
		t.Fatalf("another peer's link answered: %+v", st)
	}
	b.view.mu.Lock()
	b.view.age = 60_000
	b.view.mu.Unlock()
	if _, st := a.client.Agents(ctx, p, "lnk-1"); st.Status != StatusStale || !st.OK() {
		t.Fatalf("stale data not marked: %+v", st)
	}
}

func TestWriteMethodsRefused(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	secret := pair(t, a, b)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		code, body := rawRequest(t, m, b, &a.cert, PathHealth, func(r *http.Request) { _ = httpsig.Sign(r, "us-east", secret, time.Now()) })
		if code != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d %s, want 405", m, code, body)
		}
	}
	if n := len(b.refused()); n != 4 {
		t.Errorf("%d refusals recorded, want 4", n)
	}
}

func TestBothFactorsRequired(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	secret := pair(t, a, b)
	rogue := newRegion(t, "us-east") // same region name, another CA
	good := func(r *http.Request) { _ = httpsig.Sign(r, "us-east", secret, time.Now()) }

	if code, body := rawRequest(t, "GET", b, &a.cert, PathHealth, good); code != http.StatusOK {
		t.Fatalf("both factors: %d %s", code, body)
	}
	if code, body := rawRequest(t, "GET", b, &a.cert, PathHealth, nil); code != http.StatusUnauthorized {
		t.Errorf("no signature: %d %s", code, body)
	}
	wrong := func(r *http.Request) {
		_ = httpsig.Sign(r, "us-east", []byte("0123456789abcdef0123456789abcdef"), time.Now())
	}
	if code, body := rawRequest(t, "GET", b, &a.cert, PathHealth, wrong); code != http.StatusUnauthorized {
		t.Errorf("wrong secret: %d %s", code, body)
	}
	if code, body := rawRequest(t, "GET", b, &rogue.cert, PathHealth, good); code != 0 {
		t.Errorf("certificate of another CA with the right secret: %d %s, want a refused handshake", code, body)
	}
	refs := b.refused()
	var tlsRef, sigRef int
	for _, r := range refs {
		switch r.Reason {
		case "tls":
			tlsRef++
		case "signature":
			sigRef++
			if !errors.Is(r.Err, httpsig.ErrMissing) && !errors.Is(r.Err, httpsig.ErrBadSignature) {
				t.Errorf("signature refusal without its sentinel: %v", r.Err)
			}
		}
	}
	if tlsRef == 0 || sigRef != 2 {
		t.Errorf("refusals: tls %d, signature %d (%+v)", tlsRef, sigRef, refs)
	}
}

// Complete means fresh rows from every peer asked: a stale answer's rows
// are shown (OK) but the answer is not complete.
func TestCompleteNeedsEveryPeerFresh(t *testing.T) {
	ok, stale := PeerStatus{Peer: "a", Status: StatusOK}, PeerStatus{Peer: "b", Status: StatusStale}
	if !stale.OK() || !Complete(nil) || !Complete([]PeerStatus{ok}) {
		t.Fatal("a stale peer's rows are shown; no peers or every peer ok is complete")
	}
	if Complete([]PeerStatus{ok, stale}) {
		t.Fatal("an answer with a stale peer is complete")
	}
}

// An honest region's long values (a host name, a label value) are fitted
// to the wire's limits by the server, not refused by the asker with the
// rest of the answer: strings are cut, a series it cannot carry is left
// out and said so.
func TestLongValuesFitTheWire(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	pair(t, a, b)
	link(b, "us-east", "lnk-1", "tenant-b-local")
	long := strings.Repeat("é", MaxString) // 2 bytes a rune
	b.view.mu.Lock()
	b.view.agents["tenant-b-local"] = []AgentRow{{ID: "ag1", Host: long}, {ID: "ag2-" + long, Host: "web-2"}}
	b.view.mu.Unlock()
	p, _ := a.peer("eu-west")
	ag, st := a.client.Agents(context.Background(), p, "lnk-1")
	if st.Status != StatusOK || len(ag.Agents) != 2 {
		t.Fatalf("agents with a long host name: %+v", st)
	}
	if h := ag.Agents[0].Host; len(h) > MaxString || !strings.HasSuffix(h, "é…") {
		t.Errorf("host cut to %d bytes: %q", len(h), h)
	}
	q, st := a.client.Query(context.Background(), p, "lnk-1", "up", time.Now())
	if st.Status != StatusOK || len(q.Samples) != 1 || q.Samples[0].Labels["agent"] != "ag1" {
		t.Fatalf("query with a long label value: %+v %+v", st, q.Samples)
	}
	if q.Complete || len(q.Warnings) != 1 || !strings.Contains(q.Warnings[0], "1 series left out") {
		t.Errorf("the series left out is not said: complete %v, warnings %q", q.Complete, q.Warnings)
	}
}

// A peer with several addresses (its nodes) is reached through the next
// one when the first does not answer, and the one that answered is asked
// first after that.
func TestPeerAddressesFailOver(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	pair(t, a, b)
	dead, err := net.ListenPacket("udp", "127.0.0.1:0") // bound, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	p, _ := a.peer("eu-west")
	p.Addr = dead.LocalAddr().String() + ", " + b.addr
	a.client.Timeout = time.Second
	start := time.Now()
	if _, st := a.client.Health(context.Background(), p); st.Status != StatusOK {
		t.Fatalf("through the second address: %+v", st)
	}
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Errorf("the first address held the call %v (its share is half the 1s deadline)", took)
	}
	start = time.Now()
	if _, st := a.client.Health(context.Background(), p); st.Status != StatusOK {
		t.Fatalf("again: %+v", st)
	}
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("the second call took %v: it did not start with the address that answered", took)
	}
	p.Addr = dead.LocalAddr().String()
	if _, st := a.client.Health(context.Background(), p); st.Status != StatusTimeout || !strings.Contains(st.Error, dead.LocalAddr().String()) {
		t.Errorf("only the dead address: %+v", st)
	}
}
