package agentlink

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	pb "github.com/open-telemetry/opamp-go/protobufs"
	st "github.com/open-telemetry/opamp-go/server/types"

	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/node/agents"
)

// What the node offers. Packages are never offered. Connection
// settings are offered only for the heartbeat interval (offerSettings).
const serverCaps = uint64(pb.ServerCapabilities_ServerCapabilities_AcceptsStatus |
	pb.ServerCapabilities_ServerCapabilities_OffersRemoteConfig |
	pb.ServerCapabilities_ServerCapabilities_AcceptsEffectiveConfig |
	pb.ServerCapabilities_ServerCapabilities_OffersConnectionSettings)

// quietFactor times agents.heartbeat is how long a link of an agent that
// did not announce ReportsHeartbeat may stay silent: such an agent
// speaks only when its state changes (OpAMP), so silence is no sign of
// death; the bound only reclaims links whose peer vanished.
const quietFactor = 20

// maxBadMessages is how many undecodable messages a link tolerates.
const maxBadMessages = 3

// link is one agent connection. opamp-go never runs one connection's
// callbacks concurrently; mu guards what pushes and the API read.
type link struct {
	s           *Server
	conn        st.Connection
	agent       agents.Agent
	fp          string
	addr        string
	id          string
	since       time.Time
	certExpires time.Time

	mu        sync.Mutex
	info      agents.LinkInfo
	lastSeen  time.Time
	described bool   // the agent has sent its description on this link
	reported  []byte // the config hash the agent last reported
	sent      []byte // the config hash last pushed on this link
	status    string // the last status recorded for reported
	bad       int
	offered   bool // the heartbeat interval was offered on this link
	resync    bool // messages were shed: ask for the full state
	rate      *bucket
}

func (l *link) onConnected(_ context.Context, c st.Connection) {
	l.conn = c
	now := l.s.cfg.Now()
	l.lastSeen = now
	// net/http's deadlines outlive the hijack: reset them for the link.
	_ = c.Connection().SetWriteDeadline(time.Time{})
	_ = c.Connection().SetReadDeadline(now.Add(3 * l.s.cfg.Heartbeat))
	l.s.register(l)
	l.s.m.connects.Inc()
	l.s.queue(agents.PresenceOp{Kind: agents.Attach, Agent: l.agent.ID, Node: l.s.cfg.NodeID, Conn: l.id, Addr: l.addr, At: now.UTC()})
	l.s.logger.Debug("agent connected", "agent", l.agent.ID, "from", l.addr)
}

func (l *link) onClose(st.Connection) {
	if !l.s.unregister(l) {
		return
	}
	l.s.queue(agents.PresenceOp{Kind: agents.Detach, Agent: l.agent.ID, Node: l.s.cfg.NodeID, Conn: l.id, At: l.s.cfg.Now().UTC()})
	l.s.logger.Debug("agent disconnected", "agent", l.agent.ID, "from", l.addr)
}

func (l *link) onReadError(c st.Connection, _ int, msg []byte, err error) {
	switch {
	case errors.Is(err, errMessageTooLarge):
		l.violation("oversized message", "an agent message exceeded agents.max_message_bytes")
		return
	case isTransportError(err):
		// opamp-go reports the end of the connection (a close frame,
		// revocation, the idle bound, shutdown) through this callback
		// too: an ordinary disconnect, not a bad message.
		l.s.logger.Debug("agent link ended", "agent", l.agent.ID, "from", l.addr, "err", err)
		return
	}
	// opamp-go goes on reading after an undecodable message; a few are
	// tolerated (a bug), a stream of them is not.
	l.s.m.badMessages.Inc()
	l.mu.Lock()
	l.bad++
	n := l.bad
	l.mu.Unlock()
	l.s.logger.Warn("undecodable message from an agent", "agent", l.agent.ID, "bytes", len(msg), "err", err)
	if n >= maxBadMessages {
		l.violation("malformed messages", err.Error())
		_ = c.Disconnect()
	}
}

// isTransportError tells a read that failed because the connection
// ended or broke from a message that arrived and did not decode.
func isTransportError(err error) bool {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce),
		errors.Is(err, net.ErrClosed),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return false
}

