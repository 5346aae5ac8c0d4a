package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The load generator runs in a child process, this binary re-executed
// with loadEnv set, so that its CPU (and the kernel time its sockets
// cost, eBPF programs included) is not counted as the agent's. The
// parent drives it over the child's stdin with one command a line:
//
//	rate <round trips/s> <new connections/s>
//	report   → "<round trips> <connections> <errors> <CPU seconds>" so far
//
// and the child exits when its stdin closes.
const loadEnv = "OUTPOST_DATAPLANEBENCH_LOAD"

// loadParams shape the generator's connections; rates come later.
type loadParams struct {
	Conns int `json:"conns"` // persistent connections doing round trips
	Msg   int `json:"msg"`   // bytes each way per round trip
}

// churnWorkers dial the new connections; a connection is a handshake, a
// round trip and a close, about 100 µs on loopback, so a few workers
// reach thousands a second.
const churnWorkers = 8

// maxBacklog is how far a worker that fell behind may catch up in a
// burst; beyond it the owed operations are forgotten (and show as a
// lower achieved rate).
const maxBacklog = 100 * time.Millisecond

// Message kinds, the first byte of a request.
const (
	msgPing  = 'p' // answer and wait for the next
	msgClose = 'c' // answer, then close: the server closes first, so
	// TIME_WAIT lands on the listening side and the client's ephemeral
	// ports are free again at once
)

// rates is what the parent asked for, read by every worker.
type rates struct {
	mu    sync.Mutex
	gen   uint64 // bumped at each change; workers restart their pacing
	ops   float64
	conns float64
}

func (r *rates) set(ops, conns float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.ops, r.conns = ops, conns
}

func (r *rates) get() (gen uint64, ops, conns float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen, r.ops, r.conns
}

// pacer spaces one worker's operations at its share of a total rate.
type pacer struct {
	gen   uint64
	start time.Time
	done  float64
}

// wait blocks until the worker's next operation is due, or ctx ends
// (false). rate gives the generation and the worker's share of the rate.
func (p *pacer) wait(ctx context.Context, rate func() (uint64, float64)) bool {
	for ctx.Err() == nil {
		gen, r := rate()
		now := time.Now()
		if gen != p.gen || p.start.IsZero() {
			p.gen, p.start, p.done = gen, now, 0
		}
		if r <= 0 {
			sleep(ctx, 10*time.Millisecond)
			continue
		}
		due := p.start.Add(time.Duration(p.done / r * float64(time.Second)))
		if d := due.Sub(now); d > 0 {
			// At most 20 ms at a time, so a new rate is taken up soon.
			sleep(ctx, min(d, 20*time.Millisecond))
			continue
		}
		if lag := now.Sub(due); lag > maxBacklog {
			p.start = p.start.Add(lag - maxBacklog)
		}
		p.done++
		return true
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// generator is the child's state.
type generator struct {
	p                 loadParams
	rates             rates
	addr              string
	ops, conns, errs  atomic.Uint64
	lastErrMu         sync.Mutex
	lastErr           error
	wg                sync.WaitGroup
	listener          net.Listener
	serverConnsMu     sync.Mutex
	serverConns       map[net.Conn]bool
	serverConnsClosed bool
}

func (g *generator) fail(err error) {
	g.errs.Add(1)
	g.lastErrMu.Lock()
	g.lastErr = err
	g.lastErrMu.Unlock()
}

// runLoad is the child's main: it serves and generates until in closes.
func runLoad(in io.Reader, out io.Writer, p loadParams) error {
	if p.Conns < 1 || p.Msg < 1 {
		return fmt.Errorf("load generator: conns %d and msg %d must be at least 1", p.Conns, p.Msg)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("load generator: listen: %w", err)
	}
	g := &generator{p: p, addr: ln.Addr().String(), listener: ln, serverConns: map[net.Conn]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	g.wg.Add(1)
	go func() { defer g.wg.Done(); g.serve() }()
	for range p.Conns {
		c, err := net.Dial("tcp4", g.addr)
		if err != nil {
			cancel()
			g.shutdown()
			return fmt.Errorf("load generator: dial %s: %w", g.addr, err)
		}
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.roundTrips(ctx, c) }()
	}
	for range churnWorkers {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.churn(ctx) }()
	}
	err = g.control(in, out)
	cancel()
	g.shutdown()
	return err
}

// control answers the parent's commands until in closes.
func (g *generator) control(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "rate":
			ops, err1 := strconv.ParseFloat(f[1], 64)
			conns, err2 := strconv.ParseFloat(f[2], 64)
			if err := errors.Join(err1, err2); err != nil || ops < 0 || conns < 0 {
				return fmt.Errorf("load generator: bad command %q", sc.Text())
			}
			g.rates.set(ops, conns)
		case len(f) == 1 && f[0] == "report":
			if _, err := fmt.Fprintf(out, "%d %d %d %.6f\n", g.ops.Load(), g.conns.Load(), g.errs.Load(), cpuSeconds()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("load generator: unknown command %q", sc.Text())
		}
	}
	g.lastErrMu.Lock()
	defer g.lastErrMu.Unlock()
	if g.lastErr != nil {
		fmt.Fprintf(os.Stderr, "dataplanebench load: %d errors, the last: %v\n", g.errs.Load(), g.lastErr)
	}
	return sc.Err()
}

