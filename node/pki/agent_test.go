package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

func csrPEM(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "host-1"}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestParseCSRRefusesWhatTheCADoesNotSign(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	want := AgentURI("r1", "t1", "a1")
	other, _ := url.Parse("outpost://r1/tenant/t2/agent/a1")
	node := NodeURI("r1", "n1")

	for _, ok := range [][]byte{csrPEM(t, p256, nil), csrPEM(t, edKey, nil), csrPEM(t, p256, &x509.CertificateRequest{URIs: []*url.URL{want}})} {
		if _, err := ParseCSR(ok, want); err != nil {
			t.Errorf("a good request was refused: %v", err)
		}
	}
	good := csrPEM(t, p256, nil)
	tampered := append([]byte(nil), good...)
	blk, _ := pem.Decode(tampered)
	blk.Bytes[len(blk.Bytes)-5] ^= 0xff // inside the signature
	for name, c := range map[string]struct {
		pem  []byte
		want string
	}{
		"another tenant":  {csrPEM(t, p256, &x509.CertificateRequest{URIs: []*url.URL{other}}), "claims the identity"},
		"a node identity": {csrPEM(t, p256, &x509.CertificateRequest{URIs: []*url.URL{node}}), "claims the identity"},
		"host names":      {csrPEM(t, p256, &x509.CertificateRequest{DNSNames: []string{"n1.example"}}), "names hosts"},
		"addresses":       {csrPEM(t, p256, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), "names hosts"},
		"RSA key":         {csrPEM(t, rsaKey, nil), "use ECDSA"},
		"P-224 key":       {csrPEM(t, p224, nil), "P-224"},
		"bad signature":   {pem.EncodeToMemory(blk), "signature"},
		"not PEM":         {[]byte("hello"), "not a PEM"},
		"a certificate":   {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), "not a PEM"},
		"garbage DER":     {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), "refused"},
		"trailing data":   {append(csrPEM(t, p256, nil), []byte("more")...), "after the request"},
		"oversized":       {make([]byte, MaxCSRBytes+1), "more than"},
	} {
		_, err := ParseCSR(c.pem, want)
		if !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrBadCSR mentioning %q", name, err, c.want)
		}
	}
}

func FuzzParseCSR(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	want := AgentURI("r1", "t1", "a1")
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := ParseCSR(b, want)
		if err == nil && csr == nil {
			t.Fatal("no error and no request")
		}
	})
}

