package node_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/node"
)

// tenantRecord finds the seq of the record of action on entity among the
// records a route returns.
func tenantRecord(t *testing.T, tn *testNode, cred, path, action, entity string) (int64, audit.Page) {
	t.Helper()
	var page audit.Page
	if err := json.Unmarshal([]byte(tn.must(t, 200, "GET", path, cred, "")), &page); err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Entries {
		var rec audit.Record
		if json.Unmarshal(e.Data, &rec) == nil && rec.Action == action && rec.Entity == entity {
			return e.Seq, page
		}
	}
	t.Fatalf("no %s %s record at %s", action, entity, path)
	return 0, page
}

// openCheckpoint fetches and verifies a log's checkpoint through base
// with the key the node serves, under the origin the region pins.
func openCheckpoint(t *testing.T, tn *testNode, cred, base, origin string) tlog.Tree {
	t.Helper()
	cp := tn.must(t, 200, "GET", base+"/checkpoint", cred, "")
	vkey := strings.TrimSpace(tn.must(t, 200, "GET", base+"/key", cred, ""))
	tr, err := audit.OpenCheckpoint([]byte(cp), vkey, origin)
	if err != nil {
		t.Fatalf("%s checkpoint: %v", base, err)
	}
	return tr
}

// TestAuditProofs: a tenant Admin checks its own record against the
// signed region log by an inclusion proof, and that the log only grew by
// a consistency proof, without reading the log; it gets no proof of
// another tenant's record. GET /audit without size echoes the size used.
func TestAuditProofs(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, bob := twoTenants(t, tn)
	tn.must(t, 200, "PUT", "/api/v1/tenants/acme/kv/a1", alice, "acme-value")
	tn.must(t, 200, "PUT", "/api/v1/tenants/globex/kv/g1", bob, "globex-value")
	const acme, globex = "/api/v1/tenants/acme/audit", "/api/v1/tenants/globex/audit"

	t.Run("size defaults to the log's and is echoed", func(t *testing.T) {
		tr := openCheckpoint(t, tn, tn.token, "/api/v1/audit", audit.Origin("sec"))
		var page audit.Page
		_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/audit", tn.token, "")), &page)
		if page.Size < tr.N || page.Size > tr.N+2 || int64(len(page.Entries)) != page.Size {
			t.Fatalf("GET /api/v1/audit: size %d with %d entries; the checkpoint had %d", page.Size, len(page.Entries), tr.N)
		}
		_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/audit?size=99999999", tn.token, "")), &page)
		if page.Size != int64(len(page.Entries)) {
			t.Fatalf("size beyond the log echoed as %d for %d entries", page.Size, len(page.Entries))
		}
		_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", acme, alice, "")), &page)
		if page.Size < tr.N || page.Size > tr.N+2 {
			t.Fatalf("tenant page size %d, log %d", page.Size, tr.N)
		}
	})

	aSeq, _ := tenantRecord(t, tn, alice, acme, "tenant.kv.put", "kv/a1")
	gSeq, _ := tenantRecord(t, tn, bob, globex, "tenant.kv.put", "kv/g1")
	old := openCheckpoint(t, tn, alice, acme, audit.Origin("sec"))
	tn.must(t, 200, "PUT", "/api/v1/tenants/acme/kv/a2", alice, "more")
	cur := openCheckpoint(t, tn, alice, acme, audit.Origin("sec"))

	t.Run("own record proven included", func(t *testing.T) {
		var p audit.InclusionProof
		_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", fmt.Sprintf("%s/proof?seq=%d&size=%d", acme, aSeq, cur.N), alice, "")), &p)
		if err := audit.CheckInclusion(p, cur); err != nil {
			t.Fatal(err)
		}
		p.Data = []byte(strings.Replace(string(p.Data), "kv/a1", "kv/zz", 1))
		if err := audit.CheckInclusion(p, cur); err == nil {
			t.Fatal("an edited record passed its proof")
		}
	})
	t.Run("log only grew", func(t *testing.T) {
		var p audit.ConsistencyProof
		_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", fmt.Sprintf("%s/consistency?old=%d&size=%d", acme, old.N, cur.N), alice, "")), &p)
		if err := audit.CheckConsistency(p, old, cur); err != nil {
			t.Fatal(err)
		}
		tn.must(t, 404, "GET", fmt.Sprintf("%s/consistency?old=%d&size=%d", acme, cur.N+5, cur.N+5), alice, "")
	})
	t.Run("another tenant's record is not proven", func(t *testing.T) {
		for _, path := range []string{
			fmt.Sprintf("%s/proof?seq=%d&size=%d", acme, gSeq, cur.N),
			fmt.Sprintf("%s/proof?seq=%d", acme, gSeq),
			fmt.Sprintf("%s/proof?seq=0", acme), // the lease's, region-wide
			fmt.Sprintf("%s/provider/proof?seq=0", acme),
		} {
			r := tn.do(t, "GET", path, alice, "")
			if r.code != 404 || strings.Contains(r.body, "globex") || strings.Contains(r.body, "proof\"") || strings.Contains(r.body, "data") {
				t.Errorf("GET %s as acme's Admin: %d %s", path, r.code, r.body)
			}
		}
		// Nor a record through another tenant's routes.
		if r := tn.do(t, "GET", fmt.Sprintf("%s/proof?seq=%d", globex, gSeq), alice, ""); r.code != 404 {
			t.Errorf("globex's proof route for acme's Admin: %d", r.code)
		}
		// The region admin proves any record.
		var p audit.InclusionProof
		_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", fmt.Sprintf("/api/v1/audit/proof?seq=%d&size=%d", gSeq, cur.N), tn.token, "")), &p)
		if err := audit.CheckInclusion(p, cur); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a tenant's checkpoint is the region log's, not the provider stream's", func(t *testing.T) {
		p := openCheckpoint(t, tn, alice, acme+"/provider", audit.ProviderOrigin("sec"))
		cp := tn.must(t, 200, "GET", acme+"/provider/checkpoint", alice, "")
		vkey := strings.TrimSpace(tn.must(t, 200, "GET", acme+"/provider/key", alice, ""))
		if _, err := audit.OpenCheckpoint([]byte(cp), vkey, audit.Origin("sec")); err == nil {
			t.Fatalf("the provider checkpoint (%d records) opened as the region log's", p.N)
		}
	})
}