func (l *link) onResponseError(_ st.Connection, _ *pb.ServerToAgent, err error) {
	l.s.logger.Debug("sending to an agent failed", "agent", l.agent.ID, "err", err)
}

// violation records a protocol violation: a log line, a metric, and an
// audit record (at most one a minute per agent).
func (l *link) violation(what, detail string) {
	l.s.m.violations.WithLabelValues(strings.ReplaceAll(what, " ", "_")).Inc()
	l.s.logger.Warn("closed an agent connection for a protocol violation", "agent", l.agent.ID, "violation", what, "detail", detail, "from", l.addr)
	l.s.auditOnce("violation/"+l.agent.ID, "agent.protocol_violation", "agent/"+l.agent.ID, l.agent.Tenant,
		map[string]string{"violation": what, "detail": detail, "from": l.addr, "node": l.s.cfg.NodeID})
}

func (l *link) onMessage(_ context.Context, c st.Connection, m *pb.AgentToServer) *pb.ServerToAgent {
	l.s.m.messages.Inc()
	now := l.s.cfg.Now()
	_ = c.Connection().SetReadDeadline(now.Add(l.s.idleBound(m.GetCapabilities())))
	if !l.s.allow(l.rate, now) {
		// Over the agent's rate: not processed, so one agent cannot
		// spend the node's time or the presence queue all agents share.
		l.s.m.messagesShed.Inc()
		l.mu.Lock()
		l.resync = true
		l.mu.Unlock()
		return nil
	}
	// The answer opamp-go writes after this returns: an agent that does
	// not read it within SendTimeout loses the link.
	_ = c.Connection().SetWriteDeadline(now.Add(l.s.cfg.SendTimeout))
	resp := &pb.ServerToAgent{Capabilities: serverCaps}

	l.mu.Lock()
	l.lastSeen = now
	info := l.info
	info.Capabilities = m.GetCapabilities()
	if d := m.GetAgentDescription(); d != nil {
		l.described = true
		applyDescription(&info, d)
	}
	if uid := m.GetInstanceUid(); len(uid) == 16 {
		info.InstanceUID = hex.EncodeToString(uid)
	}
	if h := m.GetHealth(); h != nil {
		info.HealthKnown = true
		info.Healthy, info.Health = h.GetHealthy(), truncate(h.GetLastError(), 256)
		if info.Health == "" && !info.Healthy {
			info.Health = truncate(h.GetStatus(), 256)
		}
	}
	changed := info != l.info
	l.info = info
	first := !l.described && m.GetAgentDescription() == nil
	var report *agents.ConfigStatus
	if rs := m.GetRemoteConfigStatus(); rs != nil && len(rs.GetLastRemoteConfigHash()) > 0 {
		report = l.noteStatus(rs, now)
	}
	described := l.described
	offer := !l.offered
	l.offered = true
	resync := l.resync
	l.resync = false
	l.mu.Unlock()

	if offer {
		resp.ConnectionSettings = l.s.offerSettings(m.GetCapabilities())
	}

	if first || resync {
		// A WebSocket reconnect sends no description, and what was shed
		// is lost: ask for everything.
		resp.Flags = uint64(pb.ServerToAgentFlags_ServerToAgentFlags_ReportFullState)
	}
	if changed && described {
		i := info
		l.s.queueUpdate(agents.PresenceOp{Kind: agents.Update, Agent: l.agent.ID, Node: l.s.cfg.NodeID, Conn: l.id, At: now.UTC(), Info: &i})
	}
	if report != nil {
		l.s.queue(agents.PresenceOp{Kind: agents.Status, Agent: l.agent.ID, Node: l.s.cfg.NodeID, At: now.UTC(), Status: report})
	}
	if described {
		if rc := l.pending(); rc != nil {
			resp.RemoteConfig = rc
		}
	}
	return resp
}

