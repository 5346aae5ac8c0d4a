package audit

import (
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// Entry is one record as a node stores it, with its stored leaf hash.
type Entry struct {
	Seq      int64     `json:"seq"`
	Data     []byte    `json:"data"` // the exact bytes hashed into the tree
	LeafHash tlog.Hash `json:"leaf_hash"`
}

// Page is one page of GET /api/v1/audit: entries from a sequence number,
// and the tree size they were read against.
type Page struct {
	Entries []Entry `json:"entries"`
	Size    int64   `json:"size"`
}

// ErrTampered means the log does not match its checkpoint or records.
var ErrTampered = errors.New("audit log tampered")

// Errors of a node asked for a proof.
var (
	// ErrNoRecord means no record has that sequence number in the tree asked.
	ErrNoRecord = errors.New("no such audit record")
	// ErrBeyondLog means a tree size beyond the log, or sizes out of order.
	ErrBeyondLog = errors.New("tree size beyond the log")
)

// Report is what Verify found.
type Report struct {
	Size      int64  `json:"size"`
	RootHash  string `json:"root_hash"`
	SinceSize int64  `json:"since_size,omitempty"`
}

// memHashes holds a whole tree's stored hashes in memory.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(m)) {
			return nil, fmt.Errorf("hash %d not in the tree", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

// buildTree recomputes every stored hash from the records' own bytes.
func buildTree(entries []Entry) (memHashes, error) {
	var m memHashes
	for i, e := range entries {
		hs, err := tlog.StoredHashesForRecordHash(int64(i), tlog.RecordHash(e.Data), m)
		if err != nil {
			return nil, err
		}
		m = append(m, hs...)
	}
	return m, nil
}

// Verify checks entries (the whole log from seq 0, as the node returned
// them) against a checkpoint signed with vkey. It names the first record
// whose bytes do not match the tree, then checks that the tree recomputed
// from the records is the signed one. Given since (an older signed
// checkpoint), it proves the log only grew since then.
func Verify(entries []Entry, checkpoint []byte, vkey, origin string, since []byte) (Report, error) {
	t, err := OpenCheckpoint(checkpoint, vkey, origin)
	if err != nil {
		return Report{}, err
	}
	if int64(len(entries)) < t.N {
		return Report{}, fmt.Errorf("%w: checkpoint covers %d records, the node returned %d", ErrTampered, t.N, len(entries))
	}
	entries = entries[:t.N]
	for i, e := range entries {
		var rec Record
		if e.Seq != int64(i) || json.Unmarshal(e.Data, &rec) != nil || rec.Seq != int64(i) {
			return Report{}, fmt.Errorf("%w: record %d is missing, out of order or unreadable", ErrTampered, i)
		}
		if tlog.RecordHash(e.Data) != e.LeafHash {
			return Report{}, fmt.Errorf("%w: record %d (%s %s by %s at %s) does not match its tree hash: it was changed after it was logged",
				ErrTampered, i, rec.Action, rec.Entity, rec.Actor, rec.Time.Format("2006-01-02T15:04:05Z"))
		}
	}
	hashes, err := buildTree(entries)
	if err != nil {
		return Report{}, err
	}
	root, err := tlog.TreeHash(t.N, hashes)
	if err != nil {
		return Report{}, err
	}
	if root != t.Hash {
		return Report{}, fmt.Errorf("%w: the records do not hash to the signed checkpoint (records or tree hashes were rewritten)", ErrTampered)
	}
	rep := Report{Size: t.N, RootHash: t.Hash.String()}
	if since != nil {
		old, err := OpenCheckpoint(since, vkey, origin)
		if err != nil {
			return rep, fmt.Errorf("older checkpoint: %w", err)
		}
		if old.N > t.N {
			return rep, fmt.Errorf("%w: the log has %d records, fewer than the %d of the older checkpoint (truncated)", ErrTampered, t.N, old.N)
		}
		proof, err := tlog.ProveTree(t.N, old.N, hashes)
		if err != nil {
			return rep, err
		}
		if err := tlog.CheckTree(proof, t.N, t.Hash, old.N, old.Hash); err != nil {
			return rep, fmt.Errorf("%w: the log is not an extension of the older checkpoint (history rewritten): %v", ErrTampered, err)
		}
		rep.SinceSize = old.N
	}
	return rep, nil
}

// ExportedRecord is one line of an export segment: a record with its
// inclusion proof against the export's checkpoint.
type ExportedRecord struct {
	Seq   int64       `json:"seq"`
	Data  []byte      `json:"data"`
	Proof []tlog.Hash `json:"proof"`
}

// Prove returns inclusion proofs for every entry against a tree of size
// len(entries), for export.
func Prove(entries []Entry) ([]ExportedRecord, error) {
	hashes, err := buildTree(entries)
	if err != nil {
		return nil, err
	}
	n := int64(len(entries))
	out := make([]ExportedRecord, len(entries))
	for i, e := range entries {
		p, err := tlog.ProveRecord(n, int64(i), hashes)
		if err != nil {
			return nil, err
		}
		out[i] = ExportedRecord{Seq: int64(i), Data: e.Data, Proof: p}
	}
	return out, nil
}

// CheckExported verifies exported records offline against a checkpoint,
// with the region's public key alone.
func CheckExported(recs []ExportedRecord, checkpoint []byte, vkey, origin string) (tlog.Tree, error) {
	t, err := OpenCheckpoint(checkpoint, vkey, origin)
	if err != nil {
		return t, err
	}
	for _, r := range recs {
		if err := tlog.CheckRecord(r.Proof, t.N, t.Hash, r.Seq, tlog.RecordHash(r.Data)); err != nil {
			return t, fmt.Errorf("%w: exported record %d: %v", ErrTampered, r.Seq, err)
		}
	}
	return t, nil
}

// InclusionProof is one record with the hashes that prove it is record
// Seq of the tree of the first Size records (RFC 6962).
type InclusionProof struct {
	Seq   int64       `json:"seq"`
	Size  int64       `json:"size"`
	Data  []byte      `json:"data"` // the exact bytes hashed into the tree
	Proof []tlog.Hash `json:"proof"`
}

// ConsistencyProof holds the hashes that prove the tree of Size records
// extends the tree of its first Old records.
type ConsistencyProof struct {
	Old   int64       `json:"old"`
	Size  int64       `json:"size"`
	Proof []tlog.Hash `json:"proof"`
}

// CheckInclusion verifies p against a verified checkpoint's tree t.
func CheckInclusion(p InclusionProof, t tlog.Tree) error {
	if p.Size != t.N {
		return fmt.Errorf("%w: the proof is for a tree of %d records, the checkpoint has %d", ErrTampered, p.Size, t.N)
	}
	var rec Record
	if err := json.Unmarshal(p.Data, &rec); err != nil || rec.Seq != p.Seq {
		return fmt.Errorf("%w: record %d is unreadable or names another place in the log", ErrTampered, p.Seq)
	}
	if err := tlog.CheckRecord(p.Proof, t.N, t.Hash, p.Seq, tlog.RecordHash(p.Data)); err != nil {
		return fmt.Errorf("%w: record %d is not in the signed tree: %v", ErrTampered, p.Seq, err)
	}
	return nil
}

// CheckConsistency verifies that cur, a verified checkpoint's tree,
// extends old, an older verified one, by p.
func CheckConsistency(p ConsistencyProof, old, cur tlog.Tree) error {
	if old.N > cur.N {
		return fmt.Errorf("%w: the log has %d records, fewer than the %d of the older checkpoint (truncated)", ErrTampered, cur.N, old.N)
	}
	if p.Old != old.N || p.Size != cur.N {
		return fmt.Errorf("%w: the proof is for trees of %d and %d records, not %d and %d", ErrTampered, p.Old, p.Size, old.N, cur.N)
	}
	if err := tlog.CheckTree(p.Proof, cur.N, cur.Hash, old.N, old.Hash); err != nil {
		return fmt.Errorf("%w: the log is not an extension of the older checkpoint (history rewritten): %v", ErrTampered, err)
	}
	return nil
}
