package httpapi

import (
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/node/auditlog"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/storage"
)

// benchLog is a region log in a real bbolt file of n records, one in
// every `every` of tenant "quiet", the rest of tenant "noisy" (a flood of
// denials, say).
func benchLog(b *testing.B, n, every int) *auditlog.Log {
	b.Helper()
	st, err := storage.Open(filepath.Join(b.TempDir(), "s.db"), storage.Options{Region: "eu"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	ca, err := pki.NewCA("eu")
	if err != nil {
		b.Fatal(err)
	}
	err = st.Update(func(tx *storage.Tx) error {
		for i := 0; i < n; i++ {
			tenant := "noisy"
			if i%every == 0 {
				tenant = "quiet"
			}
			meta, err := audit.EncodeMeta(audit.Meta{Time: time.Unix(1700000000+int64(i), 0), Node: "n1", Actor: "token:v", Tenant: tenant,
				Action: "auth.denied", Entity: "tenant/" + tenant, Detail: json.RawMessage(`{"method":"PUT","path":"/api/v1/tenants/x/kv/k","needs":"tenant-operator"}`)})
			if err != nil {
				return err
			}
			if err := auditlog.Append(tx, uint64(i+1), meta, nil, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	l, err := auditlog.NewLog(st, "eu", ca.Key)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkTenantAuditRead is GET /api/v1/tenants/{t}/audit for a tenant
// with 100 records in a region log of 20,000, most of another tenant.
//
//	go test -run '^$' -bench BenchmarkTenantAuditRead -benchmem ./node/httpapi
func BenchmarkTenantAuditRead(b *testing.B) {
	const n, every = 20000, 200
	log := benchLog(b, n, every)
	s := &server{}
	c := &call{tenant: auth.Tenant{ID: "quiet"}}
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		s.auditEntries(w, httptest.NewRequest("GET", "/api/v1/tenants/quiet/audit", nil), c, log)
		var page audit.Page
		if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || len(page.Entries) != n/every {
			b.Fatalf("%d records (%v): %s", len(page.Entries), err, w.Body.String()[:min(200, w.Body.Len())])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/read")
}