// assignInstanceUID sends a new instance uid (OpAMP
// AgentIdentification.new_instance_uid) on each of the agent's links
// here that reported uid, which another agent of its tenant reported
// first. The agent reports the new one from then on.
func (s *Server) assignInstanceUID(agentID, uid string) {
	old, err := hex.DecodeString(uid)
	if err != nil {
		return
	}
	for _, l := range s.linksOf(agentID) {
		l.mu.Lock()
		match := l.info.InstanceUID == uid
		l.mu.Unlock()
		if !match || l.conn == nil {
			continue
		}
		fresh := make([]byte, 16)
		_, _ = rand.Read(fresh)
		fresh[6] = fresh[6]&0x0f | 0x40 // UUID version 4
		fresh[8] = fresh[8]&0x3f | 0x80 // RFC 9562 variant
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = l.conn.Connection().SetWriteDeadline(time.Now().Add(s.cfg.SendTimeout))
			// ReportFullState: the agent answers at once with the new uid
			// (opamp-go's client sends nothing else on adopting it).
			err := l.conn.Send(s.ctx, &pb.ServerToAgent{InstanceUid: old, Capabilities: serverCaps,
				Flags:               uint64(pb.ServerToAgentFlags_ServerToAgentFlags_ReportFullState),
				AgentIdentification: &pb.AgentIdentification{NewInstanceUid: fresh}})
			if err != nil {
				s.logger.Debug("sending a new instance uid failed", "agent", agentID, "err", err)
				return
			}
			s.logger.Info("gave an agent a new instance uid: another agent of its tenant reported its uid first",
				"agent", agentID, "instance_uid", hex.EncodeToString(fresh))
		}()
	}
}

// bucket is an agent's message budget (a token bucket).
type bucket struct {
	tokens float64
	last   time.Time
}

func (s *Server) burst() float64 { return 3 * s.cfg.MessageRate }

