package node_test

import (
	"bufio"
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
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/open-telemetry/opamp-go/client"
	ct "github.com/open-telemetry/opamp-go/client/types"
	pb "github.com/open-telemetry/opamp-go/protobufs"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/pki"
)

// logSink collects a node's log lines for tests that check what was
// logged, and at which level.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *logSink) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// metric reads one sample of the node's /metrics (0 when absent); name
// may carry labels as exposed, e.g. `x_total{reason="full"}`.
func metric(t *testing.T, tn *testNode, name string) float64 {
	t.Helper()
	r, err := http.Get(tn.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// enrollOnly enrolls an agent of tenant through our agent package and
// returns its state directory (certificate and key) and id, for a
// third-party client to use.
func enrollOnly(t *testing.T, tn *testNode, cred, tenant string) (dir, id string) {
	t.Helper()
	bt := newToken(t, tn, cred, tenant)
	dir = t.TempDir()
	a, err := agent.New(context.Background(), agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: dir, CAPin: bt.CAPin, Host: "third-party"})
	if err != nil {
		t.Fatal(err)
	}
	return dir, a.Status().AgentID
}

// thirdParty is opamp-go's own WebSocket client as a third-party agent
// drives it (not our agent package).
type thirdParty struct {
	client.OpAMPClient
	uid ct.InstanceUid

	mu        sync.Mutex
	msgs      []*ct.MessageData
	connected int
	failed    []error
}

// startThirdParty connects opamp-go's client with the agent certificate
// in dir, announcing caps; hb is the client's own heartbeat (nil: its
// default).
func startThirdParty(t *testing.T, agentURL, dir string, caps pb.AgentCapabilities, hb *time.Duration) *thirdParty {
	t.Helper()
	var uid ct.InstanceUid
	_, _ = rand.Read(uid[:])
	return startThirdPartyUID(t, agentURL, dir, caps, hb, uid)
}

// startThirdPartyUID is startThirdParty with a chosen instance uid.
func startThirdPartyUID(t *testing.T, agentURL, dir string, caps pb.AgentCapabilities, hb *time.Duration, uid ct.InstanceUid) *thirdParty {
	t.Helper()
	tp := &thirdParty{OpAMPClient: client.NewWebSocket(nil), uid: uid}
	_ = tp.SetAgentDescription(describe(tp.uid[:], caps, "third-party").AgentDescription)
	if caps&pb.AgentCapabilities_AgentCapabilities_ReportsHealth != 0 {
		_ = tp.SetHealth(&pb.ComponentHealth{Healthy: true})
	}
	err := tp.Start(context.Background(), ct.StartSettings{
		OpAMPServerURL: wsURL(agentURL), TLSConfig: agentTLS(t, dir), InstanceUid: tp.uid, Capabilities: caps, HeartbeatInterval: hb,
		Callbacks: ct.Callbacks{
			OnConnect: func(context.Context) { tp.mu.Lock(); tp.connected++; tp.mu.Unlock() },
			OnConnectFailed: func(_ context.Context, err error) {
				tp.mu.Lock()
				tp.failed = append(tp.failed, err)
				tp.mu.Unlock()
			},
			OnMessage: func(_ context.Context, m *ct.MessageData) { tp.mu.Lock(); tp.msgs = append(tp.msgs, m); tp.mu.Unlock() },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.stop() })
	return tp
}

func (tp *thirdParty) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = tp.Stop(ctx)
}

func (tp *thirdParty) connects() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.connected
}

