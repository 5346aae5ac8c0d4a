package federation

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Peer is another region this one federates with, as a region admin
// configured it: its name is the peer region's own name (the region its
// node certificates carry), CA the certificate pinned for it, Secret the
// shared secret both regions configured.
type Peer struct {
	Name string
	// Addr is host:port of the peer's federation endpoint, or several,
	// comma-separated (the nodes of the peer region): a call tries them
	// in turn, from the last one that answered.
	Addr   string
	CA     *x509.Certificate
	Secret []byte
}

// Addrs are p's addresses.
func (p Peer) Addrs() []string {
	var out []string
	for _, a := range strings.Split(p.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// MaxAddrs bounds a peer's addresses.
const MaxAddrs = 8

// MinSecret is the shortest shared secret accepted.
const MinSecret = 32

// Errors of peer identity, matched with errors.Is.
var (
	// ErrUnknownPeer: the certificate names a region that is not a peer.
	ErrUnknownPeer = errors.New("certificate names no configured peer")
	// ErrPeerCert: the certificate does not chain to the peer's pinned CA,
	// has expired, or is not a node certificate.
	ErrPeerCert = errors.New("certificate not issued by the peer's pinned CA")
)

// certRegion returns the region and node a node certificate names
// (URI SAN outpost://REGION/node/ID).
func certRegion(leaf *x509.Certificate) (region, node string, ok bool) {
	for _, u := range leaf.URIs {
		if u.Scheme != "outpost" || u.Host == "" {
			continue
		}
		if id, found := strings.CutPrefix(u.Path, "/node/"); found && id != "" && !strings.Contains(id, "/") {
			return u.Host, id, true
		}
	}
	return "", "", false
}

// verifyPeer checks chain against p's pinned CA at now for usage, and
// that its leaf is a node certificate of p's region.
func verifyPeer(chain []*x509.Certificate, p Peer, usage x509.ExtKeyUsage, now time.Time) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: no certificate presented", ErrPeerCert)
	}
	if p.CA == nil {
		return fmt.Errorf("%w: peer %q has no CA configured", ErrPeerCert, p.Name)
	}
	leaf := chain[0]
	region, _, ok := certRegion(leaf)
	if !ok || region != p.Name {
		return fmt.Errorf("%w: certificate names region %q, not peer %q", ErrPeerCert, region, p.Name)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.CA)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("%w (peer %q): %v", ErrPeerCert, p.Name, err)
	}
	return nil
}

// identify returns the peer a client certificate chain belongs to: the
// peer named by its region, whose pinned CA must have issued it.
func identify(chain []*x509.Certificate, peer func(string) (Peer, bool), now time.Time) (Peer, error) {
	if len(chain) == 0 {
		return Peer{}, fmt.Errorf("%w: no certificate presented", ErrPeerCert)
	}
	region, _, ok := certRegion(chain[0])
	if !ok {
		return Peer{}, fmt.Errorf("%w: not a node certificate (no outpost://REGION/node/ID name)", ErrPeerCert)
	}
	p, ok := peer(region)
	if !ok {
		return Peer{}, fmt.Errorf("%w: %q", ErrUnknownPeer, region)
	}
	return p, verifyPeer(chain, p, x509.ExtKeyUsageClientAuth, now)
}

// clientTLS is the TLS configuration to call p with: TLS 1.3, this node's
// certificate, and p's server certificate checked against p's pinned CA
// and region (host names are not checked: peers are identified by their
// certificates' region).
func clientTLS(p Peer, cert func() *tls.Certificate, now func() time.Time) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := cert(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil
		},
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection against the pinned CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs.PeerCertificates, p, x509.ExtKeyUsageServerAuth, now())
		},
	}
}
