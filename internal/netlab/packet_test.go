package netlab_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/netlab"
)

// udpEchoOn echoes datagrams on host i, port 7001.
func udpEchoOn(t *testing.T, l *netlab.Lab, i int) net.Addr {
	t.Helper()
	pc, err := l.ListenPacket(i, "udp", net.JoinHostPort(netlab.Addr(i), "7001"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(b[:n], from)
		}
	}()
	return pc.LocalAddr()
}

// udpReach says whether a datagram sent on pc to addr comes back within
// 300ms.
func udpReach(pc net.PacketConn, addr net.Addr) bool {
	if _, err := pc.WriteTo([]byte("ping"), addr); err != nil {
		return false
	}
	_ = pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	b := make([]byte, 16)
	n, _, err := pc.ReadFrom(b)
	return err == nil && string(b[:n]) == "ping"
}

// A packet socket opened in a host's namespace sends from the host's
// address, through the host's rules.
func TestListenPacketInHost(t *testing.T) {
	l := newLab(t, 2)
	ctx := context.Background()
	echo := udpEchoOn(t, l, 2)
	pc, err := l.ListenPacket(1, "udp", net.JoinHostPort(netlab.Addr(1), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); !ok || ua.IP.String() != netlab.Addr(1) {
		t.Fatalf("socket bound to %v, want %s", pc.LocalAddr(), netlab.Addr(1))
	}
	if !udpReach(pc, echo) {
		t.Fatal("host 1 → host 2 over UDP before any rule")
	}
	if err := l.Isolate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if udpReach(pc, echo) {
		t.Fatal("a datagram got through while host 1 was isolated")
	}
	if err := l.Heal(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !udpReach(pc, echo) {
		t.Fatal("host 1 → host 2 over UDP after the heal")
	}
}

// On the wire, a cut host's datagrams vanish with no error to the sender
// on either side (Isolate's own rules fail host i's sends with EPERM),
// the bridge still reaches it, and Heal restores it; LoseOnWire at 100%
// and then 0% replaces the rules.
func TestIsolateOnWire(t *testing.T) {
	l := newLab(t, 2)
	ctx := context.Background()
	echo := udpEchoOn(t, l, 2)
	a1 := echoOn(t, l, 1)
	pc, err := l.ListenPacket(1, "udp", net.JoinHostPort(netlab.Addr(1), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := l.Isolate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_, hostErr := pc.WriteTo([]byte("x"), echo)
	t.Logf("a send from a host cut by Isolate: %v", hostErr)
	if err := l.Heal(ctx, 1); err != nil {
		t.Fatal(err)
	}

	if err := l.IsolateOnWire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo([]byte("x"), echo); err != nil {
		t.Fatalf("a send from a host cut on the wire failed: %v (the link should swallow it)", err)
	}
	if udpReach(pc, echo) {
		t.Fatal("a datagram got through the cut wire")
	}
	if err := reach(l.Dial, a1); err != nil {
		t.Fatalf("bridge → host cut on the wire: %v", err)
	}
	if err := l.Heal(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !udpReach(pc, echo) {
		t.Fatal("no datagram through after the heal")
	}

	if err := l.LoseOnWire(ctx, 1, 100); err != nil {
		t.Fatal(err)
	}
	if udpReach(pc, echo) {
		t.Fatal("a datagram got through 100% loss on the wire")
	}
	if err := l.LoseOnWire(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	if !udpReach(pc, echo) {
		t.Fatal("no datagram through 0% loss after 100%")
	}
	if err := l.LoseOnWire(ctx, 1, -1); err == nil {
		t.Fatal("LoseOnWire accepted -1%")
	}
	if err := l.Heal(ctx, 1); err != nil {
		t.Fatal(err)
	}
}