// An agent certificate names its tenant and agent, verifies as an agent
// on the agent port, and is refused as a node on the Raft port; a node
// certificate is refused on the agent port.
func TestAgentCertificateIdentity(t *testing.T) {
	ca := mustCA(t, "r1")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := ParseCSR(csrPEM(t, key, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, certPEM, err := ca.SignAgent(csr, "r1", "t1", "a1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		t.Fatal("SignAgent's PEM is not a certificate")
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Fatal("the certificate is not for the request's key")
	}
	if got := cert.NotAfter.Sub(cert.NotBefore); got < time.Hour || got > time.Hour+2*time.Minute {
		t.Fatalf("lifetime %v, want about 1h", got)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tid, aid, err := VerifyAgentPeer([]*x509.Certificate{cert}, pool, "r1", time.Now())
	if err != nil || tid != "t1" || aid != "a1" {
		t.Fatalf("VerifyAgentPeer: %q %q %v", tid, aid, err)
	}
	if _, _, err := VerifyAgentPeer([]*x509.Certificate{cert}, pool, "r2", time.Now()); !errors.Is(err, ErrNotAgent) {
		t.Fatalf("an agent of r1 verified for r2: %v", err)
	}
	if _, _, err := VerifyAgentPeer([]*x509.Certificate{cert}, pool, "r1", time.Now().Add(2*time.Hour)); err == nil {
		t.Fatal("an expired agent certificate verified")
	}
	if err := VerifyNodePeer([]*x509.Certificate{cert}, pool, "r1"); err == nil {
		t.Fatal("an agent certificate verified as a node of the region")
	}
	nodeCert := mustNode(t, ca, "r1", "n1")
	if _, _, err := VerifyAgentPeer([]*x509.Certificate{nodeCert.Leaf}, pool, "r1", time.Now()); !errors.Is(err, ErrNotAgent) {
		t.Fatalf("a node certificate verified as an agent: %v", err)
	}
	other := mustCA(t, "r1")
	pool2 := x509.NewCertPool()
	pool2.AddCert(other.Cert)
	if _, _, err := VerifyAgentPeer([]*x509.Certificate{cert}, pool2, "r1", time.Now()); err == nil {
		t.Fatal("an agent certificate verified against another CA")
	}
	if Fingerprint(cert) == Fingerprint(nodeCert.Leaf) || len(Fingerprint(cert)) != 64 {
		t.Fatal("fingerprints are not distinct SHA-256 hex")
	}
	// Lifetimes are clamped.
	short, _, _ := ca.SignAgent(csr, "r1", "t1", "a1", time.Second)
	if short.NotAfter.Sub(short.NotBefore) < MinAgentCertLifetime {
		t.Fatal("a lifetime below the minimum was not raised")
	}
	if _, _, err := ca.SignAgent(csr, "r1", "t/1", "a1", time.Hour); err == nil {
		t.Fatal("a tenant id with a slash was signed")
	}
}

// A TLS handshake on the agent port: an enrolled agent's certificate is
// accepted, the check callback can refuse it (revocation), and the agent
// refuses a server that is not a node of its region.
func TestAgentTLSHandshake(t *testing.T) {
	ca := mustCA(t, "r1")
	nodeID, err := NewIdentity(ca, "r1", "n1", []net.IP{net.IPv4(127, 0, 0, 1)}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := ParseCSR(csrPEM(t, key, nil), nil)
	cert, _, _ := ca.SignAgent(csr, "r1", "t1", "a1", time.Hour)
	agentCert := &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)

	revoked := errors.New("agent a1 is revoked")
	handshake := func(check func(*x509.Certificate) error, client *tls.Config) (error, error) {
		srv := AgentServerTLS(ca, nodeID, "r1", time.Now, check)
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		errc := make(chan error, 1)
		go func() {
			s := tls.Server(c1, srv)
			err := s.Handshake()
			if err == nil {
				_, _ = io.Copy(io.Discard, s)
			}
			errc <- err
		}()
		cl := tls.Client(c2, client)
		cerr := cl.Handshake()
		if cerr == nil {
			// TLS 1.3: the server's verdict arrives with the first read.
			cl.SetReadDeadline(time.Now().Add(time.Second))
			_, cerr = cl.Read(make([]byte, 1))
			if ne, ok := cerr.(net.Error); ok && ne.Timeout() {
				cerr = nil
			}
		}
		c2.Close()
		return cerr, <-errc
	}
	good := AgentClientTLS(pool, "r1", func() (*tls.Certificate, error) { return agentCert, nil })
	if cerr, serr := handshake(nil, good); cerr != nil || serr != nil {
		t.Fatalf("enrolled agent: client %v, server %v", cerr, serr)
	}
	if _, serr := handshake(func(*x509.Certificate) error { return revoked }, good); !errors.Is(serr, revoked) {
		t.Fatalf("revoked agent: server %v, want the check's error", serr)
	}
	wrongRegion := AgentClientTLS(pool, "r2", func() (*tls.Certificate, error) { return agentCert, nil })
	if cerr, _ := handshake(nil, wrongRegion); cerr == nil || !strings.Contains(cerr.Error(), "not a node of this region") {
		t.Fatalf("agent of r2 accepted a node of r1: %v", cerr)
	}
	nc := nodeID.Certificate()
	asNode := AgentClientTLS(pool, "r1", func() (*tls.Certificate, error) { return nc, nil })
	if _, serr := handshake(nil, asNode); !errors.Is(serr, ErrNotAgent) {
		t.Fatalf("a node certificate on the agent port: %v", serr)
	}
}
