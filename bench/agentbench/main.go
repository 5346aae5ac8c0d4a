// Command agentbench measures one node holding many agents: it starts a
// one-node dev region (`outpost dev`, a separate process, so its memory
// is its own), enrolls N agents through the real enrollment route,
// connects them all over WebSocket with mutual TLS on loopback (a
// minimal OpAMP client speaking the wire protocol: description,
// capabilities, remote config status), and reports:
//
//   - memory per connected agent (the node's Go heap+stacks, and its RSS);
//
//   - connections established per second;
//
//   - time from submitting a fenced dispatch to each agent receiving it
//     (p50, p99, max = full fan-out), over several dispatches.
//
//     go run ./bench/agentbench -agents 10000
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	pb "github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/agentwire"
)

func main() {
	n := flag.Int("agents", 10000, "simulated agents")
	dispatches := flag.Int("dispatches", 5, "dispatches to time")
	workers := flag.Int("workers", 64, "concurrent enrollments and connections")
	bin := flag.String("outpost", "bin/outpost", "the outpost binary (make build)")
	flag.Parse()
	if err := run(*n, *dispatches, *workers, *bin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "agentbench:", err)
		os.Exit(1)
	}
}

func run(n, dispatches, workers int, bin string, out io.Writer) error {
	dir, err := os.MkdirTemp("", "agentbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command(bin, "dev", "--http", "127.0.0.1:0", "--data", dir, "--agents", "0", "--log-level", "error")
	devOut, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%v (run `make build` first)", err)
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	apiURL, err := bannerURL(devOut, 2*time.Minute)
	if err != nil {
		return err
	}
	tok, _ := os.ReadFile(filepath.Join(dir, "admin.token"))
	ctx := context.Background()
	admin := api.NewClient(apiURL, strings.TrimSpace(string(tok)))
	var u api.User
	if err := admin.Do(ctx, "POST", "/api/v1/users", api.UserCreate{Name: "bench"}, &u); err != nil {
		return err
	}
	if err := admin.Do(ctx, "POST", "/api/v1/tenants", api.TenantCreate{Name: "bench", Admin: "bench"}, nil); err != nil {
		return err
	}
	ten := api.NewClient(apiURL, "")
	if err := ten.Login(ctx, "bench", u.Password); err != nil {
		return err
	}

	// Enroll.
	fmt.Fprintf(out, "enrolling %d agents (%d at a time)...\n", n, workers)
	certs := make([]tls.Certificate, n)
	var agentURL string
	var mu sync.Mutex
	start := time.Now()
	var done atomic.Int64
	err = parallel(n, workers, func(i int) error {
		var bt api.BootstrapToken
		if err := ten.Do(ctx, "POST", "/api/v1/tenants/bench/agent-tokens", api.BootstrapTokenCreate{}, &bt); err != nil {
			return err
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		req, _ := json.Marshal(agentwire.EnrollRequest{Token: bt.Token, Host: "sim-" + strconv.Itoa(i), Version: "bench",
			CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
		var en agentwire.Enrollment
		if err := api.NewClient(apiURL, "").Do(ctx, "POST", "/api/v1/agents/enroll", req, &en); err != nil {
			return err
		}
		blk, _ := pem.Decode([]byte(en.Certificate))
		certs[i] = tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}
		mu.Lock()
		if agentURL == "" && len(en.Servers) > 0 {
			agentURL = en.Servers[0]
		}
		mu.Unlock()
		if d := done.Add(1); d%2000 == 0 {
			fmt.Fprintf(out, "  %d enrolled (%.0f/s)\n", d, float64(d)/time.Since(start).Seconds())
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "enrolled %d agents in %v (%.0f/s: token + enrollment, each a Raft write)\n", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	before, err := nodeMemory(apiURL, admin.Token)
	if err != nil {
		return err
	}

	// Connect.
	fmt.Fprintf(out, "connecting %d agents to %s...\n", n, agentURL)
	sims := make([]*sim, n)
	start = time.Now()
	done.Store(0)
	err = parallel(n, workers*4, func(i int) error {
		s, err := dial(agentURL, certs[i], i)
		if err != nil {
			return err
		}
		sims[i] = s
		if d := done.Add(1); d%2000 == 0 {
			fmt.Fprintf(out, "  %d connected (%.0f/s)\n", d, float64(d)/time.Since(start).Seconds())
		}
		return nil
	})
	if err != nil {
		return err
	}
	connTook := time.Since(start)
	defer func() {
		for _, s := range sims {
			s.c.Close()
		}
	}()
	time.Sleep(3 * time.Second) // let presence commit and the node settle
	after, err := nodeMemory(apiURL, admin.Token)
	if err != nil {
		return err
	}

	// Fan out.
	var lat []time.Duration
	var fanouts []time.Duration
	for d := range dispatches {
		id := fmt.Sprintf("bench-%d", d)
		t0 := time.Now()
		for _, s := range sims {
			s.expect(id, t0)
		}
		body := fmt.Sprintf(`{"id":%q,"kind":"config","payload":{"export_interval":"%ds"}}`, id, 10+d)
		if err := ten.Do(ctx, "POST", "/api/v1/tenants/bench/dispatches", []byte(body), nil); err != nil {
			return err
		}
		deadline := time.Now().Add(30 * time.Second)
		var worst time.Duration
		for _, s := range sims {
			l, err := s.wait(time.Until(deadline))
			if err != nil {
				return fmt.Errorf("agent %d: %w", s.i, err)
			}
			lat = append(lat, l)
			worst = max(worst, l)
		}
		fanouts = append(fanouts, worst)
		fmt.Fprintf(out, "  dispatch %s reached all %d agents in %v\n", id, n, worst.Round(time.Millisecond))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Slice(fanouts, func(i, j int) bool { return fanouts[i] < fanouts[j] })
	pct := func(xs []time.Duration, p float64) time.Duration { return xs[min(len(xs)-1, int(p*float64(len(xs))))] }

	heap := float64(after.heapStack-before.heapStack) / float64(n) / 1024
	rss := float64(after.rss-before.rss) / float64(n) / 1024
	fmt.Fprintf(out, "\n| measure | value |\n|---|---|\n")
	fmt.Fprintf(out, "| agents connected to one node | %d |\n", n)
	fmt.Fprintf(out, "| node Go heap + stacks per agent | %.1f KiB |\n", heap)
	fmt.Fprintf(out, "| node RSS per agent | %.1f KiB |\n", rss)
	fmt.Fprintf(out, "| connections established per second (mTLS + OpAMP first exchange, %d at a time) | %.0f |\n", workers*4, float64(n)/connTook.Seconds())
	fmt.Fprintf(out, "| dispatch → agent latency p50 / p99 (over %d dispatches × %d agents) | %v / %v |\n", dispatches, n, pct(lat, 0.5).Round(time.Millisecond), pct(lat, 0.99).Round(time.Millisecond))
	fmt.Fprintf(out, "| full fan-out (dispatch → last agent) p50 / max | %v / %v |\n", pct(fanouts, 0.5).Round(time.Millisecond), fanouts[len(fanouts)-1].Round(time.Millisecond))
	return nil
}

func parallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

type mem struct{ heapStack, rss int64 }

// nodeMemory reads the node's memory from its /metrics.
func nodeMemory(apiURL, bearer string) (mem, error) {
	req, _ := http.NewRequest("GET", apiURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return mem{}, err
	}
	defer resp.Body.Close()
	var m mem
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes":
			m.heapStack += int64(v)
		case "process_resident_memory_bytes":
			m.rss = int64(v)
		}
	}
	return m, sc.Err()
}

// sim is one simulated agent: OpAMP over WebSocket, by hand.
type sim struct {
	i  int
	c  *websocket.Conn
	mu sync.Mutex
	id string
	t0 time.Time
	ch chan time.Duration
}

func dial(agentURL string, cert tls.Certificate, i int) (*sim, error) {
	d := &websocket.Dialer{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true}, HandshakeTimeout: 30 * time.Second} //nolint:gosec // a load generator on loopback
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := d.DialContext(ctx, strings.Replace(agentURL, "https://", "wss://", 1)+agentwire.PathOpAMP, nil)
	if err != nil {
		return nil, err
	}
	s := &sim{i: i, c: c, ch: make(chan time.Duration, 1)}
	uid := make([]byte, 16)
	_, _ = rand.Read(uid)
	caps := pb.AgentCapabilities_AgentCapabilities_ReportsStatus | pb.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig |
		pb.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig
	if err := s.send(&pb.AgentToServer{InstanceUid: uid, Capabilities: uint64(caps), AgentDescription: &pb.AgentDescription{
		NonIdentifyingAttributes: []*pb.KeyValue{{Key: agentwire.AttrHost, Value: &pb.AnyValue{Value: &pb.AnyValue_StringValue{StringValue: "sim-" + strconv.Itoa(i)}}}}}}); err != nil {
		return nil, err
	}
	if _, _, err := c.ReadMessage(); err != nil { // the node's answer: connected
		return nil, err
	}
	go s.read(uid, uint64(caps))
	return s, nil
}

func (s *sim) send(m *pb.AgentToServer) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c.WriteMessage(websocket.BinaryMessage, append([]byte{0}, b...))
}

func (s *sim) read(uid []byte, caps uint64) {
	for {
		_, b, err := s.c.ReadMessage()
		if err != nil || len(b) == 0 {
			return
		}
		var m pb.ServerToAgent
		if proto.Unmarshal(b[1:], &m) != nil || m.GetRemoteConfig() == nil {
			continue
		}
		now := time.Now()
		var d agentwire.Dispatch
		_ = json.Unmarshal(m.GetRemoteConfig().GetConfig().GetConfigMap()[agentwire.DispatchFile].GetBody(), &d)
		s.mu.Lock()
		if d.ID == s.id {
			select {
			case s.ch <- now.Sub(s.t0):
			default:
			}
		}
		s.mu.Unlock()
		_ = s.send(&pb.AgentToServer{InstanceUid: uid, Capabilities: caps, RemoteConfigStatus: &pb.RemoteConfigStatus{
			LastRemoteConfigHash: m.GetRemoteConfig().GetConfigHash(), Status: pb.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED}})
	}
}

func (s *sim) expect(id string, t0 time.Time) {
	s.mu.Lock()
	s.id, s.t0 = id, t0
	s.mu.Unlock()
}

func (s *sim) wait(d time.Duration) (time.Duration, error) {
	select {
	case l := <-s.ch:
		return l, nil
	case <-time.After(max(d, time.Millisecond)):
		return 0, errors.New("dispatch not received within 30s")
	}
}

// bannerURL reads `outpost dev`'s banner for the node's address: the
// URL on the banner line that starts with "API" ("API:", "API and UI:"),
// printed once the region is up and its admin token written (the
// progress line "node n1 up: API …" comes earlier and is not it). It gives up after limit
// (a changed banner or a dev region that never starts must fail the
// benchmark, not hang it) and drains the rest of the output either way.
func bannerURL(r io.Reader, limit time.Duration) (string, error) {
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 || !strings.HasPrefix(fields[0], "API") {
				continue
			}
			for _, f := range fields {
				if strings.HasPrefix(f, "http://") || strings.HasPrefix(f, "https://") {
					select {
					case found <- f:
					default:
					}
				}
			}
		}
		close(found)
	}()
	select {
	case u, ok := <-found:
		if !ok {
			return "", errors.New("outpost dev exited without printing its API address")
		}
		return u, nil
	case <-time.After(limit):
		return "", fmt.Errorf("outpost dev printed no API address within %v", limit)
	}
}
