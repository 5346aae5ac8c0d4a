package clientaddr

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func proxies(t *testing.T, entries ...string) Proxies {
	t.Helper()
	var ps []netip.Prefix
	for _, e := range entries {
		p, err := ParsePrefix(e)
		if err != nil {
			t.Fatalf("ParsePrefix(%q): %v", e, err)
		}
		ps = append(ps, p)
	}
	return New(ps...)
}

func request(remote string, xff ...string) *http.Request {
	r := httptest.NewRequest("POST", "/api/v1/login", nil)
	r.RemoteAddr = remote
	for _, v := range xff {
		r.Header.Add(Header, v)
	}
	return r
}

// TestResolve: the header counts only from a trusted peer, is read from
// the right past trusted proxies, and anything malformed, empty or too
// large on the way gives the peer.
func TestResolve(t *testing.T) {
	ps := proxies(t, "10.0.0.0/24", "192.0.2.7", "2001:db8:aaaa::/48")
	hops := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = "10.0.0.9"
		}
		s[0] = "203.0.113.9"
		return strings.Join(s, ", ")
	}
	cases := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"untrusted peer, spoofed header", "198.51.100.1:4000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"untrusted peer, spoofed trusted-looking chain", "198.51.100.1:4000", []string{"203.0.113.9, 10.0.0.5"}, "198.51.100.1"},
		{"untrusted peer next to a trusted one", "10.0.1.1:4000", []string{"203.0.113.9"}, "10.0.1.1"},
		{"trusted peer, no header", "10.0.0.1:4000", nil, "10.0.0.1"},
		{"trusted peer, empty header", "10.0.0.1:4000", []string{""}, "10.0.0.1"},
		{"trusted peer, one client", "10.0.0.1:4000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"single-address entry", "192.0.2.7:4000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"client's own entries left of it are not read", "10.0.0.1:4000", []string{"1.1.1.1, bogus, 203.0.113.9"}, "203.0.113.9"},
		{"chain of trusted proxies", "10.0.0.1:4000", []string{"203.0.113.9, 10.0.0.2, 192.0.2.7"}, "203.0.113.9"},
		{"chain over two header lines", "10.0.0.1:4000", []string{"1.1.1.1, 203.0.113.9", "10.0.0.2"}, "203.0.113.9"},
		{"right-most untrusted, not left-most", "10.0.0.1:4000", []string{"203.0.113.1, 203.0.113.2, 10.0.0.3"}, "203.0.113.2"},
		{"every hop trusted: the left-most", "10.0.0.1:4000", []string{"10.0.0.4, 10.0.0.3"}, "10.0.0.4"},
		{"garbage", "10.0.0.1:4000", []string{"not an address"}, "10.0.0.1"},
		{"garbage right of the client", "10.0.0.1:4000", []string{"203.0.113.9, bogus"}, "10.0.0.1"},
		{"empty entry", "10.0.0.1:4000", []string{"203.0.113.9, , 10.0.0.2"}, "10.0.0.1"},
		{"trailing comma", "10.0.0.1:4000", []string{"203.0.113.9,"}, "10.0.0.1"},
		{"hostile bytes", "10.0.0.1:4000", []string{"203.0.113.9, \x00\xff\xfe"}, "10.0.0.1"},
		{"hostile bytes left of the client are not read", "10.0.0.1:4000", []string{"\x00\xff\xfe, 203.0.113.9"}, "203.0.113.9"},
		{"zone", "10.0.0.1:4000", []string{"fe80::1%eth0"}, "10.0.0.1"},
		{"RFC 7239 syntax is not X-Forwarded-For", "10.0.0.1:4000", []string{`for="203.0.113.9"`}, "10.0.0.1"},
		{"entry with a port", "10.0.0.1:4000", []string{"203.0.113.9:4711"}, "203.0.113.9"},
		{"IPv6 entry with a port", "10.0.0.1:4000", []string{"[2001:db8::9]:443"}, "2001:db8::9"},
		{"IPv6 client, normalised", "10.0.0.1:4000", []string{"2001:DB8:0:0::A"}, "2001:db8::a"},
		{"IPv6 proxy", "[2001:db8:aaaa:1::1]:4000", []string{"2001:db8:bbbb::5"}, "2001:db8:bbbb::5"},
		{"IPv6 chain", "[2001:db8:aaaa:1::1]:4000", []string{"2001:db8:bbbb::5, 2001:db8:aaaa:2::1"}, "2001:db8:bbbb::5"},
		{"IPv4-mapped client", "10.0.0.1:4000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"IPv4-mapped trusted peer", "[::ffff:10.0.0.1]:4000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"IPv4-mapped trusted hop", "10.0.0.1:4000", []string{"203.0.113.9, ::ffff:10.0.0.2"}, "203.0.113.9"},
		{"IPv4-mapped untrusted peer", "[::ffff:198.51.100.1]:4000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"32 hops", "10.0.0.1:4000", []string{hops(MaxHops)}, "203.0.113.9"},
		{"33 hops", "10.0.0.1:4000", []string{hops(MaxHops + 1)}, "10.0.0.1"},
		{"33 hops over lines", "10.0.0.1:4000", []string{hops(MaxHops), "10.0.0.9"}, "10.0.0.1"},
		{"oversize header", "10.0.0.1:4000", []string{strings.Repeat(" ", MaxHeaderBytes) + "203.0.113.9"}, "10.0.0.1"},
		{"unparseable peer", "pipe", []string{"203.0.113.9"}, "pipe"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := ps.Resolve(request(tc.remote, tc.xff...))
			if got != tc.want {
				t.Fatalf("Resolve(%s, %q) = %q, want %q", tc.remote, tc.xff, got, tc.want)
			}
		})
	}
	t.Run("no trusted proxies", func(t *testing.T) {
		if got, _ := (Proxies{}).Resolve(request("10.0.0.1:4000", "203.0.113.9")); got != "10.0.0.1" {
			t.Fatalf("the zero Proxies believed the header: %q", got)
		}
	})
}

