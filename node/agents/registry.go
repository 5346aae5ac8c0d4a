// Package agents is the node's registry of agents: bootstrap tokens (single
// use, short-lived, stored only as a SHA-256 hash, revocable), the agents
// they enrolled (tenant, host, version, certificate fingerprint and
// expiry, revocation), and the raft batches that change them. The API
// wraps each batch with its audit record.
//
// Single use is decided in the FSM, not by a read: redeeming a token puts
// its id into the redeemed bucket with put-if-absent, and revoking a token
// puts it there too, so of a redemption and a revocation (or two
// redemptions) racing on different nodes exactly one wins.
package agents

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Buckets (region-level, like the identity records: they index agents of
// every tenant by token and certificate, and each record names its tenant).
var (
	BucketBootstrap    = []byte("agent_bootstrap")    // token id -> BootstrapToken
	BucketRedeemed     = []byte("agent_redeemed")     // token id -> agent id, or "revoked"
	BucketAgents       = []byte("agent_records")      // agent id -> Agent
	BucketFingerprints = []byte("agent_fingerprints") // certificate fingerprint -> agent id
)

// Revoked is the redeemed-bucket value of a token revoked before use.
const Revoked = "revoked"

// Token lifetimes a bootstrap token may have.
const (
	DefaultTokenTTL = 15 * time.Minute
	MaxTokenTTL     = 24 * time.Hour
)

// Bootstrap tokens look like opb_<id>_<secret> (the API tokens' shape):
// the id finds the record; the SHA-256 of the whole token is compared
// with the stored one.
const tokenPrefix = "opb_"

// Errors a redemption can meet; each says what to do next.
var (
	ErrBadToken     = errors.New("not a bootstrap token (they look like opb_…; create one with `outpostctl tokens create --tenant T`)")
	ErrUnknownToken = errors.New("unknown bootstrap token (create a new one with `outpostctl tokens create --tenant T`)")
	ErrTokenExpired = errors.New("bootstrap token expired (create a new one with `outpostctl tokens create --tenant T`)")
	ErrTokenRevoked = errors.New("bootstrap token was revoked (create a new one with `outpostctl tokens create --tenant T`)")
	ErrTokenUsed    = errors.New("bootstrap token was already redeemed; a token enrolls one agent (create a new one, or revoke that agent if it was not yours)")
)

// BootstrapToken is the stored record of a bootstrap token.
type BootstrapToken struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"` // tenant id
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	CreatedBy string    `json:"created_by"`
	Hash      string    `json:"hash"` // hex SHA-256 of the whole token
}

// NewToken returns a fresh bootstrap token and its id.
func NewToken() (token, id string) { return auth.NewPrefixedToken(tokenPrefix) }

// TokenID extracts the id of a well-formed bootstrap token.
func TokenID(token string) (string, error) {
	id, sec, ok := auth.PrefixedTokenID(tokenPrefix, token)
	if !ok || len(sec) != 43 {
		return "", ErrBadToken
	}
	return id, nil
}

// HashToken is the stored form of a token (hex SHA-256, as API tokens').
func HashToken(token string) string { return string(auth.TokenHash(token)) }

// Matches reports whether token is this record's token (constant time).
func (b BootstrapToken) Matches(token string) bool {
	return b.Hash != "" && subtle.ConstantTimeCompare([]byte(HashToken(token)), []byte(b.Hash)) == 1
}

// Agent is an enrolled agent. The node knows it by certificate
// fingerprint; InstanceUID is what the agent says of itself, kept for
// display only.
type Agent struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"` // tenant id
	Host        string    `json:"host"`
	Version     string    `json:"version"`
	InstanceUID string    `json:"instance_uid,omitempty"`
	TokenID     string    `json:"token_id"`
	Enrolled    time.Time `json:"enrolled"`
	// Fingerprint is the SHA-256 of the current certificate; a renewal
	// replaces it. Older fingerprints stay mapped to the agent so that
	// a retired certificate is recognised (and refused) as such.
	Fingerprint string    `json:"fingerprint"`
	CertExpires time.Time `json:"cert_expires"`
	// KeyHash names the current certificate's key (pki.KeyHash) and Cert
	// is that certificate (PEM): an agent that lost the answer to its
	// enrollment or renewal asks again with the same key and gets Cert.
	KeyHash string `json:"key_hash,omitempty"`
	Cert    string `json:"cert,omitempty"`
	// EnrolledFrom is the address the enrollment came from.
	EnrolledFrom string    `json:"enrolled_from,omitempty"`
	Revoked      bool      `json:"revoked,omitempty"`
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	RevokedBy    string    `json:"revoked_by,omitempty"`
}

// NewAgentID returns a fresh agent id.
func NewAgentID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "ag-" + hex.EncodeToString(b)
}

// Limits on what an agent says about itself at enrollment.
const (
	MaxHostLen    = 253
	MaxVersionLen = 64
)

