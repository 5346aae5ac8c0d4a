// Package clientaddr derives the address of the client behind an HTTP
// request: the peer's address, or, when the peer is a reverse proxy the
// operator trusts (http.trusted_proxies), the right-most address in its
// X-Forwarded-For header that no trusted proxy holds.
//
// Only the operator API's listener resolves addresses this way (Handler);
// a request served without that Handler, as enrollment on the agent port
// is, gets its peer's address from Of. node/httpapi imports it; the agent
// port (node/agentlink) must not, since agents connect directly.
package clientaddr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Bounds on the X-Forwarded-For header read from a trusted proxy. A
// header past either is not parsed: the request is keyed to its peer.
const (
	// MaxHops is the most addresses the header may list; real chains
	// have a handful.
	MaxHops = 32
	// MaxHeaderBytes bounds the header's lines together (32 bracketed
	// IPv6 addresses with ports and separators fit).
	MaxHeaderBytes = 2048
)

// Header is the forwarding header read. RFC 7239 Forwarded is not read:
// its quoted, obfuscated and multi-parameter forms buy nothing over
// X-Forwarded-For, which every common proxy writes.
const Header = "X-Forwarded-For"

// Proxies is the set of reverse proxies whose X-Forwarded-For is
// believed. The zero value trusts none.
type Proxies struct {
	prefixes []netip.Prefix
}

// New returns the set that trusts every address in prefixes.
func New(prefixes ...netip.Prefix) Proxies {
	return Proxies{prefixes: prefixes}
}

// ParsePrefix parses one trusted-proxy entry: a CIDR prefix (10.0.0.0/8,
// 2001:db8::/32) or one address (10.0.0.7, a /32 or /128). It refuses
// a prefix with host bits set (10.0.0.1/8 is likelier a typo than a
// wish to trust 16M addresses), an IPv4-mapped IPv6 form, a zone, and
// a /0, under which any client could choose the address the node sees.
func ParsePrefix(s string) (netip.Prefix, error) {
	const example = "write a CIDR prefix such as 10.0.0.0/8 or 2001:db8::/32, or one address such as 10.0.0.7"
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf("not a CIDR prefix; %s", example)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return p, fmt.Errorf("not an IP address or CIDR prefix; %s", example)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	switch {
	case p.Addr().Is4In6():
		return p, errors.New("an IPv4-mapped IPv6 prefix; write the IPv4 form (10.0.0.0/8)")
	case p.Bits() == 0:
		return p, errors.New("trusts every address, so any client could choose the address the node sees; list only your proxies' addresses")
	case p != p.Masked():
		return p, fmt.Errorf("has host bits set; write the network (%s) or one address (%s)", p.Masked(), p.Addr())
	}
	return p, nil
}

// Trusts reports whether a is a trusted proxy's address.
func (ps Proxies) Trusts(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range ps.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Resolve returns the client address of r and its peer's address (the
// host of r.RemoteAddr, normalised). From a trusted peer, X-Forwarded-For
// is read from the right, past the addresses of trusted proxies, and the
// first other address is the client; when every listed address is a
// trusted proxy's, the left-most is. From any other peer the header is
// ignored. An empty or oversized header (MaxHops, MaxHeaderBytes) or an
// entry that is not an address, met before the client was found, gives
// the peer: hostile bytes never choose the key.
func (ps Proxies) Resolve(r *http.Request) (client, peer string) {
	pa, peer := peerOf(r.RemoteAddr)
	if !pa.IsValid() || !ps.Trusts(pa) {
		return peer, peer
	}
	lines := r.Header.Values(Header)
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	if size == 0 || size > MaxHeaderBytes {
		return peer, peer
	}
	var hops []string
	for _, l := range lines {
		hops = append(hops, strings.Split(l, ",")...)
		if len(hops) > MaxHops {
			return peer, peer
		}
	}
	var a netip.Addr
	for i := len(hops) - 1; i >= 0; i-- {
		var ok bool
		if a, ok = parseHop(hops[i]); !ok {
			return peer, peer
		}
		if !ps.Trusts(a) {
			break
		}
	}
	return a.String(), peer
}

// parseHop parses one X-Forwarded-For entry: an address, or an address
// with a port (1.2.3.4:80, [2001:db8::1]:80) as some proxies write. A
// zone is refused: no proxy forwards one, and it would split one host
// into many keys.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// peerOf parses a RemoteAddr. An address that does not parse (a test's
// "pipe") comes back invalid, with the host part (or all of it) as text.
func peerOf(remote string) (netip.Addr, string) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, host
	}
	a = a.Unmap().WithZone("")
	return a, a.String()
}

type ctxKey struct{}

type resolved struct{ client, peer string }

// Handler resolves each request's client address (Resolve) for Of and
// Peer to return inside h. Wrap only a listener that proxies may front.
func (ps Proxies) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, peer := ps.Resolve(r)
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, resolved{client, peer})))
	})
}

// Of is the client address of r: what a Handler resolved, or, for a
// request no Handler saw (a direct listener), its peer's address.
func Of(r *http.Request) string {
	if v, ok := r.Context().Value(ctxKey{}).(resolved); ok {
		return v.client
	}
	_, peer := peerOf(r.RemoteAddr)
	return peer
}

// Peer is the address of r's peer: the proxy, for a forwarded request.
func Peer(r *http.Request) string {
	_, peer := peerOf(r.RemoteAddr)
	return peer
}
