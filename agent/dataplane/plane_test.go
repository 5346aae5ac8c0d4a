package dataplane

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-mesh/outpost/bpf"
	"github.com/outpost-mesh/outpost/internal/netlab"
)

// decode parses an export back into its metrics.
func decode(t *testing.T, b []byte) []*metricspb.Metric {
	t.Helper()
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != 1 || typ != protowire.BytesType {
		t.Fatalf("export does not start with resource_metrics")
	}
	inner, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		t.Fatalf("export is not one resource_metrics")
	}
	var rm metricspb.ResourceMetrics
	if err := proto.Unmarshal(inner, &rm); err != nil {
		t.Fatal(err)
	}
	return rm.ScopeMetrics[0].Metrics
}

func attrOf(kv []*commonpb.KeyValue, k string) string {
	for _, a := range kv {
		if a.Key == k {
			return a.Value.GetStringValue()
		}
	}
	return ""
}

// point finds the value of metric name on the flow matching the attrs.
func point(ms []*metricspb.Metric, name string, match map[string]string) (float64, bool) {
	for _, m := range ms {
		if m.Name != name {
			continue
		}
		var pts []*metricspb.NumberDataPoint
		if s := m.GetSum(); s != nil {
			pts = s.DataPoints
		} else if g := m.GetGauge(); g != nil {
			pts = g.DataPoints
		}
	next:
		for _, p := range pts {
			for k, v := range match {
				if attrOf(p.Attributes, k) != v {
					continue next
				}
			}
			return p.GetAsDouble(), true
		}
	}
	return 0, false
}

func histCount(ms []*metricspb.Metric, name string, match map[string]string) uint64 {
	for _, m := range ms {
		if m.Name != name || m.GetHistogram() == nil {
			continue
		}
	next:
		for _, p := range m.GetHistogram().DataPoints {
			for k, v := range match {
				if attrOf(p.Attributes, k) != v {
					continue next
				}
			}
			return p.Count
		}
	}
	return 0
}

func startPlane(t *testing.T, cfg Config) *Plane {
	t.Helper()
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading eBPF needs root (or CAP_BPF and CAP_PERFMON); CI runs as root")
	}
}

