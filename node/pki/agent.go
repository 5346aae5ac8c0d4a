package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/internal/meshid"
)

// Agent certificates are client certificates the region CA issues to an
// agent that redeemed a bootstrap token. Their URI SAN names the region,
// the tenant (its local id) and the agent: outpost://REGION/tenant/TID/agent/AID.
// The tenant comes from the bootstrap token, never from the request, and
// NodeID refuses such a certificate, so an agent cannot join the Raft
// group; VerifyAgentPeer refuses a node certificate on the agent port.

// Agent certificate lifetimes: the default, and the bounds a config may set.
const (
	AgentCertLifetime    = 24 * time.Hour
	MinAgentCertLifetime = 10 * time.Minute
	MaxAgentCertLifetime = 30 * 24 * time.Hour
)

// MaxCSRBytes bounds a PEM certificate request.
const MaxCSRBytes = 16 << 10

// ErrBadCSR is returned for a certificate request the CA will not sign.
var ErrBadCSR = errors.New("certificate request refused")

// ErrNotAgent is returned when a peer certificate chains to the CA but is
// not an agent certificate of this region.
var ErrNotAgent = meshid.ErrNotAgent

var idPattern = meshid.ID

// AgentURI is the identity an agent certificate carries.
func AgentURI(region, tenantID, agentID string) *url.URL {
	return meshid.AgentURI(region, tenantID, agentID)
}

// ParseCSR decodes a PEM certificate request and checks what the CA
// requires: a valid self-signature, an ECDSA P-256/P-384 or Ed25519 key,
// and no identity claim of its own beyond, at most, the very URI the CA
// will issue (want). The CA writes the identity; a request that names
// another tenant, agent or node is refused rather than ignored.
func ParseCSR(pemBytes []byte, want *url.URL) (*x509.CertificateRequest, error) {
	if len(pemBytes) > MaxCSRBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadCSR, len(pemBytes), MaxCSRBytes)
	}
	b, rest := pem.Decode(pemBytes)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: not a PEM \"CERTIFICATE REQUEST\"", ErrBadCSR)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("%w: data after the request", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify: %v", ErrBadCSR, err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("%w: ECDSA key on %s; use P-256 or P-384", ErrBadCSR, k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("%w: %T key; use ECDSA P-256/P-384 or Ed25519", ErrBadCSR, csr.PublicKey)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("%w: it names hosts or addresses; an agent certificate carries only the identity the CA assigns", ErrBadCSR)
	}
	for _, u := range csr.URIs {
		if want == nil || u.String() != want.String() {
			return nil, fmt.Errorf("%w: it claims the identity %s; the CA assigns the identity from the bootstrap token", ErrBadCSR, u)
		}
	}
	return csr, nil
}

// SignAgent issues a client certificate for csr's key naming tenantID and
// agentID of region, valid for lifetime (clamped to the bounds above).
func (ca *CA) SignAgent(csr *x509.CertificateRequest, region, tenantID, agentID string, lifetime time.Duration) (*x509.Certificate, []byte, error) {
	if !idPattern.MatchString(tenantID) || !idPattern.MatchString(agentID) {
		return nil, nil, fmt.Errorf("pki: bad tenant or agent id %q/%q", tenantID, agentID)
	}
	lifetime = min(max(lifetime, MinAgentCertLifetime), MaxAgentCertLifetime)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: agentID, Organization: []string{"outpost"}, OrganizationalUnit: []string{"agent"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{AgentURI(region, tenantID, agentID)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue agent certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// Fingerprint is the SHA-256 of a certificate's DER, hex: how the node
// knows an agent.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// KeyHash is the SHA-256 of a public key's SubjectPublicKeyInfo, hex: it
// names the key an agent holds across certificates.
func KeyHash(pub any) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// AgentIdentity returns the tenant and agent an agent certificate of
// region names.
func AgentIdentity(leaf *x509.Certificate, region string) (tenantID, agentID string, err error) {
	return meshid.Agent(leaf, region)
}

// VerifyAgentPeer checks an agent's chain against the CA pool for client
// use at now and that the leaf names an agent of region.
func VerifyAgentPeer(chain []*x509.Certificate, pool *x509.CertPool, region string, now time.Time) (tenantID, agentID string, err error) {
	if len(chain) == 0 {
		return "", "", errors.New("the agent presented no certificate; enroll it with a bootstrap token first")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", "", err
	}
	return AgentIdentity(leaf, region)
}

// AgentServerTLS is the agent port's TLS configuration: the node's
// certificate, TLS 1.3, a client certificate requested and, if sent, verified
// against the region CA as an agent of region, and then check(leaf)
// (revocation, the registry) before the handshake completes.
func AgentServerTLS(ca *CA, id *Identity, region string, now func() time.Time, check func(leaf *x509.Certificate) error) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain carries the CA: an agent enrolling with only the CA's
		// pin (outpost-agent --ca-pin) verifies the node against it.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c := *id.Certificate()
			c.Certificate = append(c.Certificate[:1:1], ca.Cert.Raw)
			return &c, nil
		},
		// Requested, not required: enrollment on the agent port comes
		// without one (the bootstrap token is its credential), and every
		// other route refuses a request without one. A certificate that
		// is presented must verify.
		ClientAuth: tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			if _, _, err := VerifyAgentPeer(cs.PeerCertificates, pool, region, now()); err != nil {
				return err
			}
			if check != nil {
				return check(cs.PeerCertificates[0])
			}
			return nil
		},
	}
}

// AgentClientTLS is the agent's side: its certificate, and the server
// verified against the region CA as a node of region (any node: agents
// address nodes by URL, and the node certificate's URI is what counts).
func AgentClientTLS(caPool *x509.CertPool, region string, getCert func() (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return getCert() },
		InsecureSkipVerify:   true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server presented no certificate")
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: caPool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("the server's certificate is not from this region's CA: %w", err)
			}
			_, err := NodeID(leaf, region)
			return err
		},
	}
}
