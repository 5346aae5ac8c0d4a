package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	pb "github.com/open-telemetry/opamp-go/protobufs"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// The capabilities the agent announces. It accepts remote config (the
// dispatches); it accepts neither packages nor connection settings.
const agentCaps = pb.AgentCapabilities_AgentCapabilities_ReportsStatus |
	pb.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig |
	pb.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig |
	pb.AgentCapabilities_AgentCapabilities_ReportsHealth |
	pb.AgentCapabilities_AgentCapabilities_ReportsHeartbeat

// failedCooldown keeps a node that just failed out of the next choice.
const failedCooldown = 10 * time.Second

// Run attaches to the nearest node and keeps the agent attached until
// ctx ends: it fails over when the node goes, moves when a markedly
// nearer one appears, and renews the certificate in time.
func (a *Agent) Run(ctx context.Context) error {
	// Every goroutine Run starts ends before it returns: the renewals,
	// and the goodbyes of links it left.
	var renewals sync.WaitGroup
	renewals.Add(1)
	go func() { defer renewals.Done(); a.renewLoop(ctx) }()
	defer renewals.Wait()
	if err := a.startTelemetry(ctx, &renewals); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer a.closing.Wait()
	failed := map[string]time.Time{}
	backoff := time.Second
	for ctx.Err() == nil {
		servers := a.servers()
		var full map[string]bool
		for _, s := range servers {
			if full = a.refreshServers(ctx, s); full != nil {
				servers = a.servers()
				break
			}
		}
		cands := a.measure(ctx, servers, full)
		var pick *candidate
		for i := range cands {
			c := cands[i]
			if c.err == nil && !c.full && time.Since(failed[c.url]) > failedCooldown {
				pick = &cands[i]
				break
			}
		}
		if pick == nil {
			var recent []string
			for _, c := range cands {
				if c.err == nil && time.Since(failed[c.url]) <= failedCooldown {
					recent = append(recent, c.url)
				}
			}
			a.logger.Warn("no node of the region can take this agent now; retrying", "servers", servers, "in", backoff,
				"unreachable", candErrors(cands), "failed_just_now", recent)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			case <-a.renewed:
				// A renewal recovered the certificate the nodes refused.
				clear(failed)
				backoff = time.Second
				continue
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		reason := a.attach(ctx, *pick)
		if reason != nil {
			failed[pick.url] = time.Now()
			a.logger.Warn("leaving node", "node", pick.node, "url", pick.url, "reason", reason)
		}
	}
	return nil
}

func candErrors(cs []candidate) []string {
	var out []string
	for _, c := range cs {
		if c.err != nil {
			out = append(out, c.url+": "+c.err.Error())
		}
	}
	return out
}

func (a *Agent) servers() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.st.Servers) > 0 {
		return slices.Clone(a.st.Servers)
	}
	return slices.Clone(a.cfg.Servers)
}

// opampURL turns an agent endpoint into its OpAMP WebSocket URL.
func opampURL(u string) (string, error) {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return "", fmt.Errorf("bad server URL %q", u)
	}
	return (&url.URL{Scheme: "wss", Host: pu.Host, Path: agentwire.PathOpAMP}).String(), nil
}

