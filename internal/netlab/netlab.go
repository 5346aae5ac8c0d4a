// Package netlab builds a small network of Linux network namespaces for
// tests that need real network faults: one namespace per host, each with
// an eth0 on a shared bridge (10.77.0.0/24, the bridge itself at .254 in
// a namespace of its own), and nftables drop rules inside a host's
// namespace, or on the wire in the bridge's, to cut it off from its peers
// or to lose a share of its packets. Nothing outside the namespaces it
// creates is touched.
//
// It needs root, the `ip` (iproute2) and `nft` (nftables) commands and
// network-namespace support; Available says which is missing. It is for
// tests only: no server or CLI package links it.
package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Subnet is the hosts' network; host i (from 1) is 10.77.0.i and the
// bridge, where Dial connects from, is 10.77.0.254.
const Subnet = "10.77.0.0/24"

// BridgeAddr is the address Dial connects from.
const BridgeAddr = "10.77.0.254"

// Available reports why netlab cannot run here, or nil when it can.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("not root (network namespaces and nftables need root; CI runs as root)")
	}
	for _, c := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("no %q command (apt-get install iproute2 nftables)", c)
		}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("no network namespaces: %v", err)
	}
	return nil
}

// Lab is a bridge namespace and the host namespaces attached to it.
type Lab struct {
	prefix string
	bridge string
	hosts  []string // namespace names, hosts[i] is host i+1

	mu    sync.Mutex
	ruled map[int]bool // hosts that have the netlab table now
	wired map[int]bool // hosts with a table of their own in the bridge now
}

// New creates n host namespaces (1..20) on a bridge. Close removes them.
func New(ctx context.Context, n int) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if n < 1 || n > 20 {
		return nil, fmt.Errorf("netlab: %d hosts; use 1..20", n)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &Lab{prefix: "opl" + hex.EncodeToString(b), ruled: map[int]bool{}, wired: map[int]bool{}}
	l.bridge = l.prefix + "-br"
	if err := l.build(ctx, n); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) build(ctx context.Context, n int) error {
	if err := run(ctx, "ip", "netns", "add", l.bridge); err != nil {
		return err
	}
	br := [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "br0", "type", "bridge"},
		{"addr", "add", BridgeAddr + "/24", "dev", "br0"},
		{"link", "set", "br0", "up"},
	}
	for _, a := range br {
		if err := run(ctx, "ip", append([]string{"-n", l.bridge}, a...)...); err != nil {
			return err
		}
	}
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("%s-h%d", l.prefix, i)
		if err := run(ctx, "ip", "netns", "add", ns); err != nil {
			return err
		}
		l.hosts = append(l.hosts, ns)
		veth := fmt.Sprintf("v%d", i)
		steps := [][]string{
			{"-n", l.bridge, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", l.bridge, "link", "set", veth, "master", "br0"},
			{"-n", l.bridge, "link", "set", veth, "up"},
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", ns, "addr", "add", Addr(i) + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
		}
		for _, s := range steps {
			if err := run(ctx, "ip", s...); err != nil {
				return err
			}
		}
	}
	// A fresh bridge port spends a moment in the listening state; wait
	// until every host answers a connection attempt from the bridge (a
	// refusal is an answer) so the first test dial does not time out.
	for i := 1; i <= n; i++ {
		deadline := time.Now().Add(10 * time.Second)
		for {
			// Bounded per attempt: a SYN into a port still learning is
			// dropped, and the next attempt should not wait for it.
			actx, cancel := context.WithTimeout(ctx, time.Second)
			c, err := l.Dial(actx, "tcp", net.JoinHostPort(Addr(i), "9"))
			cancel()
			if c != nil {
				c.Close()
			}
			if err == nil || errors.Is(err, unix.ECONNREFUSED) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("netlab: host %d (%s) unreachable from the bridge: %v", i, Addr(i), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Addr is host i's address (i from 1).
func Addr(i int) string { return fmt.Sprintf("10.77.0.%d", i) }

// Namespace is host i's network namespace name, for `ip netns exec`.
func (l *Lab) Namespace(i int) string { return l.hosts[i-1] }

// Command returns a command that runs name with args inside host i's
// namespace.
func (l *Lab) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.Namespace(i), name}, args...)...)
}

