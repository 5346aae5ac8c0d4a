// Package probe runs the active checks a config dispatch asks of an
// agent: TCP connect, HTTP(S), DNS resolution and ICMP echo, each timed,
// behind the SSRF guard of internal/agentwire.
//
// The node refuses probe targets it can read as guarded (address
// literals, metadata service names); names are resolved here, so the
// Guard checks every address this package actually dials or pings,
// after resolution, in net.Dialer.Control: a name that resolves (or
// rebinds) to loopback, link-local or a metadata service is refused,
// naming the rule, unless the tenant allowed the range. HTTP redirects
// are reported, never followed, and no proxy is used, so nothing reaches
// an address the guard did not see.
//
// The agent runtime imports it (Runner); it imports only the standard
// library, internal/agentwire and golang.org/x/net's ICMP packages, and
// links no test code.
package probe
