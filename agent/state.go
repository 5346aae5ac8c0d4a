package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/outpost-mesh/outpost/internal/syncfile"
)

// Files in the state directory.
const (
	keyFile = "agent.key" // the private key, 0600; it never leaves the host
	// nextKeyFile is the key a renewal in progress asks a certificate
	// for (0600): kept until that certificate is saved, so a renewal
	// whose answer was lost is asked again for the same key.
	nextKeyFile = "agent.key.next"
	certFile    = "agent.crt" // the current client certificate
	caFile      = "ca.crt"    // the region CA
	stateFile   = "state.json"
)

// maxApplied is how many applied dispatch ids the agent remembers to
// recognise a redelivery.
const maxApplied = 256

// State is what the agent keeps across restarts.
type State struct {
	AgentID     string   `json:"agent_id"`
	Region      string   `json:"region"`
	Tenant      string   `json:"tenant"`
	Servers     []string `json:"servers"`
	InstanceUID string   `json:"instance_uid"` // hex of 16 random bytes
	// HighestToken is the highest fencing token of any dispatch seen; a
	// dispatch under a lower one is refused.
	HighestToken uint64 `json:"highest_token"`
	// LastIndex is the Raft index of the newest dispatch applied.
	LastIndex uint64   `json:"last_index"`
	Applied   []string `json:"applied,omitempty"` // recent dispatch ids, newest last
	// Config is the applied config, and the status last reported.
	Config       json.RawMessage `json:"config,omitempty"`
	ConfigHash   []byte          `json:"config_hash,omitempty"`
	ConfigStatus string          `json:"config_status,omitempty"` // applied | failed
	ConfigError  string          `json:"config_error,omitempty"`
}

// store is the agent's state directory.
type store struct{ dir string }

func openStore(dir string) (store, error) {
	if dir == "" {
		return store{}, errors.New("--state is required: the directory where the agent keeps its key, certificate and state")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return store{}, fmt.Errorf("state directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return store{}, fmt.Errorf("state directory: %w", err)
	}
	return store{dir: dir}, nil
}

func (s store) path(name string) string { return filepath.Join(s.dir, name) }

// key returns the agent's private key, creating it (0600) on first use.
// A key that exists with a looser mode is refused: someone else may have
// read it.
func (s store) key() (*ecdsa.PrivateKey, error) { return s.loadKey(keyFile) }

// nextKey returns the key of the renewal in progress, creating it (0600).
func (s store) nextKey() (*ecdsa.PrivateKey, error) { return s.loadKey(nextKeyFile) }

// promoteNextKey makes the renewal's key the agent's key, once the
// certificate for it is saved.
func (s store) promoteNextKey() error {
	if err := os.Rename(s.path(nextKeyFile), s.path(keyFile)); err != nil {
		return err
	}
	return syncfile.SyncDir(s.dir)
}

// reconcile finishes a renewal a crash interrupted between saving the
// new certificate and promoting its key.
func (s store) reconcile() error {
	certPEM, err := os.ReadFile(s.path(certFile))
	if err != nil {
		return nil // not enrolled yet
	}
	if _, err := os.Stat(s.path(nextKeyFile)); err != nil {
		return nil
	}
	next, err := s.nextKey()
	if err != nil {
		return err
	}
	if _, err := certWithKey(certPEM, next); err != nil {
		return nil // the certificate is still for the current key
	}
	return s.promoteNextKey()
}

func (s store) loadKey(name string) (*ecdsa.PrivateKey, error) {
	p := s.path(name)
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := syncfile.Replace(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("writing the agent key: %w", err)
		}
		return k, nil
	case err != nil:
		return nil, err
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("%s is readable by others (mode %v): remove it and enroll again with a new token, or chmod 600 it if you are sure nobody read it", p, fi.Mode().Perm())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM key", p)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an ECDSA key", p)
	}
	return ek, nil
}

// certificate returns the stored certificate with key, or nil when the
// agent has not enrolled.
func (s store) certificate(key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	b, err := os.ReadFile(s.path(certFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return certWithKey(b, key)
}

func certWithKey(certPEM []byte, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("the certificate is not for this agent's key")
	}
	return &tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: key, Leaf: leaf}, nil
}

func (s store) saveCert(certPEM []byte) error {
	return syncfile.Replace(s.path(certFile), certPEM, 0o644)
}

func (s store) ca() (*x509.CertPool, *x509.Certificate, error) {
	b, err := os.ReadFile(s.path(caFile))
	if err != nil {
		return nil, nil, err
	}
	return parseCA(b)
}

func parseCA(b []byte) (*x509.CertPool, *x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no PEM CA certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	if !c.IsCA {
		return nil, nil, errors.New("the certificate is not a CA")
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pool, c, nil
}

func (s store) saveCA(b []byte) error { return syncfile.Replace(s.path(caFile), b, 0o644) }

// load returns the state (zero when none was saved).
func (s store) load() (State, error) {
	var st State
	b, err := os.ReadFile(s.path(stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w (restore it from a backup, or remove the state directory and enroll again)", s.path(stateFile), err)
	}
	return st, nil
}

// save writes the state durably (fsync, rename, fsync dir) before the
// agent acts on it: a fencing token seen is never forgotten.
func (s store) save(st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return syncfile.Replace(s.path(stateFile), b, 0o600)
}

func (st *State) noteApplied(id string) {
	if slices.Contains(st.Applied, id) {
		return
	}
	st.Applied = append(st.Applied, id)
	if len(st.Applied) > maxApplied {
		st.Applied = st.Applied[len(st.Applied)-maxApplied:]
	}
}
