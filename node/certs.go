package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-mesh/outpost/node/keys"
	"github.com/outpost-mesh/outpost/node/pki"
)

// renewCertificate renews the node certificate in place when a third of
// its lifetime is left, checking hourly; new handshakes use the new one.
func (n *Node) renewCertificate(ctx context.Context, ident *pki.Identity) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			renewed, err := ident.RenewIfDue(now)
			switch {
			case err != nil:
				n.logger.Error("renewing the node certificate failed; retrying in an hour", "err", err, "expires", ident.Certificate().Leaf.NotAfter)
			case renewed:
				n.logger.Info("renewed the node certificate", "expires", ident.Certificate().Leaf.NotAfter)
			}
		}
	}
}

// certIPs are the IPs the node certificate is valid for.
func certIPs(cfg Config) []net.IP {
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, a := range []string{cfg.Raft.Advertise, cfg.Raft.Bind, cfg.Gossip.Advertise} {
		if h, _, err := net.SplitHostPort(a); err == nil {
			if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
				ips = append(ips, ip)
			}
		}
	}
	return ips
}

// loadCA loads the configured CA, or the one in the data dir, generating
// it there on first start.
func (n *Node) loadCA() (*pki.CA, error) {
	certFile, keyFile := n.cfg.TLS.CACert, n.cfg.TLS.CAKey
	if certFile == "" {
		dir := filepath.Join(n.cfg.DataDir, "ca")
		certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
		if _, err := os.Stat(certFile); err != nil {
			return n.generateCA(dir)
		}
	}
	// Files wrapped by the previous master key move to the current one
	// as the node starts: the local half of a key rotation.
	if changed, err := keys.RewrapFile(n.keys, keyFile, pki.PurposeCAKey); err != nil {
		return nil, fmt.Errorf("tls.ca_key: %w", err)
	} else if changed {
		n.logger.Info("re-wrapped the CA key under the current master key", "file", keyFile)
	}
	return pki.LoadWrappedCA(n.keys, certFile, keyFile)
}

func (n *Node) generateCA(dir string) (*pki.CA, error) {
	certFile := filepath.Join(dir, "ca.crt")
	ca, err := pki.NewCA(n.cfg.Region)
	if err != nil {
		return nil, err
	}
	if err := ca.SaveWrapped(n.keys, dir); err != nil {
		return nil, fmt.Errorf("save generated CA: %w", err)
	}
	n.logger.Warn("generated a new region CA; copy ca.crt and ca.key (wrapped by the master key) to every other node of this region (tls.ca_cert, tls.ca_key) before starting it",
		"ca_cert", certFile, "ca_pin", ca.Pin())
	return ca, nil
}
