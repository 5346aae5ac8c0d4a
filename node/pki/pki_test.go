package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/node/keys"
)

func mustCA(t *testing.T, region string) *CA {
	t.Helper()
	ca, err := NewCA(region)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustNode(t *testing.T, ca *CA, region, id string) tls.Certificate {
	t.Helper()
	c, err := ca.IssueNode(region, id, []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issueOther issues a certificate from ca with the given URI and usages,
// as a future agent certificate (client-only, no node URI) would be.
func issueOther(t *testing.T, ca *CA, uri string, usages []x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "other"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages,
	}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// handshake runs a real TLS handshake over a pipe between a server using
// the region's NodeTLS and a client presenting clientCert.
func handshake(t *testing.T, server *tls.Config, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() { done <- tls.Server(a, server).Handshake() }()
	clientErr = tls.Client(b, client).Handshake()
	a.Close()
	return <-done, clientErr
}

func TestNodeTLSPeerChecks(t *testing.T) {
	ca := mustCA(t, "eu")
	server := NodeTLS(ca, mustNode(t, ca, "eu", "n1"), "eu")
	nodeClient := NodeTLS(ca, mustNode(t, ca, "eu", "n2"), "eu")

	if serr, cerr := handshake(t, server, nodeClient); serr != nil || cerr != nil {
		t.Fatalf("two nodes of the region must connect: server %v, client %v", serr, cerr)
	}

	foreign := mustCA(t, "eu")
	cases := []struct {
		name   string
		client *tls.Config
		want   string
	}{
		{"node of another CA", NodeTLS(foreign, mustNode(t, foreign, "eu", "n9"), "eu"), "unknown authority"},
		{"node of another region, same CA", NodeTLS(ca, mustNode(t, ca, "us", "n9"), "us"), "not a node of this region"},
		// The next two clients skip verifying the server, so the refusal
		// must come from the server's own check of the client.
		{"client-only cert without node URI (an agent)", &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			Certificates: []tls.Certificate{issueOther(t, ca, "outpost://eu/agent/a1", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})}}, "incompatible key usage"},
		{"agent cert with both usages but no node URI", &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			Certificates: []tls.Certificate{issueOther(t, ca, "outpost://eu/agent/a1", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})}}, "not a node of this region"},
		{"no client certificate", &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}, "didn't provide a certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			serr, cerr := handshake(t, server, tc.client)
			if serr == nil {
				t.Fatal("server accepted the peer")
			}
			// Whichever side verified first names the reason.
			both := serr.Error() + " | " + fmtErr(cerr)
			if !strings.Contains(both, tc.want) {
				t.Fatalf("handshake errors %q lack %q", both, tc.want)
			}
		})
	}

	t.Run("client refuses a server that is not a region node", func(t *testing.T) {
		rogue := &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert,
			Certificates: []tls.Certificate{issueOther(t, ca, "outpost://eu/agent/a1", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})}}
		_, cerr := handshake(t, rogue, nodeClient)
		if !errors.Is(cerr, ErrNotRegionNode) && (cerr == nil || !strings.Contains(cerr.Error(), "not a node of this region")) {
			t.Fatalf("client error = %v, want ErrNotRegionNode", cerr)
		}
	})
}

func TestCASaveLoad(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t, "eu")
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "ca.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode %v (err %v), want 0600", st.Mode().Perm(), err)
	}
	got, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Cert.Raw, ca.Cert.Raw) {
		t.Fatal("loaded CA differs")
	}
	other := t.TempDir()
	if err := mustCA(t, "eu").Save(other); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(other, "ca.key")); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key accepted: %v", err)
	}
	if _, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "missing.key")); err == nil {
		t.Fatal("missing key accepted")
	}
}

// TestCASaveWrapped: SaveWrapped, the way nodes and `outpost ca create`
// write the CA, creates its directory 0700 and ca.key 0600, never puts the
// key in the file in the clear, and LoadWrappedCA reads back the same CA
// with the master key only: another key, or reading the file as an
// unwrapped key, is refused.
func TestCASaveWrapped(t *testing.T) {
	master := func() *keys.Protector {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			t.Fatal(err)
		}
		p, err := keys.New(k, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	kp := master()
	dir := filepath.Join(t.TempDir(), "ca")
	ca := mustCA(t, "eu")
	if err := ca.SaveWrapped(kp, dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{".": 0o700, "ca.key": 0o600, "ca.crt": 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (err %v), want %v", name, st.Mode().Perm(), err, want)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(ca.Key)
	if strings.Contains(string(raw), "PRIVATE KEY") || strings.Contains(string(raw), string(der)) || !keys.IsWrapped(raw) {
		t.Fatal("ca.key holds the CA key in the clear")
	}
	crt, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	got, err := LoadWrappedCA(kp, crt, key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Cert.Raw, ca.Cert.Raw) || !got.Key.Equal(ca.Key) {
		t.Fatal("the CA read back differs from the one saved")
	}
	if _, err := LoadWrappedCA(master(), crt, key); err == nil {
		t.Fatal("ca.key opened with another master key")
	}
	if _, err := LoadCA(crt, key); err == nil {
		t.Fatal("a wrapped ca.key was read as an unwrapped key")
	}
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestIdentityRenewal(t *testing.T) {
	ca := mustCA(t, "eu")
	id, err := NewIdentity(ca, "eu", "n1", []net.IP{net.IPv4(127, 0, 0, 1)}, nil, 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first := id.Certificate().Leaf
	if renewed, err := id.RenewIfDue(time.Now()); err != nil || renewed {
		t.Fatalf("renewed a fresh certificate (renewed %v, err %v)", renewed, err)
	}
	// Two hours in, less than a third of three hours is left.
	renewed, err := id.RenewIfDue(time.Now().Add(2*time.Hour + time.Minute))
	if err != nil || !renewed {
		t.Fatalf("did not renew a certificate with under a third left (renewed %v, err %v)", renewed, err)
	}
	second := id.Certificate().Leaf
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 || second.NotAfter.Before(first.NotAfter) {
		t.Fatal("renewal did not issue a new certificate")
	}
	// The TLS config serves the renewed certificate to new handshakes.
	peer := NodeTLS(ca, mustNode(t, ca, "eu", "n2"), "eu")
	var served *x509.Certificate
	peer.VerifyConnection = func(cs tls.ConnectionState) error {
		served = cs.PeerCertificates[0]
		return nil
	}
	if serr, cerr := handshake(t, id.TLS(), peer); serr != nil || cerr != nil {
		t.Fatalf("handshake with the renewed identity: %v / %v", serr, cerr)
	}
	if served == nil || served.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Fatal("the TLS config did not serve the renewed certificate")
	}
	if got, err := NodeID(second, "eu"); err != nil || got != "n1" {
		t.Fatalf("NodeID = %q, %v", got, err)
	}
}
