package federation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/outpost-mesh/outpost/node/pki"
)

// The hostile-peer suite: a peer that passes TLS (it presents a real
// certificate of its pinned CA) but answers whatever it likes. Every case
// asserts the status the client reports for it, an error that says what
// went wrong, and that the call ends within the client's Timeout plus
// boundMargin, whatever the peer does.

const (
	hostileTimeout = 500 * time.Millisecond
	// boundMargin is how far past its Timeout a call may return: the
	// stream's cancellation and the race detector's overhead, no more.
	boundMargin = 300 * time.Millisecond
)

// issueNodeCert issues a node certificate of region/node by ca valid from
// notBefore to notAfter (pki only issues certificates valid from now).
func issueNodeCert(t *testing.T, ca *pki.CA, region, node string, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: node, Organization: []string{"outpost"}, OrganizationalUnit: []string{"node"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{pki.NodeURI(region, node)},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// newCA makes a region CA and a node certificate it issued.
func newCA(t *testing.T, region string) (*pki.CA, tls.Certificate) {
	t.Helper()
	ca, err := pki.NewCA(region)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueNode(region, "n1", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ca, cert
}

// serveHostile serves h over HTTP/3 on a loopback UDP port with cert and
// returns the port's address. It stops at the test's end.
func serveHostile(t *testing.T, cert tls.Certificate, h http.Handler) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		Handler: h,
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequestClientCert,
		}),
		QUICConfig: QUICConfig(),
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(pc) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = pc.Close()
		<-done
	})
	return pc.LocalAddr().String()
}

// hostilePeer is a peer named name whose server, at the address it
// returns, presents a certificate its pinned CA issued and serves h.
func hostilePeer(t *testing.T, name string, h http.Handler) Peer {
	t.Helper()
	ca, cert := newCA(t, name)
	return Peer{Name: name, Addr: serveHostile(t, cert, h), CA: ca.Cert, Secret: []byte(strings.Repeat("s", MinSecret))}
}

// asker is a client of region us-east with a short Timeout and maxBody.
func asker(t *testing.T, timeout time.Duration, maxBody int64) *Client {
	t.Helper()
	_, cert := newCA(t, "us-east")
	c := &Client{Self: "us-east", Cert: func() *tls.Certificate { return &cert }, Timeout: timeout, MaxBody: maxBody}
	t.Cleanup(c.Close)
	return c
}

// body answers 200 with s as JSON.
func body(s string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(s))
	}
}

// trickle answers 200 and then one byte of a valid-looking answer every
// 100 ms, until the client goes away.
func trickle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	ans := []byte(`{"region":"` + strings.Repeat("x", 1000))
	for _, b := range ans {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		if _, err := w.Write([]byte{b}); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// garbage answers 200 with bytes that are not JSON.
func garbage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte("\x00\xff\xfe<html>not json}{\x1b[31m"))
}

