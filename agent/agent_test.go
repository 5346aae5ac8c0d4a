package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	pb "github.com/open-telemetry/opamp-go/protobufs"

	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/internal/meshid"
)

func remote(t *testing.T, d agentwire.Dispatch) *pb.AgentRemoteConfig {
	t.Helper()
	body, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	return &pb.AgentRemoteConfig{ConfigHash: sum[:], Config: &pb.AgentConfigMap{ConfigMap: map[string]*pb.AgentConfigFile{
		agentwire.DispatchFile: {Body: body, ContentType: "application/json"}}}}
}

func testAgent(t *testing.T, dir string, apply func(agentwire.Config) error) *Agent {
	t.Helper()
	st, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{Apply: apply}, logger: slog.New(slog.DiscardHandler), store: st}
	if a.st, err = st.load(); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestFencingAtTheAgent: the agent persists the highest fencing token it
// has seen, across restarts, and refuses a dispatch under a lower one
// with the refusal prefix the node records as "refused"; a redelivered
// dispatch is recognised by id and not applied again; an older config
// and a bad one fail with a reason; nothing refused or failed is applied.
func TestFencingAtTheAgent(t *testing.T) {
	dir := t.TempDir()
	var applied []string
	apply := func(c agentwire.Config) error {
		if c.ExportInterval == "13s" {
			return errors.New("probe engine rejected it")
		}
		applied = append(applied, c.ExportInterval)
		return nil
	}
	a := testAgent(t, dir, apply)
	cfg := func(iv string) json.RawMessage { return json.RawMessage(`{"export_interval":"` + iv + `"}`) }
	d1 := agentwire.Dispatch{ID: "d1", Kind: "config", Token: 5, Index: 10, Node: "n1", Payload: cfg("10s")}
	if st, msg := a.decide(remote(t, d1)); st != "applied" || msg != "" {
		t.Fatalf("d1: %s %s", st, msg)
	}
	// A restart keeps the token.
	a = testAgent(t, dir, apply)
	if a.st.HighestToken != 5 || a.st.LastIndex != 10 {
		t.Fatalf("state after restart: %+v", a.st)
	}
	stale := agentwire.Dispatch{ID: "d0", Kind: "config", Token: 4, Index: 12, Node: "n3", Payload: cfg("11s")}
	st, msg := a.decide(remote(t, stale))
	if st != "failed" || !strings.HasPrefix(msg, agentwire.RefusedPrefix) || !strings.Contains(msg, "token 4") {
		t.Fatalf("stale token: %s %q", st, msg)
	}
	if st, _ := a.decide(remote(t, d1)); st != "applied" {
		t.Fatalf("redelivery of d1: %s", st)
	}
	older := agentwire.Dispatch{ID: "d-old", Kind: "config", Token: 5, Index: 9, Payload: cfg("12s")}
	if st, msg := a.decide(remote(t, older)); st != "failed" || !strings.Contains(msg, "older") {
		t.Fatalf("older config: %s %q", st, msg)
	}
	bad := agentwire.Dispatch{ID: "d-bad", Kind: "config", Token: 6, Index: 20, Payload: json.RawMessage(`{"sample_rate":7}`)}
	if st, msg := a.decide(remote(t, bad)); st != "failed" || !strings.Contains(msg, "sample_rate") {
		t.Fatalf("bad config: %s %q", st, msg)
	}
	if a.st.HighestToken != 6 {
		t.Fatalf("a committed dispatch under token 6 was seen; highest is %d", a.st.HighestToken)
	}
	if st, _ := a.decide(remote(t, agentwire.Dispatch{ID: "d2", Kind: "config", Token: 5, Index: 30, Payload: cfg("14s")})); st != "failed" {
		t.Fatal("token 5 accepted after token 6 was seen")
	}
	if st, msg := a.decide(remote(t, agentwire.Dispatch{ID: "d3", Kind: "config", Token: 6, Index: 31, Payload: cfg("13s")})); st != "failed" ||
		!strings.Contains(msg, "rejected") {
		t.Fatalf("apply error: %s %q", st, msg)
	}
	if st, _ := a.decide(&pb.AgentRemoteConfig{ConfigHash: []byte{1}}); st != "failed" {
		t.Fatal("a remote config without the dispatch file was accepted")
	}
	if len(applied) != 1 || applied[0] != "10s" {
		t.Fatalf("applied %v, want only d1", applied)
	}
}

