package export

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestDecodeBatchFileRejects(t *testing.T) {
	good := encodeBatchFile(7, []byte("payload"))
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		file []byte
	}{
		{"empty", nil},
		{"header cut", good[:headerLen-1]},
		{"payload cut", good[:len(good)-1]},
		{"trailing bytes", append(bytes.Clone(good), 0)},
		{"bad magic", edit(func(b []byte) []byte { b[0] = 'X'; return b })},
		{"unknown version", edit(func(b []byte) []byte { b[4] = 2; return b })},
		{"sequence changed", edit(func(b []byte) []byte { b[12] ^= 1; return b })},
		{"payload changed", edit(func(b []byte) []byte { b[headerLen] ^= 1; return b })},
		{"checksum changed", edit(func(b []byte) []byte { b[17] ^= 1; return b })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := decodeBatchFile(tc.file); !errors.Is(err, errCorrupt) {
				t.Errorf("decoded: %v, want errCorrupt", err)
			}
		})
	}
	if seq, p, err := decodeBatchFile(good); err != nil || seq != 7 || string(p) != "payload" {
		t.Errorf("good file: %d %q %v", seq, p, err)
	}
}

func TestBatchNames(t *testing.T) {
	for _, seq := range []uint64{0, 1, 42, math.MaxUint64} {
		if got, ok := parseBatchName(batchName(seq)); !ok || got != seq {
			t.Errorf("parseBatchName(batchName(%d)) = %d, %v", seq, got, ok)
		}
		if !isTempName("." + batchName(seq) + ".123456.tmp") {
			t.Errorf("the temporary name of batch %d not recognised", seq)
		}
	}
	for _, name := range []string{"1.batch", "+0000000000000000001.batch", "0000000000000000000a.batch",
		"99999999999999999999.batch", "00000000000000000001.batch.tmp", "00000000000000000001", "NOTES"} {
		if _, ok := parseBatchName(name); ok {
			t.Errorf("%q taken for a batch file", name)
		}
	}
	for _, name := range []string{"00000000000000000001.batch", ".NOTES.tmp", ".1.batch.5.tmp", "x.00000000000000000001.batch.5.tmp"} {
		if isTempName(name) {
			t.Errorf("%q taken for a temporary batch file", name)
		}
	}
}

// FuzzDecodeBatchFile: no bytes on disk make the decoder panic, whatever
// decodes re-encodes to the same bytes, and any payload round-trips.
func FuzzDecodeBatchFile(f *testing.F) {
	f.Add(encodeBatchFile(1, nil))
	f.Add(encodeBatchFile(42, batch(f, 42)))
	f.Add(encodeBatchFile(math.MaxUint64, []byte("x")))
	f.Add(encodeBatchFile(3, []byte("payload"))[:headerLen+2])
	f.Add([]byte("OPSB"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, payload, err := decodeBatchFile(b)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
		} else if again := encodeBatchFile(seq, payload); !bytes.Equal(again, b) {
			t.Fatalf("decoded (%d, %q) re-encodes differently", seq, payload)
		}
		seq = uint64(len(b)) * 0x9e3779b97f4a7c15
		gotSeq, got, err := decodeBatchFile(encodeBatchFile(seq, b))
		if err != nil || gotSeq != seq || !bytes.Equal(got, b) {
			t.Fatalf("round trip of %q as %d: %d %q %v", b, seq, gotSeq, got, err)
		}
	})
}
