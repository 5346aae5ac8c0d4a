package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// socketKind is how a probe opens an ICMP socket.
type socketKind int

const (
	// pingSocket is an unprivileged ICMP datagram socket ("udp4",
	// "udp6"), open to the groups in net.ipv4.ping_group_range; the
	// kernel sets the echo identifier and hands it only its own replies.
	pingSocket socketKind = iota
	// rawSocket is a raw ICMP socket, needing CAP_NET_RAW; it sees every
	// ICMP packet the host receives.
	rawSocket
)

func (k socketKind) String() string {
	if k == pingSocket {
		return "ping socket"
	}
	return "raw socket"
}

// errNoICMPSocket is wrapped when neither a ping socket nor a raw socket
// can be opened.
var errNoICMPSocket = errors.New("icmp: no socket")

// runICMP resolves p.Target, checks the address it will ping against the
// guard, and sends one echo request, timing the reply.
func runICMP(ctx context.Context, p agentwire.Probe, g Guard, res *Result) error {
	addr, err := resolve(ctx, g, p.Target)
	if err != nil {
		return err
	}
	if err := g.check(addr); err != nil {
		return err
	}
	conn, kind, err := openICMP(addr.Is4())
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := echo(ctx, conn, kind, addr); err != nil {
		return fmt.Errorf("icmp echo to %s (%s): %w", addr, kind, err)
	}
	res.Addr = addr
	return nil
}

// resolve is host's address: host itself if it is one, else its first
// IPv4 address, else its first address.
func resolve(ctx context.Context, g Guard, host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), nil
	}
	addrs, err := g.lookup().LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("%s: no addresses", host)
	}
	return addrs[0], nil
}

// openICMP opens a ping socket, or a raw socket if the kernel refuses
// one; the error says why each was refused.
func openICMP(v4 bool) (*icmp.PacketConn, socketKind, error) {
	c, perr := listenICMP(v4, pingSocket)
	if perr == nil {
		return c, pingSocket, nil
	}
	c, rerr := listenICMP(v4, rawSocket)
	if rerr == nil {
		return c, rawSocket, nil
	}
	return nil, 0, fmt.Errorf("%w: ping socket: %v (the sysctl net.ipv4.ping_group_range must include the agent's group); raw socket: %v (needs CAP_NET_RAW)",
		errNoICMPSocket, perr, rerr)
}

func listenICMP(v4 bool, kind socketKind) (*icmp.PacketConn, error) {
	switch {
	case v4 && kind == pingSocket:
		return icmp.ListenPacket("udp4", "0.0.0.0")
	case v4:
		return icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	case kind == pingSocket:
		return icmp.ListenPacket("udp6", "::")
	default:
		return icmp.ListenPacket("ip6:ipv6-icmp", "::")
	}
}

// echo sends one echo request to addr and waits for its reply, until
// ctx ends.
func echo(ctx context.Context, conn *icmp.PacketConn, kind socketKind, addr netip.Addr) error {
	var token [16]byte
	_, _ = rand.Read(token[:]) // never fails (crypto/rand)
	id, seq := int(binary.BigEndian.Uint16(token[0:])), int(binary.BigEndian.Uint16(token[2:]))
	var (
		req, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
		proto                = 1 // ICMP
	)
	if !addr.Is4() {
		req, reply, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58 // ICMPv6
	}
	// For ICMPv6 the kernel computes the checksum (nil pseudo-header).
	b, err := (&icmp.Message{Type: req, Body: &icmp.Echo{ID: id, Seq: seq, Data: token[:]}}).Marshal(nil)
	if err != nil {
		return err
	}
	var dst net.Addr = &net.IPAddr{IP: addr.AsSlice(), Zone: addr.Zone()}
	if kind == pingSocket {
		dst = &net.UDPAddr{IP: addr.AsSlice(), Zone: addr.Zone()}
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(d)
	}
	if _, err := conn.WriteTo(b, dst); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("no reply: %w", ctx.Err())
			}
			return err
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reply {
			continue // our own request on a raw socket, or someone else's traffic
		}
		e, ok := m.Body.(*icmp.Echo)
		// A ping socket's kernel rewrites the identifier and delivers only
		// this socket's replies; a raw socket sees everyone's.
		if !ok || e.Seq != seq || string(e.Data) != string(token[:]) || kind == rawSocket && (e.ID != id || addrOf(peer) != addr.Unmap().WithZone("")) {
			continue
		}
		return nil
	}
}