// allow spends one message of b, if there is one.
func (s *Server) allow(b *bucket, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.tokens = min(s.burst(), b.tokens+now.Sub(b.last).Seconds()*s.cfg.MessageRate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// idleBound is how long a link may stay silent: three heartbeats for an
// agent that announced ReportsHeartbeat (it was offered the interval),
// quietFactor of them for one that did not.
func (s *Server) idleBound(caps uint64) time.Duration {
	if caps&uint64(pb.AgentCapabilities_AgentCapabilities_ReportsHeartbeat) != 0 {
		return 3 * s.cfg.Heartbeat
	}
	return quietFactor * s.cfg.Heartbeat
}

// offerSettings is the connection settings offer on a link's first
// answer: the heartbeat interval (agents.heartbeat), for an agent that
// announced ReportsHeartbeat. None to an agent that announced
// AcceptsOpAMPConnectionSettings: per the spec an offer without a
// certificate tells it to stop using its client certificate, which
// would lock it out; it keeps its own interval.
func (s *Server) offerSettings(caps uint64) *pb.ConnectionSettingsOffers {
	if caps&uint64(pb.AgentCapabilities_AgentCapabilities_ReportsHeartbeat) == 0 ||
		caps&uint64(pb.AgentCapabilities_AgentCapabilities_AcceptsOpAMPConnectionSettings) != 0 {
		return nil
	}
	secs := uint64(max(1, (s.cfg.Heartbeat+time.Second-1)/time.Second))
	endpoint := strings.Replace(s.cfg.URL, "https://", "wss://", 1) + agentwire.PathOpAMP
	h := sha256.Sum256([]byte(endpoint + "\x00" + strconv.FormatUint(secs, 10)))
	return &pb.ConnectionSettingsOffers{Hash: h[:], Opamp: &pb.OpAMPConnectionSettings{
		DestinationEndpoint: endpoint, HeartbeatIntervalSeconds: secs}}
}

// noteStatus turns a remote config status into a record, once per
// (hash, status). Called with mu held.
func (l *link) noteStatus(rs *pb.RemoteConfigStatus, now time.Time) *agents.ConfigStatus {
	hash := rs.GetLastRemoteConfigHash()
	var status string
	switch rs.GetStatus() {
	case pb.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED:
		status = agents.ConfigApplied
	case pb.RemoteConfigStatuses_RemoteConfigStatuses_FAILED:
		status = agents.ConfigFailed
		if strings.HasPrefix(rs.GetErrorMessage(), agentwire.RefusedPrefix) {
			status = agents.ConfigRefused
		}
	default:
		l.reported = append(l.reported[:0], hash...)
		return nil
	}
	if bytes.Equal(hash, l.reported) && status == l.status {
		return nil
	}
	l.reported, l.status = append(l.reported[:0], hash...), status
	d, ok := l.s.desired.byHash(hash, l.agent.Tenant)
	if !ok {
		return nil // a config this node never knew (pruned from memory): nothing to attribute it to
	}
	return &agents.ConfigStatus{Dispatch: agentDispatchID(d.Dispatch), Token: d.Token, Status: status, Error: truncate(rs.GetErrorMessage(), 512), At: now.UTC()}
}

// pending returns the remote config to push on this link, or nil: the
// newest committed config dispatch selecting this agent, when the agent
// accepts remote config and has neither reported it nor been sent it.
func (l *link) pending() *pb.AgentRemoteConfig {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.info.Capabilities&uint64(pb.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig) == 0 {
		return nil
	}
	d, ok := l.s.desired.latest(l.agent.Tenant, l.attrs())
	if !ok || bytes.Equal(d.hash, l.reported) || bytes.Equal(d.hash, l.sent) {
		return nil
	}
	l.sent = d.hash
	return d.remoteConfig()
}

// attrs are the values a selector matches. Called with mu held.
func (l *link) attrs() map[string]string {
	host := l.info.Host
	if host == "" {
		host = l.agent.Host
	}
	return map[string]string{"agent": l.agent.ID, "host": host, "os": l.info.OS, "arch": l.info.Arch,
		"mode": l.info.Mode, "version": l.info.Version}
}

// push sends pending config now, bounded by the send timeout: an agent
// that does not take it in time is disconnected (it reconnects and gets
// the config then).
func (l *link) push() bool {
	rc := l.pending()
	if rc == nil {
		return false
	}
	t := time.AfterFunc(l.s.cfg.SendTimeout, func() { _ = l.conn.Disconnect() })
	defer t.Stop()
	// A write deadline an answer left behind may have passed.
	_ = l.conn.Connection().SetWriteDeadline(time.Now().Add(l.s.cfg.SendTimeout))
	if err := l.conn.Send(context.Background(), &pb.ServerToAgent{Capabilities: serverCaps, RemoteConfig: rc}); err != nil {
		l.mu.Lock()
		l.sent = nil
		l.mu.Unlock()
		l.s.logger.Debug("pushing a dispatch failed", "agent", l.agent.ID, "err", err)
		return false
	}
	l.s.m.pushes.Inc()
	return true
}

func applyDescription(info *agents.LinkInfo, d *pb.AgentDescription) {
	for _, kv := range append(append([]*pb.KeyValue(nil), d.GetIdentifyingAttributes()...), d.GetNonIdentifyingAttributes()...) {
		v := kv.GetValue()
		s := truncate(v.GetStringValue(), 253)
		switch kv.GetKey() {
		case agentwire.AttrHost:
			info.Host = printable(s)
		case agentwire.AttrVersion:
			info.Version = printable(truncate(s, 64))
		case agentwire.AttrOS:
			info.OS = printable(truncate(s, 32))
		case agentwire.AttrArch:
			info.Arch = printable(truncate(s, 32))
		case agentwire.AttrMode:
			if s == "ebpf" || s == "procfs" {
				info.Mode = s
			}
		case agentwire.AttrModeReason:
			info.ModeReason = sentence(truncate(s, 200))
		case agentwire.AttrRTT:
			f := v.GetDoubleValue()
			if f == 0 && s != "" {
				f, _ = strconv.ParseFloat(s, 64)
			}
			if f >= 0 && f < 1e6 {
				info.RTTKnown = true
				info.RTTMs = float64(int64(f*100)) / 100 // what a list shows; small changes are not news
			}
		}
	}
}

func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return -1
		}
		return r
	}, s)
}

// sentence keeps printable ASCII and spaces (a reason for people).
func sentence(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, s)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
