package raft

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	hraft "github.com/hashicorp/raft"

	"github.com/outpost-mesh/outpost/storage"
)

func TestBatchRoundTrip(t *testing.T) {
	in := Batch{
		{KV: KVCommand{Op: KVPutIfAbsent, Bucket: []byte("users"), Key: []byte("alice"), Value: []byte(`{"n":1}`)}},
		{Tenant: "acme", KV: KVCommand{Op: KVPut, Bucket: []byte("kv"), Key: []byte("k"), Value: []byte("v")}, Redact: true},
	}
	b, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeBatch(b[1:])
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[1].Tenant != "acme" || !out[1].Redact || string(out[0].KV.Key) != "alice" {
		t.Fatalf("round trip: %+v", out)
	}
	if _, err := (Batch{}).Encode(); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("empty batch: %v", err)
	}
}

// FuzzDecodeBatch: the batch decoder never panics, and what it accepts
// re-encodes to the same bytes.
func FuzzDecodeBatch(f *testing.F) {
	b, _ := Batch{
		{KV: KVCommand{Op: KVPut, Bucket: []byte("a"), Key: []byte("k"), Value: []byte("v")}},
		{Tenant: "t1", KV: KVCommand{Op: KVDelete, Bucket: []byte("kv"), Key: []byte("k")}, Redact: true},
	}.Encode()
	f.Add(b[1:])
	f.Add([]byte{1, 0, 2, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeBatch(data)
		if err != nil {
			return
		}
		b, err := c.Encode()
		if err != nil {
			t.Fatalf("decoded batch does not re-encode: %v", err)
		}
		if !bytes.Equal(b[1:], data) {
			t.Fatalf("re-encoding differs: %x vs %x", b[1:], data)
		}
	})
}

func TestBatchAllOrNothing(t *testing.T) {
	store, err := storage.Open(filepath.Join(t.TempDir(), "state.db"), storage.Options{Region: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	f := newFSM(store, nil, nil, slog.New(slog.DiscardHandler), DefaultTuning())
	apply := func(b Batch) Result {
		enc, err := b.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return f.Apply(&hraft.Log{Index: store.LastApplied() + 1, Type: hraft.LogCommand, Data: enc}).(Result)
	}
	put := func(tenant, bucket, key, val string, op KVOp) BatchOp {
		return BatchOp{Tenant: tenant, KV: KVCommand{Op: op, Bucket: []byte(bucket), Key: []byte(key), Value: []byte(val)}}
	}
	if r := apply(Batch{put("", "users", "alice", "1", KVPutIfAbsent), put("t1", "kv", "k", "a", KVPut)}); r.Err != nil || string(r.Value) != "1" {
		t.Fatalf("first batch: %+v", r)
	}
	// alice exists: the tenant write in the same batch must not happen.
	if r := apply(Batch{put("t1", "kv", "k", "b", KVPut), put("", "users", "alice", "2", KVPutIfAbsent)}); r.Err != nil || string(r.Value) != "0" {
		t.Fatalf("conflicting batch: %+v", r)
	}
	_ = store.View(func(tx *storage.Tx) error {
		h, _ := storage.Scope("t1")
		if v := tx.Tenant(h).Get([]byte("kv"), []byte("k")); string(v) != "a" {
			t.Errorf("a refused batch changed t1/kv/k to %q", v)
		}
		if v := tx.Get([]byte("users"), []byte("alice")); string(v) != "1" {
			t.Errorf("users/alice = %q", v)
		}
		return nil
	})
}

// TestBatchExpect: a KVExpect that does not hold applies nothing of its
// batch ("0"); one that holds lets it apply ("1"). An empty expected
// value means the key must be absent.
func TestBatchExpect(t *testing.T) {
	store, err := storage.Open(filepath.Join(t.TempDir(), "state.db"), storage.Options{Region: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	f := newFSM(store, nil, nil, slog.New(slog.DiscardHandler), DefaultTuning())
	apply := func(b Batch) string {
		t.Helper()
		enc, err := b.Encode()
		if err != nil {
			t.Fatal(err)
		}
		r := f.Apply(&hraft.Log{Index: store.LastApplied() + 1, Type: hraft.LogCommand, Data: enc}).(Result)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return string(r.Value)
	}
	op := func(kind KVOp, key, val string) BatchOp {
		return BatchOp{KV: KVCommand{Op: kind, Bucket: []byte("roles"), Key: []byte(key), Value: []byte(val)}}
	}
	get := func(key string) (v string) {
		_ = store.View(func(tx *storage.Tx) error { v = string(tx.Get([]byte("roles"), []byte(key))); return nil })
		return v
	}
	apply(Batch{op(KVPut, "t/a", "admin"), op(KVPut, "t/b", "admin")})
	for _, tc := range []struct {
		name   string
		b      Batch
		want   string
		key, v string // the key the batch writes and its value afterwards
	}{
		{"holds", Batch{op(KVExpect, "t/b", "admin"), op(KVPut, "t/a", "viewer")}, "1", "t/a", "viewer"},
		{"value differs", Batch{op(KVExpect, "t/a", "admin"), op(KVPut, "t/b", "viewer")}, "0", "t/b", "admin"},
		{"expected absent, present", Batch{op(KVExpect, "t/a", ""), op(KVPut, "t/c", "x")}, "0", "t/c", ""},
		{"expected absent, absent", Batch{op(KVExpect, "t/z", ""), op(KVPut, "t/c", "x")}, "1", "t/c", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := apply(tc.b); got != tc.want {
				t.Fatalf("result %q, want %q", got, tc.want)
			}
			if got := get(tc.key); got != tc.v {
				t.Fatalf("%s = %q after the batch, want %q", tc.key, got, tc.v)
			}
		})
	}
}

// TestMergeHandlersRefusesDuplicates: two handler sets claiming one
// command type is an error naming the type, not a silent overwrite.
func TestMergeHandlersRefusesDuplicates(t *testing.T) {
	h := func(*storage.Tx, uint64, []byte) ([]byte, error) { return nil, nil }
	if m, err := MergeHandlers(map[CommandType]HandlerFunc{64: h}, map[CommandType]HandlerFunc{65: h}); err != nil || len(m) != 2 {
		t.Fatalf("distinct types: %v %v", m, err)
	}
	_, err := MergeHandlers(map[CommandType]HandlerFunc{64: h, 66: h}, map[CommandType]HandlerFunc{66: h})
	if err == nil || !strings.Contains(err.Error(), "66") {
		t.Fatalf("duplicate type 66: %v, want an error naming it", err)
	}
}
