package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/outpost-mesh/outpost/federation"
	"github.com/outpost-mesh/outpost/node/pki"
)

// linkID is the one link every region configures for region-1's calls,
// against its own tenant.
const linkID = "fleet"

// asker is the region that asks for global views; the others answer.
const asker = "region-1"

// view is a region's read view in the benchmark: n agents of one tenant
// (rows as the node's registry reports them) and a small query answer.
type view struct {
	region string
	tenant string
	rows   []federation.AgentRow
	query  federation.Query
}

var (
	modes   = []string{"ebpf", "ebpf", "ebpf", "procfs"}
	reasons = []string{"", "", "", "kernel 4.19 lacks BTF (CONFIG_DEBUG_INFO_BTF): procfs polling"}
	healths = []string{"healthy", "healthy", "healthy", "healthy", "healthy", "healthy", "healthy", "degraded: 12 events lost in the last minute"}
	roles   = []string{"web", "api", "db", "cache", "worker", "edge"}
)

// newView makes region's view with agents rows (a fixed seed per region,
// so every run answers the same bytes).
func newView(region string, seq uint64, agents int, now time.Time) *view {
	rnd := mrand.New(mrand.NewPCG(seq, 0x6f7574706f7374))
	v := &view{region: region, tenant: "tn-" + strconv.FormatUint(rnd.Uint64(), 16)}
	for i := range agents {
		rtt := float64(rnd.IntN(90_000)) / 1000
		r := federation.AgentRow{
			ID:          fmt.Sprintf("ag-%016x", rnd.Uint64()),
			Host:        fmt.Sprintf("%s-%04d.%s.prod.example.net", roles[i%len(roles)], i, region),
			Version:     fmt.Sprintf("1.%d.%d", 4+rnd.IntN(2), rnd.IntN(12)),
			Node:        fmt.Sprintf("n%d", 1+i%3),
			RTTMs:       &rtt,
			Mode:        modes[i%len(modes)],
			ModeReason:  reasons[i%len(reasons)],
			Health:      healths[rnd.IntN(len(healths))],
			LastSeen:    now.Add(-time.Duration(rnd.IntN(30_000)) * time.Millisecond).UTC(),
			CertExpires: now.Add(time.Duration(20+rnd.IntN(60)) * 24 * time.Hour).Truncate(time.Second).UTC(),
		}
		v.rows = append(v.rows, r)
	}
	v.query = federation.Query{ResultType: "vector", Complete: true}
	for i := range 8 {
		v.query.Samples = append(v.query.Samples, federation.Sample{
			Labels: map[string]string{"host": fmt.Sprintf("web-%04d.%s.prod.example.net", i, region)},
			T:      now.UnixMilli(), V: strconv.FormatFloat(float64(rnd.IntN(5000))/1000, 'f', -1, 64),
		})
	}
	return v
}

func (v *view) Health(context.Context) (federation.Health, error) {
	return federation.Health{Region: v.region, Node: "n1", Leader: "n1", Nodes: []federation.NodeHealth{{ID: "n1", RaftState: "Leader", Agents: len(v.rows)}},
		Lease: federation.LeaseHealth{Holder: "n1", Token: 1, ExpiresInMs: 3000}}, nil
}

func (v *view) LinkTenant(peer, link string) (string, bool) {
	if peer == asker && link == linkID {
		return v.tenant, true
	}
	return "", false
}

func (v *view) Agents(_ context.Context, tenantID string) (federation.Agents, error) {
	if tenantID != v.tenant {
		return federation.Agents{}, errors.New("no such tenant")
	}
	return federation.Agents{AgeMs: 40, Agents: v.rows}, nil
}

func (v *view) Query(_ context.Context, tenantID, _ string, ts time.Time) (federation.Query, error) {
	if tenantID != v.tenant {
		return federation.Query{}, errors.New("no such tenant")
	}
	q := v.query
	q.AgeMs = 40
	q.Samples = append([]federation.Sample(nil), q.Samples...)
	for i := range q.Samples {
		q.Samples[i].T = ts.UnixMilli()
	}
	return q, nil
}

// region is one region of one node: its CA and certificate, its view,
// and its federation server over HTTP/3 (UDP) and over HTTP/2 with TLS
// (TCP), both serving the same Handler.
type region struct {
	name string
	ca   *pki.CA
	cert tls.Certificate
	view *view
	srv  *federation.Server
	// peers is what this region has configured: region-1 for the
	// answering regions, the others for region-1.
	mu    sync.Mutex
	peers map[string]federation.Peer

	h3Addr, h2Addr string
	udp            net.PacketConn
	tcp            net.Listener
	h2             *http.Server
	done           chan error
}