// transfer opens n connections to addr through dial, sends up bytes and
// receives down bytes on each, and closes them.
func transfer(t *testing.T, dial func() (net.Conn, error), n, up, down int) {
	t.Helper()
	for range n {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(make([]byte, up)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(io.Discard, c, int64(down)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

// serve answers every connection on ln: it reads up bytes, writes down.
func serve(ln net.Listener, up, down int) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if _, err := io.CopyN(io.Discard, c, int64(up)); err != nil {
				return
			}
			c.Write(make([]byte, down))
			io.Copy(io.Discard, c)
		}()
	}
}

// TestEBPFCountsLoopbackFlows: the real programs see three loopback
// connections of known sizes, and the export reports exactly those
// connections and bytes on the client's and the server's flow, an RTT
// for them, and the kernel's loss counters by stage.
func TestEBPFCountsLoopbackFlows(t *testing.T) {
	needRoot(t)
	p := startPlane(t, Config{Mode: ModeEBPF, PollInterval: time.Minute})
	if mode, reason := p.Mode(); mode != ModeEBPF {
		t.Fatalf("mode %s (%s) as root", mode, reason)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const conns, up, down = 3, 123457, 54321
	go serve(ln, up, down)
	transfer(t, func() (net.Conn, error) { return net.Dial("tcp4", ln.Addr().String()) }, conns, up, down)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	out := map[string]string{"direction": "out", "port": port, "remote_addr": "127.0.0.1"}
	in := map[string]string{"direction": "in", "port": port, "local_addr": "127.0.0.1"}
	var ms []*metricspb.Metric
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := p.Export(time.Now(), map[string]string{"service.name": "outpost-agent"}, nil, ExportStats{})
		if err != nil {
			t.Fatal(err)
		}
		ms = decode(t, b)
		closedOut, _ := point(ms, mClosed, out)
		closedIn, _ := point(ms, mClosed, in)
		if closedOut == conns && closedIn == conns || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, c := range []struct {
		metric string
		match  map[string]string
		want   float64
	}{
		{mConnections, out, conns}, {mSent, out, conns * up}, {mReceived, out, conns * down}, {mClosed, out, conns},
		{mConnections, in, conns}, {mReceived, in, conns * up}, {mSent, in, conns * down}, {mClosed, in, conns},
		{mFailed, out, 0},
	} {
		if got, _ := point(ms, c.metric, c.match); got != c.want {
			t.Errorf("%s %v = %v, want %v", c.metric, c.match, got, c.want)
			for _, m := range ms {
				if m.Name == c.metric && m.GetSum() != nil {
					for _, p := range m.GetSum().DataPoints {
						t.Logf("  %v = %v", p.Attributes, p.GetAsDouble())
					}
				}
			}
		}
	}
	if comm, _ := point(ms, mSent, map[string]string{"direction": "out", "port": port, "comm": ""}); comm != 0 {
		t.Errorf("client flow without its process name")
	}
	if n := histCount(ms, mRTT, out); n == 0 {
		t.Errorf("no RTT sample for the client flow")
	}
	if n := histCount(ms, mConnectLatency, out); n != conns {
		t.Errorf("%d connect latencies, want %d", n, conns)
	}
	for _, stage := range append([]string{"queue"}, bpf.LossStages...) {
		if _, ok := point(ms, "outpost.agent.losses", map[string]string{"stage": stage}); !ok {
			t.Errorf("loss stage %s not exported", stage)
		}
	}
	if v, _ := point(ms, "outpost.agent.mode", map[string]string{"mode": "ebpf"}); v != 1 {
		t.Error("mode ebpf not exported")
	}
}

// TestLongLivedConnectionReportsRTT: a connection that stays open
// reports RTT samples at every poll, not only when it closes.
func TestLongLivedConnectionReportsRTT(t *testing.T) {
	needRoot(t)
	p := startPlane(t, Config{Mode: ModeEBPF, PollInterval: time.Minute})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve(ln, 1<<20, 0)
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := map[string]string{"direction": "out", "port": strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)}
	var last uint64
	for round := range 3 {
		if _, err := c.Write(make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		b, err := p.Export(time.Now(), nil, nil, ExportStats{})
		if err != nil {
			t.Fatal(err)
		}
		ms := decode(t, b)
		n := histCount(ms, mRTT, out)
		if n <= last {
			t.Fatalf("round %d: RTT samples %d, not more than %d, while the connection lives", round, n, last)
		}
		last = n
		if _, ok := point(ms, mSRTT, out); !ok {
			t.Fatalf("round %d: no srtt gauge for a live connection", round)
		}
	}
}

// TestRetransmitsCounted: 20% loss for a second on a veth link between two network
// namespaces (nftables numgen; no netem on this kernel) makes TCP
// retransmit, and the flow reports it.
func TestRetransmitsCounted(t *testing.T) {
	needRoot(t)
	if err := netlab.Available(); err != nil {
		t.Skipf("netlab: %v", err)
	}
	ctx := context.Background()
	lab, err := netlab.New(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	p := startPlane(t, Config{Mode: ModeEBPF, PollInterval: time.Minute})
	ln, err := lab.Listen(1, "tcp4", netlab.Addr(1)+":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const up = 2 << 20
	go serve(ln, up, 1)
	if err := lab.Lose(ctx, 1, 20); err != nil {
		t.Fatal(err)
	}
	// The loss lasts a second of the transfer: long enough for
	// retransmits, short enough that TCP's backed-off timers (which at
	// 20% loss both ways can reach minutes) do not stall the test.
	healed := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		healed <- lab.Heal(ctx, 1)
	}()
	transfer(t, func() (net.Conn, error) { return lab.DialFrom(ctx, 2, "tcp4", netlab.Addr(1)+":9000") }, 1, up, 1)
	if err := <-healed; err != nil {
		t.Fatal(err)
	}
	out := map[string]string{"direction": "out", "port": "9000", "remote_addr": netlab.Addr(1)}
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := p.Export(time.Now(), nil, nil, ExportStats{})
		if err != nil {
			t.Fatal(err)
		}
		ms := decode(t, b)
		re, _ := point(ms, mRetransmits, out)
		sent, _ := point(ms, mSent, out)
		if re > 0 && sent == up {
			t.Logf("%v retransmits over %v bytes at 20%% loss", re, sent)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a transfer at 20%% loss: %v retransmits, %v bytes sent (want > 0 and %d)", re, sent, up)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestProcfsFallbackWhenLoadFails: when eBPF cannot load, the plane runs
// in procfs mode, says why, and still reports open connections.
func TestProcfsFallbackWhenLoadFails(t *testing.T) {
	refuse := func(bpf.Options) (*bpf.Flow, error) {
		return nil, errors.Join(bpf.ErrNoPrivilege, errors.New("operation not permitted"))
	}
	p := startPlane(t, Config{Mode: ModeAuto, Load: refuse, PollInterval: time.Minute})
	mode, reason := p.Mode()
	if mode != ModeProcfs || reason == "" {
		t.Fatalf("mode %q reason %q, want procfs with a reason", mode, reason)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve(ln, 1<<30, 0)
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := p.Export(time.Now(), nil, nil, ExportStats{})
	if err != nil {
		t.Fatal(err)
	}
	ms := decode(t, b)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	if v, _ := point(ms, mEstablished, map[string]string{"direction": "out", "port": port}); v != 1 {
		t.Errorf("procfs mode: %v established connections to port %s, want 1", v, port)
		for _, m := range ms {
			if m.Name == mEstablished {
				for _, p := range m.GetGauge().DataPoints {
					t.Logf("  %v = %v", p.Attributes, p.GetAsDouble())
				}
			}
		}
	}
	if v, _ := point(ms, "outpost.agent.mode", map[string]string{"mode": "procfs", "reason": reason}); v != 1 {
		t.Error("procfs mode and its reason not exported")
	}
	if _, ok := point(ms, "outpost.host.tcp.active_opens", nil); !ok {
		t.Error("host TCP counters not exported in procfs mode")
	}
	if _, ok := point(ms, mSent, nil); ok {
		t.Error("procfs mode reported bytes it cannot know")
	}
}

// TestFailedConnectIsNotAConnection: a connect to a host that drops
// every packet retransmits its SYN (so the kernel keeps counters for it)
// and times out; polls during the attempt do not count it as a
// connection, and it is counted as a failed connect.
func TestFailedConnectIsNotAConnection(t *testing.T) {
	needRoot(t)
	if err := netlab.Available(); err != nil {
		t.Skipf("netlab: %v", err)
	}
	ctx := context.Background()
	lab, err := netlab.New(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	if err := lab.Isolate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	p := startPlane(t, Config{Mode: ModeEBPF, PollInterval: time.Minute})
	dctx, cancel := context.WithTimeout(ctx, 3500*time.Millisecond)
	defer cancel()
	dialed := make(chan error, 1)
	go func() {
		c, err := lab.DialFrom(dctx, 2, "tcp4", netlab.Addr(1)+":9")
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	out := map[string]string{"direction": "out", "port": "9", "remote_addr": netlab.Addr(1)}
	for range 3 { // polls while the SYN is retransmitted
		time.Sleep(time.Second)
		if _, err := p.Export(time.Now(), nil, nil, ExportStats{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-dialed; err == nil {
		t.Fatal("the connect through an isolated host succeeded")
	}
	var ms []*metricspb.Metric
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		b, err := p.Export(time.Now(), nil, nil, ExportStats{})
		if err != nil {
			t.Fatal(err)
		}
		ms = decode(t, b)
		if f, _ := point(ms, mFailed, out); f == 1 || time.Now().After(deadline) {
			break
		}
	}
	if f, _ := point(ms, mFailed, out); f != 1 {
		t.Errorf("failed connects %v, want 1", f)
	}
	if c, _ := point(ms, mConnections, out); c != 0 {
		t.Errorf("a failed connect counted as %v connections", c)
	}
}

// TestHostileProcessNameDoesNotStopExports: a thread named with bytes
// that are not UTF-8 opens a connection; exports still encode, the name
// repaired.
func TestHostileProcessNameDoesNotStopExports(t *testing.T) {
	needRoot(t)
	p := startPlane(t, Config{Mode: ModeEBPF, PollInterval: time.Minute})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve(ln, 10, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the renamed thread ends with this goroutine
		name := []byte("\xff\xfebad\x00")
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
			done <- err
			return
		}
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_, err = c.Write(make([]byte, 10))
		if err == nil {
			_, err = io.CopyN(io.Discard, c, 1)
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		b, err := p.Export(time.Now(), nil, nil, ExportStats{})
		if err != nil {
			t.Fatalf("an export failed over a hostile process name: %v", err)
		}
		if v, _ := point(decode(t, b), mSent, map[string]string{"direction": "out", "port": port, "comm": "??bad"}); v == 10 {
			return
		}
		if time.Now().After(deadline) {
			for _, m := range decode(t, b) {
				if m.Name == mSent {
					for _, p := range m.GetSum().DataPoints {
						t.Logf("  %v = %v", p.Attributes, p.GetAsDouble())
					}
				}
			}
			t.Fatal("the flow of the renamed thread was not exported under the repaired name ??bad")
		}
	}
}

// TestConnectionFromBeforeTheAgentIsAdopted: a connection established
// before the programs were attached is adopted at its first received
// segment (on loopback the peer's ACK arrives inside the sender's
// sendmsg, before the send is traced, so nothing is missed), and its
// bytes are counted on its flow, the end with the lower port taken for
// the server. (Sends traced before adoption count as the untracked loss
// stage: see TestEBPFCountsLoopbackFlows for the stages.)
func TestConnectionFromBeforeTheAgentIsAdopted(t *testing.T) {
	needRoot(t)
	var ln net.Listener
	for port := 900; port < 1000 && ln == nil; port++ {
		ln, _ = net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
	}
	if ln == nil {
		t.Fatal("no free port in 900-999")
	}
	defer ln.Close()
	const n = 77_777
	go serve(ln, 1+n, 1)
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := startPlane(t, Config{Mode: ModeEBPF, PollInterval: time.Minute})
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, c, 1); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	out := map[string]string{"direction": "out", "port": port, "remote_addr": "127.0.0.1"}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		b, err := p.Export(time.Now(), nil, nil, ExportStats{})
		if err != nil {
			t.Fatal(err)
		}
		ms := decode(t, b)
		sent, _ := point(ms, mSent, out)
		recv, _ := point(ms, mReceived, map[string]string{"direction": "in", "port": port})
		if sent == n+1 && recv == n+1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("adopted connection: client sent %v, server received %v; want %d", sent, recv, n+1)
		}
	}
}
