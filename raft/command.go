package raft

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// CommandType names the kind of a log entry's payload. The first byte of
// every command entry is its type; the rest is the type's own encoding.
type CommandType uint8

// Built-in command types. Other capabilities register theirs through
// Config.Handlers with values of 64 and above.
const (
	// CmdKV is a key/value operation (KVCommand) on a state-store bucket.
	CmdKV CommandType = 1
	// CmdNoop is an empty entry, used to measure and to force a barrier.
	CmdNoop CommandType = 2
	// CmdAudited wraps another command with its audit metadata, so the
	// change and its audit record commit in one entry (Audited).
	CmdAudited CommandType = 3
	// CmdTenantKV is a KVCommand on one tenant's bucket (TenantKV),
	// applied through a storage.Tenant handle.
	CmdTenantKV CommandType = 4
	// FirstCustomCommand is the lowest type a caller may register.
	FirstCustomCommand CommandType = 64
)

// KVOp is the operation of a KVCommand.
type KVOp uint8

const (
	KVPut         KVOp = 1 // set key to value
	KVDelete      KVOp = 2 // remove key
	KVPutIfAbsent KVOp = 3 // set key only if it has no value; the result says whether it was set
	// KVExpect writes nothing: it holds when the key's value is exactly
	// Value (absent when Value is empty). In a Batch, a failed KVExpect
	// applies nothing and the result is "0", so a decision read outside
	// the FSM is re-checked inside it (compare-and-set).
	KVExpect KVOp = 4
)

// Limits of a KVCommand, enforced on encode and decode.
const (
	MaxBucketLen = 64
	MaxKeyLen    = 1024
	MaxValueLen  = 1 << 20
)

// ErrBadCommand marks an entry whose bytes cannot be decoded.
var ErrBadCommand = errors.New("malformed command")

// KVCommand writes one key of one bucket.
type KVCommand struct {
	Op     KVOp
	Bucket []byte
	Key    []byte
	Value  []byte
}

// Validate checks the command's fields against the limits.
func (c KVCommand) Validate() error {
	switch c.Op {
	case KVPut, KVDelete, KVPutIfAbsent, KVExpect:
	default:
		return fmt.Errorf("%w: unknown kv op %d", ErrBadCommand, c.Op)
	}
	switch {
	case len(c.Bucket) == 0 || len(c.Bucket) > MaxBucketLen:
		return fmt.Errorf("%w: bucket must be 1..%d bytes", ErrBadCommand, MaxBucketLen)
	case len(c.Key) == 0 || len(c.Key) > MaxKeyLen:
		return fmt.Errorf("%w: key must be 1..%d bytes", ErrBadCommand, MaxKeyLen)
	case len(c.Value) > MaxValueLen:
		return fmt.Errorf("%w: value exceeds %d bytes", ErrBadCommand, MaxValueLen)
	case c.Op == KVDelete && len(c.Value) != 0:
		return fmt.Errorf("%w: delete carries no value", ErrBadCommand)
	}
	return nil
}

// Encode returns the log entry bytes: type, op, bucket length, bucket,
// key length (uvarint), key, value.
func (c KVCommand) Encode() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 3+len(c.Bucket)+binary.MaxVarintLen32+len(c.Key)+len(c.Value))
	b = append(b, byte(CmdKV), byte(c.Op), byte(len(c.Bucket)))
	b = append(b, c.Bucket...)
	b = binary.AppendUvarint(b, uint64(len(c.Key)))
	b = append(b, c.Key...)
	return append(b, c.Value...), nil
}

// DecodeKV parses the payload of a CmdKV entry (the bytes after the type).
// It never panics on hostile input; the returned slices alias data.
func DecodeKV(data []byte) (KVCommand, error) {
	var c KVCommand
	if len(data) < 2 {
		return c, fmt.Errorf("%w: kv entry of %d bytes is too short", ErrBadCommand, len(data))
	}
	c.Op = KVOp(data[0])
	bl := int(data[1])
	data = data[2:]
	if bl > len(data) {
		return c, fmt.Errorf("%w: bucket length %d exceeds entry", ErrBadCommand, bl)
	}
	c.Bucket, data = data[:bl], data[bl:]
	kl, n := binary.Uvarint(data)
	if n <= 0 || kl > uint64(len(data)-n) || n != uvarintLen(kl) {
		// n != uvarintLen rejects overlong encodings: one command, one form.
		return c, fmt.Errorf("%w: bad key length", ErrBadCommand)
	}
	data = data[n:]
	c.Key, c.Value = data[:kl], data[kl:]
	if len(c.Value) == 0 {
		c.Value = nil
	}
	return c, c.Validate()
}

