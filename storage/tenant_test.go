package storage

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestTenantBucketsNeedAHandle(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{Region: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, _ := Scope("aaaa")
	b, _ := Scope("bbbb")
	err = s.Update(func(tx *Tx) error {
		if err := tx.Tenant(a).Put([]byte("kv"), []byte("k"), []byte("secret-a")); err != nil {
			return err
		}
		if err := tx.Put([]byte("t.bbbb.kv"), []byte("k"), []byte("x")); !errors.Is(err, ErrNeedsTenant) {
			t.Errorf("unscoped write to a tenant bucket: err = %v, want ErrNeedsTenant", err)
		}
		if err := tx.Delete([]byte("t.aaaa.kv"), []byte("k")); !errors.Is(err, ErrNeedsTenant) {
			t.Errorf("unscoped delete in a tenant bucket: err = %v, want ErrNeedsTenant", err)
		}
		if err := tx.Tenant(Tenant{}).Put([]byte("kv"), []byte("k"), []byte("x")); !errors.Is(err, ErrNeedsTenant) {
			t.Errorf("zero handle write: err = %v, want ErrNeedsTenant", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if v := tx.Tenant(a).Get([]byte("kv"), []byte("k")); string(v) != "secret-a" {
			t.Errorf("tenant a reads %q, want secret-a", v)
		}
		if v := tx.Tenant(b).Get([]byte("kv"), []byte("k")); v != nil {
			t.Errorf("tenant b reads tenant a's key: %q", v)
		}
		if v := tx.Get([]byte("t.aaaa.kv"), []byte("k")); v != nil {
			t.Errorf("unscoped read of a tenant bucket returned %q", v)
		}
		if v := tx.Tenant(Tenant{}).Get([]byte("kv"), []byte("k")); v != nil {
			t.Errorf("zero handle read returned %q", v)
		}
		n := 0
		tx.ForEach([]byte("t.aaaa.kv"), nil, func(k, v []byte) bool { n++; return true })
		tx.Tenant(b).ForEach([]byte("kv"), nil, func(k, v []byte) bool { n++; return true })
		if n != 0 {
			t.Errorf("unscoped or other-tenant ForEach saw %d keys", n)
		}
		return nil
	})
}

func TestScopeValidatesIDs(t *testing.T) {
	for _, id := range []string{"", "A", "a.b", "a/b", "0123456789abcdef0123456789abcdef0"} {
		if _, err := Scope(id); err == nil {
			t.Errorf("Scope(%q) accepted a bad id", id)
		}
	}
	if h, err := Scope("0123456789abcdef"); err != nil || h.ID() != "0123456789abcdef" || !h.Valid() {
		t.Errorf("Scope of a good id: %v %v", h, err)
	}
}