// newRegion makes region i's CA, node certificate (for ip) and view.
func newRegion(i, agents int, ip net.IP, now time.Time) (*region, error) {
	name := fmt.Sprintf("region-%d", i)
	ca, err := pki.NewCA(name)
	if err != nil {
		return nil, err
	}
	cert, err := ca.IssueNode(name, "n1", []net.IP{ip}, nil)
	if err != nil {
		return nil, err
	}
	r := &region{name: name, ca: ca, cert: cert, view: newView(name, uint64(i), agents, now), peers: map[string]federation.Peer{}, done: make(chan error, 2)}
	r.srv = federation.NewServer(federation.ServerConfig{
		Cert: func() *tls.Certificate { return &r.cert },
		Peer: func(n string) (federation.Peer, bool) {
			r.mu.Lock()
			defer r.mu.Unlock()
			p, ok := r.peers[n]
			return p, ok
		},
		View: r.view,
	})
	return r, nil
}

// serve serves the federation API on udp (HTTP/3) and tcp (HTTP/2 over
// TLS 1.3, the server's own TLS configuration), which the caller made
// (in whichever network namespace).
func (r *region) serve(udp net.PacketConn, tcp net.Listener) {
	r.udp, r.tcp = udp, tcp
	r.h3Addr, r.h2Addr = udp.LocalAddr().String(), tcp.Addr().String()
	tc := r.srv.TLSConfig()
	tc.NextProtos = []string{"h2"}
	r.h2 = &http.Server{Handler: r.srv.Handler(), TLSConfig: tc, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 16 << 10, IdleTimeout: 60 * time.Second}
	go func() { r.done <- r.srv.Serve(udp) }()
	go func() {
		err := r.h2.ServeTLS(tcp, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		r.done <- err
	}()
}

func (r *region) close() error {
	if r.udp == nil {
		return nil
	}
	_ = r.srv.Close()
	_ = r.h2.Close()
	_ = r.udp.Close()
	_ = r.tcp.Close()
	return errors.Join(<-r.done, <-r.done)
}

// pair configures a (the asker) and b as each other's peers with a fresh
// shared secret; a's peer entry for b is returned twice, addressed to
// b's HTTP/3 and HTTP/2 endpoints (addrH3, addrH2: the addresses a
// reaches them at; "" for the ones b listens on).
func pair(a, b *region, addrH3, addrH2 string) (h3, h2 federation.Peer) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	b.mu.Lock()
	b.peers[a.name] = federation.Peer{Name: a.name, CA: a.ca.Cert, Secret: secret}
	b.mu.Unlock()
	if addrH3 == "" {
		addrH3 = b.h3Addr
	}
	if addrH2 == "" {
		addrH2 = b.h2Addr
	}
	h3 = federation.Peer{Name: b.name, Addr: addrH3, CA: b.ca.Cert, Secret: secret}
	h2 = h3
	h2.Addr = addrH2
	a.mu.Lock()
	a.peers[b.name] = h3
	a.mu.Unlock()
	return h3, h2
}

// proto is a transport under test.
type proto int

const (
	pH3 proto = iota // HTTP/3 over QUIC
	pH2              // HTTP/2 over TLS on TCP
)

func (p proto) String() string {
	if p == pH3 {
		return "HTTP/3 (QUIC)"
	}
	return "HTTP/2 + TLS (TCP)"
}

// dialers say where a client's sockets are made: nil fields dial from
// this process's namespace as the federation's defaults do.
type dialers struct {
	// quic, if set, dials QUIC connections (http3.Transport.Dial).
	quic func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error)
	// tcp, if set, dials TCP connections (http.Transport.DialContext).
	tcp func(ctx context.Context, network, addr string) (net.Conn, error)
}

// counted is a round tripper that counts answers by protocol version and
// connections dialed (to check the transport is the one under test and
// the connections stay warm).
type counted struct {
	rt   http.RoundTripper
	st   *stats
	want int // ProtoMajor expected
}

type stats struct {
	dials, answers, wrongProto atomic.Int64
}

