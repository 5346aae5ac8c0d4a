package lease

import (
	"bytes"
	"testing"
)

// FuzzDecodeDispatch: hostile entry bytes never panic, and whatever
// decodes re-encodes to an entry that decodes to the same dispatch.
func FuzzDecodeDispatch(f *testing.F) {
	for _, d := range []Dispatch{
		{ID: "a", Kind: "config", Node: "n1", Token: 1},
		{ID: "x.y-z", Tenant: "acme", Selector: "os=linux", Kind: "probe_set", Payload: []byte(`{"probes":[1,2]}`), Node: "n2", Token: 9, Index: 4},
	} {
		b, err := d.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[1:])
	}
	f.Add([]byte(`{"id":"a","kind":"config","node":"n","token":1,"extra":1}`))
	f.Add([]byte(`{"id":"a"} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDispatch(data)
		if err != nil {
			return
		}
		b, err := d.Encode()
		if err != nil {
			t.Fatalf("decoded dispatch does not encode: %v", err)
		}
		d2, err := DecodeDispatch(b[1:])
		if err != nil {
			t.Fatalf("re-encoded dispatch does not decode: %v", err)
		}
		b2, _ := d2.Encode()
		if !bytes.Equal(b, b2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", b, b2)
		}
	})
}

// FuzzDecodeOp: hostile lease ops never panic and round-trip.
func FuzzDecodeOp(f *testing.F) {
	for _, o := range []Op{{Kind: OpAcquire, Node: "n1", DurationMs: 1000}, {Kind: OpRenew, Node: "n2", Token: 3}, {Kind: OpRelease, Node: "n3", Token: 1}} {
		b, err := o.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[1:])
	}
	f.Add([]byte(`{"op":"renew","node":"n","token":1,"duration_ms":5}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := DecodeOp(data)
		if err != nil {
			return
		}
		b, err := o.Encode()
		if err != nil {
			t.Fatalf("decoded op does not encode: %v", err)
		}
		if o2, err := DecodeOp(b[1:]); err != nil || o2 != o {
			t.Fatalf("round trip: %+v -> %+v (%v)", o, o2, err)
		}
	})
}