// deniedCounts reads a tenant's auth.denied records: how many there are
// and the refusals they count together.
func deniedCounts(t *testing.T, tn *testNode, cred, tenant string) (records, total int) {
	t.Helper()
	var page audit.Page
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/tenants/"+tenant+"/audit", cred, "")), &page)
	for _, e := range page.Entries {
		var rec audit.Record
		var d struct {
			Count int `json:"count"`
		}
		if json.Unmarshal(e.Data, &rec) == nil && rec.Action == "auth.denied" && json.Unmarshal(rec.Detail, &d) == nil {
			records++
			total += d.Count
		}
	}
	return records, total
}

// TestDenialsAggregated: a Viewer hammering a route it may not use costs
// one audit record per window, not one per request, and every refusal is
// counted in them.
func TestDenialsAggregated(t *testing.T) {
	const window = 400 * time.Millisecond
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{DenialWindow: window})
	alice, _ := twoTenants(t, tn)
	viewer := tn.tenantToken(t, alice, "acme", "viewer")
	const n = 600
	start := time.Now()
	for i := 0; i < n; i++ {
		path := "/api/v1/tenants/acme/kv/k"
		if i%3 == 0 {
			path = "/api/v1/tenants/acme/members/bob"
		}
		tn.must(t, 403, "PUT", path, viewer, `{"role":"admin"}`)
	}
	elapsed := time.Since(start)
	deadline := time.Now().Add(10 * time.Second)
	records, total := deniedCounts(t, tn, alice, "acme")
	for total != n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		records, total = deniedCounts(t, tn, alice, "acme")
	}
	if total != n {
		t.Fatalf("%d refusals counted in %d records, want %d", total, records, n)
	}
	if most := 2 + int(elapsed/window) + 1; records > most {
		t.Fatalf("%d refusals in %v made %d records; want at most %d (one per %v window)", n, elapsed, records, most, window)
	}
	t.Logf("%d refusals in %v: %d records", n, elapsed, records)
}