func (c *counted) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err == nil {
		c.st.answers.Add(1)
		if resp.ProtoMajor != c.want {
			c.st.wrongProto.Add(1)
		}
	}
	return resp, err
}

func (c *counted) Close() error {
	switch t := c.rt.(type) {
	case *http3.Transport:
		return t.Close()
	case *http.Transport:
		t.CloseIdleConnections()
	}
	return nil
}

// newClient is region-1's federation client over p; timeout is its
// per-peer deadline.
func newClient(self *region, p proto, timeout time.Duration, d dialers, st *stats) *federation.Client {
	c := &federation.Client{Self: self.name, Cert: func() *tls.Certificate { return &self.cert }, Timeout: timeout}
	c.Transport = func(tc *tls.Config) http.RoundTripper {
		if p == pH3 {
			t := federation.HTTP3(tc).(*http3.Transport)
			dial := d.quic
			if dial == nil {
				dial = func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
					return quic.DialAddrEarly(ctx, addr, tc, qc)
				}
			}
			t.Dial = func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				st.dials.Add(1)
				return dial(ctx, addr, tc, qc)
			}
			return &counted{rt: t, st: st, want: 3}
		}
		dial := d.tcp
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		t := &http.Transport{
			TLSClientConfig:        tc,
			ForceAttemptHTTP2:      true,
			MaxResponseHeaderBytes: 16 << 10,
			IdleConnTimeout:        60 * time.Second,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				st.dials.Add(1)
				return dial(ctx, network, addr)
			},
		}
		return &counted{rt: t, st: st, want: 2}
	}
	return c
}

// globalRow is one row of a global agents view: a peer's row labelled
// with the region it came from, as the node's global view labels it.
type globalRow struct {
	Source, Region string
	federation.AgentRow
}

// globalAgents is region-1's global agents view: its own rows and every
// peer's, fetched at once (federation.Each), merged and labelled. It
// fails unless every peer answered ok with want rows.
func globalAgents(ctx context.Context, c *federation.Client, local *view, peers []federation.Peer, want int) (int, error) {
	la, err := local.Agents(ctx, local.tenant)
	if err != nil {
		return 0, err
	}
	as, sts := federation.Each(ctx, peers, func(ctx context.Context, p federation.Peer) (federation.Agents, federation.PeerStatus) {
		return c.Agents(ctx, p, linkID)
	})
	out := make([]globalRow, 0, len(la.Agents)*(1+len(peers)))
	for _, r := range la.Agents {
		out = append(out, globalRow{Source: "local", Region: local.region, AgentRow: r})
	}
	var errs []error
	for i, a := range as {
		if sts[i].Status != federation.StatusOK || len(a.Agents) != want {
			errs = append(errs, fmt.Errorf("%s: %s (%d rows): %s", sts[i].Peer, sts[i].Status, len(a.Agents), sts[i].Error))
			continue
		}
		for _, r := range a.Agents {
			out = append(out, globalRow{Source: "peer:" + peers[i].Name, Region: peers[i].Name, AgentRow: r})
		}
	}
	return len(out), errors.Join(errs...)
}

// globalQuery is region-1's global instant query: its own small answer
// and every peer's, with the peer label added to each remote sample.
func globalQuery(ctx context.Context, c *federation.Client, local *view, peers []federation.Peer, now time.Time) (int, error) {
	lq, err := local.Query(ctx, local.tenant, "up", now)
	if err != nil {
		return 0, err
	}
	qs, sts := federation.Each(ctx, peers, func(ctx context.Context, p federation.Peer) (federation.Query, federation.PeerStatus) {
		return c.Query(ctx, p, linkID, "sum by (host) (rate(outpost_flow_retransmits_total[5m]))", now)
	})
	out := append([]federation.Sample(nil), lq.Samples...)
	var errs []error
	for i, q := range qs {
		if sts[i].Status != federation.StatusOK || len(q.Samples) != len(lq.Samples) {
			errs = append(errs, fmt.Errorf("%s: %s (%d samples): %s", sts[i].Peer, sts[i].Status, len(q.Samples), sts[i].Error))
			continue
		}
		for _, s := range q.Samples {
			l := make(map[string]string, len(s.Labels)+1)
			for k, v := range s.Labels {
				l[k] = v
			}
			l[federation.PeerLabel] = peers[i].Name
			out = append(out, federation.Sample{Labels: l, T: s.T, V: s.V})
		}
	}
	return len(out), errors.Join(errs...)
}