// TenantKV is a KVCommand on a tenant's bucket; Bucket is the tenant-local
// name. Build it from the handle of an authenticated caller.
type TenantKV struct {
	Tenant string
	KVCommand
}

// maxTenantIDLen bounds the tenant id in a TenantKV (storage.Scope
// validates its form).
const maxTenantIDLen = 32

// Encode returns the log entry bytes: type, uvarint tenant length, tenant,
// then the KVCommand's encoding after its type byte.
func (c TenantKV) Encode() ([]byte, error) {
	if c.Tenant == "" || len(c.Tenant) > maxTenantIDLen {
		return nil, fmt.Errorf("%w: tenant id must be 1..%d bytes", ErrBadCommand, maxTenantIDLen)
	}
	kv, err := c.KVCommand.Encode()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 2+len(c.Tenant)+len(kv))
	b = append(b, byte(CmdTenantKV))
	b = binary.AppendUvarint(b, uint64(len(c.Tenant)))
	b = append(b, c.Tenant...)
	return append(b, kv[1:]...), nil
}

// DecodeTenantKV parses the payload of a CmdTenantKV entry.
func DecodeTenantKV(data []byte) (TenantKV, error) {
	n, k := binary.Uvarint(data)
	if k <= 0 || k != uvarintLen(n) || n == 0 || n > maxTenantIDLen || n > uint64(len(data)-k) {
		return TenantKV{}, fmt.Errorf("%w: bad tenant id length", ErrBadCommand)
	}
	c := TenantKV{Tenant: string(data[k : k+int(n)])}
	kv, err := DecodeKV(data[k+int(n):])
	c.KVCommand = kv
	return c, err
}

// MaxAuditMetaLen caps the audit metadata of an audited command.
const MaxAuditMetaLen = 64 << 10

// Audited wraps an encoded command with audit metadata: type, uvarint
// metadata length, metadata, inner command.
func Audited(meta, inner []byte) ([]byte, error) {
	if len(meta) == 0 || len(meta) > MaxAuditMetaLen {
		return nil, fmt.Errorf("%w: audit metadata must be 1..%d bytes", ErrBadCommand, MaxAuditMetaLen)
	}
	if len(inner) == 0 || CommandType(inner[0]) == CmdAudited {
		return nil, fmt.Errorf("%w: an audited command wraps one plain command", ErrBadCommand)
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen32+len(meta)+len(inner))
	b = append(b, byte(CmdAudited))
	b = binary.AppendUvarint(b, uint64(len(meta)))
	b = append(b, meta...)
	return append(b, inner...), nil
}

// DecodeAudited splits the payload of a CmdAudited entry.
func DecodeAudited(data []byte) (meta, inner []byte, err error) {
	n, k := binary.Uvarint(data)
	if k <= 0 || k != uvarintLen(n) || n == 0 || n > MaxAuditMetaLen || n > uint64(len(data)-k) {
		return nil, nil, fmt.Errorf("%w: bad audit metadata length", ErrBadCommand)
	}
	meta, inner = data[k:k+int(n)], data[k+int(n):]
	if len(inner) == 0 || CommandType(inner[0]) == CmdAudited {
		return nil, nil, fmt.Errorf("%w: an audited command wraps one plain command", ErrBadCommand)
	}
	return meta, inner, nil
}

// uvarintLen is the length of the canonical (shortest) encoding of v.
func uvarintLen(v uint64) int { return len(binary.AppendUvarint(nil, v)) }

// EncodeJSON returns a custom command's log entry: its type byte, then
// v as JSON (read back with DecodeStrictJSON).
func EncodeJSON(t CommandType, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{byte(t)}, b...), nil
}

// DecodeStrictJSON decodes the JSON payload of a custom command into v:
// 1..maxLen bytes, no unknown fields, no trailing data. Every failure
// wraps bad, the caller's malformed-command error.
func DecodeStrictJSON(data []byte, maxLen int, v any, bad error) error {
	if len(data) == 0 || len(data) > maxLen {
		return fmt.Errorf("%w: entry of %d bytes", bad, len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", bad, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", bad)
	}
	return nil
}

// MergeHandlers joins the handler sets of several packages into one map
// for Config.Handlers. Two sets claiming the same command type is an
// error naming it, never a silent overwrite: each package picks its
// numbers alone (the table is in ARCHITECTURE.md, "Raft command types").
func MergeHandlers(sets ...map[CommandType]HandlerFunc) (map[CommandType]HandlerFunc, error) {
	out := map[CommandType]HandlerFunc{}
	for i, set := range sets {
		for t, h := range set {
			if _, dup := out[t]; dup {
				return nil, fmt.Errorf("raft: command type %d is claimed twice (again by handler set %d); give one of them an unused number", t, i)
			}
			out[t] = h
		}
	}
	return out, nil
}