var printable = regexp.MustCompile(`^[\x21-\x7e]*$`)

// ValidateSelf checks the host and version an agent reports.
func ValidateSelf(host, version string) error {
	switch {
	case host == "" || len(host) > MaxHostLen || !printable.MatchString(host):
		return fmt.Errorf("host %q: 1..%d printable characters without spaces", host, MaxHostLen)
	case len(version) > MaxVersionLen || !printable.MatchString(version):
		return fmt.Errorf("version %q: up to %d printable characters without spaces", version, MaxVersionLen)
	}
	return nil
}

func op(kind raft.KVOp, bucket []byte, key string, val []byte) raft.BatchOp {
	return raft.BatchOp{KV: raft.KVCommand{Op: kind, Bucket: bucket, Key: []byte(key), Value: val}}
}

func jsonOp(kind raft.KVOp, bucket []byte, key string, v any) raft.BatchOp {
	b, _ := json.Marshal(v)
	return op(kind, bucket, key, b)
}

// OpsCreateToken stores a new token record (its hash redacted from the
// audit record).
func OpsCreateToken(t BootstrapToken) raft.Batch {
	o := jsonOp(raft.KVPutIfAbsent, BucketBootstrap, t.ID, t)
	o.Redact = true
	return raft.Batch{o}
}

// OpsRevokeToken marks an unredeemed token used up; it fails (result "0")
// when the token was redeemed or revoked first.
func OpsRevokeToken(id string) raft.Batch {
	return raft.Batch{op(raft.KVPutIfAbsent, BucketRedeemed, id, []byte(Revoked))}
}

// OpsEnroll redeems tokenID for a and registers it; it fails (result
// "0") when the token was redeemed or revoked first.
func OpsEnroll(tokenID string, a Agent) raft.Batch {
	return raft.Batch{
		op(raft.KVPutIfAbsent, BucketRedeemed, tokenID, []byte(a.ID)),
		jsonOp(raft.KVPutIfAbsent, BucketAgents, a.ID, a),
		op(raft.KVPutIfAbsent, BucketFingerprints, a.Fingerprint, []byte(a.ID)),
	}
}

// Reader reads the registry in a storage transaction.
type Reader struct{ Tx *storage.Tx }

func get[T any](tx *storage.Tx, bucket []byte, key string) (T, bool) {
	var v T
	b := tx.Get(bucket, []byte(key))
	if b == nil || json.Unmarshal(b, &v) != nil {
		return v, false
	}
	return v, true
}

// Token returns a token record.
func (r Reader) Token(id string) (BootstrapToken, bool) {
	return get[BootstrapToken](r.Tx, BucketBootstrap, id)
}

// Redeemed returns what used token id up: an agent id, Revoked, or "".
func (r Reader) Redeemed(id string) string { return string(r.Tx.Get(BucketRedeemed, []byte(id))) }

// Agent returns an agent record.
func (r Reader) Agent(id string) (Agent, bool) { return get[Agent](r.Tx, BucketAgents, id) }

// ByFingerprint returns the agent a certificate fingerprint belongs to.
func (r Reader) ByFingerprint(fp string) (Agent, bool) {
	id := r.Tx.Get(BucketFingerprints, []byte(fp))
	if id == nil {
		return Agent{}, false
	}
	return r.Agent(string(id))
}

// Agents lists the agents of tenantID ("" for every tenant), by id.
func (r Reader) Agents(tenantID string) []Agent {
	var out []Agent
	r.Tx.ForEach(BucketAgents, nil, func(_, v []byte) bool {
		var a Agent
		if json.Unmarshal(v, &a) == nil && (tenantID == "" || a.Tenant == tenantID) {
			out = append(out, a)
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Tokens lists the tokens of tenantID ("" for every tenant), by creation.
func (r Reader) Tokens(tenantID string) []BootstrapToken {
	var out []BootstrapToken
	r.Tx.ForEach(BucketBootstrap, nil, func(_, v []byte) bool {
		var t BootstrapToken
		if json.Unmarshal(v, &t) == nil && (tenantID == "" || t.Tenant == tenantID) {
			out = append(out, t)
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Redeemable checks token against the registry at now: it must parse,
// exist, match its hash, be unexpired and unused. The FSM decides the
// race between two redemptions or a redemption and a revocation.
func (r Reader) Redeemable(token string, now time.Time) (BootstrapToken, error) {
	id, err := TokenID(token)
	if err != nil {
		return BootstrapToken{}, err
	}
	t, ok := r.Token(id)
	if !ok || !t.Matches(token) {
		return BootstrapToken{}, ErrUnknownToken
	}
	switch used := r.Redeemed(id); {
	case used == Revoked:
		return t, ErrTokenRevoked
	case used != "":
		return t, ErrTokenUsed
	case !now.Before(t.Expires):
		return t, ErrTokenExpired
	}
	return t, nil
}
