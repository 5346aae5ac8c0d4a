package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/outpost-mesh/outpost/storage"
)

var (
	bucketRecords = []byte("audit")
	bucketHashes  = []byte("audit_hashes")
	keySize       = []byte("audit_size")
)

// Meta is what the proposer of an audited change says about it; the FSM
// adds the sequence number and the before/after values.
type Meta struct {
	Time   time.Time `json:"time"`
	Node   string    `json:"node"`
	Actor  string    `json:"actor"`
	Tenant string    `json:"tenant,omitempty"`
	Action string    `json:"action"`
	Entity string    `json:"entity"`
	// Redact replaces before/after with their SHA-256 (secrets, hashes).
	Redact bool `json:"redact,omitempty"`
	// Detail is free-form context for non-KV changes.
	Detail json.RawMessage `json:"detail,omitempty"`
}

// Record is one audit log entry as stored and hashed.
type Record struct {
	Seq    int64           `json:"seq"`
	Index  uint64          `json:"raft_index"`
	Time   time.Time       `json:"time"`
	Node   string          `json:"node"`
	Actor  string          `json:"actor"`
	Tenant string          `json:"tenant,omitempty"`
	Action string          `json:"action"`
	Entity string          `json:"entity"`
	Before *Value          `json:"before,omitempty"`
	After  *Value          `json:"after,omitempty"`
	Detail json.RawMessage `json:"detail,omitempty"`
}

// Value is a before/after value: text when it is UTF-8, else base64, or
// only its digest when redacted.
type Value struct {
	Text   *string `json:"text,omitempty"`
	Base64 []byte  `json:"base64,omitempty"`
	SHA256 string  `json:"sha256,omitempty"`
}

func value(b []byte, redact bool) *Value {
	if b == nil {
		return nil
	}
	if redact {
		return &Value{SHA256: digest(b)}
	}
	if utf8.Valid(b) {
		s := string(b)
		return &Value{Text: &s}
	}
	return &Value{Base64: b}
}

// EncodeMeta validates and encodes audit metadata for raft.Audited.
func EncodeMeta(m Meta) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

func (m Meta) validate() error {
	switch {
	case m.Time.IsZero():
		return errors.New("audit: time is required")
	case m.Node == "" || m.Actor == "" || m.Action == "" || m.Entity == "":
		return errors.New("audit: node, actor, action and entity are required")
	case len(m.Detail) > 0 && !json.Valid(m.Detail):
		return errors.New("audit: detail is not JSON")
	}
	return nil
}

func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("audit: bad metadata: %w", err)
	}
	return m, m.validate()
}

// Append is the raft.Auditor: with a nil tx it validates meta; with a
// transaction it appends the record and its tree hashes. Deterministic:
// every node stores identical bytes.
func Append(tx *storage.Tx, index uint64, meta, before, after []byte) error {
	m, err := decodeMeta(meta)
	if err != nil || tx == nil {
		return err
	}
	n := size(tx)
	rec := Record{Seq: n, Index: index, Time: m.Time.UTC(), Node: m.Node, Actor: m.Actor, Tenant: m.Tenant,
		Action: m.Action, Entity: m.Entity, Before: value(before, m.Redact), After: value(after, m.Redact), Detail: m.Detail}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	hashes, err := tlog.StoredHashes(n, data, txHashReader{tx})
	if err != nil {
		return fmt.Errorf("audit: tree hashes: %w", err)
	}
	base := tlog.StoredHashCount(n)
	for i, h := range hashes {
		if err := tx.Put(bucketHashes, be(base+int64(i)), h[:]); err != nil {
			return err
		}
	}
	if err := tx.Put(bucketRecords, be(n), data); err != nil {
		return err
	}
	return tx.Put(bucketHashes, keySize, be(n+1))
}

func size(tx *storage.Tx) int64 {
	v := tx.Get(bucketHashes, keySize)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// txHashReader reads stored tree hashes from a transaction.
type txHashReader struct{ tx *storage.Tx }

func (r txHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		v := r.tx.Get(bucketHashes, be(idx))
		if len(v) != tlog.HashSize {
			return nil, fmt.Errorf("audit: stored hash %d missing", idx)
		}
		copy(out[i][:], v)
	}
	return out, nil
}

func be(n int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(n))
	return b
}