// TestHandlerOnlyWhereWrapped: Of answers the resolved client inside a
// Handler, and the peer for a request no Handler saw (the agent port),
// even from a trusted proxy's address.
func TestHandlerOnlyWhereWrapped(t *testing.T) {
	ps := proxies(t, "10.0.0.0/24")
	var client, peer string
	h := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { client, peer = Of(r), Peer(r) })
	ps.Handler(h).ServeHTTP(httptest.NewRecorder(), request("10.0.0.1:4000", "203.0.113.9"))
	if client != "203.0.113.9" || peer != "10.0.0.1" {
		t.Fatalf("through the Handler: client %q peer %q, want 203.0.113.9 and 10.0.0.1", client, peer)
	}
	h.ServeHTTP(httptest.NewRecorder(), request("10.0.0.1:4000", "203.0.113.9"))
	if client != "10.0.0.1" || peer != "10.0.0.1" {
		t.Fatalf("without the Handler: client %q peer %q, want the peer for both", client, peer)
	}
}

func TestParsePrefix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.0.0.7", "10.0.0.7/32"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"2001:db8::1", "2001:db8::1/128"},
	} {
		p, err := ParsePrefix(tc.in)
		if err != nil || p.String() != tc.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "10.0.0.0/8"},
		{"proxy.example.com", "not an IP address"},
		{"10.0.0.0/33", "not a CIDR prefix"},
		{"10.0.0.1/8", "host bits set; write the network (10.0.0.0/8) or one address (10.0.0.1)"},
		{"0.0.0.0/0", "trusts every address"},
		{"::/0", "trusts every address"},
		{"::ffff:10.0.0.0/104", "IPv4-mapped"},
		{"fe80::1%eth0", "not an IP address"},
		{" 10.0.0.1", "not an IP address"},
	} {
		_, err := ParsePrefix(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePrefix(%q): error %v, want one containing %q", tc.in, err, tc.want)
		}
	}
}

// FuzzResolve: no header bytes panic Resolve, and the answer is the peer
// or an address written in the header in canonical form.
func FuzzResolve(f *testing.F) {
	f.Add("10.0.0.1:4000", "203.0.113.9, 10.0.0.2")
	f.Add("[2001:db8::1]:1", "[2001:db8::9]:80,::ffff:1.2.3.4")
	f.Add("10.0.0.1:4000", "fe80::1%eth0, ,")
	ps := New(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/64"))
	f.Fuzz(func(t *testing.T, remote, xff string) {
		client, peer := ps.Resolve(request(remote, xff))
		if client == peer {
			return
		}
		a, err := netip.ParseAddr(client)
		if err != nil || a.String() != client || a.Is4In6() || a.Zone() != "" {
			t.Fatalf("Resolve(%q, %q) = %q: not a canonical address", remote, xff, client)
		}
		if p, _ := netip.ParseAddr(peer); !ps.Trusts(p) {
			t.Fatalf("Resolve(%q, %q) = %q from an untrusted peer %q", remote, xff, client, peer)
		}
	})
}
