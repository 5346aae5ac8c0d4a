package auditlog

import (
	"crypto/ecdsa"
	"encoding/binary"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/storage"
)

// Viewer is the read side of the state store.
type Viewer interface {
	View(fn func(*storage.Tx) error) error
}

// Log reads the audit log and signs checkpoints of it. It cannot write:
// records are only appended by the FSM through Append.
type Log struct {
	store  Viewer
	st     stream
	origin string
	skey   string
	vkey   string
}

// NewLog opens the read side of region's audit log.
func NewLog(store Viewer, region string, caKey *ecdsa.PrivateKey) (*Log, error) {
	return newLog(store, region, false, caKey)
}

// NewProviderLog opens the read side of the region's provider stream: the
// records of region admins reaching into tenant data (break-glass). It has
// its own origin and its own key, named like the origin.
func NewProviderLog(store Viewer, region string, caKey *ecdsa.PrivateKey) (*Log, error) {
	return newLog(store, region, true, caKey)
}

func newLog(store Viewer, region string, provider bool, caKey *ecdsa.PrivateKey) (*Log, error) {
	skey, vkey, err := audit.DeriveKey(region, provider, caKey)
	if err != nil {
		return nil, fmt.Errorf("derive audit key: %w", err)
	}
	l := &Log{store: store, st: regionStream, origin: audit.Origin(region), skey: skey, vkey: vkey}
	if provider {
		l.st, l.origin = providerStream, audit.ProviderOrigin(region)
	}
	return l, nil
}

// VerifierKey is the region's public audit key, in signed-note form.
func (l *Log) VerifierKey() string { return l.vkey }

// Entries returns up to limit records from seq from, never past size n
// (pass the size of the checkpoint being verified).
func (l *Log) Entries(from, n int64, limit int) ([]audit.Entry, error) {
	var out []audit.Entry
	err := l.store.View(func(tx *storage.Tx) error {
		if sz := l.st.len(tx); n > sz {
			n = sz
		}
		r := txHashReader{tx, l.st}
		for i := from; i < n && len(out) < limit; i++ {
			data := tx.Get(l.st.records, be(i))
			hs, err := r.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
			if err != nil {
				return err
			}
			out = append(out, audit.Entry{Seq: i, Data: append([]byte(nil), data...), LeafHash: hs[0]})
		}
		return nil
	})
	return out, err
}

// TenantEntries returns up to limit records of tenant from seq from, never
// past size n, from the tenant index: the cost is the tenant's records,
// not the log's.
func (l *Log) TenantEntries(tenant string, from, n int64, limit int) ([]audit.Entry, error) {
	var out []audit.Entry
	err := l.store.View(func(tx *storage.Tx) error {
		n = min(n, l.st.len(tx))
		indexed := min(l.st.indexedLen(tx), n)
		r := txHashReader{tx, l.st}
		var err error
		add := func(i int64, data []byte) bool {
			var hs []tlog.Hash
			if hs, err = r.ReadHashes([]int64{tlog.StoredHashIndex(0, i)}); err != nil {
				return false
			}
			out = append(out, audit.Entry{Seq: i, Data: append([]byte(nil), data...), LeafHash: hs[0]})
			return len(out) < limit
		}
		prefix := tenantPrefix(tenant)
		more := true
		tx.ForEachFrom(l.st.tenants, prefix, tenantKey(tenant, max(from, 0)), func(k, _ []byte) bool {
			i := int64(binary.BigEndian.Uint64(k[len(prefix):]))
			if i >= indexed {
				return false
			}
			more = add(i, tx.Get(l.st.records, be(i)))
			return more
		})
		// Records past the index (a state file older than it, until its
		// next append) are scanned.
		for i := max(from, indexed); more && err == nil && i < n; i++ {
			if data := tx.Get(l.st.records, be(i)); recordTenant(data) == tenant {
				more = add(i, data)
			}
		}
		return err
	})
	return out, err
}

// Checkpoint signs the current tree head.
func (l *Log) Checkpoint() ([]byte, error) {
	var t tlog.Tree
	err := l.store.View(func(tx *storage.Tx) error {
		t.N = l.st.len(tx)
		var err error
		t.Hash, err = tlog.TreeHash(t.N, txHashReader{tx, l.st})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit tree: %w", err)
	}
	return audit.SignCheckpoint(l.skey, l.origin, t)
}

// Origin is the log's checkpoint origin line.
func (l *Log) Origin() string { return l.origin }

// Size is the number of records in the log now.
func (l *Log) Size() (int64, error) {
	var n int64
	err := l.store.View(func(tx *storage.Tx) error {
		n = l.st.len(tx)
		return nil
	})
	return n, err
}

// ProveRecord returns record seq and its inclusion proof in the tree of
// the first size records, from the stored hashes alone: no other record
// is read.
func (l *Log) ProveRecord(seq, size int64) (audit.InclusionProof, error) {
	p := audit.InclusionProof{Seq: seq, Size: size}
	err := l.store.View(func(tx *storage.Tx) error {
		if n := l.st.len(tx); size > n || size < 0 {
			return fmt.Errorf("%w: size %d, the log has %d records", audit.ErrBeyondLog, size, n)
		}
		if seq < 0 || seq >= size {
			return fmt.Errorf("%w: record %d in a tree of %d", audit.ErrNoRecord, seq, size)
		}
		var err error
		if p.Proof, err = tlog.ProveRecord(size, seq, txHashReader{tx, l.st}); err != nil {
			return err
		}
		p.Data = append([]byte(nil), tx.Get(l.st.records, be(seq))...)
		return nil
	})
	return p, err
}

// ProveTree returns the proof that the tree of size records extends the
// tree of its first old records.
func (l *Log) ProveTree(old, size int64) (audit.ConsistencyProof, error) {
	p := audit.ConsistencyProof{Old: old, Size: size}
	err := l.store.View(func(tx *storage.Tx) error {
		if n := l.st.len(tx); size > n || old < 0 || old > size {
			return fmt.Errorf("%w: sizes %d..%d, the log has %d records", audit.ErrBeyondLog, old, size, n)
		}
		var err error
		p.Proof, err = tlog.ProveTree(size, old, txHashReader{tx, l.st})
		return err
	})
	return p, err
}
