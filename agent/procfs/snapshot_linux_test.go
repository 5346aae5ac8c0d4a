package procfs

import (
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadLive opens loopback listeners and connections and finds their
// sockets, with the right ports and states, in this host's /proc.
func TestReadLive(t *testing.T) {
	tests := []struct {
		name, listen, dial string
	}{
		{"ipv4", "127.0.0.1:0", "127.0.0.1"},
		{"ipv6", "[::1]:0", "::1"},
		// A dual-stack listener's IPv4 peers appear in tcp6 as
		// IPv4-mapped addresses, which Read must unmap; the client's
		// socket is in tcp.
		{"ipv4 to dual-stack", "[::]:0", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", tt.listen)
			if err != nil {
				if strings.Contains(tt.listen, "[") {
					t.Skipf("needs IPv6 on loopback: %v", err)
				}
				t.Fatal(err)
			}
			defer ln.Close()
			lnAddr := ln.Addr().(*net.TCPAddr).AddrPort()
			// The handshake completes in the kernel, so Dial returns
			// before Accept is called.
			c, err := net.DialTimeout("tcp", net.JoinHostPort(tt.dial, strconv.Itoa(int(lnAddr.Port()))), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			client := unmap(c.LocalAddr().(*net.TCPAddr).AddrPort())
			server := unmap(sc.LocalAddr().(*net.TCPAddr).AddrPort())

			snap, err := Read("/proc")
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]Socket{
				"listener": {Local: unmap(lnAddr), State: StateListen},
				"client":   {Local: client, Remote: server, State: StateEstablished},
				"server":   {Local: server, Remote: client, State: StateEstablished},
			}
			for role, w := range want {
				found := false
				for _, s := range snap.Sockets {
					if s.Local == w.Local && (role == "listener" || s.Remote == w.Remote) && s.State == w.State {
						found = true
						if s.Inode == 0 {
							t.Errorf("%s socket %v has inode 0", role, s.Local)
						}
						break
					}
				}
				if !found {
					t.Errorf("no %s socket local %v remote %v state %d among %d sockets", role, w.Local, w.Remote, w.State, len(snap.Sockets))
				}
			}
			if snap.TCP["ActiveOpens"] < 1 || snap.TCP["PassiveOpens"] < 1 {
				t.Errorf("Tcp ActiveOpens %d PassiveOpens %d, want ≥ 1 after a connection", snap.TCP["ActiveOpens"], snap.TCP["PassiveOpens"])
			}
			if len(snap.TCPExt) == 0 {
				t.Error("empty TcpExt table")
			}

			flows := Flows(snap.Sockets)
			out := FlowKey{Local: client.Addr(), Remote: server.Addr(), Port: server.Port(), Direction: DirectionOut}
			in := FlowKey{Local: server.Addr(), Remote: client.Addr(), Port: server.Port(), Direction: DirectionIn}
			if flows[out] < 1 || flows[in] < 1 {
				t.Errorf("flows[%+v] = %d, flows[%+v] = %d; want ≥ 1 each", out, flows[out], in, flows[in])
			}
		})
	}
}

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// TestReadRefusesFIFO checks that a FIFO bind-mounted over a procfs file
// fails Read at once instead of blocking it for a writer.
func TestReadRefusesFIFO(t *testing.T) {
	files := goodFiles()
	delete(files, "snmp")
	root := fakeRoot(t, files)
	if err := syscall.Mkfifo(filepath.Join(root, "net", "snmp"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Read(root)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "net/snmp: not a regular file") {
			t.Fatalf("got %v, want a not-a-regular-file error naming snmp", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read blocked on a FIFO")
	}
}
