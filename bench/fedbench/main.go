// Command fedbench measures read-only federation (package federation) as
// an operator's global view sees it: region-1 asks every other region at
// once (federation.Each) for a linked tenant's agents, each region
// answering 1,000 agents, merges the rows and labels each with the
// region it came from. Every call is what federation does between real
// regions: mutual TLS 1.3 with each peer's pinned CA, an HMAC-signed GET,
// a capped, strictly decoded and validated answer. The regions' views are
// the benchmark's own (fixed rows, as a node's registry reports them; a
// small query answer), so the figures are federation's, not a node's
// store's. It prints three Markdown tables:
//
//   - loopback: global agents and query views with 2 and 4 regions, warm
//     connections (the first, cold view with its handshakes apart), over
//     HTTP/3 (QUIC, federation's transport) and over HTTP/2 with TLS on
//     TCP (the same Handler behind net/http), the two alternating view by
//     view, and the ratio HTTP/3 ÷ HTTP/2;
//   - a lossy link (root, `ip` and `nft`): region-2's servers in a network
//     namespace of their own, region-1's client sockets in another, joined
//     by a veth pair; nftables drops a share of the packets each way where
//     they arrive (a drop in the sender's output hook would fail its send,
//     which is not loss). With -delay, the same over a second link that
//     this process forwards between two TUN devices, delaying each packet
//     (the kernel has no netem); loss is nftables' there too;
//   - throughput: N clients at once doing global views against one peer
//     on loopback, views per second, latency and CPU per view.
//
// Servers and client share this process (and its CPUs): a view's figure
// holds the answering side's encoding as well as the asking side's
// decoding. The namespaces are removed on exit, also after an error or
// an interrupt (not after SIGKILL: `ip netns list | grep ^ofb`).
//
//	go run ./bench/fedbench                       # about 55 s; the lossy links need root
//	go run ./bench/fedbench -netns=false          # loopback only
//	go run ./bench/fedbench -h
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-mesh/outpost/federation"
)

// config is what one run measures.
type config struct {
	agents  int           // agents (rows) each region answers
	regions []int         // region counts of the loopback views (region-1 included)
	views   int           // measured warm views per transport and view, loopback
	timeout time.Duration // federation.Client.Timeout (per peer)

	netns     bool          // the lossy-link part
	losses    []int         // percent dropped each way
	lossViews int           // measured warm views per transport and loss, veth
	delay     time.Duration // round trip the wire adds (0: no wire)
	wireViews int           // measured warm views per transport and loss, wire

	conc     []int         // concurrent clients of the throughput part
	duration time.Duration // each throughput window

	cpuProfile string
}

func defaultConfig() config {
	return config{
		agents: 1000, regions: []int{2, 4}, views: 150, timeout: federation.DefaultTimeout,
		netns: true, losses: []int{0, 1, 5}, lossViews: 60, delay: 20 * time.Millisecond, wireViews: 12,
		conc: []int{1, 8, 32}, duration: 2 * time.Second,
	}
}

func (c config) validate() error {
	switch {
	case c.agents < 1 || c.agents > federation.MaxAgents:
		return fmt.Errorf("-agents %d: use 1..%d (federation.MaxAgents)", c.agents, federation.MaxAgents)
	case len(c.regions) == 0:
		return errors.New("-regions: at least one count")
	case c.views < 1 || c.lossViews < 1 || c.wireViews < 1:
		return errors.New("-views, -loss-views and -wire-views must be at least 1")
	case c.timeout <= 0 || c.duration <= 0 || c.delay < 0:
		return errors.New("-timeout and -duration must be positive, -delay not negative")
	}
	for _, n := range c.regions {
		if n < 2 || n > 16 {
			return fmt.Errorf("-regions: %d; use 2..16 (region-1 and its peers)", n)
		}
	}
	for _, p := range c.losses {
		if p < 0 || p > 50 {
			return fmt.Errorf("-loss: %d%%; use 0..50", p)
		}
	}
	for _, n := range c.conc {
		if n < 1 || n > 256 {
			return fmt.Errorf("-conc: %d; use 1..256", n)
		}
	}
	return nil
}

