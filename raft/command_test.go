package raft

import (
	"bytes"
	"errors"
	"testing"
)

func TestKVCommandRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		cmd  KVCommand
	}{
		{"put", KVCommand{Op: KVPut, Bucket: []byte("kv"), Key: []byte("a/b"), Value: []byte("v")}},
		{"put empty value", KVCommand{Op: KVPut, Bucket: []byte("kv"), Key: []byte("k")}},
		{"delete", KVCommand{Op: KVDelete, Bucket: []byte("kv"), Key: []byte("k")}},
		{"put-if-absent", KVCommand{Op: KVPutIfAbsent, Bucket: []byte("system"), Key: []byte("k"), Value: bytes.Repeat([]byte("x"), 300)}},
		{"long key", KVCommand{Op: KVPut, Bucket: []byte("kv"), Key: bytes.Repeat([]byte("k"), MaxKeyLen), Value: []byte("v")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.cmd.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if CommandType(b[0]) != CmdKV {
				t.Fatalf("type byte %d", b[0])
			}
			got, err := DecodeKV(b[1:])
			if err != nil {
				t.Fatal(err)
			}
			if got.Op != tc.cmd.Op || !bytes.Equal(got.Bucket, tc.cmd.Bucket) || !bytes.Equal(got.Key, tc.cmd.Key) || !bytes.Equal(got.Value, tc.cmd.Value) {
				t.Fatalf("round trip: got %+v want %+v", got, tc.cmd)
			}
		})
	}
}

func TestKVCommandRejects(t *testing.T) {
	cases := []struct {
		name string
		cmd  KVCommand
	}{
		{"unknown op", KVCommand{Op: 9, Bucket: []byte("kv"), Key: []byte("k")}},
		{"no bucket", KVCommand{Op: KVPut, Key: []byte("k")}},
		{"no key", KVCommand{Op: KVPut, Bucket: []byte("kv")}},
		{"key too long", KVCommand{Op: KVPut, Bucket: []byte("kv"), Key: bytes.Repeat([]byte("k"), MaxKeyLen+1)}},
		{"value too long", KVCommand{Op: KVPut, Bucket: []byte("kv"), Key: []byte("k"), Value: make([]byte, MaxValueLen+1)}},
		{"delete with value", KVCommand{Op: KVDelete, Bucket: []byte("kv"), Key: []byte("k"), Value: []byte("v")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.cmd.Encode(); !errors.Is(err, ErrBadCommand) {
				t.Fatalf("Encode err = %v, want ErrBadCommand", err)
			}
		})
	}
	for _, raw := range [][]byte{nil, {1}, {1, 200}, {1, 2, 'k', 'v', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {1, 2, 'k', 'v', 50, 'a'}} {
		if _, err := DecodeKV(raw); !errors.Is(err, ErrBadCommand) {
			t.Fatalf("DecodeKV(%v) err = %v, want ErrBadCommand", raw, err)
		}
	}
}

// FuzzDecodeKV feeds hostile bytes to the log-entry decoder: it must never
// panic, and whatever it accepts must re-encode to the same bytes.
func FuzzDecodeKV(f *testing.F) {
	for _, c := range []KVCommand{
		{Op: KVPut, Bucket: []byte("kv"), Key: []byte("k"), Value: []byte("v")},
		{Op: KVDelete, Bucket: []byte("system"), Key: []byte("admin")},
	} {
		b, _ := c.Encode()
		f.Add(b[1:])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeKV(data)
		if err != nil {
			return
		}
		b, err := c.Encode()
		if err != nil {
			t.Fatalf("decoded command does not re-encode: %v", err)
		}
		if !bytes.Equal(b[1:], data) {
			t.Fatalf("re-encoding differs: %x vs %x", b[1:], data)
		}
	})
}

// FuzzDecodeTenantKV: the tenant-scoped decoder never panics, and what it
// accepts re-encodes to the same bytes.
func FuzzDecodeTenantKV(f *testing.F) {
	b, _ := TenantKV{Tenant: "acme01", KVCommand: KVCommand{Op: KVPut, Bucket: []byte("kv"), Key: []byte("k"), Value: []byte("v")}}.Encode()
	f.Add(b[1:])
	f.Add([]byte{0x80, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeTenantKV(data)
		if err != nil {
			return
		}
		b, err := c.Encode()
		if err != nil {
			t.Fatalf("decoded command does not re-encode: %v", err)
		}
		if !bytes.Equal(b[1:], data) {
			t.Fatalf("re-encoding differs: %x vs %x", b[1:], data)
		}
	})
}

func TestTenantKVRoundTrip(t *testing.T) {
	in := TenantKV{Tenant: "t1", KVCommand: KVCommand{Op: KVPutIfAbsent, Bucket: []byte("kv"), Key: []byte("a/b"), Value: []byte("x")}}
	b, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if CommandType(b[0]) != CmdTenantKV {
		t.Fatalf("type byte %d", b[0])
	}
	out, err := DecodeTenantKV(b[1:])
	if err != nil || out.Tenant != "t1" || out.Op != KVPutIfAbsent || string(out.Key) != "a/b" || string(out.Value) != "x" {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	if _, err := (TenantKV{KVCommand: in.KVCommand}).Encode(); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("empty tenant accepted: %v", err)
	}
}