// TestAgentLinkEndsAreNotBadMessages: a third-party agent (opamp-go's
// client) that says goodbye, one whose link the node closes for idling,
// and one revoked while connected are ordinary disconnects: no
// "undecodable message" warning and no bad message counted. A message
// that really does not decode is counted.
func TestAgentLinkEndsAreNotBadMessages(t *testing.T) {
	var logs logSink
	cfg := nodeConfig(t, t.TempDir())
	cfg.Agents.Heartbeat = time.Second
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{Logger: logs.logger()})
	alice, _ := twoTenants(t, tn)
	waitLease(t, tn)
	caps := pb.AgentCapabilities_AgentCapabilities_ReportsStatus | pb.AgentCapabilities_AgentCapabilities_ReportsHeartbeat
	const bad = "outpost_agent_bad_messages_total"

	// Goodbye: the client stops (a close frame).
	dir, _ := enrollOnly(t, tn, alice, "acme")
	tp := startThirdParty(t, tn.n.AgentURL(), dir, caps, nil)
	eventually(t, 10*time.Second, "the client connected", func() bool { return tp.connects() > 0 && linksOpen(t, tn) == 1 })
	tp.stop()
	eventually(t, 5*time.Second, "the link closed", func() bool { return linksOpen(t, tn) == 0 })

	// Idle: a raw link that never speaks again after its first message.
	dir2, _ := enrollOnly(t, tn, alice, "acme")
	raw, err := dialRaw(t, tn.n.AgentURL(), agentTLS(t, dir2), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	uid := make([]byte, 16)
	_, _ = rand.Read(uid)
	raw.send(describe(uid, caps, "idle"))
	eventually(t, 10*time.Second, "the idle link was closed", func() bool { return linksOpen(t, tn) == 0 && raw.recv(100*time.Millisecond) == nil })

	// Revoked while connected.
	dir3, id3 := enrollOnly(t, tn, alice, "acme")
	tp3 := startThirdParty(t, tn.n.AgentURL(), dir3, caps, nil)
	eventually(t, 10*time.Second, "the third client connected", func() bool { return tp3.connects() > 0 && linksOpen(t, tn) == 1 })
	tn.must(t, 200, "POST", "/api/v1/tenants/acme/agents/"+id3+"/revoke", alice, "")
	eventually(t, 5*time.Second, "the revoked link closed", func() bool { return linksOpen(t, tn) == 0 })
	time.Sleep(200 * time.Millisecond)
	if n := metric(t, tn, bad); n != 0 {
		t.Errorf("%s = %v after ordinary disconnects, want 0", bad, n)
	}
	if strings.Contains(logs.String(), "undecodable message") {
		t.Errorf("an ordinary disconnect was logged as an undecodable message:\n%s", grepLines(logs.String(), "undecodable"))
	}

	// A real decode failure is counted.
	dir4, _ := enrollOnly(t, tn, alice, "acme")
	raw4, err := dialRaw(t, tn.n.AgentURL(), agentTLS(t, dir4), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := raw4.c.WriteMessage(websocket.BinaryMessage, []byte{0, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the undecodable message was counted", func() bool { return metric(t, tn, bad) == 1 })
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// linksOpen is how many agent links the node holds.
func linksOpen(t *testing.T, tn *testNode) int {
	t.Helper()
	return int(metric(t, tn, "outpost_agents_connected"))
}

// holdTimes dials n connections from the loopback address from, stagger
// apart, each running hold on its connection, and returns when each
// hold returned (the node closed it), from the first dial.
func holdTimes(t *testing.T, addr, from string, n int, stagger time.Duration, hold func(c net.Conn)) []time.Duration {
	t.Helper()
	out := make([]time.Duration, n)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range n {
		wg.Add(1)
		time.Sleep(stagger)
		go func() {
			defer wg.Done()
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			hold(c)
			out[i] = time.Since(begin)
		}()
	}
	wg.Wait()
	return out
}

// count counts the durations over d.
func count(ds []time.Duration, over time.Duration) (n int, longest time.Duration) {
	for _, d := range ds {
		if d > over {
			n++
		}
		longest = max(longest, d)
	}
	return n, longest
}

// TestAgentPortSlowClients: the issue-14 review's attack. 100 clients
// without certificates trickle one byte every 2 s into
// POST /api/v1/agents/enroll from one address: the node admits half of
// agents.max_unauthenticated of them (one address's share), closes the
// rest at once, and closes the admitted ones when the header timeout
// runs out. 50 connections that never finish their TLS handshake hold at
// most half of agents.max_handshakes and are closed at the handshake
// timeout. Meanwhile an agent enrolls and attaches from another address,
// and an OpAMP link (opamp-go's client) stays open past every HTTP
// timeout of the port.
func TestAgentPortSlowClients(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.Agents.Heartbeat = time.Second
	cfg.Agents.ReadTimeout, cfg.Agents.WriteTimeout, cfg.Agents.IdleTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	cfg.Agents.MaxUnauthenticated, cfg.Agents.MaxHandshakes = 20, 16
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	waitLease(t, tn)
	addr := tn.n.AgentAddr()
	const timeout = 2 * time.Second // the handshake and header bound: min(10s, read_timeout)
	const slack = 1500 * time.Millisecond

	// A long-lived link, open before the attack, must outlive it.
	dir, _ := enrollOnly(t, tn, alice, "acme")
	caps := pb.AgentCapabilities_AgentCapabilities_ReportsStatus | pb.AgentCapabilities_AgentCapabilities_ReportsHeartbeat
	hb := time.Second
	tp := startThirdParty(t, tn.n.AgentURL(), dir, caps, &hb)
	eventually(t, 10*time.Second, "the link is up", func() bool { return tp.connects() == 1 && linksOpen(t, tn) == 1 })

	var wg sync.WaitGroup
	var trickle, silent []time.Duration
	wg.Add(2)
	go func() {
		defer wg.Done()
		req := "POST " + agentwire.PathEnroll + " HTTP/1.1\r\nHost: x\r\n"
		trickle = holdTimes(t, addr, "127.0.0.2", 100, 5*time.Millisecond, func(c net.Conn) {
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a hostile test client
			if tc.Handshake() != nil {
				return
			}
			go func() {
				for i := 0; i < len(req); i++ {
					if _, err := tc.Write([]byte{req[i]}); err != nil {
						return
					}
					time.Sleep(2 * time.Second)
				}
			}()
			_, _ = tc.Read(make([]byte, 1)) // until the node closes it
		})
	}()
	go func() {
		defer wg.Done()
		silent = holdTimes(t, addr, "127.0.0.3", 50, 0, func(c net.Conn) { _, _ = c.Read(make([]byte, 1)) })
	}()

	// Under attack: an agent enrolls (no certificate yet) and attaches.
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bt := newToken(t, tn, alice, "acme")
	a, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: t.TempDir(), CAPin: bt.CAPin, Host: "web-1", Heartbeat: time.Second})
	if err != nil {
		t.Fatalf("enrolling under attack: %v", err)
	}
	go func() { _ = a.Run(ctx) }()
	eventually(t, 10*time.Second, "the agent attached under attack", func() bool { return a.Status().Connected })
	wg.Wait()

	// An admitted connection is held until the header (or handshake)
	// timeout, so it lasts at least that long from the dial; a shed one is
	// closed at once, which on a busy machine can still take a second or
	// more. Counting those that lasted nearly the timeout counts what the
	// cap admitted, however slow the machine.
	held := timeout - 250*time.Millisecond
	if n, longest := count(trickle, held); n > cfg.Agents.MaxUnauthenticated/2 || longest > timeout+slack+500*time.Millisecond {
		t.Errorf("trickling clients: %d held past %v (cap %d for one address), longest %v (bound %v)", n, held, cfg.Agents.MaxUnauthenticated/2, longest, timeout+slack+500*time.Millisecond)
	}
	if n, longest := count(silent, held); n > cfg.Agents.MaxHandshakes/2 || longest > timeout+slack {
		t.Errorf("silent handshakes: %d held past %v (cap %d for one address), longest %v (bound %v)", n, held, cfg.Agents.MaxHandshakes/2, longest, timeout+slack)
	}
	// Every connection beyond the caps is shed and counted. A trickling
	// client is shed at the handshake cap or, once through, at the
	// unauthenticated cap (which one depends on how fast handshakes run
	// on a busy machine); a silent one only at the handshake cap.
	unauth := metric(t, tn, `outpost_agent_port_shed_total{reason="unauthenticated"}`)
	hs := metric(t, tn, `outpost_agent_port_shed_total{reason="handshakes"}`)
	if want := 100 - float64(cfg.Agents.MaxUnauthenticated/2) + 50 - float64(cfg.Agents.MaxHandshakes/2); unauth+hs < want {
		t.Errorf("connections shed: %v unauthenticated + %v handshakes, want at least %v", unauth, hs, want)
	}
	if hs < 50-float64(cfg.Agents.MaxHandshakes/2) {
		t.Errorf("handshakes shed: %v", hs)
	}
	if tp.connects() != 1 {
		t.Errorf("the OpAMP link was cut by the port's HTTP timeouts: %d connects", tp.connects())
	}
}

// TestHeartbeatOffer: the node offers agents.heartbeat in
// OpAMPConnectionSettings.heartbeat_interval_seconds to an agent that
// announced ReportsHeartbeat, and expects heartbeats only from those.
// opamp-go's client (a third-party agent) left at its own 30 s interval
// follows the 1 s offer and keeps its link; one that did not announce
// the capability is not offered an interval and is not closed after
// three silent heartbeats. Our agent, configured for another interval,
// follows the node's: 30 s against a 1 s node, 300 ms against a 2 s
// node (without reading the node's answers as silence).
func TestHeartbeatOffer(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.Agents.Heartbeat = time.Second
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	waitLease(t, tn)
	status := pb.AgentCapabilities_AgentCapabilities_ReportsStatus
	beats := status | pb.AgentCapabilities_AgentCapabilities_ReportsHeartbeat

	t.Run("offered", func(t *testing.T) {
		dir, _ := enrollOnly(t, tn, alice, "acme")
		raw, err := dialRaw(t, tn.n.AgentURL(), agentTLS(t, dir), "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		uid := make([]byte, 16)
		_, _ = rand.Read(uid)
		raw.send(describe(uid, beats, "raw"))
		m := raw.recv(5 * time.Second)
		if m == nil || m.GetCapabilities()&uint64(pb.ServerCapabilities_ServerCapabilities_OffersConnectionSettings) == 0 {
			t.Fatalf("first answer: %v", m)
		}
		o := m.GetConnectionSettings().GetOpamp()
		if o.GetHeartbeatIntervalSeconds() != 1 || o.GetDestinationEndpoint() != wsURL(tn.n.AgentURL()) || len(m.GetConnectionSettings().GetHash()) == 0 {
			t.Fatalf("offer: %v", m.GetConnectionSettings())
		}
	})
	t.Run("not offered without the capability", func(t *testing.T) {
		dir, _ := enrollOnly(t, tn, alice, "acme")
		raw, err := dialRaw(t, tn.n.AgentURL(), agentTLS(t, dir), "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		uid := make([]byte, 16)
		_, _ = rand.Read(uid)
		raw.send(describe(uid, status, "raw"))
		if m := raw.recv(5 * time.Second); m == nil || m.GetConnectionSettings() != nil {
			t.Fatalf("first answer to an agent without ReportsHeartbeat: %v", m)
		}
	})
	t.Run("third-party clients keep their links", func(t *testing.T) {
		dirA, _ := enrollOnly(t, tn, alice, "acme")
		dirB, _ := enrollOnly(t, tn, alice, "acme")
		withBeats := startThirdParty(t, tn.n.AgentURL(), dirA, beats, nil) // opamp-go's default: 30s
		quiet := startThirdParty(t, tn.n.AgentURL(), dirB, status, nil)
		eventually(t, 10*time.Second, "both connected", func() bool { return withBeats.connects() == 1 && quiet.connects() == 1 })
		time.Sleep(5 * time.Second) // over 3 heartbeats of the node
		if withBeats.connects() != 1 || quiet.connects() != 1 || linksOpen(t, tn) != 2 {
			t.Fatalf("links cut: heartbeating client connected %d times, quiet one %d times, %d links open",
				withBeats.connects(), quiet.connects(), linksOpen(t, tn))
		}
		withBeats.stop()
		quiet.stop()
	})
	t.Run("our agent follows the node", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		bt := newToken(t, tn, alice, "acme")
		a, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: t.TempDir(), CAPin: bt.CAPin, Host: "slow", Heartbeat: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = a.Run(ctx) }()
		eventually(t, 10*time.Second, "attached", func() bool { return a.Status().Connected })
		time.Sleep(5 * time.Second)
		if st := a.Status(); !st.Connected || st.Attaches != 1 {
			t.Fatalf("an agent at 30s against a 1s node: %+v", st)
		}
	})
}

// TestHeartbeatLongerThanTheAgents: a node offering 2 s to an agent
// configured for 300 ms: the agent sends at 2 s and does not take the
// node's answers, 2 s apart, for silence.
func TestHeartbeatLongerThanTheAgents(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.Agents.Heartbeat = 2 * time.Second
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	waitLease(t, tn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bt := newToken(t, tn, alice, "acme")
	a, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: t.TempDir(), CAPin: bt.CAPin, Host: "fast", Heartbeat: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.Run(ctx) }()
	eventually(t, 10*time.Second, "attached", func() bool { return a.Status().Connected })
	before := metric(t, tn, "outpost_agent_messages_total")
	time.Sleep(7 * time.Second)
	if st := a.Status(); !st.Connected || st.Attaches != 1 {
		t.Fatalf("the agent left a node that answers every 2s: %+v", st)
	}
	// At 2s: about 3-4 messages; at the agent's own 300ms it would be ~23.
	if n := metric(t, tn, "outpost_agent_messages_total") - before; n > 8 {
		t.Fatalf("%v messages in 7s: the agent did not follow the offered 2s interval", n)
	}
}

// TestUnknownHealthAndRTT: an agent that never announced ReportsHealth
// nor reported an RTT (opamp-go's client, as a third party) is listed
// without a health or RTT (absent in the JSON), not as "unhealthy" and
// 0 ms; an agent that reports them shows them.
func TestUnknownHealthAndRTT(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	waitLease(t, tn)
	dir, id := enrollOnly(t, tn, alice, "acme")
	tp := startThirdParty(t, tn.n.AgentURL(), dir, pb.AgentCapabilities_AgentCapabilities_ReportsStatus, nil)
	eventually(t, 10*time.Second, "connected", func() bool { return tp.connects() == 1 })
	raw := func() map[string]json.RawMessage {
		var as []map[string]json.RawMessage
		if err := json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/tenants/acme/agents", alice, "")), &as); err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if string(a["id"]) == `"`+id+`"` {
				return a
			}
		}
		return nil
	}
	eventually(t, 5*time.Second, "the agent's description recorded", func() bool { return string(raw()["host"]) == `"third-party"` })
	if a := raw(); a["health"] != nil || a["rtt_ms"] != nil || string(a["node"]) != `"n1"` {
		t.Fatalf("an agent that reported no health or RTT: health %s, rtt_ms %s, node %s", a["health"], a["rtt_ms"], a["node"])
	}
	// One that reports them.
	dir2, id2 := enrollOnly(t, tn, alice, "acme")
	caps := pb.AgentCapabilities_AgentCapabilities_ReportsStatus | pb.AgentCapabilities_AgentCapabilities_ReportsHealth
	tp2 := startThirdParty(t, tn.n.AgentURL(), dir2, caps, nil)
	eventually(t, 10*time.Second, "connected", func() bool { return tp2.connects() == 1 })
	eventually(t, 5*time.Second, "health shown", func() bool {
		return agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[id2].Health == "healthy"
	})
}