func main() {
	c, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "fedbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fedbench:", err)
		stop()
		os.Exit(1)
	}
}

func parseFlags(fs *flag.FlagSet, args []string) (config, error) {
	c := defaultConfig()
	fs.IntVar(&c.agents, "agents", c.agents, "agents (rows) every region answers")
	regions := fs.String("regions", joinInts(c.regions), "region counts of the loopback views, region-1 included, comma-separated")
	fs.IntVar(&c.views, "views", c.views, "measured warm views per transport and view on loopback (after the cold one and 3 warm-ups)")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "federation.Client.Timeout: the deadline of one call to one peer")
	fs.BoolVar(&c.netns, "netns", c.netns, "measure over a lossy veth link between two network namespaces (root, ip, nft)")
	losses := fs.String("loss", joinInts(c.losses), "percent of packets dropped each way on the lossy links, comma-separated")
	fs.IntVar(&c.lossViews, "loss-views", c.lossViews, "measured warm views per transport and loss over the veth link")
	fs.DurationVar(&c.delay, "delay", c.delay, "round trip added by the user-space delaying link (two TUN devices); 0: no such link")
	fs.IntVar(&c.wireViews, "wire-views", c.wireViews, "measured warm views per transport and loss over the delaying link")
	conc := fs.String("conc", joinInts(c.conc), "concurrent clients of the throughput part, comma-separated (empty: skip it)")
	fs.DurationVar(&c.duration, "duration", c.duration, "each throughput window")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (both sides) to this file")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./bench/fedbench [flags]\n\n"+
			"Measures federation's global views: latency on loopback over HTTP/3 and HTTP/2+TLS,\n"+
			"over a lossy (and delayed) link between network namespaces (root), and views per\n"+
			"second with concurrent clients. Prints Markdown tables.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	var err error
	if c.regions, err = parseInts("regions", *regions); err != nil {
		return config{}, err
	}
	if c.losses, err = parseInts("loss", *losses); err != nil {
		return config{}, err
	}
	if c.conc, err = parseInts("conc", *conc); err != nil {
		return config{}, err
	}
	return c, c.validate()
}

func parseInts(flag, s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("-%s: %q is not a whole number", flag, f)
		}
		out = append(out, v)
	}
	return out, nil
}

func joinInts(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func run(ctx context.Context, c config, w, progress io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	progress = &stamped{w: progress, start: time.Now()}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	now := time.Now()
	nRegions := slices.Max(c.regions)
	if len(c.conc) > 0 {
		nRegions = max(nRegions, 2)
	}
	regs := make([]*region, nRegions)
	defer func() {
		for _, r := range regs {
			if r != nil {
				_ = r.close()
			}
		}
	}()
	loop := net.IPv4(127, 0, 0, 1)
	for i := range regs {
		r, err := newRegion(i+1, c.agents, loop, now)
		if err != nil {
			return err
		}
		regs[i] = r
		udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		tcp, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			udp.Close()
			return err
		}
		r.serve(udp, tcp)
	}
	var peersH3, peersH2 []federation.Peer
	for _, b := range regs[1:] {
		h3, h2 := pair(regs[0], b, "", "")
		peersH3, peersH2 = append(peersH3, h3), append(peersH2, h2)
	}
	body, err := json.Marshal(federation.Agents{Link: linkID, AgeMs: 40, Agents: regs[1].view.rows})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Federation global views: %d agents per region (one answer: %s of JSON), region-1 asks every other region at once; mutual TLS 1.3 (ECDSA P-256 node certificates) + HMAC-signed GETs; %d CPUs, %s, quic-go %s; servers and client in this one process\n",
		c.agents, kib(len(body)), runtime.NumCPU(), runtime.Version(), modVersion("github.com/quic-go/quic-go"))

	if err := loopback(ctx, c, w, progress, regs, peersH3, peersH2, now); err != nil {
		return err
	}
	if err := lossy(ctx, c, w, progress, now); err != nil {
		return err
	}
	if len(c.conc) > 0 {
		if err := throughput(ctx, c, w, progress, regs, peersH3[:1], peersH2[:1]); err != nil {
			return err
		}
	}
	fmt.Fprintf(progress, "done in %v\n", time.Since(start).Round(time.Second))
	return nil
}