// flood answers 200 and streams a never-ending JSON string until the
// client stops reading (4 GiB at most, so that a client that does not
// stop still ends: by its deadline, which fails the case).
func flood(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	chunk := []byte(strings.Repeat("a", 32<<10))
	if _, err := w.Write([]byte(`{"region":"`)); err != nil {
		return
	}
	for range 4 << 30 / len(chunk) {
		if r.Context().Err() != nil {
			return
		}
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// rows is an agents answer for link with n minimal rows.
func rows(link string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"link":%q,"age_ms":0,"agents":[`, link)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"id":"a","cert_expires":"2030-01-01T00:00:00Z"}`)
	}
	b.WriteString("]}")
	return b.String()
}

// timed runs fn and fails t if it takes longer than limit.
func timed(t *testing.T, limit time.Duration, fn func()) time.Duration {
	t.Helper()
	start := time.Now()
	fn()
	d := time.Since(start)
	if d > limit {
		t.Errorf("the call took %v, over its bound %v", d, limit)
	}
	return d
}

func TestHostilePeers(t *testing.T) {
	const (
		link   = "lnk-1"
		health = "health"
		agents = "agents"
		query  = "query"
	)
	goodHealth := `{"region":"eu-west","node":"n1","leader":"n1","nodes":[{"id":"n1","raft_state":"Leader","last_contact_ms":0,"agents":1}],"lease":{"holder":"n1","token":1,"expires_in_ms":1},"age_ms":0}`
	long := strings.Repeat("h", MaxString+44)
	cases := []struct {
		name    string
		call    string
		maxBody int64 // 0: 64 KiB
		// timeout is the client's (0: hostileTimeout). The answer of
		// too many rows is 1 MB whose decoding, after the read and so
		// past the deadline's reach, can outlast 500 ms under the race
		// detector on a busy machine.
		timeout time.Duration
		h       http.HandlerFunc
		status  string
		err     string // the status's Error contains it
	}{
		{"garbage bytes", health, 0, 0, garbage, StatusMalformed, "malformed answer: invalid character"},
		{"empty body", health, 0, 0, body(""), StatusMalformed, "malformed answer: EOF"},
		{"huge body", health, 0, 0, flood, StatusMalformed, "answer too large: over 65536 bytes"},
		{"slow trickle", health, 0, 0, trickle, StatusTimeout, "reading the answer"},
		{"no answer at all", health, 0, 0, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, StatusTimeout, "deadline exceeded"},
		{"wrong types", health, 0, 0, body(`{"region":5,"nodes":"n1","age_ms":"0"}`), StatusMalformed, "cannot unmarshal number into Go struct field Health.region of type string"},
		{"wrong shape: an array", agents, 0, 0, body(`[{"id":"a"}]`), StatusMalformed, "cannot unmarshal array"},
		{"row claims a peer", agents, 0, 0, body(`{"link":"lnk-1","age_ms":0,"agents":[{"id":"a","peer":"local"}]}`), StatusMalformed, `unknown field "peer"`},
		{"answer carries a tenant", agents, 0, 0, body(`{"link":"lnk-1","tenant":"x","age_ms":0,"agents":[]}`), StatusMalformed, `unknown field "tenant"`},
		{"sample carries a tenant", query, 0, 0, body(`{"link":"lnk-1","age_ms":0,"result_type":"vector","samples":[{"labels":{},"t":1,"v":"1","tenant":"x"}],"complete":true}`), StatusMalformed, `unknown field "tenant"`},
		{"health claims another region", health, 0, 0, body(strings.Replace(goodHealth, `"region":"eu-west"`, `"region":"ap-south"`, 1)), StatusMalformed, `claims region "ap-south"`},
		{"health claims to be local", health, 0, 0, body(strings.Replace(goodHealth, `"region":"eu-west"`, `"region":"us-east"`, 1)), StatusMalformed, `claims region "us-east"`},
		{"sample claims a peer", query, 0, 0, body(`{"link":"lnk-1","age_ms":0,"result_type":"vector","samples":[{"labels":{"__name__":"up","outpost_peer":"local"},"t":1,"v":"1"}],"complete":true}`), StatusMalformed, "outpost_peer label"},
		{"answer for another link", agents, 0, 0, body(`{"link":"lnk-2","age_ms":0,"agents":[]}`), StatusMalformed, `answer is for link "lnk-2"`},
		{"negative age", agents, 0, 0, body(`{"link":"lnk-1","age_ms":-1,"agents":[]}`), StatusMalformed, "age_ms -1 out of range"},
		{"negative node count", health, 0, 0, body(strings.Replace(goodHealth, `"agents":1`, `"agents":-5`, 1)), StatusMalformed, "counts out of range"},
		{"too many rows", agents, 2 << 20, 2 * time.Second, body(rows(link, MaxAgents+1)), StatusMalformed, fmt.Sprintf("%d agents (at most %d)", MaxAgents+1, MaxAgents)},
		{"string over MaxString", agents, 0, 0, body(`{"link":"lnk-1","age_ms":0,"agents":[{"id":"a","host":"` + long + `"}]}`), StatusMalformed, fmt.Sprintf("agents.host is %d bytes", len(long))},
		{"non-numeric sample value", query, 0, 0, body(`{"link":"lnk-1","age_ms":0,"result_type":"vector","samples":[{"labels":{"a":"b"},"t":1,"v":"lots"}],"complete":true}`), StatusMalformed, `sample value "lots" is not a number`},
		{"negative rtt", agents, 0, 0, body(`{"link":"lnk-1","age_ms":0,"agents":[{"id":"a","rtt_ms":-3}]}`), StatusMalformed, "rtt_ms out of range"},
		{"trailing object", health, 0, 0, body(goodHealth + `{"region":"us-east"}`), StatusMalformed, "data after the answer"},
		{"trailing brace", health, 0, 0, body(goodHealth + `}`), StatusMalformed, "data after the answer"},
		{"trailing bracket", health, 0, 0, body(goodHealth + ` ]`), StatusMalformed, "data after the answer"},
		{"500", health, 0, 0, func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }, StatusError, "HTTP 500"},
		{"500 with a huge error", health, 0, 0, func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = fmt.Fprintf(w, `{"code":"x","error":%q}`, strings.Repeat("e", 10_000))
		}, StatusError, "HTTP 500 x: eee"},
		{"headers over the limit", health, 0, 0, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Junk", strings.Repeat("j", 64<<10))
			_, _ = w.Write([]byte(goodHealth))
		}, StatusError, "HEADERS frame too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := hostilePeer(t, "eu-west", tc.h)
			maxBody := tc.maxBody
			if maxBody == 0 {
				maxBody = 64 << 10
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = hostileTimeout
			}
			c := asker(t, timeout, maxBody)
			var st PeerStatus
			var got any // what the call handed back beside its status
			d := timed(t, timeout+boundMargin, func() {
				switch tc.call {
				case health:
					got, st = c.Health(context.Background(), p)
				case agents:
					got, st = c.Agents(context.Background(), p, link)
				case query:
					got, st = c.Query(context.Background(), p, link, "up", time.Now())
				}
			})
			if st.Status != tc.status || !strings.Contains(st.Error, tc.err) {
				t.Fatalf("status %q, error %q; want %q with %q", st.Status, st.Error, tc.status, tc.err)
			}
			if st.Status == StatusTimeout {
				t.Logf("timed out after %v (Timeout %v)", d, timeout)
			}
			if st.OK() || st.Rows != 0 {
				t.Errorf("a refused answer counted as rows: %+v", st)
			}
			if !reflect.ValueOf(got).IsZero() {
				t.Errorf("a refused answer handed on: %+v", got)
			}
			if len(st.Error) > 5*MaxString {
				t.Errorf("error is %d bytes: a peer's text is not bounded", len(st.Error))
			}
			if st.Peer != "eu-west" || st.At.IsZero() {
				t.Errorf("status names peer %q at %v", st.Peer, st.At)
			}
		})
	}
}