// TestNearerNodeHysteresis: the agent moves only to a markedly nearer
// node, and always away from a failed or full one.
func TestNearerNodeHysteresis(t *testing.T) {
	a := &Agent{cfg: Config{Hysteresis: DefaultHysteresis, MinGain: DefaultMinGain}}
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	cases := []struct {
		cur, best candidate
		move      bool
	}{
		{candidate{url: "a", rtt: ms(10)}, candidate{url: "b", rtt: ms(8)}, false},  // 1.25×: stay
		{candidate{url: "a", rtt: ms(10)}, candidate{url: "b", rtt: ms(5)}, true},   // 2×, 5 ms
		{candidate{url: "a", rtt: ms(1)}, candidate{url: "b", rtt: ms(0.3)}, false}, // 3× but under 2 ms gain
		{candidate{url: "a", rtt: ms(10), full: true}, candidate{url: "b", rtt: ms(9)}, true},
		{candidate{url: "a", err: errors.New("down")}, candidate{url: "b", rtt: ms(50)}, true},
		{candidate{url: "a", rtt: ms(50)}, candidate{url: "b", rtt: ms(5), full: true}, false},
		{candidate{url: "a", rtt: ms(50)}, candidate{url: "a", rtt: ms(5)}, false},
	}
	for i, c := range cases {
		if got := a.better(c.cur, c.best); got != c.move {
			t.Errorf("case %d: better(%+v, %+v) = %v", i, c.cur, c.best, got)
		}
	}
}

// TestKeyFileMode: the key is written 0600 and a key readable by others
// is refused with what to do.
func TestKeyFileMode(t *testing.T) {
	dir := t.TempDir()
	st, _ := openStore(dir)
	if _, err := st.key(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, keyFile)
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v", fi.Mode())
	}
	_ = os.Chmod(p, 0o644)
	if _, err := st.key(); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a 0644 key: %v", err)
	}
}

// selfSigned is a certificate for key, enough for the store's key match.
func selfSigned(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)},
		&x509.Certificate{SerialNumber: big.NewInt(1)}, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestInterruptedRenewal: a crash after the renewed certificate was saved
// but before its key was promoted is finished at the next start; a crash
// before the certificate was saved keeps the pending key, so the next
// renewal asks for the same key again.
func TestInterruptedRenewal(t *testing.T) {
	st, err := openStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cur, err := st.key()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.saveCert(selfSigned(t, cur)); err != nil {
		t.Fatal(err)
	}
	next, err := st.nextKey()
	if err != nil {
		t.Fatal(err)
	}
	// Crash before the certificate was saved: nothing to finish.
	if err := st.reconcile(); err != nil {
		t.Fatal(err)
	}
	if k, _ := st.key(); !k.Equal(cur) {
		t.Fatal("reconcile replaced the key while the certificate is still for it")
	}
	if again, err := st.nextKey(); err != nil || !again.Equal(next) {
		t.Fatalf("the pending renewal key was not kept: %v", err)
	}
	// Crash after the certificate was saved: the key is promoted.
	if err := st.saveCert(selfSigned(t, next)); err != nil {
		t.Fatal(err)
	}
	if err := st.reconcile(); err != nil {
		t.Fatal(err)
	}
	k, err := st.key()
	if err != nil || !k.Equal(next) {
		t.Fatalf("the renewed key was not promoted: %v", err)
	}
	if _, err := os.Stat(st.path(nextKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the pending key file is still there: %v", err)
	}
	if c, err := st.certificate(k); err != nil || c == nil {
		t.Fatalf("the certificate does not load with the promoted key: %v", err)
	}
}

// TestEnrollRetriesTransientFailures: a 503 (an election in the region)
// or a 429 does not end the enrollment: the agent asks every server
// again, backing off, until one answers; a refusal (4xx) ends it at once.
func TestEnrollRetriesTransientFailures(t *testing.T) {
	var calls atomic.Int32
	caPEM, nodeCert := testNodeCert(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"write outcome unknown"}`))
		case 2:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"unknown bootstrap token"}`))
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{nodeCert}}
	srv.StartTLS()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := New(ctx, Config{StateDir: t.TempDir(), Token: "opb_x", Servers: []string{srv.URL}, CAPEM: caPEM})
	if err == nil || !strings.Contains(err.Error(), "enrollment refused") || calls.Load() != 3 {
		t.Fatalf("after a 503 and a 429, then a refusal: %v (%d calls), want the refusal on the third call", err, calls.Load())
	}
}