// attach runs one OpAMP client against c until it must go: it returns
// nil when ctx ended or a nearer node was chosen, and the reason when
// the node failed.
func (a *Agent) attach(ctx context.Context, c candidate) error {
	wsURL, err := opampURL(c.url)
	if err != nil {
		return err
	}
	select {
	case <-a.renewed: // this connection uses the new certificate already
	default:
	}
	a.mu.Lock()
	uid, _ := hex.DecodeString(a.st.InstanceUID)
	st := opampState{uid: uid, desc: a.description(c.rtt), caps: agentCaps,
		health: &pb.ComponentHealth{Healthy: true, StartTimeUnixNano: uint64(time.Now().UnixNano())}}
	if len(a.st.ConfigHash) > 0 {
		st.config = &pb.RemoteConfigStatus{LastRemoteConfigHash: a.st.ConfigHash, Status: statusOf(a.st.ConfigStatus), ErrorMessage: a.st.ConfigError}
	}
	a.node, a.url, a.rtt, a.lastMsg = c.node, c.url, c.rtt, time.Now()
	a.msgs, a.gap = 0, 0
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.conn, a.node, a.url = false, "", ""
		a.mu.Unlock()
	}()
	a.logger.Info("attaching", "node", c.node, "url", c.url, "rtt", c.rtt)
	cl, err := dialOpAMP(ctx, wsURL, a.tlsConfig(), http.Header{"User-Agent": {"outpost-agent/" + Version}}, st, a.cfg.Heartbeat,
		a.onMessage, func(e *pb.ServerErrorResponse) {
			a.logger.Warn("the node reported an error", "error", e.GetErrorMessage())
		})
	if err != nil {
		switch why := a.refusal(ctx, c.url, err); {
		case why.code == agentwire.CodeCertRetired:
			// The answer to a renewal that took effect was lost: the
			// pending key asks for it again.
			a.logger.Warn("the node says this certificate was replaced by a renewal; asking for the renewal's certificate again",
				"node", c.node)
			select {
			case a.renewNow <- struct{}{}:
			default:
			}
		case why.msg != "":
			a.logger.Error("the node refuses this agent's certificate; if this host should report, enroll it again: empty the state directory and run with a new bootstrap token",
				"node", c.node, "reason", why.msg)
		}
		return fmt.Errorf("connection failed: %w", err)
	}
	// Closing says goodbye to a live node and waits up to 5s for it; a
	// dead one does not delay the next attach (Run waits for the close
	// before it returns).
	defer func() {
		a.closing.Add(1)
		go func() {
			defer a.closing.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cl.close(sctx)
		}()
	}()
	a.mu.Lock()
	a.conn, a.lastMsg = true, time.Now()
	a.attaches++
	a.mu.Unlock()
	a.logger.Info("attached", "node", c.node, "url", c.url, "rtt", c.rtt)

	reeval := time.NewTicker(a.cfg.Reevaluate)
	defer reeval.Stop()
	silence := time.NewTicker(max(a.cfg.Heartbeat/2, 100*time.Millisecond))
	defer silence.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.renewed:
			// The node closes links on the replaced certificate soon.
			a.logger.Info("reconnecting with the renewed certificate", "node", c.node)
			return nil
		case <-cl.ended():
			return fmt.Errorf("the link broke: %w", cl.err())
		case <-silence.C:
			a.mu.Lock()
			quiet := time.Since(a.lastMsg)
			connected := a.conn
			bound := a.silenceBoundLocked()
			a.mu.Unlock()
			if connected && quiet > bound {
				return fmt.Errorf("the node has been silent for %v", quiet.Round(time.Millisecond))
			}
		case <-reeval.C:
			full := a.refreshServers(ctx, c.url)
			cands := a.measure(ctx, a.servers(), full)
			current := candidate{url: c.url, err: errors.New("not measured")}
			for _, x := range cands {
				if x.url == c.url {
					current = x
				}
			}
			if len(cands) > 0 && a.better(current, cands[0]) {
				a.logger.Info("moving to a nearer node", "from", c.node, "from_rtt", current.rtt, "to", cands[0].node, "to_rtt", cands[0].rtt)
				return nil
			}
			if current.err == nil && changedMuch(c.rtt, current.rtt) {
				c.rtt = current.rtt
				a.mu.Lock()
				a.rtt = c.rtt
				a.mu.Unlock()
				_ = cl.setDescription(a.description(c.rtt))
			}
		}
	}
}

// onMessage handles a message from the node: it notes the node's
// pace, adopts an instance uid the node assigned, and applies a pushed
// dispatch.
func (a *Agent) onMessage(cl *opampLink, m *pb.ServerToAgent) {
	a.mu.Lock()
	now := time.Now()
	if a.msgs++; a.msgs > 1 {
		a.gap = min(max(a.gap, now.Sub(a.lastMsg)), agentwire.MaxHeartbeat)
	}
	a.lastMsg = now
	a.mu.Unlock()
	if id := m.GetAgentIdentification(); id != nil {
		a.adoptInstanceUID(id.GetNewInstanceUid())
	}
	if rc := m.GetRemoteConfig(); rc != nil {
		a.applyRemote(cl, rc)
	}
}

