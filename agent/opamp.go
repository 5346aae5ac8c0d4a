package agent

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	pb "github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"
)

// The agent's OpAMP client: one WebSocket link to one node, speaking the
// OpAMP specification's WebSocket transport (each binary message is a
// varint header, 0, then an AgentToServer or ServerToAgent protobuf).
//
// It is the agent's own rather than opamp-go's client: opamp-go v0.23.0
// (the only version served here) ships its mock server in a non-test
// file of the client's package, so linking its client puts testing,
// testify and httptest into the agent binary, which runs privileged on
// every host. The node's side is opamp-go's server, and the node's tests
// drive it with opamp-go's client too, so both ends are judged by code
// nobody here wrote.

// opampMaxMessage bounds a message from the node; writeTimeout one
// message to it.
const (
	opampMaxMessage = 4 << 20
	writeTimeout    = 10 * time.Second
)

// opampState is what the agent reports about itself: sent in full on
// connect and whenever the node asks for it (ReportFullState).
type opampState struct {
	uid    []byte
	desc   *pb.AgentDescription
	health *pb.ComponentHealth
	caps   pb.AgentCapabilities
	config *pb.RemoteConfigStatus // nil until a config was reported
}

// opampLink is one live OpAMP connection.
type opampLink struct {
	ws      *websocket.Conn
	onMsg   func(*opampLink, *pb.ServerToAgent)
	onError func(*pb.ServerErrorResponse)

	wmu  sync.Mutex // one writer at a time; guards seq and st
	seq  uint64
	st   opampState
	beat chan time.Duration // a heartbeat interval the node offered

	done    chan struct{} // closed when the reader ends
	readErr error         // why it ended; read after done
	wg      sync.WaitGroup
	stop    chan struct{}
	once    sync.Once
}

// dialOpAMP opens a link to url, sends the agent's full state, and serves
// the node's messages to onMsg (in order, on one goroutine) until the
// link ends or close is called. A refused upgrade is
// websocket.ErrBadHandshake; a refused certificate a TLS alert.
func dialOpAMP(ctx context.Context, url string, tlsCfg *tls.Config, header http.Header, st opampState, heartbeat time.Duration,
	onMsg func(*opampLink, *pb.ServerToAgent), onError func(*pb.ServerErrorResponse)) (*opampLink, error) {
	d := websocket.Dialer{TLSClientConfig: tlsCfg, HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.DialContext(ctx, url, header)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(opampMaxMessage)
	l := &opampLink{ws: ws, onMsg: onMsg, onError: onError, st: st, beat: make(chan time.Duration, 1),
		done: make(chan struct{}), stop: make(chan struct{})}
	if err := l.send(l.fullState(), writeTimeout); err != nil {
		ws.Close()
		return nil, fmt.Errorf("sending the agent's state: %w", err)
	}
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.read() }()
	go func() { defer l.wg.Done(); l.heartbeats(heartbeat) }()
	return l, nil
}

// fullState is an AgentToServer message with everything the agent
// reports. Called with wmu held or before the link is shared.
func (l *opampLink) fullState() *pb.AgentToServer {
	return &pb.AgentToServer{AgentDescription: l.st.desc, Health: l.st.health, Capabilities: uint64(l.st.caps),
		RemoteConfigStatus: l.st.config}
}

// send writes m, stamped with the instance uid and the next sequence
// number. Called with wmu held, or before the link is shared.
func (l *opampLink) send(m *pb.AgentToServer, timeout time.Duration) error {
	m.InstanceUid, m.SequenceNum = l.st.uid, l.seq
	l.seq++
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	_ = l.ws.SetWriteDeadline(time.Now().Add(timeout))
	return l.ws.WriteMessage(websocket.BinaryMessage, append([]byte{0}, b...))
}

// update changes the reported state with fn and sends the message fn
// returns (the changed part).
func (l *opampLink) update(fn func(st *opampState) *pb.AgentToServer) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return l.send(fn(&l.st), writeTimeout)
}

// setDescription reports a changed description.
func (l *opampLink) setDescription(d *pb.AgentDescription) error {
	return l.update(func(st *opampState) *pb.AgentToServer {
		st.desc = d
		return &pb.AgentToServer{AgentDescription: d}
	})
}

