//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// The lab's addresses: region-1 (the asker) in namespace A, region-2's
// servers in namespace B. The veth pair joins them directly; the wire
// (two TUN devices this process forwards between, with a delay) is a
// second link between the same namespaces.
const (
	vethA, vethB = "10.78.0.1", "10.78.0.2"
	wireA, wireB = "10.79.0.1", "10.79.0.2"
)

// labAvailable says why the lab cannot run here, nil when it can.
func labAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("not root (network namespaces and nftables need root)")
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

// wireAvailable says why the delayed link cannot be made, nil when it can.
func wireAvailable() error {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("no TUN device: %v", err)
	}
	return f.Close()
}

// lab is two network namespaces joined by a veth pair and, with a delay,
// by the wire.
type lab struct {
	a, b  string // namespace names
	ruled bool   // A and B have the loss table
	wire  *wire
}

// newLab makes the namespaces and links; oneWay > 0 also makes the wire,
// which delays every packet by oneWay in each direction. On error it
// removes what it made.
func newLab(ctx context.Context, oneWay time.Duration) (l *lab, err error) {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	prefix := "ofb" + hex.EncodeToString(b)
	l = &lab{a: prefix + "-a", b: prefix + "-b"}
	defer func() {
		if err != nil {
			_ = l.close()
			l = nil
		}
	}()
	if err := ipCmd(ctx, "ip", "netns", "add", l.a); err != nil {
		l.a, l.b = "", ""
		return l, err
	}
	if err := ipCmd(ctx, "ip", "netns", "add", l.b); err != nil {
		l.b = ""
		return l, err
	}
	steps := [][]string{
		{"-n", l.a, "link", "set", "lo", "up"},
		{"-n", l.b, "link", "set", "lo", "up"},
		{"-n", l.a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", l.b},
		{"-n", l.a, "addr", "add", vethA + "/24", "dev", "veth0"},
		{"-n", l.b, "addr", "add", vethB + "/24", "dev", "veth0"},
		{"-n", l.a, "link", "set", "veth0", "up"},
		{"-n", l.b, "link", "set", "veth0", "up"},
	}
	for _, s := range steps {
		if err := ipCmd(ctx, "ip", s...); err != nil {
			return l, err
		}
	}
	if oneWay > 0 {
		if l.wire, err = newWire(ctx, l.a, l.b, oneWay); err != nil {
			return l, err
		}
	}
	return l, nil
}

// lose drops pct percent of the packets between the namespaces, each
// way, at random (nftables numgen; this kernel has no netem), on both
// links; 0 removes the rules. Packets are dropped where they arrive (the
// input hook of the receiving namespace), as a lossy network would lose
// them: a drop in the sender's output hook would fail its sendmsg with
// EPERM, which quic-go takes for a dead socket and closes the connection.
func (l *lab) lose(ctx context.Context, pct int) error {
	if pct < 0 || pct > 99 {
		return fmt.Errorf("loss %d%%: use 0..99", pct)
	}
	for _, side := range []struct{ ns, from string }{{l.a, fmt.Sprintf("{ %s, %s }", vethB, wireB)}, {l.b, fmt.Sprintf("{ %s, %s }", vethA, wireA)}} {
		var script strings.Builder
		if l.ruled {
			script.WriteString("delete table inet fedbench\n")
		}
		if pct > 0 {
			fmt.Fprintf(&script, "table inet fedbench {\n  chain input { type filter hook input priority 0; policy accept; ip saddr %s numgen random mod 100 < %d drop; }\n}\n", side.from, pct)
		}
		if script.Len() == 0 {
			continue
		}
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", side.ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft in %s: %v: %s", side.ns, err, bytes.TrimSpace(out))
		}
	}
	l.ruled = pct > 0
	return nil
}

