package federation

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/outpost-mesh/outpost/federation/httpsig"
)

// The auth-factor suite, against the real Server: each way a request can
// fail one of its two factors is refused with the right code, and
// recorded through ServerConfig.Refused with the right Reason, the peer
// its certificate named and the sentinel of what failed.

// signAt signs as keyID with secret at at.
func signAt(keyID string, secret []byte, at time.Time) func(*http.Request) {
	return func(r *http.Request) {
		if err := httpsig.Sign(r, keyID, secret, at); err != nil {
			panic(err)
		}
	}
}

// wantRefusals checks that r recorded n refusals, each with reason, peer
// and an error wrapping sentinel.
func wantRefusals(t *testing.T, r *region, n int, reason, peer string, sentinel error) {
	t.Helper()
	checkRefusals(t, r, n, n, reason, peer, sentinel)
}

// wantHandshakeRefusals is wantRefusals for one request refused at the
// handshake: the client may finish its side of the handshake before the
// server refuses its certificate, find the connection closed when it
// opens the request's stream, and dial once more (http3.Transport retries
// a request on a connection that proved unusable), so 1 or 2.
func wantHandshakeRefusals(t *testing.T, r *region, peer string, sentinel error) {
	t.Helper()
	checkRefusals(t, r, 1, 2, "tls", peer, sentinel)
}

func checkRefusals(t *testing.T, r *region, atLeast, atMost int, reason, peer string, sentinel error) {
	t.Helper()
	refs := r.refused()
	if len(refs) < atLeast || len(refs) > atMost {
		t.Errorf("%d refusals recorded, want %d to %d: %+v", len(refs), atLeast, atMost, refs)
	}
	for _, f := range refs {
		if f.Reason != reason || f.Peer != peer || !errors.Is(f.Err, sentinel) {
			t.Errorf("refusal %+v (err %v), want reason %q, peer %q, an error wrapping %q", f, f.Err, reason, peer, sentinel)
		}
	}
}

// A signed request sent twice with the same headers is accepted once:
// the second is refused as a replay (even on another connection).
func TestAuthReplayRefused(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	secret := pair(t, a, b)
	var sig http.Header
	once := func(r *http.Request) {
		signAt("us-east", secret, time.Now())(r)
		sig = r.Header.Clone()
	}
	again := func(r *http.Request) {
		for k, v := range sig {
			r.Header[k] = v
		}
	}
	if code, body := rawRequest(t, "GET", b, &a.cert, PathHealth, once); code != http.StatusOK {
		t.Fatalf("first sending: %d %s", code, body)
	}
	code, body := rawRequest(t, "GET", b, &a.cert, PathHealth, again)
	if code != http.StatusUnauthorized || !strings.Contains(body, "bad_signature") || !strings.Contains(body, "replayed") {
		t.Fatalf("replay: %d %s, want 401 bad_signature", code, body)
	}
	wantRefusals(t, b, 1, "signature", "us-east", httpsig.ErrReplay)
}

// A signature created beyond ±30 s of the server's clock is refused; one
// within it passes.
func TestAuthClockSkewRefused(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	secret := pair(t, a, b)
	for _, d := range []time.Duration{-25 * time.Second, 25 * time.Second} {
		if code, body := rawRequest(t, "GET", b, &a.cert, PathHealth, signAt("us-east", secret, time.Now().Add(d))); code != http.StatusOK {
			t.Errorf("signed %v off, within the window: %d %s", d, code, body)
		}
	}
	for _, d := range []time.Duration{-2 * time.Minute, 2 * time.Minute} {
		code, body := rawRequest(t, "GET", b, &a.cert, PathHealth, signAt("us-east", secret, time.Now().Add(d)))
		if code != http.StatusUnauthorized || !strings.Contains(body, "bad_signature") {
			t.Errorf("signed %v off: %d %s, want 401 bad_signature", d, code, body)
		}
	}
	wantRefusals(t, b, 2, "signature", "us-east", httpsig.ErrSkew)
}

