package remotewrite

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// Bounds of one record: a length field beyond them is corruption, not an
// allocation.
const (
	headerLen       = 8
	recordVersion   = 1
	maxRecordBytes  = 64 << 20
	maxDecodedBytes = 64 << 20
	maxTenantBytes  = 1024
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// errTorn: the bytes end inside a record (a crash mid-write).
	errTorn = errors.New("torn record")
	// errCorrupt: a record's checksum or fields are wrong.
	errCorrupt = errors.New("corrupt record")
)

// record is one batch of one tenant.
type record struct {
	tenant  string
	samples int64
	data    []byte // snappy(prompb.WriteRequest)
}

// appendRecord appends the frame of r to b.
func appendRecord(b []byte, r record) []byte {
	start := len(b)
	b = append(b, make([]byte, headerLen)...)
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, uint64(r.samples))
	b = binary.AppendUvarint(b, uint64(len(r.tenant)))
	b = append(b, r.tenant...)
	b = append(b, r.data...)
	payload := b[start+headerLen:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b
}

// frameLen reads the length of the frame whose header starts b.
func frameLen(hdr []byte) (int, error) {
	if len(hdr) < headerLen {
		return 0, errTorn
	}
	n := binary.BigEndian.Uint32(hdr)
	if n == 0 || n > maxRecordBytes {
		return 0, errCorrupt
	}
	return headerLen + int(n), nil
}

// decodeRecord reads the record framed at the start of b and returns it
// and the frame's length. The record's data aliases b.
func decodeRecord(b []byte) (record, int, error) {
	n, err := frameLen(b)
	if err != nil {
		return record{}, 0, err
	}
	if len(b) < n {
		return record{}, 0, errTorn
	}
	payload := b[headerLen:n]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return record{}, 0, errCorrupt
	}
	if payload[0] != recordVersion {
		return record{}, 0, errCorrupt
	}
	p := payload[1:]
	samples, k := uvarint(p)
	if k == 0 || samples > maxRecordBytes {
		return record{}, 0, errCorrupt
	}
	p = p[k:]
	tl, k := uvarint(p)
	if k == 0 || tl > maxTenantBytes || tl > uint64(len(p)-k) {
		return record{}, 0, errCorrupt
	}
	p = p[k:]
	return record{tenant: string(p[:tl]), samples: int64(samples), data: p[tl:]}, n, nil
}

// uvarint reads a minimally encoded uvarint (one spelling per value, so
// a record has one encoding); 0 bytes read on error.
func uvarint(b []byte) (uint64, int) {
	v, k := binary.Uvarint(b)
	if k <= 0 || k != len(binary.AppendUvarint(nil, v)) {
		return 0, 0
	}
	return v, k
}