// TestInstanceUIDReassigned: an agent claiming an instance uid another
// agent of its tenant reported first is flagged (the flag names that
// agent) and is sent AgentIdentification.new_instance_uid, which
// opamp-go's client (a third party) adopts. An agent of another tenant
// reporting the same uid learns nothing: no new uid, no flag, and no
// text naming the first agent anywhere its tenant's admins look.
func TestInstanceUIDReassigned(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, bob := twoTenants(t, tn)
	waitLease(t, tn)
	caps := pb.AgentCapabilities_AgentCapabilities_ReportsStatus
	var uid ct.InstanceUid
	_, _ = rand.Read(uid[:])
	hexUID := hex.EncodeToString(uid[:])

	dirA, idA := enrollOnly(t, tn, alice, "acme")
	first := startThirdPartyUID(t, tn.n.AgentURL(), dirA, caps, nil, uid)
	eventually(t, 10*time.Second, "the first agent's uid recorded", func() bool {
		return agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[idA].InstanceUID == hexUID
	})

	// Another tenant's agent with the same uid.
	dirG, idG := enrollOnly(t, tn, bob, "globex")
	other := startThirdPartyUID(t, tn.n.AgentURL(), dirG, caps, nil, uid)
	eventually(t, 10*time.Second, "the other tenant's agent recorded", func() bool {
		return agentsList(t, tn, bob, "/api/v1/tenants/globex/agents")[idG].InstanceUID == hexUID
	})

	// A second agent of the first tenant claims it.
	dirB, idB := enrollOnly(t, tn, alice, "acme")
	claim := startThirdPartyUID(t, tn.n.AgentURL(), dirB, caps, nil, uid)
	var newUID string
	eventually(t, 10*time.Second, "the claimer was given a new uid and reports it", func() bool {
		if id := claim.identification(); id != nil {
			newUID = hex.EncodeToString(id.GetNewInstanceUid())
		}
		v := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[idB]
		return newUID != "" && v.InstanceUID == newUID
	})
	v := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[idB]
	if len(v.Flags) != 1 || !strings.Contains(v.Flags[0], idA) || len(newUID) != 32 || newUID == hexUID {
		t.Fatalf("the claimer: flags %v, new uid %q", v.Flags, newUID)
	}

	// The other tenant's agent: no new uid, no flag, nothing naming A.
	time.Sleep(500 * time.Millisecond)
	if id := other.identification(); id != nil {
		t.Errorf("an agent of another tenant was given a new uid: %v", id)
	}
	if id := first.identification(); id != nil {
		t.Errorf("the first agent was given a new uid: %v", id)
	}
	g := agentsList(t, tn, bob, "/api/v1/tenants/globex/agents")[idG]
	if len(g.Flags) != 0 || g.InstanceUID != hexUID {
		t.Errorf("the other tenant's agent: %+v", g)
	}
	if body := tn.must(t, 200, "GET", "/api/v1/tenants/globex/agents", bob, ""); strings.Contains(body, idA) || strings.Contains(body, idB) {
		t.Errorf("the other tenant's list names acme's agents: %s", body)
	}
	if d := strings.Join(auditActions(t, tn, bob, "/api/v1/tenants/globex/audit"), ","); strings.Contains(d, "agent.flagged") {
		t.Errorf("the other tenant's audit shows a flag: %s", d)
	}
}