// testNodeCert makes a region CA and a node certificate it signed, as a
// node of region "dev" presents on its agent port.
func testNodeCert(t *testing.T) (caPEM []byte, node tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, URIs: []*url.URL{meshid.NodeURI("dev", "n1")},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// enrollServer answers enrollment attempts with answer, presenting
// nodeCert.
func enrollServer(t *testing.T, nodeCert tls.Certificate, answer func(w http.ResponseWriter)) (url string, calls *atomic.Int32) {
	t.Helper()
	calls = &atomic.Int32{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		answer(w)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{nodeCert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, calls
}

func answerCode(w http.ResponseWriter, status int, code string) {
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"error":"unknown bootstrap token","code":%q}`, code)
}

// TestEnrollAsksAgainWhileTokenNotSeen: a node that has not seen the
// token (it was created a moment ago on another node and has not
// replicated here) does not end the enrollment; the agent asks every
// server again until one answers for good. Here the second node lags
// for three rounds, then has read the region's state and says the token
// is unknown: that ends it at once.
func TestEnrollAsksAgainWhileTokenNotSeen(t *testing.T) {
	caPEM, nodeCert := testNodeCert(t)
	lagging, lagCalls := enrollServer(t, nodeCert, func(w http.ResponseWriter) {
		answerCode(w, http.StatusUnauthorized, agentwire.CodeTokenNotSeen)
	})
	var asked atomic.Int32
	second, _ := enrollServer(t, nodeCert, func(w http.ResponseWriter) {
		if asked.Add(1) <= 3 {
			answerCode(w, http.StatusUnauthorized, agentwire.CodeTokenNotSeen)
			return
		}
		answerCode(w, http.StatusUnauthorized, agentwire.CodeTokenUnknown)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := New(ctx, Config{StateDir: t.TempDir(), Token: "opb_x", Servers: []string{lagging, second}, CAPEM: caPEM})
	if asked.Load() != 4 || lagCalls.Load() != 4 {
		t.Fatalf("the agent asked the lagging nodes %d and %d times, want 4 rounds over both: %v", lagCalls.Load(), asked.Load(), err)
	}
	if err == nil || !strings.Contains(err.Error(), "enrollment refused") || !strings.Contains(err.Error(), "unknown bootstrap token") {
		t.Fatalf("after the token was known unknown: %v, want the refusal", err)
	}
}

// TestEnrollGivesUpWhenNoNodeSeesTheToken: asking again is bounded; a
// token no node has seen for UnknownTokenGrace ends the enrollment with
// an error that says so.
func TestEnrollGivesUpWhenNoNodeSeesTheToken(t *testing.T) {
	caPEM, nodeCert := testNodeCert(t)
	url, calls := enrollServer(t, nodeCert, func(w http.ResponseWriter) {
		answerCode(w, http.StatusUnauthorized, agentwire.CodeTokenNotSeen)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := New(ctx, Config{StateDir: t.TempDir(), Token: "opb_x", Servers: []string{url}, CAPEM: caPEM, UnknownTokenGrace: time.Second})
	if err == nil || !strings.Contains(err.Error(), "no node has seen this token") {
		t.Fatalf("err = %v, want the agent to give up saying no node has seen the token", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the agent asked until its context ended instead of giving up after UnknownTokenGrace")
	}
	if calls.Load() < 2 {
		t.Fatalf("%d calls: the agent did not ask again", calls.Load())
	}
}

// TestEnrollErrorKinds: which failures end the enrollment and which are
// asked again.
func TestEnrollErrorKinds(t *testing.T) {
	for _, c := range []struct {
		name                      string
		err                       error
		refused, notSeen, transit bool
	}{
		{"503 election", &statusError{Code: 503}, false, false, true},
		{"500", &statusError{Code: 500}, false, false, true},
		{"429 limiter", &statusError{Code: 429}, false, false, true},
		{"401 not seen here", &statusError{Code: 401, Reason: agentwire.CodeTokenNotSeen}, false, true, false},
		{"401 unknown after a read barrier", &statusError{Code: 401, Reason: agentwire.CodeTokenUnknown}, true, false, false},
		{"401 from an older node without a code", &statusError{Code: 401}, true, false, false},
		{"403 token used", &statusError{Code: 403}, true, false, false},
		{"400 bad request", &statusError{Code: 400}, true, false, false},
		{"connection refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, false, false, true},
		{"reset mid-answer", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), false, false, true},
		{"timed out", context.DeadlineExceeded, false, false, true},
		{"bad certificate", &tls.CertificateVerificationError{Err: errors.New("unknown authority")}, false, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := refused(c.err); got != c.refused {
				t.Errorf("refused = %v, want %v", got, c.refused)
			}
			if got := notSeen(c.err); got != c.notSeen {
				t.Errorf("notSeen = %v, want %v", got, c.notSeen)
			}
			if got := transient(c.err); got != c.transit {
				t.Errorf("transient = %v, want %v", got, c.transit)
			}
		})
	}
}

// TestRefusedByNode: a node's refusal is told apart from other failures
// by identity: a real TLS alert from a server that requires a client
// certificate, and a WebSocket upgrade answered with something other
// than 101; a dead port is not a refusal.
func TestRefusedByNode(t *testing.T) {
	caPEM, nodeCert := testNodeCert(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{nodeCert}, ClientAuth: tls.RequireAnyClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	dialer := &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	_, _, err := dialer.Dial("wss://"+strings.TrimPrefix(srv.URL, "https://"), nil)
	if !tlsAlert(err) || !refusedByNode(err) {
		t.Errorf("no client certificate: %v (%T) is not seen as the node's TLS alert", err, err)
	}
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) }))
	defer plain.Close()
	_, _, err = websocket.DefaultDialer.Dial("ws://"+strings.TrimPrefix(plain.URL, "http://"), nil)
	if tlsAlert(err) || !refusedByNode(err) {
		t.Errorf("upgrade answered 403: %v is not seen as a refusal (and only as one)", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	_, _, err = websocket.DefaultDialer.Dial("ws://"+addr, nil)
	if err == nil || refusedByNode(err) {
		t.Errorf("a dead port: %v is taken for a refusal", err)
	}
}
