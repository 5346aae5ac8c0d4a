package freeport

import (
	"net"
	"strconv"
	"testing"
)

// The ports are distinct, never in the kernel's ephemeral range (where a
// listener on :0 or an outgoing connection could take them), and free to
// bind for TCP and UDP.
func TestPortsBelowEphemeralRangeAndFree(t *testing.T) {
	top := ephemeralStart()
	seen := map[int]bool{}
	for range 5 {
		ps, err := Ports("127.0.0.1", 20)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 20 {
			t.Fatalf("got %d ports, want 20", len(ps))
		}
		for _, p := range ps {
			if p < lowest || p >= top {
				t.Fatalf("port %d outside [%d, %d)", p, lowest, top)
			}
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("port %d not free for TCP: %v", p, err)
			}
			l.Close()
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				t.Fatalf("port %d not free for UDP: %v", p, err)
			}
			u.Close()
		}
	}
}

// A port already bound is never handed out.
func TestPortsSkipsBoundPorts(t *testing.T) {
	ps, err := Ports("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ps[0])))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if free("127.0.0.1", ps[0]) {
		t.Fatalf("free reports port %d free while it is bound", ps[0])
	}
}