// close stops the wire and deletes the namespaces (their links and rules
// go with them).
func (l *lab) close() error {
	var errs []error
	if l.wire != nil {
		l.wire.close()
	}
	for _, ns := range []string{l.a, l.b} {
		if ns == "" {
			continue
		}
		if err := ipCmd(context.Background(), "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// listen makes region-2's UDP and TCP sockets in B, on every address.
func (l *lab) listen() (udp net.PacketConn, tcp net.Listener, err error) {
	err = inNamespace(l.b, func() error {
		var err error
		if udp, err = net.ListenPacket("udp4", "0.0.0.0:0"); err != nil {
			return err
		}
		if tcp, err = net.Listen("tcp4", "0.0.0.0:0"); err != nil {
			udp.Close()
			return err
		}
		return nil
	})
	return udp, tcp, err
}

// clientDialers makes region-1's sockets in A: one UDP socket for every
// QUIC connection (a quic.Transport, closed by the returned func), and
// one TCP socket per dial.
func (l *lab) clientDialers() (dialers, func(), error) {
	var pc net.PacketConn
	if err := inNamespace(l.a, func() (err error) {
		pc, err = net.ListenPacket("udp4", "0.0.0.0:0")
		return err
	}); err != nil {
		return dialers{}, nil, err
	}
	tr := &quic.Transport{Conn: pc}
	d := dialers{
		quic: func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			ua, err := net.ResolveUDPAddr("udp4", addr)
			if err != nil {
				return nil, err
			}
			return tr.DialEarly(ctx, ua, tc, qc)
		},
		tcp: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNamespace(l.a, func() (err error) {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	return d, func() { _ = tr.Close(); _ = pc.Close() }, nil
}

// rtt measures the round trip from A to B at addr's host with UDP
// echoes: the median of n.
func (l *lab) rtt(host string, n int) (time.Duration, error) {
	var srv, cl net.PacketConn
	if err := inNamespace(l.b, func() (err error) { srv, err = net.ListenPacket("udp4", host+":0"); return err }); err != nil {
		return 0, err
	}
	defer srv.Close()
	if err := inNamespace(l.a, func() (err error) { cl, err = net.ListenPacket("udp4", "0.0.0.0:0"); return err }); err != nil {
		return 0, err
	}
	defer cl.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			k, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteTo(buf[:k], from)
		}
	}()
	var ds []time.Duration
	buf := make([]byte, 64)
	for i := 0; len(ds) < n && i < 4*n; i++ {
		start := time.Now()
		_ = cl.SetReadDeadline(start.Add(time.Second))
		if _, err := cl.WriteTo([]byte{byte(i)}, srv.LocalAddr()); err != nil {
			return 0, err
		}
		for {
			k, _, err := cl.ReadFrom(buf)
			if err != nil {
				break // lost: try again
			}
			if k == 1 && buf[0] == byte(i) {
				ds = append(ds, time.Since(start))
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(ds) == 0 {
		return 0, fmt.Errorf("no echo from %s", host)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

// inNamespace runs fn on an OS thread moved into network namespace ns
// (internal/netlab's pattern): a socket belongs to the namespace of the
// thread that made it, and keeps it. The thread is never unlocked, so
// the runtime retires it when fn's goroutine ends.
func inNamespace(ns string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			done <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

func ipCmd(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// wire is a link between namespaces A and B made of a TUN device in each
// (wire0, wireA/24 and wireB/24) and this process between them: every IP
// packet one device hands up is written into the other oneWay later.
// This stands in for netem's delay, which this kernel lacks; loss is
// still nftables' in B. The queue holds up to 65,536 packets a direction
// (tail drop beyond, counted); there is no bandwidth limit.
type wire struct {
	a, b    *os.File
	oneWay  time.Duration
	dropped atomic.Int64
	wg      sync.WaitGroup
}

func newWire(ctx context.Context, nsA, nsB string, oneWay time.Duration) (*wire, error) {
	w := &wire{oneWay: oneWay}
	var err error
	if w.a, err = openTun(ctx, nsA, wireA); err != nil {
		return nil, err
	}
	if w.b, err = openTun(ctx, nsB, wireB); err != nil {
		w.a.Close()
		return nil, err
	}
	w.wg.Add(2)
	go w.pump(w.a, w.b)
	go w.pump(w.b, w.a)
	return w, nil
}

// openTun makes device wire0 in namespace ns with addr/24, up.
func openTun(ctx context.Context, ns, addr string) (*os.File, error) {
	var f *os.File
	err := inNamespace(ns, func() error {
		// The device belongs to the namespace the descriptor was opened in.
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq("wire0")
		if err == nil {
			ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err == nil {
			err = unix.SetNonblock(fd, true)
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF in %s: %w", ns, err)
		}
		f = os.NewFile(uintptr(fd), "tun:"+ns)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, s := range [][]string{{"-n", ns, "addr", "add", addr + "/24", "dev", "wire0"}, {"-n", ns, "link", "set", "wire0", "up"}} {
		if err := ipCmd(ctx, "ip", s...); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

type packet struct {
	due time.Time
	b   []byte
}

// pump moves packets from one device to the other, each oneWay after it
// was read.
func (w *wire) pump(from, to *os.File) {
	defer w.wg.Done()
	q := make(chan packet, 1<<16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range q {
			if d := time.Until(p.due); d > 0 {
				time.Sleep(d)
			}
			_, _ = to.Write(p.b)
		}
	}()
	buf := make([]byte, 65536)
	for {
		n, err := from.Read(buf)
		if err != nil {
			break
		}
		p := packet{due: time.Now().Add(w.oneWay), b: append([]byte(nil), buf[:n]...)}
		select {
		case q <- p:
		default:
			w.dropped.Add(1)
		}
	}
	close(q)
	<-done
}

func (w *wire) close() {
	w.a.Close()
	w.b.Close()
	w.wg.Wait()
}
