package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/internal/meshid"
)

// serverTLS is the agent's TLS to a node: TLS 1.3, its certificate when
// it has one (cert may return nil before enrollment), and the node
// verified against the region CA as a node of region. The node id the
// handshake verified is written to *nodeID when not nil.
func serverTLS(pool *x509.CertPool, region string, cert func() *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := cert(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil // none yet: enrollment
		},
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection against the region CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyNode(cs.PeerCertificates, pool, region)
			return err
		},
	}
}

// verifyNode checks a node's chain against the CA pool and that the leaf
// names a node of region ("" accepts any region: enrollment, before the
// agent knows its region). It returns the node id.
func verifyNode(chain []*x509.Certificate, pool *x509.CertPool, region string) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("the node presented no certificate")
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return "", fmt.Errorf("the node's certificate is not from this region's CA: %w", err)
	}
	if region == "" {
		for _, u := range leaf.URIs {
			if u.Scheme == "outpost" {
				return meshid.NodeID(leaf, u.Host)
			}
		}
		return "", meshid.ErrNotRegionNode
	}
	return meshid.NodeID(leaf, region)
}

// pinnedTLS trusts, for enrollment, the CA in the node's chain whose key
// matches pin (sha256:HEX of its SubjectPublicKeyInfo). The CA found is
// written to *found.
func pinnedTLS(pin string, found **x509.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection against the pinned CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			for _, c := range cs.PeerCertificates[min(1, len(cs.PeerCertificates)):] {
				if c.IsCA && meshid.CAPin(c) == pin {
					pool := x509.NewCertPool()
					pool.AddCert(c)
					if _, err := verifyNode(cs.PeerCertificates, pool, ""); err != nil {
						return err
					}
					*found = c
					return nil
				}
			}
			return fmt.Errorf("the node's CA does not match --ca-pin %s (is this the right region?)", pin)
		},
	}
}

// csr makes a certificate request for key, without names: the CA writes
// the identity.
func csr(key *ecdsa.PrivateKey) (string, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{}}, key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// postJSON posts in to url and decodes a 2xx answer into out; any other
// answer becomes an error carrying the node's message and hint.
func postJSON(ctx context.Context, hc *http.Client, url string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return doJSON(ctx, hc, "POST", url, bytes.NewReader(b), out)
}

// statusError is a node's refusal.
type statusError struct {
	Code   int    // the HTTP status
	Reason string // the body's machine-readable code (agentwire.Code…), if any
	Msg    string
}

func (e *statusError) Error() string { return e.Msg }

func doJSON(ctx context.Context, hc *http.Client, method, url string, body io.Reader, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error, Hint, Code string } // a node's error body
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
			if e.Hint != "" {
				msg += " (" + e.Hint + ")"
			}
		}
		return &statusError{Code: resp.StatusCode, Reason: e.Code, Msg: fmt.Sprintf("%s %s: %d: %s", method, url, resp.StatusCode, msg)}
	}
	return json.Unmarshal(data, out)
}
