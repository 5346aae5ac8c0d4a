package auditlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/storage"
)

type fixture struct {
	store *storage.Store
	log   *Log
	ca    *pki.CA
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := storage.Open(filepath.Join(t.TempDir(), "s.db"), storage.Options{Region: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := pki.NewCA("eu")
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLog(st, "eu", ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{store: st, log: l, ca: ca}
}

func (f *fixture) append(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		meta, err := audit.EncodeMeta(audit.Meta{Time: time.Unix(1700000000+int64(i), 0), Node: "n1", Actor: "admin", Action: "kv.put", Entity: fmt.Sprintf("kv/k%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.store.Update(func(tx *storage.Tx) error {
			return Append(tx, uint64(100+i), meta, nil, []byte(fmt.Sprintf("v%d", i)))
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fixture) verify(t *testing.T, since []byte) (audit.Report, error) {
	t.Helper()
	cp, err := f.log.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	es, err := f.log.Entries(0, 1<<40, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return audit.Verify(es, cp, f.log.VerifierKey(), f.log.Origin(), since)
}

// rawPut writes straight into the state file, as an attacker with the
// file would.
func (f *fixture) rawPut(t *testing.T, bucket []byte, key []byte, val []byte) {
	t.Helper()
	if err := f.store.Update(func(tx *storage.Tx) error { return tx.Put(bucket, key, val) }); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyIntactLog(t *testing.T) {
	f := newFixture(t)
	f.append(t, 13)
	old, _ := f.log.Checkpoint()
	f.append(t, 7)
	rep, err := f.verify(t, old)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Size != 20 || rep.SinceSize != 13 {
		t.Fatalf("report %+v", rep)
	}
	es, _ := f.log.Entries(0, 20, 100)
	var rec audit.Record
	if err := json.Unmarshal(es[4].Data, &rec); err != nil || rec.Seq != 4 || rec.Entity != "kv/k4" || *rec.After.Text != "v4" || rec.Index != 104 {
		t.Fatalf("record 4 = %+v (err %v)", rec, err)
	}
}

func TestVerifyNamesEditedRecord(t *testing.T) {
	f := newFixture(t)
	f.append(t, 10)
	es, _ := f.log.Entries(6, 10, 1)
	edited := strings.Replace(string(es[0].Data), `"actor":"admin"`, `"actor":"someone-else"`, 1)
	f.rawPut(t, bucketRecords, be(6), []byte(edited))
	_, err := f.verify(t, nil)
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "record 6 ") {
		t.Fatalf("err = %v, want record 6 named", err)
	}
}

func TestVerifyCatchesRewrittenHistory(t *testing.T) {
	f := newFixture(t)
	f.append(t, 10)
	old, _ := f.log.Checkpoint()

	t.Run("record and its leaf hash rewritten", func(t *testing.T) {
		f := newFixture(t)
		f.append(t, 10)
		es, _ := f.log.Entries(3, 10, 1)
		edited := []byte(strings.Replace(string(es[0].Data), "kv/k3", "kv/zz", 1))
		f.rawPut(t, bucketRecords, be(3), edited)
		h := recordHash(edited)
		f.rawPut(t, bucketHashes, be(storedLeafIndex(3)), h[:])
		// The node signs what it now stores, so the tree no longer matches.
		if _, err := f.verify(t, nil); !errors.Is(err, audit.ErrTampered) {
			t.Fatalf("err = %v, want tampering detected", err)
		}
	})

	t.Run("whole log rebuilt with an edit", func(t *testing.T) {
		// An attacker with the state file rebuilds a consistent log from
		// scratch. The current checkpoint verifies; one kept from before does not.
		g := newFixture(t)
		g.log = f.log // same key, same region
		g.append(t, 2)
		meta, _ := audit.EncodeMeta(audit.Meta{Time: time.Unix(1, 0), Node: "n1", Actor: "intruder", Action: "kv.put", Entity: "kv/x"})
		_ = g.store.Update(func(tx *storage.Tx) error { return Append(tx, 1, meta, nil, nil) })
		g.append(t, 9)
		g.log = &Log{store: g.store, st: regionStream, origin: f.log.origin, skey: f.log.skey, vkey: f.log.vkey}
		if _, err := g.verify(t, nil); err != nil {
			t.Fatalf("a self-consistent rebuilt log should verify on its own: %v", err)
		}
		_, err := g.verify(t, old)
		if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "history rewritten") {
			t.Fatalf("err = %v, want the older checkpoint to catch the rewrite", err)
		}
	})

	t.Run("truncated", func(t *testing.T) {
		f.rawPut(t, bucketHashes, keySize, be(6))
		_, err := f.verify(t, old)
		if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("err = %v, want truncation caught", err)
		}
	})
}

func TestCheckpointSignature(t *testing.T) {
	f := newFixture(t)
	f.append(t, 3)
	cp, _ := f.log.Checkpoint()
	other := newFixture(t)
	if _, err := audit.OpenCheckpoint(cp, other.log.VerifierKey(), f.log.Origin()); err == nil {
		t.Fatal("checkpoint verified with another region's key")
	}
	forged := strings.Replace(string(cp), "\n3\n", "\n4\n", 1)
	if _, err := audit.OpenCheckpoint([]byte(forged), f.log.VerifierKey(), f.log.Origin()); err == nil {
		t.Fatal("edited checkpoint verified")
	}
	if _, err := audit.OpenCheckpoint(cp, f.log.VerifierKey(), audit.Origin("us")); err == nil {
		t.Fatal("checkpoint of another origin accepted")
	}
	// Deterministic key: the same CA key always yields the same audit key.
	ca, _ := pki.NewCA("eu")
	_, v1, _ := audit.DeriveKey("eu", false, ca.Key)
	_, v2, _ := audit.DeriveKey("eu", false, ca.Key)
	_, v3, _ := audit.DeriveKey("us", false, ca.Key)
	_, v4, _ := audit.DeriveKey("eu", true, ca.Key)
	if v1 != v2 || v1 == v3 || v1 == v4 {
		t.Fatal("audit key derivation is not deterministic per region and stream")
	}
}

func TestExportVerifiesOffline(t *testing.T) {
	f := newFixture(t)
	f.append(t, 11)
	cp, _ := f.log.Checkpoint()
	es, _ := f.log.Entries(0, 11, 100)
	recs, err := audit.Prove(es)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.CheckExported(recs, cp, f.log.VerifierKey(), f.log.Origin()); err != nil {
		t.Fatal(err)
	}
	recs[5].Data = []byte(strings.Replace(string(recs[5].Data), "kv/k5", "kv/k6", 1))
	if _, err := audit.CheckExported(recs, cp, f.log.VerifierKey(), f.log.Origin()); !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "record 5") {
		t.Fatalf("edited export record: err = %v", err)
	}
}

func TestMetaValidation(t *testing.T) {
	for _, m := range []audit.Meta{{}, {Time: time.Now()}, {Time: time.Now(), Node: "n", Actor: "a", Action: "x", Entity: "e", Detail: json.RawMessage("{")}} {
		if _, err := audit.EncodeMeta(m); err == nil {
			t.Fatalf("accepted %+v", m)
		}
	}
	if err := Append(nil, 1, []byte(`{"time":"2024-01-01T00:00:00Z","node":"n","actor":"a","action":"x","entity":"e","extra":1}`), nil, nil); err == nil {
		t.Fatal("unknown metadata field accepted")
	}
}

// TestProviderStreamIsSeparate: provider records land in their own log,
// verified under their own origin, and never in the region log.
func TestProviderStreamIsSeparate(t *testing.T) {
	f := newFixture(t)
	f.append(t, 3)
	plog, err := NewProviderLog(f.store, "eu", f.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := audit.EncodeMeta(audit.Meta{Time: time.Unix(5, 0), Node: "n1", Actor: "user:root", Tenant: "t1",
		Action: "breakglass.access", Entity: "tenant/t1", Stream: audit.StreamProvider})
	if err := f.store.Update(func(tx *storage.Tx) error { return Append(tx, 9, meta, nil, nil) }); err != nil {
		t.Fatal(err)
	}
	pes, _ := plog.Entries(0, 100, 100)
	res, _ := f.log.Entries(0, 100, 100)
	if len(pes) != 1 || len(res) != 3 {
		t.Fatalf("provider stream has %d records, region log %d; want 1 and 3", len(pes), len(res))
	}
	cp, err := plog.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(pes, cp, plog.VerifierKey(), audit.ProviderOrigin("eu"), nil); err != nil {
		t.Fatalf("provider stream does not verify: %v", err)
	}
	if _, err := audit.Verify(pes, cp, plog.VerifierKey(), audit.Origin("eu"), nil); err == nil {
		t.Fatal("a provider checkpoint verified as the region log's")
	}
}

// TestTenantEntries: a tenant's view read from the index is the log
// filtered by tenant, from any offset and in pages, also for a state
// file written before the index existed (scanned until its next append,
// which indexes it).
func TestTenantEntries(t *testing.T) {
	f := newFixture(t)
	appendFor := func(tenant string, i int) {
		t.Helper()
		meta, _ := audit.EncodeMeta(audit.Meta{Time: time.Unix(1700000000+int64(i), 0), Node: "n1", Actor: "a", Tenant: tenant, Action: "x", Entity: "e"})
		if err := f.store.Update(func(tx *storage.Tx) error { return Append(tx, uint64(i+1), meta, nil, nil) }); err != nil {
			t.Fatal(err)
		}
	}
	tenants := []string{"", "t1", "t2", "t1", "t10", "t1", "t2"}
	for i := 0; i < 70; i++ {
		appendFor(tenants[i%len(tenants)], i)
	}
	want := func(tenant string, from int64, limit int) []int64 {
		var out []int64
		es, _ := f.log.Entries(0, 1<<40, 1<<20)
		for _, e := range es {
			if e.Seq >= from && recordTenant(e.Data) == tenant && len(out) < limit {
				out = append(out, e.Seq)
			}
		}
		return out
	}
	check := func(t *testing.T) {
		t.Helper()
		for _, tenant := range []string{"t1", "t2", "t10", "t3"} {
			for _, c := range []struct {
				from  int64
				limit int
			}{{0, 1000}, {0, 5}, {17, 1000}, {69, 3}, {70, 10}} {
				es, err := f.log.TenantEntries(tenant, c.from, 1<<40, c.limit)
				if err != nil {
					t.Fatal(err)
				}
				var got []int64
				for _, e := range es {
					if recordTenant(e.Data) != tenant || tlog.RecordHash(e.Data) != e.LeafHash {
						t.Fatalf("%s: record %d is not the tenant's or lacks its leaf hash", tenant, e.Seq)
					}
					got = append(got, e.Seq)
				}
				if fmt.Sprint(got) != fmt.Sprint(want(tenant, c.from, c.limit)) {
					t.Errorf("%s from %d limit %d: %v, want %v", tenant, c.from, c.limit, got, want(tenant, c.from, c.limit))
				}
			}
		}
	}
	t.Run("indexed", check)
	t.Run("state file from before the index", func(t *testing.T) {
		_ = f.store.Update(func(tx *storage.Tx) error {
			tx.ForEach(regionStream.tenants, nil, func(k, _ []byte) bool { _ = tx.Delete(regionStream.tenants, k); return true })
			return tx.Delete(regionStream.hashes, regionStream.indexed)
		})
		check(t)
		appendFor("t2", 70)
		if n := indexedLen(t, f); n != 71 {
			t.Fatalf("the next append indexed %d records, want 71", n)
		}
		check(t)
	})
}

func indexedLen(t *testing.T, f *fixture) (n int64) {
	_ = f.store.View(func(tx *storage.Tx) error { n = regionStream.indexedLen(tx); return nil })
	return n
}