// adoptInstanceUID keeps the instance uid the node assigned (another
// agent of the tenant reported this one first), so that the next link
// starts with it. The link uses it from now on.
func (a *Agent) adoptInstanceUID(uid []byte) {
	if len(uid) != 16 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.InstanceUID = hex.EncodeToString(uid)
	if err := a.store.save(a.st); err != nil {
		a.logger.Warn("could not save the instance uid the node assigned", "err", err)
		return
	}
	a.logger.Info("the node assigned a new instance uid (another agent reported this one)", "instance_uid", a.st.InstanceUID)
}

// silenceBoundLocked is how long the node may stay silent on a link:
// three heartbeats. The interval is the node's to offer, and opamp-go's
// client does not say what it was offered, so it is read from the
// node's answers (one per heartbeat): until two have arrived it is taken
// to be the longest a node offers.
func (a *Agent) silenceBoundLocked() time.Duration {
	if a.msgs < 2 {
		return 3 * max(a.cfg.Heartbeat, agentwire.MaxHeartbeat)
	}
	return 3 * max(a.cfg.Heartbeat, a.gap)
}

// refusal says why the node at url refused the agent's certificate (the
// node's message and code, agentwire.Code…), or a zero refusal when the
// failure was something else (a dead node, a full one). A WebSocket
// refusal carries no reason, so the node's answer to a plain request
// with the same certificate is asked for it.
func (a *Agent) refusal(ctx context.Context, url string, err error) nodeRefusal {
	if !refusedByNode(err) {
		return nodeRefusal{}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: a.tlsConfig()}}
	defer hc.CloseIdleConnections()
	var nodes []agentwire.Node
	perr := doJSON(ctx, hc, "GET", strings.TrimRight(url, "/")+agentwire.PathNodes, nil, &nodes)
	var se *statusError
	switch {
	case errors.As(perr, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden):
		return nodeRefusal{msg: se.Msg, code: se.Reason}
	case tlsAlert(perr):
		return nodeRefusal{msg: "refused in the TLS handshake (revoked)", code: agentwire.CodeCertRefused}
	}
	return nodeRefusal{}
}

// nodeRefusal is a node's reason for refusing this agent's certificate.
type nodeRefusal struct{ msg, code string }

// refusedByNode reports whether a connection attempt failed because the
// node said no: an answer other than 101 to the WebSocket upgrade, or a
// TLS alert the node sent (a certificate it would not take).
func refusedByNode(err error) bool {
	return errors.Is(err, websocket.ErrBadHandshake) || tlsAlert(err)
}

// tlsAlert reports whether err is a TLS alert the peer sent. crypto/tls
// reports those as a *net.OpError with Op "remote error" (the alert's
// own type is unexported).
func tlsAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

func changedMuch(old, now time.Duration) bool {
	d := old - now
	if d < 0 {
		d = -d
	}
	return d > old/4 && d > time.Millisecond
}

func (a *Agent) description(rtt time.Duration) *pb.AgentDescription {
	str := func(k, v string) *pb.KeyValue {
		return &pb.KeyValue{Key: k, Value: &pb.AnyValue{Value: &pb.AnyValue_StringValue{StringValue: v}}}
	}
	d := &pb.AgentDescription{
		IdentifyingAttributes: []*pb.KeyValue{str(agentwire.AttrService, "outpost-agent")},
		NonIdentifyingAttributes: []*pb.KeyValue{
			str(agentwire.AttrHost, a.cfg.Host), str(agentwire.AttrVersion, Version), str(agentwire.AttrOS, runtime.GOOS),
			str(agentwire.AttrArch, runtime.GOARCH),
			{Key: agentwire.AttrRTT, Value: &pb.AnyValue{Value: &pb.AnyValue_DoubleValue{DoubleValue: float64(rtt.Microseconds()) / 1000}}},
		},
	}
	if a.tel != nil {
		mode, reason := a.tel.plane.Mode()
		d.NonIdentifyingAttributes = append(d.NonIdentifyingAttributes, str(agentwire.AttrMode, mode))
		if reason != "" {
			d.NonIdentifyingAttributes = append(d.NonIdentifyingAttributes, str(agentwire.AttrModeReason, reason))
		}
	}
	return d
}
