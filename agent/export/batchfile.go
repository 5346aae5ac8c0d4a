package export

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
	"strings"
)

// The batch file format; doc.go describes it.
const (
	fileMagic   = "OPSB"
	fileVersion = 1
	headerLen   = 21
	// maxPayload is the largest payload the length field can hold.
	maxPayload = math.MaxUint32

	fileSuffix = ".batch"
	seqDigits  = 20 // math.MaxUint64 has 20 digits
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a batch file that fails its checks.
var errCorrupt = errors.New("corrupt batch file")

// encodeBatchFile returns the file holding payload as batch seq.
// payload must be at most maxPayload bytes.
func encodeBatchFile(seq uint64, payload []byte) []byte {
	b := make([]byte, headerLen+len(payload))
	copy(b, fileMagic)
	b[4] = fileVersion
	binary.BigEndian.PutUint64(b[5:13], seq)
	binary.BigEndian.PutUint32(b[13:17], uint32(len(payload)))
	copy(b[headerLen:], payload)
	binary.BigEndian.PutUint32(b[17:21], checksum(b))
	return b
}

// checksum is the CRC-32C of a file's header without its checksum field,
// and its payload.
func checksum(file []byte) uint32 {
	c := crc32.Update(0, castagnoli, file[:17])
	return crc32.Update(c, castagnoli, file[headerLen:])
}

// decodeBatchFile checks a batch file and returns its sequence number and
// payload, which aliases b. Any failure wraps errCorrupt.
func decodeBatchFile(b []byte) (seq uint64, payload []byte, err error) {
	if len(b) < headerLen {
		return 0, nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", errCorrupt, len(b), headerLen)
	}
	if string(b[:4]) != fileMagic {
		return 0, nil, fmt.Errorf("%w: bad magic %q", errCorrupt, b[:4])
	}
	if b[4] != fileVersion {
		return 0, nil, fmt.Errorf("%w: format version %d, want %d", errCorrupt, b[4], fileVersion)
	}
	seq = binary.BigEndian.Uint64(b[5:13])
	if n := binary.BigEndian.Uint32(b[13:17]); uint64(n) != uint64(len(b)-headerLen) {
		return 0, nil, fmt.Errorf("%w: header says %d payload bytes, the file has %d (cut short?)", errCorrupt, n, len(b)-headerLen)
	}
	if got, want := checksum(b), binary.BigEndian.Uint32(b[17:21]); got != want {
		return 0, nil, fmt.Errorf("%w: checksum %08x, header says %08x", errCorrupt, got, want)
	}
	return seq, b[headerLen:], nil
}

// batchName is the file name of batch seq.
func batchName(seq uint64) string {
	return fmt.Sprintf("%0*d%s", seqDigits, seq, fileSuffix)
}

// parseBatchName returns the sequence number a batch file name carries;
// ok is false for any name batchName would not produce.
func parseBatchName(name string) (seq uint64, ok bool) {
	digits, found := strings.CutSuffix(name, fileSuffix)
	if !found || len(digits) != seqDigits {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil
}

// isTempName reports whether name is a temporary file of a batch write
// (syncfile.Replace's ".<name>.*.tmp"), left behind by a crash.
func isTempName(name string) bool {
	rest, ok := strings.CutPrefix(name, ".")
	if !ok || !strings.HasSuffix(rest, ".tmp") {
		return false
	}
	base, _, ok := strings.Cut(rest, fileSuffix+".")
	if !ok {
		return false
	}
	_, ok = parseBatchName(base + fileSuffix)
	return ok
}