// Dial connects from the bridge namespace (BridgeAddr), which reaches
// every host whatever the drop rules between hosts: it is the operator's
// and the test's vantage point. It fits http.Transport.DialContext.
//
// addr must be an IP literal and port: a name would be resolved by Go's
// resolver on other threads, outside the namespace.
func (l *Lab) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := ipLiteral(addr); err != nil {
		return nil, err
	}
	var c net.Conn
	err := inNamespace(l.bridge, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// DialFrom connects from host i, through whatever rules it has; addr is
// an IP literal and port, as for Dial.
func (l *Lab) DialFrom(ctx context.Context, i int, network, addr string) (net.Conn, error) {
	if err := ipLiteral(addr); err != nil {
		return nil, err
	}
	var c net.Conn
	err := inNamespace(l.Namespace(i), func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ipLiteral refuses an address whose host is not an IP literal.
func ipLiteral(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("netlab: %q: %w", addr, err)
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("netlab: %q: use an IP address (such as netlab.Addr(i)), not a name: names would be resolved outside the namespace", addr)
	}
	return nil
}

// Listen listens in host i's namespace (addr such as "10.77.0.2:80").
func (l *Lab) Listen(i int, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNamespace(l.Namespace(i), func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet socket (such as UDP, addr such as
// "10.77.0.2:7443" or "10.77.0.2:0") in host i's namespace: a server's
// port there, or a client's socket that sends from host i through its
// rules (a QUIC transport over it dials from the host).
func (l *Lab) ListenPacket(i int, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := inNamespace(l.Namespace(i), func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// inNamespace runs fn on an OS thread moved into network namespace ns.
// A socket belongs to the namespace of the thread that creates it, and
// keeps it; fn's sockets can be used from any goroutine afterwards. The
// thread is never unlocked, so the runtime retires it when fn's goroutine
// ends instead of reusing it in the wrong namespace.
func inNamespace(ns string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- fmt.Errorf("netlab: open namespace %s: %w", ns, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			done <- fmt.Errorf("netlab: enter namespace %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// Isolate cuts host i off from every other host, both directions, with
// nftables drop rules in its namespace: packets vanish, as on a broken
// link (no resets). The bridge (Dial) still reaches it.
//
// Host i's own sends to the others fail with EPERM, though (a drop in the
// output hook is reported to the sending socket), and a QUIC connection
// there dies of it (quic-go closes a connection on a send error): for
// UDP and QUIC, IsolateOnWire is the broken link.
func (l *Lab) Isolate(ctx context.Context, i int) error {
	set := l.peerSet(i)
	return l.setRules(ctx, i, fmt.Sprintf(`
  chain input { type filter hook input priority 0; policy accept; ip saddr %s drop; }
  chain output { type filter hook output priority 0; policy accept; ip daddr %s drop; }`, set, set))
}

// Lose drops pct percent (0..100) of host i's packets to and from the
// other hosts, at random, in both directions. As with Isolate, host i's
// dropped sends fail with EPERM; LoseOnWire loses them on the wire.
func (l *Lab) Lose(ctx context.Context, i, pct int) error {
	verdict, err := lossVerdict(pct)
	if err != nil {
		return err
	}
	set := l.peerSet(i)
	return l.setRules(ctx, i, fmt.Sprintf(`
  chain input { type filter hook input priority 0; policy accept; ip saddr %s %s; }
  chain output { type filter hook output priority 0; policy accept; ip daddr %s %s; }`, set, verdict, set, verdict))
}

// lossVerdict is the nftables statement that drops pct percent.
func lossVerdict(pct int) (string, error) {
	switch {
	case pct < 0 || pct > 100:
		return "", fmt.Errorf("netlab: loss %d%%; use 0..100", pct)
	case pct == 0:
		return "accept", nil
	case pct == 100:
		return "drop", nil
	}
	return fmt.Sprintf("numgen random mod 100 < %d drop", pct), nil // nft takes 0..99 here
}

// IsolateOnWire cuts host i off from every other host, both directions,
// on the wire: the bridge drops the frames between them, so no socket on
// either side hears of it, as on a broken link (Isolate's rules make host
// i's own sends fail). The bridge (Dial) still reaches it. Heal removes
// it.
func (l *Lab) IsolateOnWire(ctx context.Context, i int) error {
	return l.setWire(ctx, i, "drop")
}

// LoseOnWire drops pct percent (0..100) of the frames between host i and
// the other hosts, at random, in both directions, on the wire (see
// IsolateOnWire). Heal removes it.
func (l *Lab) LoseOnWire(ctx context.Context, i, pct int) error {
	verdict, err := lossVerdict(pct)
	if err != nil {
		return err
	}
	return l.setWire(ctx, i, verdict)
}

// wireTable is the bridge namespace's table of host i's wire rules.
func wireTable(i int) string { return fmt.Sprintf("netlab_h%d", i) }

// setWire replaces host i's table in the bridge namespace, forwarding
// frames between host i and the others through verdict.
func (l *Lab) setWire(ctx context.Context, i int, verdict string) error {
	if i < 1 || i > len(l.hosts) {
		return fmt.Errorf("netlab: no host %d (have 1..%d)", i, len(l.hosts))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	set := l.peerSet(i)
	var script strings.Builder
	if l.wired[i] {
		fmt.Fprintf(&script, "delete table bridge %s\n", wireTable(i))
	}
	fmt.Fprintf(&script, `table bridge %s {
  chain forward { type filter hook forward priority 0; policy accept; ip saddr %s ip daddr %s %s; ip daddr %s ip saddr %s %s; }
}
`, wireTable(i), Addr(i), set, verdict, Addr(i), set, verdict)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.bridge, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s\nscript:\n%s", l.bridge, err, bytes.TrimSpace(out), script.String())
	}
	l.wired[i] = true
	return nil
}

// peerSet is the nftables set of every host's address but host i's.
func (l *Lab) peerSet(i int) string {
	var peers []string
	for j := 1; j <= len(l.hosts); j++ {
		if j != i {
			peers = append(peers, Addr(j))
		}
	}
	return "{ " + strings.Join(peers, ", ") + " }"
}

// Heal removes host i's drop rules, in its namespace and on the wire.
func (l *Lab) Heal(ctx context.Context, i int) error {
	if i < 1 || i > len(l.hosts) {
		return fmt.Errorf("netlab: no host %d (have 1..%d)", i, len(l.hosts))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ruled[i] {
		if err := run(ctx, "ip", "netns", "exec", l.Namespace(i), "nft", "delete", "table", "inet", "netlab"); err != nil {
			return err
		}
		delete(l.ruled, i)
	}
	if l.wired[i] {
		if err := run(ctx, "ip", "netns", "exec", l.bridge, "nft", "delete", "table", "bridge", wireTable(i)); err != nil {
			return err
		}
		delete(l.wired, i)
	}
	return nil
}

// Rules returns host i's current ruleset as nft prints it.
func (l *Lab) Rules(ctx context.Context, i int) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.Namespace(i), "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nft list ruleset in %s: %v: %s", l.Namespace(i), err, out)
	}
	return string(out), nil
}

// setRules replaces host i's table in one nft transaction.
func (l *Lab) setRules(ctx context.Context, i int, chains string) error {
	if i < 1 || i > len(l.hosts) {
		return fmt.Errorf("netlab: no host %d (have 1..%d)", i, len(l.hosts))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var script strings.Builder
	if l.ruled[i] {
		script.WriteString("delete table inet netlab\n")
	}
	fmt.Fprintf(&script, "table inet netlab {%s\n}\n", chains)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.Namespace(i), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s\nscript:\n%s", l.Namespace(i), err, bytes.TrimSpace(out), script.String())
	}
	l.ruled[i] = true
	return nil
}

// Close deletes every namespace the lab made (their veths and rules go
// with them). Processes still running in one keep it alive until they
// exit, so stop them first.
func (l *Lab) Close() error {
	var errs []error
	for _, ns := range append(l.hosts, l.bridge) {
		if err := run(context.Background(), "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netlab: %s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
