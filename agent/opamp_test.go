package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	pb "github.com/open-telemetry/opamp-go/protobufs"
	"github.com/open-telemetry/opamp-go/server"
	st "github.com/open-telemetry/opamp-go/server/types"
)

// opampServer is opamp-go's server (code nobody here wrote) on a TLS
// test server, recording what the agent's link sends and answering with
// reply.
type opampServer struct {
	t     *testing.T
	srv   *httptest.Server
	mu    sync.Mutex
	got   []*pb.AgentToServer
	reply func(n int, m *pb.AgentToServer) *pb.ServerToAgent
	seen  chan *pb.AgentToServer
	conns chan st.Connection
}

func newOpAMPServer(t *testing.T, reply func(n int, m *pb.AgentToServer) *pb.ServerToAgent) *opampServer {
	o := &opampServer{t: t, reply: reply, seen: make(chan *pb.AgentToServer, 100), conns: make(chan st.Connection, 10)}
	h, connCtx, err := server.New(nil).Attach(server.Settings{Callbacks: st.Callbacks{
		OnConnecting: func(*http.Request) st.ConnectionResponse {
			return st.ConnectionResponse{Accept: true, ConnectionCallbacks: st.ConnectionCallbacks{
				OnConnected: func(_ context.Context, c st.Connection) { o.conns <- c },
				OnMessage: func(_ context.Context, _ st.Connection, m *pb.AgentToServer) *pb.ServerToAgent {
					o.mu.Lock()
					o.got = append(o.got, m)
					n := len(o.got)
					o.mu.Unlock()
					o.seen <- m
					if r := o.reply(n, m); r != nil {
						return r
					}
					return &pb.ServerToAgent{InstanceUid: m.InstanceUid}
				}}}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(h))
	o.srv.Config.ConnContext = connCtx
	o.srv.StartTLS()
	t.Cleanup(o.srv.Close)
	return o
}

func (o *opampServer) next(t *testing.T, what string) *pb.AgentToServer {
	t.Helper()
	select {
	case m := <-o.seen:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("the server got no %s", what)
		return nil
	}
}

func (o *opampServer) dial(t *testing.T, st opampState, heartbeat time.Duration, onMsg func(*opampLink, *pb.ServerToAgent)) *opampLink {
	t.Helper()
	tlsCfg := o.srv.Client().Transport.(*http.Transport).TLSClientConfig
	l, err := dialOpAMP(context.Background(), "wss"+strings.TrimPrefix(o.srv.URL, "https")+"/v1/opamp", tlsCfg, nil, st, heartbeat, onMsg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestOpAMPLinkSpeaksToOpAMPGoServer: the agent's own OpAMP client, against
// opamp-go's server: the full state on connect, numbered messages,
// heartbeats at the interval the server offers, the full state again
// when asked (with a uid the server assigned), a config status, and a
// goodbye on close.
func TestOpAMPLinkSpeaksToOpAMPGoServer(t *testing.T) {
	newUID := []byte("0123456789abcdef")
	o := newOpAMPServer(t, func(n int, m *pb.AgentToServer) *pb.ServerToAgent {
		switch n {
		case 1: // offer a 1s heartbeat and push a config
			return &pb.ServerToAgent{InstanceUid: m.InstanceUid, ConnectionSettings: &pb.ConnectionSettingsOffers{
				Opamp: &pb.OpAMPConnectionSettings{HeartbeatIntervalSeconds: 1}},
				RemoteConfig: &pb.AgentRemoteConfig{ConfigHash: []byte("h1")}}
		case 3: // a new uid, and everything again
			return &pb.ServerToAgent{InstanceUid: m.InstanceUid, AgentIdentification: &pb.AgentIdentification{NewInstanceUid: newUID},
				Flags: uint64(pb.ServerToAgentFlags_ServerToAgentFlags_ReportFullState)}
		}
		return nil
	})
	uid := []byte("fedcba9876543210")
	state := opampState{uid: uid, caps: agentCaps, desc: &pb.AgentDescription{},
		health: &pb.ComponentHealth{Healthy: true}}
	l := o.dial(t, state, time.Hour, func(l *opampLink, m *pb.ServerToAgent) {
		if m.GetRemoteConfig() != nil {
			_ = l.setConfigStatus(&pb.RemoteConfigStatus{LastRemoteConfigHash: m.GetRemoteConfig().GetConfigHash(),
				Status: pb.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED})
		}
	})
	first := o.next(t, "first message")
	if string(first.InstanceUid) != string(uid) || first.SequenceNum != 0 || first.AgentDescription == nil ||
		first.Health == nil || first.Capabilities != uint64(agentCaps) {
		t.Fatalf("first message %v: want the full state, sequence 0, with the uid", first)
	}
	status := o.next(t, "config status")
	if status.SequenceNum != 1 || string(status.GetRemoteConfigStatus().GetLastRemoteConfigHash()) != "h1" {
		t.Fatalf("second message %v: want the config status, sequence 1", status)
	}
	// The third message is a heartbeat, at the offered 1s (not the
	// configured hour).
	start := time.Now()
	beat := o.next(t, "heartbeat")
	if beat.SequenceNum != 2 || beat.AgentDescription != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("third message %v after %v: want an empty heartbeat, sequence 2", beat, time.Since(start))
	}
	full := o.next(t, "full state after ReportFullState")
	if string(full.InstanceUid) != string(newUID) || full.AgentDescription == nil ||
		string(full.GetRemoteConfigStatus().GetLastRemoteConfigHash()) != "h1" || full.SequenceNum != 3 {
		t.Fatalf("fourth message %v: want the full state under the new uid, with the config status", full)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.close(ctx)
	for {
		m := o.next(t, "goodbye")
		if m.AgentDisconnect != nil {
			break
		}
	}
	select {
	case <-l.ended():
	default:
		t.Fatal("the link has not ended after close")
	}
}

// TestOpAMPLinkEndsWhenTheNodeGoes: a node that closes the connection
// ends the link with the cause, so the agent fails over at once.
func TestOpAMPLinkEndsWhenTheNodeGoes(t *testing.T) {
	o := newOpAMPServer(t, func(int, *pb.AgentToServer) *pb.ServerToAgent { return nil })
	l := o.dial(t, opampState{uid: []byte("fedcba9876543210"), caps: agentCaps}, time.Hour, func(*opampLink, *pb.ServerToAgent) {})
	o.next(t, "first message")
	(<-o.conns).Disconnect()
	select {
	case <-l.ended():
		if l.err() == nil {
			t.Fatal("the link ended without a cause")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the link did not notice the node closing it")
	}
	l.close(context.Background())
}

// FuzzDecodeServerMessage: hostile bytes from a node never panic the agent.
func FuzzDecodeServerMessage(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{0, 0x0a, 0x02, 0x01, 0x02})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeServerMessage(websocket.BinaryMessage, b)
		if err == nil && m == nil {
			t.Fatal("no message and no error")
		}
	})
}