// A request with one peer's certificate signed with another configured
// peer's key id and secret (both valid on their own) is refused 403.
func TestAuthKeyIDOfAnotherPeer(t *testing.T) {
	a, b, c := newRegion(t, "us-east"), newRegion(t, "eu-west"), newRegion(t, "ap-south")
	pair(t, a, b)
	secretC := pair(t, c, b)
	code, body := rawRequest(t, "GET", b, &a.cert, PathHealth, signAt("ap-south", secretC, time.Now()))
	if code != http.StatusForbidden || !strings.Contains(body, "keyid_mismatch") {
		t.Fatalf("keyid of another peer: %d %s, want 403 keyid_mismatch", code, body)
	}
	refs := b.refused()
	if len(refs) != 1 || refs[0].Reason != "keyid" || refs[0].Peer != "us-east" || !strings.Contains(refs[0].Err.Error(), `"ap-south"`) {
		t.Fatalf("refusals %+v, want one keyid refusal of us-east naming ap-south", refs)
	}
	// c's own certificate with c's key passes: the refusal was the mix.
	if code, body := rawRequest(t, "GET", b, &c.cert, PathHealth, signAt("ap-south", secretC, time.Now())); code != http.StatusOK {
		t.Fatalf("ap-south as itself: %d %s", code, body)
	}
}

// A client certificate of a region that is no peer is refused at the
// handshake, recorded as tls with the region it named.
func TestAuthUnknownRegionRefused(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	pair(t, a, b)
	x := newRegion(t, "sa-east") // a valid node certificate of its own CA, not a peer of b
	code, body := rawRequest(t, "GET", b, &x.cert, PathHealth, signAt("sa-east", []byte(strings.Repeat("k", 32)), time.Now()))
	if code != 0 {
		t.Fatalf("a region that is no peer: %d %s, want a refused handshake", code, body)
	}
	wantHandshakeRefusals(t, b, "sa-east", ErrUnknownPeer)
	// The client saw the refusal as one, not as a timeout.
	p := Peer{Name: "eu-west", Addr: b.addr, CA: b.ca.Cert, Secret: []byte(strings.Repeat("k", 32))}
	if _, st := x.client.Health(context.Background(), p); st.Status != StatusRefused {
		t.Fatalf("client status for a handshake refused by the server: %+v", st)
	}
}

// The handler re-identifies the peer on every request: a peer removed (or
// re-pinned to another CA) after its connection was made is refused on
// that same connection, and answered again once configured back.
func TestAuthPeerRemovedMidConnection(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	pair(t, a, b)
	var dials atomic.Int32
	a.client.Transport = func(tlsConf *tls.Config) http.RoundTripper {
		return &http3.Transport{TLSClientConfig: tlsConf, QUICConfig: QUICConfig(),
			Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
				dials.Add(1)
				return quic.DialAddrEarly(ctx, addr, tlsCfg, cfg)
			}}
	}
	p, _ := a.peer("eu-west")
	ctx := context.Background()
	if _, st := a.client.Health(ctx, p); st.Status != StatusOK {
		t.Fatalf("before the removal: %+v", st)
	}
	b.mu.Lock()
	saved := b.peers["us-east"]
	delete(b.peers, "us-east")
	b.mu.Unlock()
	_, st := a.client.Health(ctx, p)
	if st.Status != StatusRefused || !strings.Contains(st.Error, "HTTP 401 unauthenticated") {
		t.Fatalf("after the removal: %+v, want refused 401", st)
	}
	wantRefusals(t, b, 1, "tls", "us-east", ErrUnknownPeer)

	rogue := newRegion(t, "us-east")
	b.mu.Lock()
	b.peers["us-east"] = Peer{Name: "us-east", Addr: a.addr, CA: rogue.ca.Cert, Secret: saved.Secret}
	b.mu.Unlock()
	if _, st := a.client.Health(ctx, p); st.Status != StatusRefused {
		t.Fatalf("after the peer's CA was re-pinned: %+v, want refused", st)
	}
	if refs := b.refused(); len(refs) != 2 || refs[1].Reason != "tls" || !errors.Is(refs[1].Err, ErrPeerCert) {
		t.Fatalf("refusals after the re-pin: %+v", refs)
	}

	b.mu.Lock()
	b.peers["us-east"] = saved
	b.mu.Unlock()
	if _, st := a.client.Health(ctx, p); st.Status != StatusOK {
		t.Fatalf("configured back: %+v", st)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d connections dialed, want every request on the first", n)
	}
}

// An expired client certificate of the right CA and region is refused at
// the handshake, recorded as tls.
func TestAuthExpiredClientCert(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	secret := pair(t, a, b)
	expired := issueNodeCert(t, a.ca, "us-east", "n1", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	code, body := rawRequest(t, "GET", b, &expired, PathHealth, signAt("us-east", secret, time.Now()))
	if code != 0 {
		t.Fatalf("expired client certificate: %d %s, want a refused handshake", code, body)
	}
	wantHandshakeRefusals(t, b, "us-east", ErrPeerCert)
	if refs := b.refused(); len(refs) > 0 && !strings.Contains(refs[0].Err.Error(), "expired") {
		t.Errorf("the refusal does not say the certificate expired: %v", refs[0].Err)
	}
}