// TestAgentKeepsAnAssignedInstanceUID: our agent, started with an
// instance uid another agent of its tenant reported first, adopts the
// uid its node assigns, reports it, and keeps it in its state.
func TestAgentKeepsAnAssignedInstanceUID(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	waitLease(t, tn)
	var uid ct.InstanceUid
	_, _ = rand.Read(uid[:])
	hexUID := hex.EncodeToString(uid[:])
	dirA, idA := enrollOnly(t, tn, alice, "acme")
	startThirdPartyUID(t, tn.n.AgentURL(), dirA, pb.AgentCapabilities_AgentCapabilities_ReportsStatus, nil, uid)
	eventually(t, 10*time.Second, "the first agent's uid recorded", func() bool {
		return agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[idA].InstanceUID == hexUID
	})

	dir, id := enrollOnly(t, tn, alice, "acme")
	path := filepath.Join(dir, "state.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	_ = json.Unmarshal(b, &st)
	st["instance_uid"] = hexUID
	b, _ = json.Marshal(st)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := agent.New(ctx, agent.Config{StateDir: dir, Heartbeat: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.Run(ctx) }()
	eventually(t, 10*time.Second, "the agent reports an assigned uid and keeps it", func() bool {
		v := agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[id]
		b, _ := os.ReadFile(path)
		var now map[string]any
		_ = json.Unmarshal(b, &now)
		return v.InstanceUID != "" && v.InstanceUID != hexUID && now["instance_uid"] == v.InstanceUID
	})
}

func (tp *thirdParty) identification() *pb.AgentIdentification {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for _, m := range tp.msgs {
		if m.AgentIdentification != nil {
			return m.AgentIdentification
		}
	}
	return nil
}

// TestOneAgentCannotFloodPresence: an agent sending 2000 messages as
// fast as it can, each with a new health string, gets the rate
// agents.max_message_rate allows processed and the rest shed (counted);
// the reports it gets processed take one slot of the shared presence
// queue at a time (coalesced, counted), nothing is dropped from the
// queue, its latest health is what is recorded, and another agent
// attaching meanwhile is recorded at once.
func TestOneAgentCannotFloodPresence(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.Agents.MaxMessageRate = 100
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	waitLease(t, tn)
	dir, id := enrollOnly(t, tn, alice, "acme")
	raw, err := dialRaw(t, tn.n.AgentURL(), agentTLS(t, dir), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	go func() { // the node's answers
		for {
			if _, _, err := raw.c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	uid := make([]byte, 16)
	_, _ = rand.Read(uid)
	caps := pb.AgentCapabilities_AgentCapabilities_ReportsStatus | pb.AgentCapabilities_AgentCapabilities_ReportsHealth
	report := func(health string) {
		m := describe(uid, caps, "flood")
		m.Health = &pb.ComponentHealth{Healthy: false, LastError: health}
		raw.send(m)
	}
	written := metric(t, tn, "outpost_agent_presence_changes_total")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			report(fmt.Sprintf("e%d", i))
		}
	}()
	// Another agent attaches during the flood and is recorded.
	dir2, id2 := enrollOnly(t, tn, alice, "acme")
	startThirdParty(t, tn.n.AgentURL(), dir2, pb.AgentCapabilities_AgentCapabilities_ReportsStatus, nil)
	eventually(t, 5*time.Second, "the other agent recorded during the flood", func() bool {
		return agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[id2].Host == "third-party"
	})
	<-done
	time.Sleep(time.Second) // the budget refills
	report("final")
	eventually(t, 5*time.Second, "the latest health recorded", func() bool {
		return agentsList(t, tn, alice, "/api/v1/tenants/acme/agents")[id].Health == "unhealthy: final"
	})
	shed := metric(t, tn, "outpost_agent_messages_shed_total")
	coalesced := metric(t, tn, "outpost_agent_presence_coalesced_total")
	changes := metric(t, tn, "outpost_agent_presence_changes_total") - written
	if shed < 1000 || coalesced < 1 || changes > 500 || metric(t, tn, "outpost_agent_presence_dropped_total") != 0 {
		t.Fatalf("shed %v messages, coalesced %v reports, wrote %v changes, dropped %v",
			shed, coalesced, changes, metric(t, tn, "outpost_agent_presence_dropped_total"))
	}
}

// TestRefusalReasons: every refusal HTTP can carry says why, with a
// machine code: an OpAMP upgrade refused (401 without a certificate, 403
// with a certificate a renewal replaced) in X-Outpost-Code and
// X-Outpost-Reason (opamp-go writes no body), JSON refusals in "code",
// an enrollment of a used token as token_used. Refusals in the TLS
// handshake (revoked, another CA), where TLS gives only an alert, are
// logged at info with the reason.
func TestRefusalReasons(t *testing.T) {
	var logs logSink
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{Logger: logs.logger()})
	alice, _ := twoTenants(t, tn)
	waitLease(t, tn)
	dial := func(cfg *tls.Config) *http.Response {
		t.Helper()
		_, resp, err := (&websocket.Dialer{TLSClientConfig: cfg}).Dial(wsURL(tn.n.AgentURL()), nil)
		if err == nil {
			t.Fatal("the upgrade was accepted")
		}
		return resp
	}
	insecure := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a test client

	t.Run("no certificate", func(t *testing.T) {
		r := dial(insecure)
		if r == nil || r.StatusCode != 401 || r.Header.Get(agentwire.HeaderCode) != agentwire.CodeCertRequired || r.Header.Get(agentwire.HeaderReason) == "" {
			t.Fatalf("answer: %+v", r)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecure}}
		resp, err := hc.Get(tn.n.AgentURL() + agentwire.PathNodes)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode != 401 || e.Code != agentwire.CodeCertRequired {
			t.Fatalf("%d %+v", resp.StatusCode, e)
		}
	})
	t.Run("retired certificate", func(t *testing.T) {
		dir, _ := enrollOnly(t, tn, alice, "acme")
		old := agentTLS(t, dir)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: mustCSRDER(t, key)})
		body, _ := json.Marshal(agentwire.RenewRequest{CSR: string(csr)})
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: old}}
		resp, err := hc.Post(tn.n.AgentURL()+agentwire.PathRenew, "application/json", bytes.NewReader(body))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("renewal: %v %v", resp, err)
		}
		resp.Body.Close()
		r := dial(old.Clone())
		if r == nil || r.StatusCode != 403 || r.Header.Get(agentwire.HeaderCode) != agentwire.CodeCertRetired || r.Header.Get(agentwire.HeaderReason) == "" {
			t.Fatalf("answer: %+v", r)
		}
	})
	t.Run("used token", func(t *testing.T) {
		bt := newToken(t, tn, alice, "acme")
		for i, want := range []int{201, 403} {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: mustCSRDER(t, key)})
			body, _ := json.Marshal(agentwire.EnrollRequest{Token: bt.Token, CSR: string(csr), Host: fmt.Sprintf("h%d", i)})
			r := tn.do(t, "POST", agentwire.PathEnroll, "", string(body))
			var e api.Error
			_ = json.Unmarshal([]byte(r.body), &e)
			if r.code != want || (want == 403 && e.Code != agentwire.CodeTokenUsed) {
				t.Fatalf("enrollment %d: %d %s", i, r.code, r.body)
			}
		}
	})
	t.Run("refused in the handshake", func(t *testing.T) {
		dir, id := enrollOnly(t, tn, alice, "acme")
		tn.must(t, 200, "POST", "/api/v1/tenants/acme/agents/"+id+"/revoke", alice, "")
		_ = dial(agentTLS(t, dir))
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
		_ = dial(&tls.Config{InsecureSkipVerify: true, //nolint:gosec // test
			Certificates: []tls.Certificate{{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}}})
		for _, reason := range []string{"revoked", "foreign_ca"} {
			eventually(t, 2*time.Second, "an info line for "+reason, func() bool {
				return strings.Contains(logs.String(), `level=INFO msg="refused a TLS handshake on the agent port" node=n1 component=agents reason=`+reason)
			})
		}
	})
}