// setConfigStatus reports the outcome of a pushed config.
func (l *opampLink) setConfigStatus(s *pb.RemoteConfigStatus) error {
	return l.update(func(st *opampState) *pb.AgentToServer {
		st.config = s
		return &pb.AgentToServer{RemoteConfigStatus: s}
	})
}

// read serves the node's messages until the link ends.
func (l *opampLink) read() {
	defer close(l.done)
	for {
		typ, data, err := l.ws.ReadMessage()
		if err != nil {
			l.readErr = err
			return
		}
		m, err := decodeServerMessage(typ, data)
		if err != nil {
			l.readErr = err
			return
		}
		l.handle(m)
	}
}

// decodeServerMessage decodes one WebSocket message from the node.
func decodeServerMessage(typ int, data []byte) (*pb.ServerToAgent, error) {
	if typ != websocket.BinaryMessage {
		return nil, errors.New("the node sent a non-binary OpAMP message")
	}
	header, n := binary.Uvarint(data)
	if n <= 0 || header != 0 {
		return nil, errors.New("the node sent an OpAMP message with a bad header")
	}
	m := &pb.ServerToAgent{}
	if err := proto.Unmarshal(data[n:], m); err != nil {
		return nil, fmt.Errorf("the node sent a malformed OpAMP message: %w", err)
	}
	return m, nil
}

func (l *opampLink) handle(m *pb.ServerToAgent) {
	if e := m.GetErrorResponse(); e != nil && l.onError != nil {
		l.onError(e)
	}
	if s := m.GetConnectionSettings().GetOpamp(); s != nil && l.st.caps&pb.AgentCapabilities_AgentCapabilities_ReportsHeartbeat != 0 {
		select {
		case l.beat <- time.Duration(s.GetHeartbeatIntervalSeconds()) * time.Second:
		default:
		}
	}
	if id := m.GetAgentIdentification(); id != nil && len(id.GetNewInstanceUid()) == 16 {
		l.wmu.Lock()
		l.st.uid = append([]byte(nil), id.GetNewInstanceUid()...)
		l.wmu.Unlock()
	}
	l.onMsg(l, m)
	if m.GetFlags()&uint64(pb.ServerToAgentFlags_ServerToAgentFlags_ReportFullState) != 0 {
		l.wmu.Lock()
		err := l.send(l.fullState(), writeTimeout)
		l.wmu.Unlock()
		if err != nil {
			l.ws.Close() // the reader ends with the cause
		}
	}
}

// heartbeats sends an empty message every interval (the node's offer
// replaces the configured one; 0 sends none), so the node knows the link
// is alive and answers, which tells the agent the same.
func (l *opampLink) heartbeats(every time.Duration) {
	var tick <-chan time.Time
	var t *time.Ticker
	reset := func(d time.Duration) {
		if t != nil {
			t.Stop()
			t, tick = nil, nil
		}
		if d > 0 {
			t = time.NewTicker(d)
			tick = t.C
		}
	}
	reset(every)
	defer reset(0)
	for {
		select {
		case <-l.stop:
			return
		case <-l.done:
			return
		case d := <-l.beat:
			reset(d)
		case <-tick:
			l.wmu.Lock()
			err := l.send(&pb.AgentToServer{}, writeTimeout)
			l.wmu.Unlock()
			if err != nil {
				l.ws.Close()
				return
			}
		}
	}
}

// ended is closed when the link ends; err says why.
func (l *opampLink) ended() <-chan struct{} { return l.done }

func (l *opampLink) err() error {
	<-l.done
	return l.readErr
}

// close says goodbye (OpAMP agent_disconnect and a close frame), waits
// up to ctx for the node to close its side, and ends the link.
func (l *opampLink) close(ctx context.Context) {
	l.once.Do(func() {
		close(l.stop)
		l.wmu.Lock()
		// A dead node must not hold the agent: a second for the goodbye.
		err := l.send(&pb.AgentToServer{AgentDisconnect: &pb.AgentDisconnect{}}, time.Second)
		if err == nil {
			_ = l.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		}
		l.wmu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
		}
		l.ws.Close()
		l.wg.Wait()
	})
}
