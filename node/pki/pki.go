package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/outpost-mesh/outpost/internal/meshid"
	"github.com/outpost-mesh/outpost/internal/syncfile"
	"github.com/outpost-mesh/outpost/node/keys"
)

// CA is a region's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	pem  []byte
}

// CALifetime is how long a generated region CA is valid.
const CALifetime = 10 * 365 * 24 * time.Hour

// NewCA creates a self-signed ECDSA P-256 CA for region.
func NewCA(region string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Outpost region CA " + region, Organization: []string{"outpost"}, OrganizationalUnit: []string{region}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, Key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// CertPEM returns the CA certificate in PEM form.
func (ca *CA) CertPEM() []byte { return ca.pem }

// Pin is the one fingerprint of the CA that Outpost shows ("sha256:" and
// the hex SHA-256 of the certificate's SubjectPublicKeyInfo): `outpost ca
// create` prints it, `outpostctl tokens create` and the node's log show
// it, and outpost-agent --ca-pin checks the node's chain against it.
func (ca *CA) Pin() string { return meshid.CAPin(ca.Cert) }

// Save writes ca.crt (0644) and ca.key (0600) into dir, each fsynced and
// renamed into place.
func (ca *CA) Save(dir string) error {
	kder, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := syncfile.Replace(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return syncfile.Replace(filepath.Join(dir, "ca.crt"), ca.pem, 0o644)
}

// LoadCA reads a CA certificate and an unwrapped key from PEM files
// (tools and benchmarks; a node reads its key wrapped: LoadWrappedCA).
func LoadCA(certFile, keyFile string) (*CA, error) {
	kpem, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	return loadCA(certFile, keyFile, kpem)
}

// LoadWrappedCA reads a CA certificate and its key, wrapped by the master
// key (purpose "ca_key"), as `outpost ca create` writes them.
func LoadWrappedCA(p *keys.Protector, certFile, keyFile string) (*CA, error) {
	kpem, err := keys.ReadFile(p, keyFile, PurposeCAKey)
	if err != nil {
		return nil, fmt.Errorf("tls.ca_key: %w", err)
	}
	return loadCA(certFile, keyFile, kpem)
}

// PurposeCAKey is the wrapped-file purpose of the region CA key.
const PurposeCAKey = "ca_key"

// SaveWrapped writes ca.crt and ca.key (wrapped by p) into dir.
func (ca *CA) SaveWrapped(p *keys.Protector, dir string) error {
	kder, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := keys.WriteFile(p, filepath.Join(dir, "ca.key"), PurposeCAKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})); err != nil {
		return err
	}
	return syncfile.Replace(filepath.Join(dir, "ca.crt"), ca.pem, 0o644)
}

func loadCA(certFile, keyFile string, kpem []byte) (*CA, error) {
	cpem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	cb, _ := pem.Decode(cpem)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", certFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s: certificate is not a CA", certFile)
	}
	kb, _ := pem.Decode(kpem)
	if kb == nil {
		return nil, fmt.Errorf("%s: no PEM key block", keyFile)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match %s", keyFile, certFile)
	}
	return &CA{Cert: cert, Key: key, pem: pem.EncodeToMemory(cb)}, nil
}

// NodeURI is the identity a node certificate carries.
func NodeURI(region, nodeID string) *url.URL { return meshid.NodeURI(region, nodeID) }

// NodeCertLifetime is the validity of an issued node certificate; a node
// issues itself one at start and renews it when a third is left.
const NodeCertLifetime = 90 * 24 * time.Hour

// IssueNode issues a server+client certificate for a node, valid for the
// given IPs and DNS names, for NodeCertLifetime.
func (ca *CA) IssueNode(region, nodeID string, ips []net.IP, dns []string) (tls.Certificate, error) {
	return ca.issueNode(region, nodeID, ips, dns, NodeCertLifetime)
}

func (ca *CA) issueNode(region, nodeID string, ips []net.IP, dns []string, lifetime time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"outpost"}, OrganizationalUnit: []string{"node"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{NodeURI(region, nodeID)},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue node certificate: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Identity is a node's certificate, renewed in place: the TLS config it
// returns picks up a renewed certificate for every new handshake.
type Identity struct {
	ca       *CA
	region   string
	id       string
	ips      []net.IP
	dns      []string
	lifetime time.Duration
	cur      atomic.Pointer[tls.Certificate]
}

// NewIdentity issues the node's first certificate. lifetime 0 means
// NodeCertLifetime.
func NewIdentity(ca *CA, region, nodeID string, ips []net.IP, dns []string, lifetime time.Duration) (*Identity, error) {
	if lifetime <= 0 {
		lifetime = NodeCertLifetime
	}
	id := &Identity{ca: ca, region: region, id: nodeID, ips: ips, dns: dns, lifetime: lifetime}
	if err := id.renew(); err != nil {
		return nil, err
	}
	return id, nil
}

func (id *Identity) renew() error {
	c, err := id.ca.issueNode(id.region, id.id, id.ips, id.dns, id.lifetime)
	if err != nil {
		return err
	}
	id.cur.Store(&c)
	return nil
}

// Certificate returns the current certificate.
func (id *Identity) Certificate() *tls.Certificate { return id.cur.Load() }

// RenewIfDue issues a fresh certificate once less than a third of the
// current one's lifetime remains, and reports whether it did.
func (id *Identity) RenewIfDue(now time.Time) (bool, error) {
	leaf := id.cur.Load().Leaf
	if leaf.NotAfter.Sub(now) > id.lifetime/3 {
		return false, nil
	}
	return true, id.renew()
}

// TLS returns the node-to-node TLS config serving the current certificate.
func (id *Identity) TLS() *tls.Config {
	c := NodeTLS(id.ca, *id.cur.Load(), id.region)
	c.Certificates = nil
	c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.cur.Load(), nil }
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id.cur.Load(), nil }
	return c
}

// ErrNotRegionNode is returned when a peer's certificate chains to the CA
// but does not name a node of this region.
var ErrNotRegionNode = meshid.ErrNotRegionNode

// NodeTLS returns the mutual-TLS configuration for node-to-node traffic:
// TLS 1.3, both sides present a certificate, and each side verifies the
// other's chain against the region CA and its node URI. Host names are not
// checked (peers are addressed by IP and identified by URI), so
// verification happens in VerifyConnection.
func NodeTLS(ca *CA, cert tls.Certificate, region string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// The client side skips Go's host-name check only; VerifyConnection
		// does the full chain and identity check on both sides.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return VerifyNodePeer(cs.PeerCertificates, pool, region)
		},
	}
}

// VerifyNodePeer checks a peer's chain against the region CA pool and that
// its leaf is a node certificate (server and client usage) of region.
func VerifyNodePeer(chain []*x509.Certificate, pool *x509.CertPool, region string) error {
	if len(chain) == 0 {
		return errors.New("peer presented no certificate")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return err
		}
	}
	return checkNodeURI(leaf, region)
}

func checkNodeURI(leaf *x509.Certificate, region string) error {
	_, err := NodeID(leaf, region)
	return err
}

// NodeID returns the node id a node certificate of region names in its
// URI SAN. Callers use it to check that a peer is the node it claims to be.
func NodeID(leaf *x509.Certificate, region string) (string, error) {
	return meshid.NodeID(leaf, region)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}