// stamped prefixes each progress line with the time since the start.
type stamped struct {
	w     io.Writer
	start time.Time
}

func (s *stamped) Write(b []byte) (int, error) {
	_, err := fmt.Fprintf(s.w, "fedbench %4.1fs: %s", time.Since(s.start).Seconds(), b)
	return len(b), err
}

// series is one transport's latencies in one configuration.
type series struct {
	cold     time.Duration // the first view, on new connections
	coldErr  error
	lat      []time.Duration // warm views, in order
	fails    int
	firstErr error
	st       *stats
}

func (s *series) record(d time.Duration, err error) {
	s.lat = append(s.lat, d)
	if err != nil {
		s.fails++
		if s.firstErr == nil {
			s.firstErr = err
		}
	}
}

// q is the nearest-rank quantile of the warm views.
func (s *series) q(p float64) time.Duration {
	ds := slices.Sorted(slices.Values(s.lat))
	if len(ds) == 0 {
		return 0
	}
	return ds[max(0, int(math.Ceil(p*float64(len(ds))))-1)]
}

func timed(ctx context.Context, fn func(context.Context) error) (time.Duration, error) {
	t := time.Now()
	err := fn(ctx)
	return time.Since(t), err
}

// alternate measures two view functions view by view: each one's first
// (cold) view, warm unmeasured views, then n measured views of each,
// alternating which goes first.
func alternate(ctx context.Context, n, warm int, a, b func(context.Context) error, sa, sb *series) error {
	fns, ss := [2]func(context.Context) error{a, b}, [2]*series{sa, sb}
	for i, fn := range fns {
		if fn == nil {
			continue
		}
		ss[i].cold, ss[i].coldErr = timed(ctx, fn)
	}
	for i := range warm + n {
		for k := range 2 {
			j := (i + k) % 2
			if fns[j] == nil {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			d, err := timed(ctx, fns[j])
			if i >= warm {
				ss[j].record(d, err)
			}
		}
	}
	return nil
}

func loopback(ctx context.Context, c config, w, progress io.Writer, regs []*region, peersH3, peersH2 []federation.Peer, now time.Time) error {
	fmt.Fprintf(w, "\n### Loopback: global views, warm connections (%d views per transport and row, HTTP/3 and HTTP/2 alternating; per-peer timeout %v)\n\n", c.views, c.timeout)
	fmt.Fprintln(w, "| regions | view | transport | first view (new connections) | p50 | p99 | max | failed | connections dialed |")
	fmt.Fprintln(w, "|---:|---|---|---:|---:|---:|---:|---:|---:|")
	var aim []string
	for _, n := range c.regions {
		fmt.Fprintf(progress, "loopback, %d regions…\n", n)
		var s [2][2]series // [view][proto]
		cls := [2]*federation.Client{}
		for p := range 2 {
			s[0][p].st, s[1][p].st = &stats{}, &stats{}
			cls[p] = newClient(regs[0], proto(p), c.timeout, dialers{}, s[0][p].st)
		}
		ph3, ph2 := peersH3[:n-1], peersH2[:n-1]
		want := c.agents
		err := alternate(ctx, c.views, 3,
			func(ctx context.Context) error {
				_, err := globalAgents(ctx, cls[pH3], regs[0].view, ph3, want)
				return err
			},
			func(ctx context.Context) error {
				_, err := globalAgents(ctx, cls[pH2], regs[0].view, ph2, want)
				return err
			},
			&s[0][pH3], &s[0][pH2])
		if err == nil {
			err = alternate(ctx, c.views, 3,
				func(ctx context.Context) error {
					_, err := globalQuery(ctx, cls[pH3], regs[0].view, ph3, now)
					return err
				},
				func(ctx context.Context) error {
					_, err := globalQuery(ctx, cls[pH2], regs[0].view, ph2, now)
					return err
				},
				&s[1][pH3], &s[1][pH2])
		}
		for p := range 2 {
			// The query views ran on the same clients and connections:
			// their first view was not a cold one.
			q := &s[1][p]
			q.st = s[0][p].st
			if q.coldErr != nil {
				q.fails++
				q.firstErr = cmp.Or(q.firstErr, q.coldErr)
			}
			q.cold, q.coldErr = -1, nil
			cls[p].Close()
		}
		if err != nil {
			return err
		}
		names := [2]string{fmt.Sprintf("agents (%s rows)", thousands(n*c.agents)), fmt.Sprintf("query (%d samples)", n*len(regs[0].view.query.Samples))}
		for v := range 2 {
			for p := range 2 {
				row(w, fmt.Sprint(n), names[v], proto(p).String(), &s[v][p])
			}
			ratio(w, fmt.Sprint(n), names[v], &s[v][pH3], &s[v][pH2])
		}
		if n == 2 {
			for p := range 2 {
				p99 := s[0][p].q(0.99)
				verdict := "met"
				if p99 >= 10*time.Millisecond || s[0][p].fails > 0 {
					verdict = "NOT met"
				}
				aim = append(aim, fmt.Sprintf("%s %s (%s)", proto(p), ms(p99), verdict))
			}
		}
	}
	if len(aim) > 0 {
		fmt.Fprintf(w, "\nAim, a 2-region global agents view under 10 ms at p99 on loopback: %s.\n", strings.Join(aim, "; "))
	}
	return nil
}

func row(w io.Writer, regions, view, transport string, s *series) {
	fmt.Fprintf(w, "| %s | %s | %s | %s |\n", regions, view, transport, cells(s))
}

// cells are a series' cells from its first view on: first view, p50,
// p99, max, failed, connections dialed.
func cells(s *series) string {
	cold := "–"
	switch {
	case s.coldErr != nil:
		cold = "failed: " + oneLine(s.coldErr)
	case s.cold >= 0:
		cold = ms(s.cold)
	}
	failed := "0"
	if s.fails > 0 {
		failed = fmt.Sprintf("%d (%s)", s.fails, oneLine(s.firstErr))
	}
	conns := "–"
	if s.st != nil {
		conns = fmt.Sprint(s.st.dials.Load())
		if k := s.st.wrongProto.Load(); k > 0 {
			conns += fmt.Sprintf(" (%d answers NOT over the transport under test)", k)
		}
	}
	return strings.Join([]string{cold, ms(s.q(0.5)), ms(s.q(0.99)), ms(s.q(1)), failed, conns}, " | ")
}

func ratio(w io.Writer, regions, view string, a, b *series) {
	r := func(x, y time.Duration) string {
		if y <= 0 {
			return "–"
		}
		return fmt.Sprintf("**%.2f×**", float64(x)/float64(y))
	}
	cold := "–"
	if a.cold > 0 && b.cold > 0 && a.coldErr == nil && b.coldErr == nil {
		cold = r(a.cold, b.cold)
	}
	fmt.Fprintf(w, "| %s | %s | HTTP/3 ÷ HTTP/2 | %s | %s | %s | %s | | |\n", regions, view, cold, r(a.q(0.5), b.q(0.5)), r(a.q(0.99), b.q(0.99)), r(a.q(1), b.q(1)))
}

// lossy is the lossy-link part: region-2's servers in namespace B,
// region-1's sockets in A.
func lossy(ctx context.Context, c config, w, progress io.Writer, now time.Time) error {
	fmt.Fprintf(w, "\n### Lossy link: two network namespaces, nftables random drop where packets arrive, each way (%d views per transport and row over veth, %d over the delaying link; HTTP/3 and HTTP/2 alternating; per-peer timeout %v)\n\n", c.lossViews, c.wireViews, c.timeout)
	if !c.netns {
		fmt.Fprintln(w, "Skipped: -netns=false.")
		return nil
	}
	if len(c.losses) == 0 {
		fmt.Fprintln(w, "Skipped: no -loss given.")
		return nil
	}
	if err := labAvailable(); err != nil {
		fmt.Fprintf(w, "Skipped: %v.\n", err)
		return nil
	}
	oneWay := c.delay / 2
	var noWire string
	if oneWay > 0 {
		if err := wireAvailable(); err != nil {
			noWire = fmt.Sprintf("The delaying link was not made: %v.", err)
			oneWay = 0
		}
	} else {
		noWire = "No delaying link (-delay 0)."
	}
	fmt.Fprintf(progress, "making the network namespaces…\n")
	l, err := newLab(ctx, oneWay)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer func() {
		if err := l.close(); err != nil {
			fmt.Fprintf(progress, "removing the namespaces: %v\n", err)
		}
	}()
	r1, err := newRegion(1, c.agents, net.ParseIP(vethA), now)
	if err != nil {
		return err
	}
	r2, err := newRegion(2, c.agents, net.ParseIP(vethB), now)
	if err != nil {
		return err
	}
	udp, tcp, err := l.listen()
	if err != nil {
		return err
	}
	r2.serve(udp, tcp)
	defer r2.close()
	portH3, portH2 := udp.LocalAddr().(*net.UDPAddr).Port, tcp.Addr().(*net.TCPAddr).Port
	d, closeDialers, err := l.clientDialers()
	if err != nil {
		return err
	}
	defer closeDialers()

	type link struct {
		name  string
		host  string
		views int
	}
	links := []link{{"veth", vethB, c.lossViews}}
	if oneWay > 0 {
		links = append(links, link{fmt.Sprintf("TUN wire (+%v each way)", oneWay), wireB, c.wireViews})
	}
	fmt.Fprintln(w, "| link | base RTT (UDP echo, median) | loss each way | transport | first view (new connections) | p50 | p99 | max | failed | connections dialed |")
	fmt.Fprintln(w, "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
	for _, lk := range links {
		rtt, err := l.rtt(lk.host, 20)
		if err != nil {
			return fmt.Errorf("%s: %w", lk.name, err)
		}
		h3, h2 := pair(r1, r2, net.JoinHostPort(lk.host, strconv.Itoa(portH3)), net.JoinHostPort(lk.host, strconv.Itoa(portH2)))
		for _, pct := range c.losses {
			fmt.Fprintf(progress, "%s, %d%% loss each way…\n", lk.name, pct)
			if err := l.lose(ctx, pct); err != nil {
				return err
			}
			var s [2]series
			var cls [2]*federation.Client
			for p := range 2 {
				s[p].st = &stats{}
				cls[p] = newClient(r1, proto(p), c.timeout, d, s[p].st)
			}
			err := alternate(ctx, lk.views, 3,
				func(ctx context.Context) error {
					_, err := globalAgents(ctx, cls[pH3], r1.view, []federation.Peer{h3}, c.agents)
					return err
				},
				func(ctx context.Context) error {
					_, err := globalAgents(ctx, cls[pH2], r1.view, []federation.Peer{h2}, c.agents)
					return err
				},
				&s[pH3], &s[pH2])
			for p := range 2 {
				cls[p].Close()
			}
			if err != nil {
				return err
			}
			for p := range 2 {
				fmt.Fprintf(w, "| %s | %s | %d%% | %s | %s |\n", lk.name, ms(rtt), pct, proto(p), cells(&s[p]))
			}
			r := func(x, y time.Duration) string {
				if y <= 0 {
					return "–"
				}
				return fmt.Sprintf("**%.2f×**", float64(x)/float64(y))
			}
			cold := "–"
			if s[0].coldErr == nil && s[1].coldErr == nil {
				cold = r(s[0].cold, s[1].cold)
			}
			fmt.Fprintf(w, "| %s | | %d%% | HTTP/3 ÷ HTTP/2 | %s | %s | %s | %s | | |\n", lk.name, pct, cold, r(s[0].q(0.5), s[1].q(0.5)), r(s[0].q(0.99), s[1].q(0.99)), r(s[0].q(1), s[1].q(1)))
		}
		if err := l.lose(ctx, 0); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nEach row: 2 regions (region-1 asks region-2 for its %d agents), new clients (the first view dials), 3 warm-up views, then the measured ones.", c.agents)
	if l.wire != nil {
		fmt.Fprintf(w, " The TUN wire forwards in this process (Go timers: a delay is ≥ the asked one), no bandwidth limit; packets it dropped from a full queue: %d.", l.wire.dropped.Load())
	}
	if noWire != "" {
		fmt.Fprint(w, " "+noWire)
	}
	fmt.Fprintln(w)
	return nil
}

// throughput is the concurrency part: region-1 asks region-2 (one peer)
// from n goroutines at once, each doing global agents views back to back.
func throughput(ctx context.Context, c config, w, progress io.Writer, regs []*region, peersH3, peersH2 []federation.Peer) error {
	fmt.Fprintf(w, "\n### Throughput: concurrent global agents views against one peer, loopback (%v each; HTTP/3 and HTTP/2 windows alternating)\n\n", c.duration)
	fmt.Fprintln(w, "| transport | clients | views/s | peer answers/s (MB/s) | p50 | p99 | max | failed | CPU per view (both sides) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	body, _ := json.Marshal(federation.Agents{Link: linkID, AgeMs: 40, Agents: regs[1].view.rows})
	var cls [2]*federation.Client
	var peers = [2][]federation.Peer{peersH3, peersH2}
	for p := range 2 {
		cls[p] = newClient(regs[0], proto(p), c.timeout, dialers{}, &stats{})
		defer cls[p].Close()
		for range 3 {
			if _, err := globalAgents(ctx, cls[p], regs[0].view, peers[p], c.agents); err != nil {
				return fmt.Errorf("%s: warm-up: %w", proto(p), err)
			}
		}
	}
	for _, n := range c.conc {
		for p := range 2 {
			fmt.Fprintf(progress, "throughput, %s, %d clients…\n", proto(p), n)
			s, elapsed, cpu := concurrently(ctx, n, c.duration, func(ctx context.Context) error {
				_, err := globalAgents(ctx, cls[p], regs[0].view, peers[p], c.agents)
				return err
			})
			if err := ctx.Err(); err != nil {
				return err
			}
			rate := float64(len(s.lat)-s.fails) / elapsed.Seconds()
			failed := "0"
			if s.fails > 0 {
				failed = fmt.Sprintf("%d (%s)", s.fails, oneLine(s.firstErr))
			}
			perView := "–"
			if k := len(s.lat); k > 0 && cpu > 0 {
				perView = ms(cpu / time.Duration(k))
			}
			fmt.Fprintf(w, "| %s | %d | %.0f | %.0f (%.0f) | %s | %s | %s | %s | %s |\n", proto(p), n, rate, rate*float64(len(peers[p])),
				rate*float64(len(peers[p])*len(body))/1e6, ms(s.q(0.5)), ms(s.q(0.99)), ms(s.q(1)), failed, perView)
		}
	}
	fmt.Fprintln(w, "\nA view here is region-1's own rows and the peer's (2 regions), merged. CPU is this process's (user + system), both regions' sides and the load's.")
	return nil
}

// concurrently runs fn from n goroutines for d and returns every call's
// latency, the window and the process's CPU time in it.
func concurrently(ctx context.Context, n int, d time.Duration, fn func(context.Context) error) (series, time.Duration, time.Duration) {
	type res struct {
		lat  []time.Duration
		errs []error
	}
	out := make(chan res, n)
	deadline := time.Now().Add(d)
	cpu0 := cpuTime()
	start := time.Now()
	for range n {
		go func() {
			var r res
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t, err := timed(ctx, fn)
				r.lat = append(r.lat, t)
				r.errs = append(r.errs, err)
			}
			out <- r
		}()
	}
	var s series
	for range n {
		r := <-out
		for i, t := range r.lat {
			s.record(t, r.errs[i])
		}
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	return s, elapsed, cpu
}

func ms(d time.Duration) string {
	if d < 0 {
		return "–"
	}
	if d >= 100*time.Millisecond {
		return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func kib(n int) string { return fmt.Sprintf("%.0f KiB", float64(n)/1024) }

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

func modVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == path {
				return m.Version
			}
		}
	}
	return "(unknown)"
}