// A good hostile answer passes: the suite's shapes are the real ones, so
// the refusals above are for what each case changed.
func TestHostileHarnessAcceptsAGoodAnswer(t *testing.T) {
	good := `{"region":"eu-west","node":"n1","leader":"n1","nodes":[],"lease":{"holder":"n1","token":1,"expires_in_ms":1},"age_ms":0}`
	p := hostilePeer(t, "eu-west", body(good))
	c := asker(t, hostileTimeout, 64<<10)
	if _, st := c.Health(context.Background(), p); st.Status != StatusOK {
		t.Fatalf("a good answer: %+v", st)
	}
	p = hostilePeer(t, "eu-west", body(rows("lnk-1", 3)))
	if _, st := c.Agents(context.Background(), p, "lnk-1"); st.Status != StatusOK || st.Rows != 3 {
		t.Fatalf("a good agents answer: %+v", st)
	}
}

// A peer with nothing listening on its port: the call ends by its
// deadline (QUIC hears no ICMP refusal), as timeout or error.
func TestPeerDown(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	ca, _ := newCA(t, "eu-west")
	p := Peer{Name: "eu-west", Addr: addr, CA: ca.Cert, Secret: []byte(strings.Repeat("s", MinSecret))}
	c := asker(t, hostileTimeout, 0)
	for i := range 2 { // the second call finds the first's dial still pending
		var st PeerStatus
		timed(t, hostileTimeout+boundMargin, func() { _, st = c.Health(context.Background(), p) })
		if st.Status != StatusTimeout && st.Status != StatusError || st.Error == "" {
			t.Fatalf("call %d to a peer that is down: %+v", i, st)
		}
	}
}

