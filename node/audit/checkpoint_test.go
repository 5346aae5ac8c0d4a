package audit

import "testing"

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("outpost audit eu\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	f.Add([]byte("x\n-1\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		origin, tr, err := ParseCheckpoint(b)
		if err != nil {
			return
		}
		if _, t2, err := ParseCheckpoint(FormatCheckpoint(origin, tr)); err != nil || t2 != tr {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}