// shutdown closes the listener and every served connection, then waits
// for all goroutines.
func (g *generator) shutdown() {
	_ = g.listener.Close()
	g.serverConnsMu.Lock()
	g.serverConnsClosed = true
	for c := range g.serverConns {
		_ = c.Close()
	}
	g.serverConnsMu.Unlock()
	g.wg.Wait()
}

// serve accepts connections and answers each request with as many
// bytes; after a msgClose request it closes the connection.
func (g *generator) serve() {
	for {
		c, err := g.listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				g.fail(fmt.Errorf("accept: %w", err))
			}
			return
		}
		g.serverConnsMu.Lock()
		if g.serverConnsClosed {
			g.serverConnsMu.Unlock()
			_ = c.Close()
			return
		}
		g.serverConns[c] = true
		g.serverConnsMu.Unlock()
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer func() {
				g.serverConnsMu.Lock()
				delete(g.serverConns, c)
				g.serverConnsMu.Unlock()
				_ = c.Close()
			}()
			buf := make([]byte, g.p.Msg)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return // the client closed, or shutdown
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
				if buf[0] == msgClose {
					return
				}
			}
		}()
	}
}

// roundTrips paces request/response round trips on one persistent
// connection at its share of the round-trip rate.
func (g *generator) roundTrips(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	buf := make([]byte, g.p.Msg)
	share := func() (uint64, float64) {
		gen, ops, _ := g.rates.get()
		return gen, ops / float64(g.p.Conns)
	}
	var p pacer
	for p.wait(ctx, share) {
		buf[0] = msgPing
		if _, err := c.Write(buf); err != nil {
			if ctx.Err() == nil {
				g.fail(fmt.Errorf("round trip: %w", err))
			}
			return
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			if ctx.Err() == nil {
				g.fail(fmt.Errorf("round trip: %w", err))
			}
			return
		}
		g.ops.Add(1)
	}
}

// churn paces new connections at its share of the connection rate: each
// dials, makes one round trip and waits for the server's close.
func (g *generator) churn(ctx context.Context) {
	share := func() (uint64, float64) {
		gen, _, conns := g.rates.get()
		return gen, conns / churnWorkers
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	buf := make([]byte, g.p.Msg)
	var p pacer
	for p.wait(ctx, share) {
		if err := g.oneConn(ctx, &d, buf); err != nil {
			if ctx.Err() == nil {
				g.fail(err)
			}
			continue
		}
		g.conns.Add(1)
	}
}

func (g *generator) oneConn(ctx context.Context, d *net.Dialer, buf []byte) error {
	c, err := d.DialContext(ctx, "tcp4", g.addr)
	if err != nil {
		return fmt.Errorf("new connection: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf[0] = msgClose
	if _, err := c.Write(buf); err != nil {
		return fmt.Errorf("new connection: %w", err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("new connection: %w", err)
	}
	// Wait for the server's FIN, so the client closes second.
	if n, err := c.Read(buf[:1]); n != 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("new connection: server did not close (read %d, %v)", n, err)
	}
	return nil
}

// loadCounts are the generator's totals at a report.
type loadCounts struct {
	ops, conns, errs uint64
	cpu              float64 // the child's user+sys seconds
}

// load is the parent's handle on a generator child.
type load struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	ops  float64 // the last rates set
	conn float64
}

// startLoad starts a generator child: this executable with loadEnv set.
func startLoad(p loadParams) (*load, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable to run the load generator: %w", err)
	}
	js, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), loadEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	// The child dies with us, whatever ends us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the load generator: %w", err)
	}
	l := &load{cmd: cmd, in: in, out: bufio.NewReader(out)}
	// The first report proves the child is up (listening, connected).
	if _, err := l.report(); err != nil {
		_ = l.stop()
		return nil, err
	}
	return l, nil
}

// set asks for round trips/s and new connections/s.
func (l *load) set(ops, conns float64) error {
	l.ops, l.conn = max(0, ops), max(0, conns)
	_, err := fmt.Fprintf(l.in, "rate %.1f %.1f\n", l.ops, l.conn)
	if err != nil {
		return fmt.Errorf("load generator: %w", err)
	}
	return nil
}

// report reads the child's totals.
func (l *load) report() (loadCounts, error) {
	if _, err := io.WriteString(l.in, "report\n"); err != nil {
		return loadCounts{}, fmt.Errorf("load generator: %w", err)
	}
	line, err := l.out.ReadString('\n')
	if err != nil {
		return loadCounts{}, fmt.Errorf("load generator exited (its errors are above): %w", err)
	}
	var c loadCounts
	if _, err := fmt.Sscanf(line, "%d %d %d %g", &c.ops, &c.conns, &c.errs, &c.cpu); err != nil {
		return loadCounts{}, fmt.Errorf("load generator report %q: %w", strings.TrimSpace(line), err)
	}
	return c, nil
}

// stop ends the child and waits for it.
func (l *load) stop() error {
	_ = l.in.Close()
	done := make(chan error, 1)
	go func() { done <- l.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = l.cmd.Process.Kill()
		return errors.Join(errors.New("load generator did not stop in 10s; killed"), <-done)
	}
}

// cpuSeconds is this process's user+sys CPU time.
func cpuSeconds() float64 {
	u, s := rusage()
	return u + s
}

// rusage is this process's user and system CPU seconds.
func rusage() (user, sys float64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN(), math.NaN()
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime), tv(ru.Stime)
}