// A peer whose server certificate is expired, issued by another CA, or
// issued by its CA for another region is refused at the handshake.
func TestHostileServerCertificates(t *testing.T) {
	ca, _ := newCA(t, "eu-west")
	_, otherCert := newCA(t, "eu-west") // the same region name, another CA
	now := time.Now()
	cases := []struct {
		name string
		cert tls.Certificate
		err  string
		when string // " is after " (expired) or " is before " (not yet valid)
	}{
		{"expired", issueNodeCert(t, ca, "eu-west", "n1", now.Add(-48*time.Hour), now.Add(-time.Hour)), "has expired or is not yet valid", " is after "},
		{"not yet valid", issueNodeCert(t, ca, "eu-west", "n1", now.Add(time.Hour), now.Add(48*time.Hour)), "has expired or is not yet valid", " is before "},
		{"another CA", otherCert, "signed by unknown authority", ""},
		{"another region", issueNodeCert(t, ca, "ap-south", "n1", now.Add(-time.Hour), now.Add(time.Hour)), `names region "ap-south"`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Peer{Name: "eu-west", Addr: serveHostile(t, tc.cert, body("{}")), CA: ca.Cert, Secret: []byte(strings.Repeat("s", MinSecret))}
			c := asker(t, hostileTimeout, 0)
			var st PeerStatus
			timed(t, hostileTimeout+boundMargin, func() { _, st = c.Health(context.Background(), p) })
			if st.Status != StatusRefused || !strings.Contains(st.Error, tc.err) || !strings.Contains(st.Error, tc.when) {
				t.Fatalf("status %q, error %q; want refused with %q", st.Status, st.Error, tc.err)
			}
		})
	}
}

// Each fans out to a good peer, a slow one and a garbage one: the good
// rows arrive, each other peer is reported for what it did, the answer
// is not Complete, and the whole fan-out ends by one deadline.
func TestEachWithHostilePeers(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	pair(t, a, b)
	good, _ := a.peer("eu-west")
	slow := hostilePeer(t, "ap-south", http.HandlerFunc(trickle))
	junk := hostilePeer(t, "sa-east", http.HandlerFunc(garbage))
	a.client.Timeout = hostileTimeout
	var out []Health
	var sts []PeerStatus
	timed(t, hostileTimeout+boundMargin, func() {
		out, sts = Each(context.Background(), []Peer{good, slow, junk}, a.client.Health)
	})
	if sts[0].Status != StatusOK || out[0].Region != "eu-west" || len(out[0].Nodes) != 1 || sts[0].Rows != 1 {
		t.Errorf("good peer: %+v %+v", sts[0], out[0])
	}
	if sts[1].Peer != "ap-south" || sts[1].Status != StatusTimeout {
		t.Errorf("slow peer: %+v", sts[1])
	}
	if sts[2].Peer != "sa-east" || sts[2].Status != StatusMalformed || !strings.Contains(sts[2].Error, ErrMalformed.Error()) {
		t.Errorf("garbage peer: %+v", sts[2])
	}
	if Complete(sts) {
		t.Error("Complete with a slow and a garbage peer")
	}
	if sts[1].LatencyMs > float64((hostileTimeout+boundMargin)/time.Millisecond) {
		t.Errorf("slow peer's latency %v ms", sts[1].LatencyMs)
	}
}

