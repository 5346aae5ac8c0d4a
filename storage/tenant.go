package storage

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
)

// ErrNeedsTenant is returned when a tenant's bucket is written without a
// tenant handle. Reads of tenant buckets through Tx return nothing.
var ErrNeedsTenant = errors.New("storage: tenant data is reachable only through a tenant handle (Tx.Tenant)")

// tenantPrefix marks the buckets that hold one tenant's data:
// "t.<tenant id>.<name>". Tx refuses them; TenantTx maps names into them.
var tenantPrefix = []byte("t.")

var tenantIDPattern = regexp.MustCompile(`^[a-z0-9]{1,32}$`)

// Tenant is a handle on one tenant's data. The zero value opens nothing.
// Handles are minted from an authenticated caller (node/auth) or when the
// FSM replays a command that was built from one (raft); a repository test
// (internal/pkgdoc) fails if any other package calls Scope.
type Tenant struct{ id string }

// Scope returns the handle for a tenant id (1-32 lowercase letters and
// digits; ids are generated, never chosen by a caller).
func Scope(id string) (Tenant, error) {
	if !tenantIDPattern.MatchString(id) {
		return Tenant{}, fmt.Errorf("storage: bad tenant id %q", id)
	}
	return Tenant{id: id}, nil
}

// ID is the tenant id the handle opens.
func (h Tenant) ID() string { return h.id }

// Valid reports whether the handle opens a tenant (the zero value does not).
func (h Tenant) Valid() bool { return h.id != "" }

func isTenantBucket(bucket []byte) bool { return bytes.HasPrefix(bucket, tenantPrefix) }

// TenantTx reads and writes one tenant's buckets inside a transaction.
// Bucket names are the tenant-local ones ("kv", "agents"); two tenants'
// buckets of the same name are different bbolt buckets.
type TenantTx struct {
	tx *Tx
	h  Tenant
}

// Tenant scopes the transaction to one tenant. A zero handle yields a
// TenantTx whose reads find nothing and whose writes fail.
func (t *Tx) Tenant(h Tenant) *TenantTx { return &TenantTx{tx: t, h: h} }

// TenantID is the id of the tenant this transaction is scoped to.
func (t *TenantTx) TenantID() string { return t.h.id }

func (t *TenantTx) bucket(name []byte) []byte {
	b := make([]byte, 0, len(tenantPrefix)+len(t.h.id)+1+len(name))
	b = append(b, tenantPrefix...)
	b = append(b, t.h.id...)
	b = append(b, '.')
	return append(b, name...)
}

// Get returns the value of key in the tenant's bucket, or nil.
func (t *TenantTx) Get(bucket, key []byte) []byte {
	if !t.h.Valid() {
		return nil
	}
	return t.tx.get(t.bucket(bucket), key)
}

// Put sets key in the tenant's bucket.
func (t *TenantTx) Put(bucket, key, value []byte) error {
	if !t.h.Valid() {
		return ErrNeedsTenant
	}
	return t.tx.put(t.bucket(bucket), key, value)
}

// Delete removes key from the tenant's bucket.
func (t *TenantTx) Delete(bucket, key []byte) error {
	if !t.h.Valid() {
		return ErrNeedsTenant
	}
	return t.tx.delete(t.bucket(bucket), key)
}

// ForEach walks the tenant's bucket as Tx.ForEach does.
func (t *TenantTx) ForEach(bucket, prefix []byte, fn func(k, v []byte) bool) {
	if !t.h.Valid() {
		return
	}
	t.tx.forEach(t.bucket(bucket), prefix, fn)
}

// ForEachReverse walks the tenant's bucket as Tx.ForEachReverse does.
func (t *TenantTx) ForEachReverse(bucket []byte, fn func(k, v []byte) bool) {
	if !t.h.Valid() {
		return
	}
	t.tx.forEachReverse(t.bucket(bucket), fn)
}
