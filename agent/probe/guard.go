package probe

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// Guard is the SSRF guard as a probe applies it: every address dialed
// or pinged, after resolution, must pass agentwire.GuardRule.
type Guard struct {
	// Allow are the ranges the tenant allowed (Config.ProbeAllow): a
	// guarded address inside one may be probed.
	Allow []netip.Prefix

	// rootCAs verifies HTTPS servers; nil means the system pool. Tests
	// set it to their CA.
	rootCAs *x509.CertPool
	// resolver resolves names; nil means net.DefaultResolver. Tests
	// point it at a DNS server of their own.
	resolver *net.Resolver
}

// refusal is a target the guard refused; it wraps
// agentwire.ErrGuardedTarget.
type refusal struct {
	what string // the host or address refused
	rule string // agentwire's rule name
}

func (e *refusal) Error() string {
	return fmt.Sprintf("%v: %s: rule %s", agentwire.ErrGuardedTarget, e.what, e.rule)
}

func (e *refusal) Unwrap() error { return agentwire.ErrGuardedTarget }

// dialer dials through the guard. Control runs after the name is
// resolved and before connect(2), once per address tried, so each
// attempt of a multi-address name is checked on its own.
func (g Guard) dialer() *net.Dialer {
	return &net.Dialer{Resolver: g.resolver, Control: g.control}
}

func (g Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// The dialer hands resolved ip:port; anything else is a bug,
		// and the guard fails closed on it.
		return &refusal{what: address, rule: "unparsable address"}
	}
	return g.check(ap.Addr())
}

// check refuses addr unless the guard lets probes reach it.
func (g Guard) check(addr netip.Addr) error {
	if rule := agentwire.GuardRule(addr, g.Allow); rule != "" {
		return &refusal{what: addr.String(), rule: rule}
	}
	return nil
}

func (g Guard) lookup() *net.Resolver {
	if g.resolver != nil {
		return g.resolver
	}
	return net.DefaultResolver
}
