// Package peering holds the region's federation configuration in the FSM:
// peers (another region's name, federation address and pinned CA, with
// the shared secret sealed by the KeyProtector in a bucket of its own)
// and tenant links (a local tenant mapped to a link id shared with one
// peer). Only link ids cross the wire; the link's tenant never does.
package peering

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base32"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/federation"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Buckets of the state store.
var (
	BucketPeers   = []byte("fed_peers")   // peer name -> Peer
	BucketSecrets = []byte("fed_secrets") // peer name -> shared secret sealed by the KeyProtector
	BucketLinks   = []byte("fed_links")   // "PEER/LINK" -> Link
)

// Peer is a configured peer region.
type Peer struct {
	Name      string    `json:"name"`
	Addr      string    `json:"addr"`
	CAPEM     string    `json:"ca_pem"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

// Link maps a local tenant to a link id shared with one peer.
type Link struct {
	ID        string    `json:"id"`
	Peer      string    `json:"peer"`
	Tenant    string    `json:"tenant"` // local tenant id; never sent to a peer
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	// PeerCreated is the creation time of the peer record the link was
	// made against: a link outlives its peer's removal only as an inert
	// record (a link created while its peer was being removed, or one a
	// removal left behind), and a peer added again under the same name
	// does not bring it back.
	PeerCreated time.Time `json:"peer_created"`
}

// ErrInvalid marks a peer or link the caller must correct.
var ErrInvalid = errors.New("invalid")

// Name is the form of a peer name: a region name.
var Name = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// LinkID is the form of a link id.
var LinkID = regexp.MustCompile(`^lnk-[a-z2-7]{8,40}$`)

// NewLinkID returns a fresh random link id.
func NewLinkID() string {
	b := make([]byte, 15)
	_, _ = rand.Read(b)
	return "lnk-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// ParseCA returns the one CA certificate in pemBytes.
func ParseCA(pemBytes []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: ca: not a PEM certificate (give the peer region's ca.pem)", ErrInvalid)
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, fmt.Errorf("%w: ca: more than one PEM block; give the peer region's CA certificate alone", ErrInvalid)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: ca: %v", ErrInvalid, err)
	}
	if !c.IsCA {
		return nil, fmt.Errorf("%w: ca: the certificate is not a CA", ErrInvalid)
	}
	return c, nil
}

// Validate checks p (its CA parsed) and a secret's length.
func (p Peer) Validate(self string, secretLen, minSecret int) error {
	switch {
	case !Name.MatchString(p.Name):
		return fmt.Errorf("%w: peer name %q: the peer region's name (lower-case letters, digits, '-')", ErrInvalid, p.Name)
	case p.Name == self:
		return fmt.Errorf("%w: peer name %q is this region's own name", ErrInvalid, p.Name)
	case secretLen < minSecret:
		return fmt.Errorf("%w: the shared secret is %d bytes; use at least %d (e.g. `openssl rand -hex 32`)", ErrInvalid, secretLen, minSecret)
	case secretLen > 4096:
		return fmt.Errorf("%w: the shared secret is over 4096 bytes", ErrInvalid)
	}
	addrs := federation.Peer{Addr: p.Addr}.Addrs()
	if len(addrs) == 0 || len(addrs) > federation.MaxAddrs || len(p.Addr) > 1024 {
		return fmt.Errorf("%w: addr %q: give HOST:PORT of the peer's federation endpoint, or up to %d of them comma-separated (its nodes)", ErrInvalid, p.Addr, federation.MaxAddrs)
	}
	for _, a := range addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return fmt.Errorf("%w: addr %q: %q is not HOST:PORT", ErrInvalid, p.Addr, a)
		}
	}
	_, err := ParseCA([]byte(p.CAPEM))
	return err
}

func jsonOp(kind raft.KVOp, bucket []byte, key string, v any) raft.BatchOp {
	b, _ := json.Marshal(v)
	return raft.BatchOp{KV: raft.KVCommand{Op: kind, Bucket: bucket, Key: []byte(key), Value: b}}
}

// OpsCreatePeer adds p with its sealed secret, only if no peer of that
// name exists (the result is "0" then).
func OpsCreatePeer(p Peer, sealed []byte) raft.Batch {
	return raft.Batch{
		jsonOp(raft.KVPutIfAbsent, BucketPeers, p.Name, p),
		{KV: raft.KVCommand{Op: raft.KVPut, Bucket: BucketSecrets, Key: []byte(p.Name), Value: sealed}, Redact: true},
	}
}

// OpsDeletePeer removes a peer, its secret and its links (the caller
// keeps a batch under raft.MaxBatchOps: links left over are inert once
// the peer is gone, and OpsDeleteLinks removes them after).
func OpsDeletePeer(name string, links []Link) raft.Batch {
	b := raft.Batch{
		{KV: raft.KVCommand{Op: raft.KVDelete, Bucket: BucketPeers, Key: []byte(name)}},
		{KV: raft.KVCommand{Op: raft.KVDelete, Bucket: BucketSecrets, Key: []byte(name)}},
	}
	for _, l := range links {
		b = append(b, raft.BatchOp{KV: raft.KVCommand{Op: raft.KVDelete, Bucket: BucketLinks, Key: []byte(l.Peer + "/" + l.ID)}})
	}
	return b
}

// OpsCreateLink adds l, only if that peer has no link of that id and the
// peer's record is still peerRaw (not removed or replaced since it was
// read); the result is "0" otherwise.
func OpsCreateLink(l Link, peerRaw []byte) raft.Batch {
	return raft.Batch{
		{KV: raft.KVCommand{Op: raft.KVExpect, Bucket: BucketPeers, Key: []byte(l.Peer), Value: peerRaw}},
		jsonOp(raft.KVPutIfAbsent, BucketLinks, l.Peer+"/"+l.ID, l),
	}
}

// PeerRaw returns a peer's stored record bytes (for OpsCreateLink).
func (r Reader) PeerRaw(name string) []byte {
	return append([]byte(nil), r.Tx.Get(BucketPeers, []byte(name))...)
}

// OpsDeleteLinks removes links.
func OpsDeleteLinks(links []Link) raft.Batch {
	var b raft.Batch
	for _, l := range links {
		b = append(b, raft.BatchOp{KV: raft.KVCommand{Op: raft.KVDelete, Bucket: BucketLinks, Key: []byte(l.Peer + "/" + l.ID)}})
	}
	return b
}

// OpsDeleteLink removes l.
func OpsDeleteLink(l Link) raft.Batch {
	return raft.Batch{{KV: raft.KVCommand{Op: raft.KVDelete, Bucket: BucketLinks, Key: []byte(l.Peer + "/" + l.ID)}}}
}

// Reader reads the configuration in a read transaction.
type Reader struct{ Tx *storage.Tx }

// Peer returns a peer and its sealed secret.
func (r Reader) Peer(name string) (Peer, []byte, bool) {
	v := r.Tx.Get(BucketPeers, []byte(name))
	var p Peer
	if v == nil || json.Unmarshal(v, &p) != nil {
		return Peer{}, nil, false
	}
	return p, append([]byte(nil), r.Tx.Get(BucketSecrets, []byte(name))...), true
}

// Peers lists the peers by name.
func (r Reader) Peers() []Peer {
	var out []Peer
	r.Tx.ForEach(BucketPeers, nil, func(_, v []byte) bool {
		var p Peer
		if json.Unmarshal(v, &p) == nil {
			out = append(out, p)
		}
		return true
	})
	return out
}

// Secrets returns every stored sealed secret by peer name (key rotation).
func (r Reader) Secrets() map[string][]byte {
	out := map[string][]byte{}
	r.Tx.ForEach(BucketSecrets, nil, func(k, v []byte) bool {
		out[string(k)] = append([]byte(nil), v...)
		return true
	})
	return out
}

// Link returns peer's link id, if it is live (its peer is the one it was
// made against).
func (r Reader) Link(peer, id string) (Link, bool) {
	v := r.Tx.Get(BucketLinks, []byte(peer+"/"+id))
	var l Link
	if v == nil || json.Unmarshal(v, &l) != nil || !r.live(l) {
		return Link{}, false
	}
	return l, true
}

// live reports whether l's peer exists and is the one l was made against.
func (r Reader) live(l Link) bool {
	p, _, ok := r.Peer(l.Peer)
	return ok && p.Created.Equal(l.PeerCreated)
}

// Links lists the links, of one tenant when tenantID is not "", and of
// one peer when peer is not "".
func (r Reader) Links(tenantID, peer string) []Link {
	var out []Link
	var prefix []byte
	if peer != "" {
		prefix = []byte(peer + "/")
	}
	r.Tx.ForEach(BucketLinks, prefix, func(_, v []byte) bool {
		var l Link
		if json.Unmarshal(v, &l) == nil && (tenantID == "" || l.Tenant == tenantID) && r.live(l) {
			out = append(out, l)
		}
		return true
	})
	return out
}
