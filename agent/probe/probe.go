package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// Result is one run of one probe.
type Result struct {
	Kind, Target string
	At           time.Time // when the run started
	Success      bool
	Error        string // empty on success; for a guard refusal it names the rule
	Refused      string // the SSRF rule that refused the probe, "" otherwise

	Addr     netip.Addr    // the address actually reached (tcp, http, icmp)
	Duration time.Duration // the whole run: resolution, connect, TLS, response headers, ICMP round trip
	Connect  time.Duration // tcp and http: the TCP handshake of the connection used, without resolution

	TLSHandshake time.Duration // https
	TTFB         time.Duration // http(s): from the start of the run to the first response byte
	HTTPStatus   int
	CertExpiry   time.Time // https: the leaf certificate's NotAfter, recorded even when verification failed

	DNSAnswers int // dns: A and AAAA answers
}

// DefaultInterval is a probe's interval when its config gives none.
const DefaultInterval = 30 * time.Second

// MaxTimeout bounds one run of a probe; a shorter interval bounds it
// further, so a run ends before the next is due.
const MaxTimeout = 10 * time.Second

// Interval is how often p runs: its Interval, or DefaultInterval.
func Interval(p agentwire.Probe) time.Duration {
	if d, err := time.ParseDuration(p.Interval); err == nil && d > 0 {
		return d
	}
	return DefaultInterval
}

// Run runs p once, within min(Interval(p), MaxTimeout) or ctx, and
// reports the outcome; it never returns an error of its own, a failure
// is the Result's. The guard applies to tcp, http and icmp targets: to
// the host as written (agentwire.GuardHost) and to every address
// dialed or pinged once resolved. A dns probe only resolves its name,
// reaching nothing but the system's resolver.
func Run(ctx context.Context, p agentwire.Probe, g Guard) Result {
	res := Result{Kind: p.Kind, Target: p.Target, At: time.Now()}
	if err := p.Validate(); err != nil {
		res.Error = err.Error()
		return res
	}
	if p.Kind != "dns" {
		host := p.ProbeHost()
		if rule := agentwire.GuardHost(host, g.Allow); rule != "" {
			res.Refused, res.Error = rule, (&refusal{what: host, rule: rule}).Error()
			return res
		}
	}
	ctx, cancel := context.WithTimeout(ctx, min(Interval(p), MaxTimeout))
	defer cancel()
	var err error
	switch p.Kind {
	case "tcp":
		err = runTCP(ctx, p, g, &res)
	case "http":
		err = runHTTP(ctx, p, g, &res)
	case "dns":
		err = runDNS(ctx, p, g, &res)
	case "icmp":
		err = runICMP(ctx, p, g, &res)
	}
	res.Duration = time.Since(res.At)
	var r *refusal
	switch {
	case errors.As(err, &r):
		// The refusal alone: the dialer's wrapping says nothing more.
		res.Refused, res.Error = r.rule, r.Error()
	case err != nil:
		res.Error = err.Error()
	default:
		res.Success = true
	}
	return res
}

// connTimes records the TCP connection a dial made, from the dialer's
// trace hooks (httptrace's ConnectStart and ConnectDone, which
// net.Dialer calls for every address it tries, concurrently when it
// races IPv4 against IPv6).
type connTimes struct {
	mu      sync.Mutex
	starts  map[string]time.Time
	addr    netip.Addr
	connect time.Duration
}

func (c *connTimes) start(_, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.starts == nil {
		c.starts = map[string]time.Time{}
	}
	c.starts[addr] = time.Now()
}

func (c *connTimes) done(_, addr string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil || c.addr.IsValid() {
		return
	}
	if ap, perr := netip.ParseAddrPort(addr); perr == nil {
		c.addr = ap.Addr().Unmap()
	}
	c.connect = time.Since(c.starts[addr])
}

func (c *connTimes) get() (netip.Addr, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr, c.connect
}

// addrOf is the IP address of a, unmapped and without a zone.
func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}
