package node_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	pb "github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/internal/testcluster/nodes"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/pki"
)

// applied counts how often an agent applied each dispatch.
type applied struct {
	mu  sync.Mutex
	cfg []agentwire.Config
}

func (a *applied) apply(c agentwire.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfg = append(a.cfg, c)
	return nil
}

func (a *applied) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.cfg)
}

// eventually polls cond every 50ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func agentsList(t *testing.T, tn *testNode, cred, path string) map[string]api.Agent {
	t.Helper()
	var as []api.Agent
	if err := json.Unmarshal([]byte(tn.must(t, 200, "GET", path, cred, "")), &as); err != nil {
		t.Fatal(err)
	}
	out := map[string]api.Agent{}
	for _, a := range as {
		out[a.ID] = a
	}
	return out
}

func newToken(t *testing.T, tn *testNode, cred, tenant string) api.BootstrapToken {
	t.Helper()
	var bt api.BootstrapToken
	if err := json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants/"+tenant+"/agent-tokens", cred, `{}`)), &bt); err != nil {
		t.Fatal(err)
	}
	return bt
}

// agentTLS is a raw client TLS config carrying the certificate an agent
// keeps in its state directory (for hand-made, hostile connections).
func agentTLS(t *testing.T, dir string) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true} //nolint:gosec // a test client
}

func wsURL(agentURL string) string {
	return strings.Replace(agentURL, "https://", "wss://", 1) + agentwire.PathOpAMP
}