// TestOpenDenialWindowWrittenAtStop: refusals counted in a window that
// is still open when the node stops gracefully are written before it
// stops, so a caller cannot hide refusals by timing them before a
// restart: after the restart the records count every refusal.
func TestOpenDenialWindowWrittenAtStop(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	kp := mustKeys(t, newMasterKey(t), nil)
	tn := startNode(t, cfg, kp, node.Options{DenialWindow: time.Hour})
	alice, _ := twoTenants(t, tn)
	viewer := tn.tenantToken(t, alice, "acme", "viewer")
	const n = 7 // the first recorded at once, six waiting in the window
	for range n {
		tn.must(t, 403, "PUT", "/api/v1/tenants/acme/kv/k", viewer, "v")
	}
	if records, total := deniedCounts(t, tn, alice, "acme"); records != 1 || total != 1 {
		t.Fatalf("before the stop: %d records counting %d refusals, want the first alone (the window is an hour)", records, total)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tn.n.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	tn = startNode(t, cfg, kp, node.Options{GossipKey: tn.gossip, DenialWindow: time.Hour})
	var records, total int
	eventually(t, 10*time.Second, "the restarted node serving the tenant's audit log", func() bool {
		if tn.do(t, "GET", "/api/v1/tenants/acme/audit", alice, "").code != 200 {
			return false
		}
		records, total = deniedCounts(t, tn, alice, "acme")
		return true
	})
	if total != n || records != 2 {
		t.Fatalf("after a stop with an open window: %d records counting %d refusals, want 2 counting %d", records, total, n)
	}
}

// TestTenantValuesAreDigestsInRegionLog: a tenant's writes reach the
// region log (which region admins read) as SHA-256 digests, never as
// values.
func TestTenantValuesAreDigestsInRegionLog(t *testing.T) {
	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	const v1, v2 = "acme-private-value-1", "acme-private-value-2"
	tn.must(t, 200, "PUT", "/api/v1/tenants/acme/kv/flows", alice, v1)
	tn.must(t, 200, "PUT", "/api/v1/tenants/acme/kv/flows", alice, v2)
	tn.must(t, 200, "DELETE", "/api/v1/tenants/acme/kv/flows", alice, "")
	body := tn.must(t, 200, "GET", "/api/v1/audit", tn.token, "")
	var page audit.Page
	_ = json.Unmarshal([]byte(body), &page)
	digest := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	var seen int
	for _, e := range page.Entries {
		for _, v := range []string{v1, v2} {
			if strings.Contains(string(e.Data), v) || strings.Contains(string(e.Data), base64.StdEncoding.EncodeToString([]byte(v))) {
				t.Fatalf("record %d holds a tenant value: %s", e.Seq, e.Data)
			}
		}
		var rec audit.Record
		_ = json.Unmarshal(e.Data, &rec)
		if rec.Tenant == "" || rec.Entity != "kv/flows" {
			continue
		}
		seen++
		for _, val := range []*audit.Value{rec.Before, rec.After} {
			if val != nil && (val.Text != nil || val.Base64 != nil || val.SHA256 == "") {
				t.Fatalf("record %d (%s) carries a value, not a digest: %s", e.Seq, rec.Action, e.Data)
			}
		}
		if rec.Action == "tenant.kv.put" && rec.After.SHA256 != digest(v1) && rec.After.SHA256 != digest(v2) {
			t.Fatalf("record %d: digest %s is not of the value written", e.Seq, rec.After.SHA256)
		}
	}
	if seen != 3 {
		t.Fatalf("%d records of the tenant's writes in the region log, want 3", seen)
	}
}
