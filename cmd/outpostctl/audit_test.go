package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/dev"
)

// testKeys are a region's two audit keys (signer, verifier).
type testKeys struct{ rs, rv, ps, pv string }

func newTestKeys(t *testing.T, region string) testKeys {
	t.Helper()
	ca, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var k testKeys
	k.rs, k.rv, _ = audit.DeriveKey(region, false, ca)
	k.ps, k.pv, _ = audit.DeriveKey(region, true, ca)
	return k
}

// TestAuditVerifyPinsTheOrigin: a node that hands over its provider
// stream's (empty) checkpoint and key as the region log's is refused
// without --region: the expected log comes from the node's region or the
// pinned key, never from the checkpoint.
func TestAuditVerifyPinsTheOrigin(t *testing.T) {
	k := newTestKeys(t, "eu")
	empty, _ := tlog.TreeHash(0, nil)
	pcp, err := audit.SignCheckpoint(k.ps, audit.ProviderOrigin("eu"), tlog.Tree{Hash: empty})
	if err != nil {
		t.Fatal(err)
	}
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/whoami":
			fmt.Fprint(w, `{"region":"eu","actor":"token:x","region_admin":true,"tenants":{}}`)
		case "/api/v1/audit/checkpoint":
			w.Write(pcp)
		case "/api/v1/audit/key":
			fmt.Fprintln(w, k.pv)
		case "/api/v1/audit":
			fmt.Fprint(w, `{"entries":[],"size":0}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer node.Close()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"key from the node", nil},
		{"region key pinned", []string{"--key", k.rv}},
		{"provider key pinned", []string{"--key", k.pv}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCLI(t, node.URL, "", append([]string{"audit", "verify", "--token", "opt_x"}, tc.args...)...)
			if err == nil || strings.Contains(out, "verified") {
				t.Fatalf("the provider checkpoint passed as the region log: %v\n%s", err, out)
			}
			if tc.name != "region key pinned" && !errors.Is(err, audit.ErrWrongLog) {
				t.Fatalf("err = %v, want ErrWrongLog", err)
			}
		})
	}
	// Asked for the provider stream, the same answer verifies.
	node2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/whoami":
			fmt.Fprint(w, `{"region":"eu"}`)
		case "/api/v1/audit/provider/checkpoint":
			w.Write(pcp)
		case "/api/v1/audit/provider/key":
			fmt.Fprintln(w, k.pv)
		default:
			http.NotFound(w, r)
		}
	}))
	defer node2.Close()
	if out, _, err := runCLI(t, node2.URL, "", "audit", "verify", "--provider", "--token", "opt_x"); err != nil || !strings.Contains(out, "outpost.audit/eu/provider verified: 0 records") {
		t.Fatalf("audit verify --provider: %v\n%s", err, out)
	}
}

// writeExport writes an export of n records (records.jsonl keeping only
// the lines keep allows) signed with k's region key under origin.
func writeExport(t *testing.T, k testKeys, origin string, n int, keep func(i int) bool) string {
	t.Helper()
	var entries []audit.Entry
	for i := 0; i < n; i++ {
		data, _ := json.Marshal(audit.Record{Seq: int64(i), Index: uint64(10 + i), Time: time.Unix(1700000000, 0).UTC(), Node: "n1", Actor: "admin", Action: "kv.put", Entity: fmt.Sprintf("kv/k%d", i)})
		entries = append(entries, audit.Entry{Seq: int64(i), Data: data, LeafHash: tlog.RecordHash(data)})
	}
	recs, err := audit.Prove(entries)
	if err != nil {
		t.Fatal(err)
	}
	var hs []tlog.Hash
	for i, e := range entries {
		s, _ := tlog.StoredHashesForRecordHash(int64(i), e.LeafHash, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for j, x := range idx {
				out[j] = hs[x]
			}
			return out, nil
		}))
		hs = append(hs, s...)
	}
	root, _ := tlog.TreeHash(int64(n), tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for j, x := range idx {
			out[j] = hs[x]
		}
		return out, nil
	}))
	skey := k.rs
	if strings.HasSuffix(origin, "/provider") {
		skey = k.ps
	}
	cp, err := audit.SignCheckpoint(skey, origin, tlog.Tree{N: int64(n), Hash: root})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var lines []string
	for i, r := range recs {
		if keep == nil || keep(i) {
			b, _ := json.Marshal(r)
			lines = append(lines, string(b)+"\n")
		}
	}
	os.WriteFile(filepath.Join(dir, "checkpoint"), cp, 0o644)
	os.WriteFile(filepath.Join(dir, "records.jsonl"), []byte(strings.Join(lines, "")), 0o644)
	return dir
}

// TestVerifyExport: an export verifies only as the log its key names, and
// only whole unless --partial says it was cut.
func TestVerifyExport(t *testing.T) {
	k := newTestKeys(t, "eu")
	whole := writeExport(t, k, audit.Origin("eu"), 5, nil)
	cut := writeExport(t, k, audit.Origin("eu"), 5, func(i int) bool { return i != 1 && i != 4 })
	provider := writeExport(t, k, audit.ProviderOrigin("eu"), 0, nil)
	tests := []struct {
		name string
		args []string
		want string // in stdout; "" = refused
	}{
		{"whole export", []string{whole, "--key", k.rv}, "all 5 records"},
		{"whole export, region named", []string{whole, "--key", k.rv, "--region", "eu"}, "all 5 records"},
		{"whole export, another region named", []string{whole, "--key", k.rv, "--region", "us"}, ""},
		{"cut export", []string{cut, "--key", k.rv}, ""},
		{"cut export, --partial", []string{cut, "--key", k.rv, "--partial"}, "3 records, each proven included in the signed tree of 5"},
		{"provider export with the provider key, as the region log", []string{provider, "--key", k.pv}, ""},
		{"provider export with the region key", []string{provider, "--key", k.rv}, ""},
		{"provider export, --provider", []string{provider, "--key", k.pv, "--provider"}, "outpost.audit/eu/provider verified: all 0 records"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCLI(t, "", "", append([]string{"audit", "verify-export"}, tc.args...)...)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("verified: %s", out)
				}
				return
			}
			if err != nil || !strings.Contains(out, tc.want) {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// call is an API request to a real node for the test's setup.
func call(t *testing.T, base, method, path, cred, body string) (string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if strings.HasPrefix(cred, "opt_") {
		req.Header.Set("Authorization", "Bearer "+cred)
	} else if cred != "" {
		req.Header.Set("Cookie", cred)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, r.StatusCode, b)
	}
	return string(b), r.Header
}

// TestAuditVerifyRecordAgainstANode: against a real node, a tenant
// Admin proves its own record included in the signed region log and the
// log grown since a saved checkpoint, without reading the log; another
// tenant's record is refused; the region admin's verify pins the region.
//
//	go test -run TestAuditVerifyRecordAgainstANode -v ./cmd/outpostctl
func TestAuditVerifyRecordAgainstANode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := dev.Start(ctx, dev.Options{Nodes: 1, HTTP: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	b, _ := os.ReadFile(r.TokenFile())
	admin := strings.TrimSpace(string(b))
	n1, _ := r.Node("n1")
	base := n1.APIURL()

	tenantAdmin := func(user, tenant string) string {
		var u api.User
		out, _ := call(t, base, "POST", "/api/v1/users", admin, fmt.Sprintf(`{"name":%q}`, user))
		_ = json.Unmarshal([]byte(out), &u)
		call(t, base, "POST", "/api/v1/tenants", admin, fmt.Sprintf(`{"name":%q,"admin":%q}`, tenant, user))
		_, h := call(t, base, "POST", "/api/v1/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, user, u.Password))
		cookie := strings.SplitN(h.Get("Set-Cookie"), ";", 2)[0]
		var tok api.APIToken
		out, _ = call(t, base, "POST", "/api/v1/tenants/"+tenant+"/tokens", cookie, `{"name":"ci","role":"admin"}`)
		_ = json.Unmarshal([]byte(out), &tok)
		return tok.Token
	}
	alice, bob := tenantAdmin("alice", "acme"), tenantAdmin("bob", "globex")
	call(t, base, "PUT", "/api/v1/tenants/acme/kv/a", alice, "1")
	call(t, base, "PUT", "/api/v1/tenants/globex/kv/b", bob, "2")
	seqOf := func(tok, tenant string) string {
		out, _, err := runCLI(t, base, "", "tenants", "audit", tenant, "--json", "--token", tok)
		var page audit.Page
		if err != nil || json.Unmarshal([]byte(out), &page) != nil {
			t.Fatalf("tenants audit %s: %v %s", tenant, err, out)
		}
		for _, e := range page.Entries {
			var rec audit.Record
			if json.Unmarshal(e.Data, &rec) == nil && rec.Action == "tenant.kv.put" {
				return fmt.Sprint(e.Seq)
			}
		}
		t.Fatalf("no kv record for %s", tenant)
		return ""
	}
	aSeq, bSeq := seqOf(alice, "acme"), seqOf(bob, "globex")
	saved := filepath.Join(t.TempDir(), "cp")

	out, _, err := runCLI(t, base, "", "audit", "verify-record", aSeq, "--tenant", "acme", "--save", saved, "--token", alice)
	if err != nil || !strings.Contains(out, "record "+aSeq+" (tenant.kv.put kv/a") || !strings.Contains(out, "signed region log tree") {
		t.Fatalf("verify-record of acme's own record: %v\n%s", err, out)
	}
	call(t, base, "PUT", "/api/v1/tenants/acme/kv/a", alice, "3")
	out, _, err = runCLI(t, base, "", "audit", "verify-record", aSeq, "--tenant", "acme", "--since", saved, "--token", alice)
	if err != nil || !strings.Contains(out, "the log only grew") {
		t.Fatalf("verify-record --since: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, base, "", "audit", "verify-record", bSeq, "--tenant", "acme", "--token", alice); err == nil || strings.Contains(out, "kv/b") {
		t.Fatalf("acme's Admin verified globex's record %s: %v\n%s", bSeq, err, out)
	}
	// The region admin: any record, and the whole log, pinned to region dev.
	if out, _, err := runCLI(t, base, "", "audit", "verify-record", bSeq, "--token", admin); err != nil || !strings.Contains(out, "kv/b") {
		t.Fatalf("region admin verify-record: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, base, "", "audit", "verify", "--token", admin); err != nil || !strings.Contains(out, "outpost.audit/dev verified") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, base, "", "audit", "verify", "--region", "other", "--token", admin); !errors.Is(err, audit.ErrWrongLog) {
		t.Fatalf("audit verify --region other: %v, want ErrWrongLog", err)
	}
}