// TestAgentControlLink runs a real node and a real agent over mutual TLS
// on loopback: the agent enrolls with a bootstrap token and the CA pin,
// keeps its key 0600, attaches, shows in `agents list` with what it
// reported, receives a committed config dispatch as OpAMP remote config,
// applies it once and its status is recorded through Raft; a dispatch
// whose selector does not match it never reaches it; revoking it closes
// its connection within a second and refuses it afterwards. Then each
// bad connection is refused with a clear error: no certificate, a
// certificate of another CA, plain-HTTP OpAMP, an oversized message.
func TestAgentControlLink(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.Agents.RetireGrace = 2 * time.Second
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	waitLease(t, tn)
	bt := newToken(t, tn, alice, "acme")
	if !strings.HasPrefix(bt.CAPin, "sha256:") || len(bt.Servers) != 1 || bt.Servers[0] != tn.n.AgentURL() {
		t.Fatalf("token answer lacks the CA pin or the servers: %+v", bt)
	}

	dir := t.TempDir()
	var got applied
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Enrolling with the wrong pin fails before the token is sent.
	_, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: t.TempDir(), CAPin: "sha256:" + strings.Repeat("0", 64)})
	if err == nil || !strings.Contains(err.Error(), "does not match --ca-pin") {
		t.Fatalf("enrolling against a wrong pin: %v", err)
	}
	a, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: dir, CAPin: bt.CAPin, Host: "web-1",
		Heartbeat: time.Second, Apply: got.apply})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "agent.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent key mode: %v %v", fi.Mode(), err)
	}
	// The token was single use.
	if _, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: t.TempDir(), CAPin: bt.CAPin}); err == nil ||
		!strings.Contains(err.Error(), "already redeemed") {
		t.Fatalf("second redemption: %v", err)
	}
	id := a.Status().AgentID
	// The first answer lost (the agent kept its key, not the answer): the
	// same key redeeming the same token again gets the same agent and
	// certificate, audited as a repeat.
	crt, _ := os.ReadFile(filepath.Join(dir, "agent.crt"))
	for _, f := range []string{"agent.crt", "state.json"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	a, err = agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: dir, CAPin: bt.CAPin, Host: "web-1",
		Heartbeat: time.Second, Apply: got.apply})
	if err != nil {
		t.Fatalf("enrolling again with the same key: %v", err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "agent.crt")); a.Status().AgentID != id || !bytes.Equal(again, crt) {
		t.Fatalf("the repeated enrollment gave agent %s (want %s), same certificate %v", a.Status().AgentID, id, bytes.Equal(again, crt))
	}
	if !slices.Contains(auditActions(t, tn, tn.token, "/api/v1/audit"), "agent.enroll_repeated") {
		t.Error("the repeated enrollment was not audited")
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	eventually(t, 10*time.Second, "the agent attached and the node recorded it", func() bool {
		v := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[id]
		return v.Node == "n1" && v.Health == "healthy" && v.Host == "web-1" && v.SourceAddr == "127.0.0.1" && len(v.Capabilities) > 0
	})
	v := agentsList(t, tn, tn.token, "/api/v1/agents")[id]
	if !strings.Contains(strings.Join(v.Capabilities, ","), "AcceptsRemoteConfig") || v.Version != agent.Version || v.RTTMs == nil || *v.RTTMs <= 0 {
		t.Errorf("agent view %+v", v)
	}

	// A committed config dispatch reaches the agent and is applied once.
	body := `{"id":"cfg-1","kind":"config","selector":"host=web-1","payload":{"probes":[{"kind":"tcp","target":"10.0.0.9:9"}],"export_interval":"10s"}}`
	tn.must(t, 201, "POST", "/api/v1/tenants/acme/dispatches", alice, body)
	eventually(t, 5*time.Second, "the agent applied cfg-1", func() bool { return got.count() == 1 })
	eventually(t, 5*time.Second, "the node recorded the applied status", func() bool {
		c := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[id].Config
		return c != nil && c.Dispatch == "cfg-1" && c.Status == "applied" && c.Node == "n1"
	})
	if st := a.Status(); st.HighestToken == 0 || st.LastIndex == 0 {
		t.Errorf("agent state after applying: %+v", st)
	}
	// Not for this host: never delivered. A bad config: refused by the API.
	tn.must(t, 201, "POST", "/api/v1/tenants/acme/dispatches", alice, `{"id":"cfg-2","kind":"config","selector":"host=db-9","payload":{}}`)
	tn.must(t, 400, "POST", "/api/v1/tenants/acme/dispatches", alice, `{"id":"cfg-3","kind":"config","selector":"colour=blue","payload":{}}`)
	// A payload every agent would refuse is refused by the API, not
	// committed: an unknown field, a probe of an unknown kind, a negative
	// interval.
	for _, payload := range []string{`{"interval":"10s"}`, `{"probes":[{"kind":"rm -rf","target":"x"}]}`,
		`{"probes":[{"kind":"tcp","target":"db-1:5432","interval":"-1s"}]}`, `{"export_interval":"0s"}`, `[]`} {
		r := tn.do(t, "POST", "/api/v1/tenants/acme/dispatches", alice, `{"kind":"config","selector":"all","payload":`+payload+`}`)
		if r.code != 400 || !strings.Contains(r.body, "config") {
			t.Errorf("config payload %s: %d %s, want 400 naming the config", payload, r.code, r.body)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := got.count(); n != 1 {
		t.Errorf("the agent applied %d configs, want 1", n)
	}

	t.Run("no certificate", func(t *testing.T) {
		_, resp, err := (&websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}).Dial(wsURL(tn.n.AgentURL()), nil) //nolint:gosec // test
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("dial without a certificate: %v %v", resp, err)
		}
	})
	t.Run("plain HTTP OpAMP", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: agentTLS(t, dir)}}
		resp, err := hc.Post(tn.n.AgentURL()+agentwire.PathOpAMP, "application/x-protobuf", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP OpAMP: %d", resp.StatusCode)
		}
	})
	t.Run("certificate of another CA", func(t *testing.T) {
		other, err := pki.NewCA("eu")
		if err != nil {
			t.Fatal(err)
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		req, _ := x509.ParseCertificateRequest(mustCSRDER(t, key))
		_, certPEM, err := other.SignAgent(req, "eu", "t1", "ag-rogue", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(certPEM)
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, //nolint:gosec // test
			Certificates: []tls.Certificate{{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}}}
		if _, _, err := (&websocket.Dialer{TLSClientConfig: cfg}).Dial(wsURL(tn.n.AgentURL()), nil); err == nil {
			t.Fatal("a certificate of another CA was accepted")
		}
	})
	t.Run("oversized message", func(t *testing.T) {
		c, _, err := (&websocket.Dialer{TLSClientConfig: agentTLS(t, dir)}).Dial(wsURL(tn.n.AgentURL()), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.BinaryMessage, make([]byte, 2<<20))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadMessage(); err == nil {
			t.Fatal("the node kept a connection that sent 2 MiB")
		}
		eventually(t, 5*time.Second, "the violation was audited", func() bool {
			return strings.Contains(strings.Join(auditActions(t, tn, tn.token, "/api/v1/audit"), ","), "agent.protocol_violation")
		})
	})

	// Renewal: a new key and certificate, swapped through Raft and
	// audited. The agent reconnects with them; the replaced certificate
	// is refused for new connections at once, a link still on it closes
	// after agents.retire_grace, and with it one can only fetch again the
	// certificate already made for the agent's new key (a lost answer).
	oldFP := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[id].Fingerprint
	oldTLS := agentTLS(t, dir)
	oldKey := readKey(t, filepath.Join(dir, "agent.key"))
	held, _, err := (&websocket.Dialer{TLSClientConfig: oldTLS}).Dial(wsURL(tn.n.AgentURL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	attaches := a.Status().Attaches
	oldKeyPEM, _ := os.ReadFile(filepath.Join(dir, "agent.key"))
	oldCrtPEM, _ := os.ReadFile(filepath.Join(dir, "agent.crt"))
	if err := a.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	v = agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[id]
	if v.Fingerprint == oldFP || v.Fingerprint == "" {
		t.Fatalf("fingerprint after renewal: %s (was %s)", v.Fingerprint, oldFP)
	}
	newKey := readKey(t, filepath.Join(dir, "agent.key"))
	if newKey.Equal(oldKey) {
		t.Error("the renewal kept the old key")
	}
	if fi, err := os.Stat(filepath.Join(dir, "agent.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("renewed key mode: %v %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "agent.key.next")); err == nil {
		t.Error("the renewal key was left beside the promoted one")
	}
	if !strings.Contains(strings.Join(auditActions(t, tn, tn.token, "/api/v1/audit"), ","), "agent.renew") {
		t.Error("the renewal was not audited")
	}
	eventually(t, 5*time.Second, "the agent reconnected with its new certificate", func() bool {
		st := a.Status()
		return st.Connected && st.Attaches > attaches
	})
	if _, resp, err := (&websocket.Dialer{TLSClientConfig: oldTLS}).Dial(wsURL(tn.n.AgentURL()), nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a new connection on the replaced certificate: %v %v", resp, err)
	}
	eventually(t, 5*time.Second, "the retired certificate's use was audited", func() bool {
		return strings.Contains(strings.Join(auditDetails(t, tn, tn.token, "agent.connect_refused"), ","), "retired certificate")
	})
	_ = held.SetReadDeadline(time.Now().Add(cfg.Agents.RetireGrace + 3*time.Second))
	if _, _, err := held.ReadMessage(); err == nil {
		t.Fatal("a message instead of the close of the link on the replaced certificate")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the link on the replaced certificate was not closed after agents.retire_grace")
	} else if !a.Status().Connected {
		t.Fatal("closing the retired link closed the agent's own")
	}
	renewWith := func(key *ecdsa.PrivateKey) (int, string) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: oldTLS}}
		body, _ := json.Marshal(agentwire.RenewRequest{CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: mustCSRDER(t, key)}))})
		resp, err := hc.Post(tn.n.AgentURL()+agentwire.PathRenew, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out agentwire.Renewal
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Certificate
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if code, _ := renewWith(other); code != http.StatusConflict {
		t.Errorf("renewing with the replaced certificate for another key: %d, want 409", code)
	}
	current, _ := os.ReadFile(filepath.Join(dir, "agent.crt"))
	if code, cert := renewWith(newKey); code != http.StatusOK || cert != string(current) {
		t.Errorf("asking again for the renewal's certificate: %d, same certificate %v", code, cert == string(current))
	}
	// An agent that lost the renewal's answer: its state holds the old
	// key and certificate and the pending new key. The node refuses the
	// retired certificate, the agent asks for the renewal again with the
	// pending key, saves the certificate it gets and attaches.
	lost := t.TempDir()
	newKeyPEM, _ := os.ReadFile(filepath.Join(dir, "agent.key"))
	for name, b := range map[string][]byte{"agent.key": oldKeyPEM, "agent.crt": oldCrtPEM, "agent.key.next": newKeyPEM} {
		if err := os.WriteFile(filepath.Join(lost, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"ca.crt", "state.json"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if err := os.WriteFile(filepath.Join(lost, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lctx, lcancel := context.WithCancel(ctx)
	b, err := agent.New(lctx, agent.Config{StateDir: lost, Host: "web-1", Heartbeat: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(lctx) }()
	eventually(t, 15*time.Second, "the agent that lost its renewal answer recovered and attached", func() bool {
		got, _ := os.ReadFile(filepath.Join(lost, "agent.crt"))
		return b.Status().Connected && bytes.Equal(got, current)
	})
	if _, err := os.Stat(filepath.Join(lost, "agent.key.next")); err == nil {
		t.Error("the recovered agent kept its pending key")
	}
	lcancel()
	<-bdone

	// Revocation closes the live link within a second and refuses it after.
	if !a.Status().Connected {
		t.Fatal("the agent is not connected before the revocation")
	}
	start := time.Now()
	tn.must(t, 200, "POST", "/api/v1/agents/"+id+"/revoke", tn.token, "")
	eventually(t, time.Second, "the revoked agent's connection closed", func() bool { return !a.Status().Connected })
	t.Logf("revocation closed the connection in %v", time.Since(start).Round(time.Millisecond))
	if _, _, err := (&websocket.Dialer{TLSClientConfig: agentTLS(t, dir)}).Dial(wsURL(tn.n.AgentURL()), nil); err == nil {
		t.Fatal("a revoked certificate connected")
	}
	time.Sleep(time.Second)
	if a.Status().Connected {
		t.Fatal("the revoked agent reconnected")
	}
	cancel()
	<-done
}

func readKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}

func mustCSRDER(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// delayProxy forwards TCP connections to a target, holding every chunk
// for delay in each direction: injected latency on loopback.
type delayProxy struct {
	ln     net.Listener
	delay  time.Duration
	target atomic.Value // string
}

func newDelayProxy(t *testing.T, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{ln: ln, delay: delay}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *delayProxy) serve(c net.Conn) {
	defer c.Close()
	target, _ := p.target.Load().(string)
	u, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer u.Close()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				time.Sleep(p.delay)
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
	}
	go pipe(u, c)
	pipe(c, u)
}

// startRegion3 starts a 3-node region on loopback whose nodes advertise
// their agent ports at the given proxies; configure, if given, adjusts
// each node's config.
func startRegion3(t *testing.T, proxies []*delayProxy, configure ...func(*node.Config)) []*testNode {
	t.Helper()
	var out []*testNode
	shared := nodes.StartRegion(t, nodes.RegionConfig{Nodes: 3, Options: node.Options{Keys: mustKeys(t, newMasterKey(t), nil)},
		Configure: func(i int, cfg *node.Config) {
			cfg.Raft.MinQuorum = 3
			cfg.Agents.Advertise = proxies[i].ln.Addr().String()
			for _, c := range configure {
				c(cfg)
			}
		},
		Started: func(i int, n *nodes.Node) { proxies[i].target.Store(n.AgentAddr()) },
	})
	for _, n := range shared {
		out = append(out, fromShared(n))
	}
	return out
}

// dispatchAnywhere sends a dispatch to whichever live node holds the lease.
func dispatchAnywhere(t *testing.T, nodes []*testNode, skip map[int]bool, cred, path, body string) {
	t.Helper()
	eventually(t, 20*time.Second, "a lease holder took the dispatch", func() bool {
		for i, tn := range nodes {
			if !skip[i] && tn.do(t, "POST", path, cred, body).code == 201 {
				return true
			}
		}
		return false
	})
}

// TestAgentNearestNodeAndFailover: three nodes, reached through proxies
// that add 40, 0 and 15 ms each way. Given only the farthest node's URL,
// the agent learns the others from it, measures them and attaches to the
// nearest. A config dispatch is committed and that node is killed at
// once: the agent fails over to the next nearest node and the dispatch
// reaches it there, applied exactly once (a redelivery is recognised by
// id), and the node records the status.
func TestAgentNearestNodeAndFailover(t *testing.T) {
	proxies := []*delayProxy{newDelayProxy(t, 40*time.Millisecond), newDelayProxy(t, 0), newDelayProxy(t, 15*time.Millisecond)}
	nodes := startRegion3(t, proxies)
	tn := nodes[0]
	waitLease(t, tn)
	alice, _ := twoTenants(t, tn)
	bt := newToken(t, tn, alice, "acme")
	var got applied
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := agent.New(ctx, agent.Config{Servers: []string{"https://" + proxies[0].ln.Addr().String()}, Token: bt.Token,
		StateDir: t.TempDir(), CAPin: bt.CAPin, Host: "web-1", Heartbeat: time.Second, Reevaluate: time.Hour, Apply: got.apply})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	id := a.Status().AgentID
	eventually(t, 15*time.Second, "the agent attached to the nearest node, n2", func() bool {
		st := a.Status()
		return st.Connected && st.Node == "n2"
	})
	eventually(t, 5*time.Second, "the region shows the agent on n2", func() bool {
		return agentsList(t, tn, tn.token, "/api/v1/agents")[id].Node == "n2"
	})
	t.Logf("attached to n2, rtt %v", a.Status().RTT)

	count := func(interval string) int {
		got.mu.Lock()
		defer got.mu.Unlock()
		n := 0
		for _, c := range got.cfg {
			if c.ExportInterval == interval {
				n++
			}
		}
		return n
	}
	dispatchAnywhere(t, nodes, nil, alice, "/api/v1/tenants/acme/dispatches", `{"id":"cfg-a","kind":"config","payload":{"export_interval":"10s"}}`)
	eventually(t, 5*time.Second, "cfg-a applied", func() bool { return count("10s") == 1 })

	// Commit a dispatch and kill the agent's node at once.
	dispatchAnywhere(t, nodes, nil, alice, "/api/v1/tenants/acme/dispatches", `{"id":"cfg-b","kind":"config","payload":{"export_interval":"20s"}}`)
	nodes[1].n.Kill()
	killed := time.Now()
	eventually(t, 20*time.Second, "the agent failed over to n3", func() bool {
		st := a.Status()
		return st.Connected && st.Node == "n3"
	})
	t.Logf("failed over to n3 in %v", time.Since(killed).Round(time.Millisecond))
	eventually(t, 10*time.Second, "cfg-b applied", func() bool { return count("20s") == 1 })
	eventually(t, 15*time.Second, "the region recorded cfg-b applied by the agent on n3", func() bool {
		v := agentsList(t, tn, tn.token, "/api/v1/agents")[id]
		return v.Node == "n3" && v.Config != nil && v.Config.Dispatch == "cfg-b" && v.Config.Status == "applied"
	})
	time.Sleep(time.Second)
	if a, b := count("10s"), count("20s"); a != 1 || b != 1 {
		t.Fatalf("applied cfg-a %d times and cfg-b %d times, want once each", a, b)
	}
	cancel()
	<-done
}

// rawLink is a hand-driven OpAMP connection (WebSocket frames of a zero
// header byte and a protobuf), from a chosen loopback address.
type rawLink struct {
	t *testing.T
	c *websocket.Conn
}

func dialRaw(t *testing.T, agentURL string, cfg *tls.Config, from string) (*rawLink, error) {
	d := &websocket.Dialer{TLSClientConfig: cfg, NetDial: func(network, addr string) (net.Conn, error) {
		return (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).Dial(network, addr)
	}}
	c, _, err := d.Dial(wsURL(agentURL), nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &rawLink{t: t, c: c}, nil
}

func (r *rawLink) send(m *pb.AgentToServer) {
	b, err := proto.Marshal(m)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.c.WriteMessage(websocket.BinaryMessage, append([]byte{0}, b...)); err != nil {
		r.t.Fatal(err)
	}
}

// recv reads the next message, or nil after d.
func (r *rawLink) recv(d time.Duration) *pb.ServerToAgent {
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	_, b, err := r.c.ReadMessage()
	if err != nil || len(b) == 0 {
		return nil
	}
	var m pb.ServerToAgent
	if err := proto.Unmarshal(b[1:], &m); err != nil {
		r.t.Fatal(err)
	}
	return &m
}

func describe(uid []byte, caps pb.AgentCapabilities, host string) *pb.AgentToServer {
	return &pb.AgentToServer{InstanceUid: uid, Capabilities: uint64(caps), AgentDescription: &pb.AgentDescription{
		NonIdentifyingAttributes: []*pb.KeyValue{{Key: agentwire.AttrHost, Value: &pb.AnyValue{Value: &pb.AnyValue_StringValue{StringValue: host}}}}}}
}

// TestAgentCertificateMisuse: the seed's stolen-certificate scenario and
// its neighbours. An agent's certificate used from a second address
// while the agent is connected is flagged on the agent and audited; an
// agent reporting another agent's instance uid is flagged and keeps its
// own identity; an agent that did not announce AcceptsRemoteConfig is
// never pushed a config, while one that did gets it.
func TestAgentCertificateMisuse(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	waitLease(t, tn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	enroll := func(host string) (*agent.Agent, string) {
		bt := newToken(t, tn, alice, "acme")
		dir := t.TempDir()
		a, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: dir, CAPin: bt.CAPin, Host: host, Heartbeat: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return a, dir
	}
	a, dirA := enroll("web-1")
	go func() { _ = a.Run(ctx) }()
	idA := a.Status().AgentID
	eventually(t, 10*time.Second, "agent A attached", func() bool { return agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[idA].Node == "n1" })
	var uidA string
	eventually(t, 5*time.Second, "agent A's instance uid recorded", func() bool {
		uidA = agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[idA].InstanceUID
		return len(uidA) == 32
	})

	// A's certificate, from another address, while A is connected.
	thief, err := dialRaw(t, tn.n.AgentURL(), agentTLS(t, dirA), "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	uidThief := make([]byte, 16)
	_, _ = rand.Read(uidThief)
	thief.send(describe(uidThief, pb.AgentCapabilities_AgentCapabilities_ReportsStatus, "web-1"))
	eventually(t, 5*time.Second, "the second address was flagged", func() bool {
		fl := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[idA].Flags
		return len(fl) == 1 && strings.HasPrefix(fl[0], "two_addresses") && strings.Contains(fl[0], "127.0.0.2")
	})
	eventually(t, 5*time.Second, "the flag was audited", func() bool {
		return strings.Contains(strings.Join(auditActions(t, tn, tn.token, "/api/v1/audit"), ","), "agent.flagged")
	})

	// Capability gating: the thief announced only ReportsStatus.
	tn.must(t, 201, "POST", "/api/v1/tenants/acme/dispatches", alice, `{"id":"cfg-1","kind":"config","payload":{"export_interval":"10s"}}`)
	eventually(t, 5*time.Second, "the capable agent applied cfg-1", func() bool { return slices.Contains(a.Status().Applied, "cfg-1") })
	for m := thief.recv(time.Second); m != nil; m = thief.recv(500 * time.Millisecond) {
		if m.GetRemoteConfig() != nil {
			t.Fatal("a config was pushed to a connection that did not announce AcceptsRemoteConfig")
		}
	}

	// Agent B claims A's instance uid.
	b, dirB := enroll("web-2")
	idB := b.Status().AgentID
	claim, err := dialRaw(t, tn.n.AgentURL(), agentTLS(t, dirB), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(uidA)
	claim.send(describe(raw, pb.AgentCapabilities_AgentCapabilities_ReportsStatus, "web-2"))
	eventually(t, 5*time.Second, "the claimed instance uid was flagged on B", func() bool {
		v := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[idB]
		return len(v.Flags) == 1 && strings.HasPrefix(v.Flags[0], "instance_uid") && v.InstanceUID != uidA
	})
	// A holds two connections now (its own and the thief's), and no
	// instance uid flag: B's claim is B's.
	if v := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[idA]; v.Connections != 2 || len(v.Flags) != 1 {
		t.Errorf("agent A after B's claim: %+v", v)
	}

	// The operator deals with the copy and clears A's flag: it is gone
	// from the list, the clearing is audited with what the flag said, and
	// another tenant's admin or a viewer cannot clear it.
	viewer := tn.tenantToken(t, alice, "acme", "viewer")
	tn.must(t, 403, "POST", "/api/v1/tenants/acme/agents/"+idA+"/clear-flags", viewer, "")
	tn.must(t, 404, "POST", "/api/v1/tenants/acme/agents/ag-nobody/clear-flags", alice, "")
	var cleared api.Agent
	_ = json.Unmarshal([]byte(tn.must(t, 200, "POST", "/api/v1/tenants/acme/agents/"+idA+"/clear-flags", alice, "")), &cleared)
	if len(cleared.Flags) != 0 || cleared.ID != idA {
		t.Fatalf("after clearing: %+v", cleared)
	}
	if v := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[idA]; len(v.Flags) != 0 {
		t.Fatalf("the list still shows A's flags: %v", v.Flags)
	}
	if d := auditDetails(t, tn, tn.token, "agent.flags_cleared"); len(d) != 1 || !strings.Contains(d[0], "two_addresses") {
		t.Fatalf("flags_cleared records: %v", d)
	}
	if v := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[idB]; len(v.Flags) != 1 {
		t.Errorf("clearing A's flags touched B's: %v", v.Flags)
	}
}