// A peer that crashed and came back on the same port has forgotten the
// client's connection and says nothing (no CONNECTION_CLOSE got out, and
// it sends no stateless reset): the call on the dead connection times out
// by its deadline, and the next one dials afresh and is answered, rather
// than every call timing out until QUIC's 60 s idle timeout.
func TestPeerRestartRedials(t *testing.T) {
	a, b := newRegion(t, "us-east"), newRegion(t, "eu-west")
	pair(t, a, b)
	serve := func(pc net.PacketConn) *Server {
		srv := NewServer(ServerConfig{Cert: func() *tls.Certificate { return &b.cert }, Peer: b.peer, View: b.view})
		go func() { _ = srv.Serve(pc) }()
		return srv
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first := serve(pc)
	p, _ := a.peer("eu-west")
	p.Addr = pc.LocalAddr().String()
	a.client.Timeout = hostileTimeout
	ctx := context.Background()
	if _, st := a.client.Health(ctx, p); st.Status != StatusOK {
		t.Fatalf("before the crash: %+v", st)
	}
	_ = pc.Close() // the crash: nothing gets out any more
	_ = first.Close()
	pc, err = net.ListenPacket("udp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	second := serve(pc)
	t.Cleanup(func() { _ = second.Close(); _ = pc.Close() })

	var st PeerStatus
	timed(t, hostileTimeout+boundMargin, func() { _, st = a.client.Health(ctx, p) })
	if st.Status != StatusOK && st.Status != StatusTimeout {
		t.Fatalf("the first call after the restart: %+v", st)
	}
	timed(t, hostileTimeout+boundMargin, func() { _, st = a.client.Health(ctx, p) })
	if st.Status != StatusOK {
		t.Fatalf("the second call after the restart: %+v, want a fresh connection answered", st)
	}
}

// Validate refuses each limit on its own, beyond what a hostile peer's
// bytes reach through TestHostilePeers (json.Unmarshal turns bad UTF-8
// into U+FFFD, so that check is only reached here).
func TestValidateLimits(t *testing.T) {
	health := func() Health {
		return Health{Region: "eu-west", Node: "n1", Nodes: []NodeHealth{{ID: "n1", RaftState: "Leader"}}}
	}
	agents := func() Agents { return Agents{Link: "lnk-1", Agents: []AgentRow{{ID: "a"}}} }
	query := func() Query {
		return Query{Link: "lnk-1", ResultType: "vector", Samples: []Sample{{Labels: map[string]string{"a": "b"}, V: "1"}}}
	}
	labels, emptyName := map[string]string{}, map[string]string{"": "x"}
	for i := range MaxLabels + 1 {
		labels[fmt.Sprint("l", i)] = "v"
	}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"health: too many nodes", func() error { h := health(); h.Nodes = make([]NodeHealth, MaxNodes+1); return h.Validate("eu-west") }(), "nodes (at most"},
		{"health: age over a year", func() error { h := health(); h.AgeMs = MaxAgeMs + 1; return h.Validate("eu-west") }(), "age_ms"},
		{"health: bad UTF-8", func() error { h := health(); h.Leader = "\xff"; return h.Validate("eu-west") }(), "leader is not UTF-8"},
		{"agents: no id", func() error { a := agents(); a.Agents[0].ID = ""; return a.Validate("lnk-1") }(), "without an id"},
		{"agents: NaN rtt", func() error { a := agents(); nan := math.NaN(); a.Agents[0].RTTMs = &nan; return a.Validate("lnk-1") }(), "rtt_ms"},
		{"query: another link", func() error { q := query(); q.Link = "lnk-2"; return q.Validate("lnk-1") }(), `for link "lnk-2"`},
		{"query: too many samples", func() error { q := query(); q.Samples = make([]Sample, MaxSamples+1); return q.Validate("lnk-1") }(), "samples"},
		{"query: too many warnings", func() error { q := query(); q.Warnings = make([]string, MaxWarnings+1); return q.Validate("lnk-1") }(), "warnings"},
		{"query: too many labels", func() error { q := query(); q.Samples[0].Labels = labels; return q.Validate("lnk-1") }(), "labels (at most"},
		{"query: empty label name", func() error { q := query(); q.Samples[0].Labels = emptyName; return q.Validate("lnk-1") }(), "empty label name"},
		{"query: a scalar with labels", func() error { q := query(); q.ResultType = "scalar"; return q.Validate("lnk-1") }(), "a scalar is one sample"},
		{"query: a matrix", func() error { q := query(); q.ResultType = "matrix"; return q.Validate("lnk-1") }(), `result_type "matrix"`},
	}
	if err := errors.Join(health().Validate("eu-west"), agents().Validate("lnk-1"), query().Validate("lnk-1")); err != nil {
		t.Fatalf("the baseline answers are refused: %v", err)
	}
	for _, tc := range cases {
		if !errors.Is(tc.err, ErrMalformed) || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrMalformed saying %q", tc.name, tc.err, tc.want)
		}
	}
}
