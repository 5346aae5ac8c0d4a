package raft

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/outpost-mesh/outpost/storage"
)

// CmdBatch applies several key/value commands atomically (Batch).
const CmdBatch CommandType = 5

// MaxBatchOps bounds the commands in one Batch.
const MaxBatchOps = 64

// BatchOp is one command of a Batch: a KVCommand, on a tenant's bucket
// when Tenant is set. Redact keeps its values out of the audit record
// (only their SHA-256 is recorded): password hashes, token hashes.
type BatchOp struct {
	Tenant string
	KV     KVCommand
	Redact bool
}

// Batch is applied all or nothing: when a KVPutIfAbsent finds its key
// set, or a KVExpect does not hold, nothing is applied and the result is
// "0"; otherwise "1".
type Batch []BatchOp

// Encode returns the log entry bytes: type, uvarint count, then per op a
// flags byte (1 = redact), uvarint length and the op's own encoding.
func (b Batch) Encode() ([]byte, error) {
	if len(b) == 0 || len(b) > MaxBatchOps {
		return nil, fmt.Errorf("%w: a batch has 1..%d commands", ErrBadCommand, MaxBatchOps)
	}
	out := []byte{byte(CmdBatch)}
	out = binary.AppendUvarint(out, uint64(len(b)))
	for _, op := range b {
		enc, err := op.encode()
		if err != nil {
			return nil, err
		}
		flags := byte(0)
		if op.Redact {
			flags = 1
		}
		out = append(out, flags)
		out = binary.AppendUvarint(out, uint64(len(enc)))
		out = append(out, enc...)
	}
	return out, nil
}

func (op BatchOp) encode() ([]byte, error) {
	if op.Tenant != "" {
		return TenantKV{Tenant: op.Tenant, KVCommand: op.KV}.Encode()
	}
	return op.KV.Encode()
}

// DecodeBatch parses the payload of a CmdBatch entry.
func DecodeBatch(data []byte) (Batch, error) {
	n, k := binary.Uvarint(data)
	if k <= 0 || k != uvarintLen(n) || n == 0 || n > MaxBatchOps {
		return nil, fmt.Errorf("%w: bad batch count", ErrBadCommand)
	}
	data = data[k:]
	b := make(Batch, 0, n)
	for range n {
		if len(data) < 2 || data[0] > 1 {
			return nil, fmt.Errorf("%w: bad batch op flags", ErrBadCommand)
		}
		redact := data[0] == 1
		l, k := binary.Uvarint(data[1:])
		if k <= 0 || k != uvarintLen(l) || l < 2 || l > uint64(len(data)-1-k) {
			return nil, fmt.Errorf("%w: bad batch op length", ErrBadCommand)
		}
		enc := data[1+k : 1+k+int(l)]
		data = data[1+k+int(l):]
		op := BatchOp{Redact: redact}
		switch CommandType(enc[0]) {
		case CmdKV:
			kv, err := DecodeKV(enc[1:])
			if err != nil {
				return nil, err
			}
			op.KV = kv
		case CmdTenantKV:
			c, err := DecodeTenantKV(enc[1:])
			if err != nil {
				return nil, err
			}
			op.Tenant, op.KV = c.Tenant, c.KVCommand
		default:
			return nil, fmt.Errorf("%w: a batch holds only kv commands", ErrBadCommand)
		}
		b = append(b, op)
	}
	if len(data) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after a batch", ErrBadCommand, len(data))
	}
	return b, nil
}

// target resolves the transaction an op writes to.
func (op BatchOp) target(tx *storage.Tx) (kvTarget, error) {
	if op.Tenant == "" {
		return tx, nil
	}
	h, err := storage.Scope(op.Tenant)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return tx.Tenant(h), nil
}

func applyBatch(tx *storage.Tx, _ uint64, payload []byte) ([]byte, error) {
	b, err := DecodeBatch(payload)
	if err != nil {
		return nil, err
	}
	targets := make([]kvTarget, len(b))
	for i, op := range b {
		if targets[i], err = op.target(tx); err != nil {
			return nil, err
		}
		if op.KV.Op == KVPutIfAbsent && targets[i].Get(op.KV.Bucket, op.KV.Key) != nil {
			return []byte("0"), nil
		}
		if op.KV.Op == KVExpect && !op.KV.holds(targets[i]) {
			return []byte("0"), nil
		}
	}
	for i, op := range b {
		if _, err := applyKVOp(targets[i], op.KV); err != nil {
			return nil, err
		}
	}
	return []byte("1"), nil
}

// batchState renders the values a batch touches as one JSON object for
// its audit record: "bucket/key" (or "tenant:bucket/key") to the value as
// text, null when absent, or {"sha256":…} when the op is redacted.
func batchState(tx *storage.Tx, b Batch) []byte {
	m := make(map[string]any, len(b))
	for _, op := range b {
		name := string(op.KV.Bucket) + "/" + string(op.KV.Key)
		if op.Tenant != "" {
			name = op.Tenant + ":" + name
		}
		t, err := op.target(tx)
		if err != nil {
			continue
		}
		v := t.Get(op.KV.Bucket, op.KV.Key)
		switch {
		case v == nil:
			m[name] = nil
		case op.Redact:
			sum := sha256.Sum256(v)
			m[name] = map[string]string{"sha256": hex.EncodeToString(sum[:])}
		case utf8.Valid(v) && json.Valid(v):
			m[name] = json.RawMessage(append([]byte(nil), v...))
		default:
			m[name] = map[string][]byte{"base64": append([]byte(nil), v...)}
		}
	}
	out, _ := json.Marshal(m) // map keys sort: deterministic on every node
	return out
}
