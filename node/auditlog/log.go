package auditlog

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/storage"
)

// stream is where one audit log lives in the state store.
type stream struct {
	records, hashes, size []byte
	// tenants indexes the records naming a tenant: key tenant id, 0x00,
	// big-endian seq; empty value. The index covers the records below
	// the count stored in hashes under indexed (older state files have
	// none: Append indexes their records at the next append, and readers
	// scan the records past the count).
	tenants, indexed []byte
}

var (
	regionStream = stream{records: []byte("audit"), hashes: []byte("audit_hashes"), size: []byte("audit_size"),
		tenants: []byte("audit_tenants"), indexed: []byte("audit_tenants_indexed")}
	providerStream = stream{records: []byte("paudit"), hashes: []byte("paudit_hashes"), size: []byte("paudit_size"),
		tenants: []byte("paudit_tenants"), indexed: []byte("paudit_tenants_indexed")}

	// names the tamper tests use
	bucketRecords = regionStream.records
	bucketHashes  = regionStream.hashes
	keySize       = regionStream.size
)

func streamOf(name string) stream {
	if name == audit.StreamProvider {
		return providerStream
	}
	return regionStream
}

// Append is the raft.Auditor: with a nil tx it validates meta; with a
// transaction it appends the record and its tree hashes. Deterministic:
// every node stores identical bytes.
func Append(tx *storage.Tx, index uint64, meta, before, after []byte) error {
	m, err := audit.DecodeMeta(meta)
	if err != nil || tx == nil {
		return err
	}
	st := streamOf(m.Stream)
	n := st.len(tx)
	rec := audit.Record{Seq: n, Index: index, Time: m.Time.UTC(), Node: m.Node, Actor: m.Actor, Tenant: m.Tenant,
		Action: m.Action, Entity: m.Entity, Before: audit.NewValue(before, m.Redact), After: audit.NewValue(after, m.Redact), Detail: m.Detail}
	if before != nil && bytes.Equal(before, after) {
		// A key/value change that changed nothing: a create that found
		// its key taken (the API answered with a conflict), or a rewrite
		// of the same value. The record stays, marked so.
		rec.Outcome = audit.OutcomeUnchanged
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	hashes, err := tlog.StoredHashes(n, data, txHashReader{tx, st})
	if err != nil {
		return fmt.Errorf("audit: tree hashes: %w", err)
	}
	base := tlog.StoredHashCount(n)
	for i, h := range hashes {
		if err := tx.Put(st.hashes, be(base+int64(i)), h[:]); err != nil {
			return err
		}
	}
	if err := tx.Put(st.records, be(n), data); err != nil {
		return err
	}
	if err := st.index(tx, n+1, rec.Tenant); err != nil {
		return err
	}
	return tx.Put(st.hashes, st.size, be(n+1))
}

// index brings the tenant index up to the first n records: only the new
// one, whose tenant is last, except once in a state file written before
// the index existed (those records' tenants are read back from them).
func (st stream) index(tx *storage.Tx, n int64, last string) error {
	for i := st.indexedLen(tx); i < n; i++ {
		t := last
		if i < n-1 {
			t = recordTenant(tx.Get(st.records, be(i)))
		}
		if t != "" {
			if err := tx.Put(st.tenants, tenantKey(t, i), []byte{}); err != nil {
				return err
			}
		}
	}
	return tx.Put(st.hashes, st.indexed, be(n))
}

// indexedLen is how many records from the start the tenant index covers.
func (st stream) indexedLen(tx *storage.Tx) int64 {
	v := tx.Get(st.hashes, st.indexed)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func tenantKey(tenant string, seq int64) []byte {
	return append(tenantPrefix(tenant), be(seq)...)
}

func tenantPrefix(tenant string) []byte { return append([]byte(tenant), 0) }

// recordTenant is the tenant a stored record names ("" for none).
func recordTenant(data []byte) string {
	var rec struct {
		Tenant string `json:"tenant"`
	}
	_ = json.Unmarshal(data, &rec)
	return rec.Tenant
}

// len is the number of records in the stream.
func (st stream) len(tx *storage.Tx) int64 {
	v := tx.Get(st.hashes, st.size)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// txHashReader reads stored tree hashes from a transaction.
type txHashReader struct {
	tx *storage.Tx
	st stream
}

func (r txHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		v := r.tx.Get(r.st.hashes, be(idx))
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
