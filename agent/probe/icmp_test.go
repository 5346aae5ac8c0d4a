package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// TestICMP: an echo to loopback through whichever socket the kernel
// grants, refused unless loopback is allowed, by literal and by name.
func TestICMP(t *testing.T) {
	requireICMP(t, true)
	for _, c := range []struct {
		name, target string
		allow        []netip.Prefix
		refused      string
	}{
		{"allowed", "127.0.0.1", allowLoop, ""},
		{"localhost allowed", "localhost", allowLoop, ""},
		{"refused", "127.0.0.1", nil, "loopback 127.0.0.0/8"},
		{"localhost refused", "localhost", nil, "loopback name localhost"},
		{"name resolving to loopback refused", "rebind.test", nil, "loopback 127.0.0.0/8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := Guard{Allow: c.allow, resolver: fakeDNS(t, map[string]netip.Addr{"rebind.test": lo})}
			r := Run(t.Context(), agentwire.Probe{Kind: "icmp", Target: c.target}, g)
			t.Logf("%+v", r)
			if c.refused != "" {
				checkRefused(t, r, c.refused)
				return
			}
			if !r.Success || r.Addr != lo || r.Duration <= 0 {
				t.Errorf("result %+v: want an echo reply from 127.0.0.1", r)
			}
		})
	}
}

// TestICMPSockets: each kind of socket, where the kernel grants it, gets
// its own echo reply from loopback (IPv4 and IPv6).
func TestICMPSockets(t *testing.T) {
	for _, v4 := range []bool{true, false} {
		addr := netip.MustParseAddr("::1")
		if v4 {
			addr = lo
		}
		for _, kind := range []socketKind{pingSocket, rawSocket} {
			t.Run(addr.String()+" "+kind.String(), func(t *testing.T) {
				if !v4 {
					requireIPv6Loopback(t)
				}
				conn, err := listenICMP(v4, kind)
				if err != nil {
					t.Skipf("the kernel refuses an ICMP %s here (%v); %s", kind, err, socketNeeds(kind))
				}
				defer conn.Close()
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				if err := echo(ctx, conn, kind, addr); err != nil {
					t.Fatalf("echo to %s over a %s: %v", addr, kind, err)
				}
			})
		}
	}
}

// requireICMP skips when neither socket kind can be opened, saying why.
func requireICMP(t *testing.T, v4 bool) {
	t.Helper()
	c, _, err := openICMP(v4)
	if errors.Is(err, errNoICMPSocket) {
		t.Skipf("needs an ICMP ping socket (net.ipv4.ping_group_range including gid %d) or CAP_NET_RAW: %v", os.Getgid(), err)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func requireIPv6Loopback(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("needs IPv6 loopback (::1): %v", err)
	}
	ln.Close()
}

func socketNeeds(kind socketKind) string {
	if kind == pingSocket {
		b, _ := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
		return "a ping socket needs net.ipv4.ping_group_range (" + strings.TrimSpace(string(b)) + ") to include this process's group"
	}
	return "a raw socket needs CAP_NET_RAW"
}

// TestICMPNoSocket: with neither a ping socket nor CAP_NET_RAW, the
// result says which socket was refused and why. It runs itself again
// with CAP_NET_RAW dropped from the bounding set (setpriv).
func TestICMPNoSocket(t *testing.T) {
	if os.Getenv("OUTPOST_PROBE_TEST_NO_NET_RAW") == "1" {
		if c, err := listenICMP(true, pingSocket); err == nil {
			c.Close()
			t.Skip("ping sockets are permitted here: the probe needs no raw socket")
		}
		r := Run(t.Context(), agentwire.Probe{Kind: "icmp", Target: "127.0.0.1"}, Guard{Allow: allowLoop})
		for _, want := range []string{"ping socket", "ping_group_range", "raw socket", "CAP_NET_RAW"} {
			if r.Success || !strings.Contains(r.Error, want) {
				t.Errorf("result %+v: want a failure that mentions %q", r, want)
			}
		}
		return
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to drop CAP_NET_RAW")
	}
	cmd := exec.CommandContext(t.Context(), setpriv, "--bounding-set", "-net_raw", os.Args[0], "-test.run=^TestICMPNoSocket$", "-test.v")
	cmd.Env = append(os.Environ(), "OUTPOST_PROBE_TEST_NO_NET_RAW=1")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("without CAP_NET_RAW: %v", err)
	}
}
