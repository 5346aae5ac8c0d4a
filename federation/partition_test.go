package federation

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/outpost-mesh/outpost/internal/netlab"
)

// serveIn serves r's federation API on host i of lab, port 7443, and
// returns the address.
func serveIn(t *testing.T, lab *netlab.Lab, i int, r *region) string {
	t.Helper()
	addr := net.JoinHostPort(netlab.Addr(i), "7443")
	pc, err := lab.ListenPacket(i, "udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerConfig{Cert: func() *tls.Certificate { return &r.cert }, Peer: r.peer, View: r.view})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(pc) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = pc.Close()
		if err := <-done; err != nil && !strings.Contains(err.Error(), "closed") {
			t.Errorf("%s on host %d: serve: %v", r.name, i, err)
		}
	})
	return addr
}

// clientIn is a client of r whose QUIC connections leave from host i of
// lab (one UDP socket there for every peer), through its rules.
func clientIn(t *testing.T, lab *netlab.Lab, i int, r *region, timeout time.Duration) *Client {
	t.Helper()
	pc, err := lab.ListenPacket(i, "udp", net.JoinHostPort(netlab.Addr(i), "0"))
	if err != nil {
		t.Fatal(err)
	}
	qt := &quic.Transport{Conn: pc}
	c := &Client{Self: r.name, Cert: func() *tls.Certificate { return &r.cert }, Timeout: timeout,
		Transport: func(tlsConf *tls.Config) http.RoundTripper {
			return &http3.Transport{TLSClientConfig: tlsConf, QUICConfig: QUICConfig(), MaxResponseHeaderBytes: 16 << 10,
				Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
					ua, err := net.ResolveUDPAddr("udp", addr) // an IP literal: no lookup
					if err != nil {
						return nil, err
					}
					return qt.DialEarly(ctx, ua, tlsCfg, cfg)
				}}
		}}
	t.Cleanup(func() {
		c.Close()
		_ = qt.Close()
		_ = pc.Close()
	})
	return c
}

// TestPartition runs two regions' federation servers on netlab hosts 1
// and 2 and their peer's client on host 3 (not on the bridge: netlab cuts
// a host from the other hosts and leaves the bridge's view of it, so a
// client there would never see the partition). Cutting host 1 makes its
// peer a timeout by the deadline while the other still answers; healing
// brings it back; 30% loss each way still lets calls through.
//
// The cut is tried twice: on the wire (IsolateOnWire: packets vanish, as
// on a broken link) and with Isolate's rules in host 1's namespace, which
// also fail the server's own sends, so quic-go drops its side of the
// connection without a word. The client must recover from both: after a
// timeout it dials afresh instead of waiting out QUIC's 60 s idle timeout
// on a connection the server has forgotten.
func TestPartition(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skipf("netlab needs root, ip and nft: %v", err)
	}
	ctx := context.Background()
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lab, err := netlab.New(lctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // registered first: runs after the servers and the client stop
		if err := lab.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})

	a, b1, b2 := newRegion(t, "us-east"), newRegion(t, "eu-west"), newRegion(t, "ap-south")
	pair(t, a, b1)
	pair(t, a, b2)
	p1, _ := a.peer("eu-west")
	p2, _ := a.peer("ap-south")
	p1.Addr, p2.Addr = serveIn(t, lab, 1, b1), serveIn(t, lab, 2, b2)
	peers := []Peer{p1, p2}
	const timeout = time.Second
	c := clientIn(t, lab, 3, a, timeout)

	fanOut := func() []PeerStatus {
		t.Helper()
		var sts []PeerStatus
		timed(t, timeout+boundMargin, func() { _, sts = Each(ctx, peers, c.Health) })
		return sts
	}
	// until polls the fan-out until every peer answers, for at most 3 s.
	until := func(what string) {
		t.Helper()
		start := time.Now()
		for {
			sts := fanOut()
			if Complete(sts) {
				t.Logf("%s: both peers answer after %v", what, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > 3*time.Second {
				t.Fatalf("%s: %+v", what, sts)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	until("before any fault")

	for _, cut := range []struct {
		name string
		do   func(context.Context, int) error
	}{{"on the wire", lab.IsolateOnWire}, {"in the host", lab.Isolate}} {
		if err := cut.do(ctx, 1); err != nil {
			t.Fatal(err)
		}
		sts := fanOut()
		if sts[0].Peer != "eu-west" || sts[0].Status != StatusTimeout {
			t.Errorf("cut %s: the cut peer: %+v, want timeout", cut.name, sts[0])
		}
		if sts[1].Status != StatusOK {
			t.Errorf("cut %s: the peer still reachable: %+v", cut.name, sts[1])
		}
		if Complete(sts) {
			t.Errorf("cut %s: Complete with a peer cut off", cut.name)
		}
		if err := lab.Heal(ctx, 1); err != nil {
			t.Fatal(err)
		}
		until("healed after a cut " + cut.name)
	}

	if err := lab.LoseOnWire(ctx, 1, 30); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	start := time.Now()
	for range 20 {
		var st PeerStatus
		timed(t, timeout+boundMargin, func() { _, st = c.Health(ctx, p1) })
		counts[st.Status]++
	}
	t.Logf("20 calls through 30%% loss each way on the wire in %v: %v", time.Since(start).Round(time.Millisecond), counts)
	if counts[StatusOK] == 0 {
		t.Errorf("no call got through 30%% loss: %v", counts)
	}
}
