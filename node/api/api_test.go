package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-mesh/outpost/node/apitypes"
	"github.com/outpost-mesh/outpost/node/auditlog"
	"github.com/outpost-mesh/outpost/node/pki"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Every route declares a role; only liveness and self-metrics are public,
// and no state-changing route is.
func TestRouteTableRoles(t *testing.T) {
	public := map[string]bool{"GET /api/v1/health": true, "GET /metrics": true}
	for _, rt := range Routes(true) {
		name := rt.Method + " " + rt.Pattern
		if rt.Role == Public && !public[name] {
			t.Errorf("route %s is public; only %v may be", name, public)
		}
		if rt.Method != http.MethodGet && rt.Role == Public {
			t.Errorf("state-changing route %s is public", name)
		}
		if rt.Role != Public && rt.Role != RegionAdmin {
			t.Errorf("route %s has no declared role", name)
		}
	}
	for _, rt := range Routes(false) {
		if strings.Contains(rt.Pattern, "/dev/") {
			t.Errorf("dev route %s exists outside dev mode", rt.Pattern)
		}
	}
}

// fakeRegion applies KV commands straight to the store (unit tests only;
// the multi-node tests use real regions).
type fakeRegion struct {
	store    *storage.Store
	index    uint64
	noLeader bool
}

func (f *fakeRegion) Status(context.Context) raft.Status {
	return raft.Status{Region: "test", Node: "n1", Leader: "n1"}
}
func (f *fakeRegion) Members() []raft.Member            { return nil }
func (f *fakeRegion) ReadBarrier(context.Context) error { return nil }
func (f *fakeRegion) AppliedIndex() uint64              { return f.index }
func (f *fakeRegion) IsLeader() bool                    { return !f.noLeader }
func (f *fakeRegion) Leader() (string, string)          { return "n1", "127.0.0.1:1" }
func (f *fakeRegion) NodeID() string                    { return "n1" }
func (f *fakeRegion) Apply(_ context.Context, cmd []byte) (raft.Result, error) {
	if f.noLeader {
		return raft.Result{}, raft.ErrNoLeader
	}
	if raft.CommandType(cmd[0]) == raft.CmdAudited {
		_, inner, err := raft.DecodeAudited(cmd[1:])
		if err != nil {
			return raft.Result{}, err
		}
		cmd = inner
	}
	c, err := raft.DecodeKV(cmd[1:])
	if err != nil {
		return raft.Result{}, err
	}
	f.index++
	err = f.store.Update(func(tx *storage.Tx) error {
		if c.Op == raft.KVDelete {
			return tx.Delete(c.Bucket, c.Key)
		}
		return tx.Put(c.Bucket, c.Key, c.Value)
	})
	return raft.Result{Index: f.index}, err
}

const token = "opt_test-token"

func newTestAPI(t *testing.T) (*httptest.Server, *fakeRegion) {
	t.Helper()
	st, err := storage.Open(filepath.Join(t.TempDir(), "s.db"), storage.Options{Region: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sum := sha256.Sum256([]byte(token))
	if err := st.Update(func(tx *storage.Tx) error {
		return tx.Put(storage.BucketSystem, AdminTokenKey, []byte(hex.EncodeToString(sum[:])))
	}); err != nil {
		t.Fatal(err)
	}
	fr := &fakeRegion{store: st}
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	alog, err := auditlog.NewLog(st, "test", ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{Region: fr, Store: st, Gatherer: prometheus.NewRegistry(), TokenHint: "see admin.token", Audit: alog}))
	t.Cleanup(srv.Close)
	return srv, fr
}

func call(t *testing.T, srv *httptest.Server, method, path, tok, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, b.String()
}

func TestAPIStatusCodes(t *testing.T) {
	srv, fr := newTestAPI(t)
	cases := []struct {
		name, method, path, tok, body string
		want                          int
		errHas                        string
	}{
		{"health is public", "GET", "/api/v1/health", "", "", 200, ""},
		{"metrics is public", "GET", "/metrics", "", "", 200, ""},
		{"no token", "GET", "/api/v1/region", "", "", 401, "missing API token"},
		{"wrong token", "GET", "/api/v1/region", "opt_wrong", "", 401, "invalid API token"},
		{"token of another region", "PUT", "/api/v1/kv/a", "opt_other-region", "v", 401, "invalid API token"},
		{"region with token", "GET", "/api/v1/region", token, "", 200, ""},
		{"put", "PUT", "/api/v1/kv/a/b", token, "hello", 200, ""},
		{"get", "GET", "/api/v1/kv/a/b", token, "", 200, ""},
		{"get missing", "GET", "/api/v1/kv/nope", token, "", 404, "not found"},
		{"key too long", "PUT", "/api/v1/kv/" + strings.Repeat("k", raft.MaxKeyLen+1), token, "v", 400, "key must be"},
		{"value too large", "PUT", "/api/v1/kv/big", token, strings.Repeat("x", raft.MaxValueLen+1), 413, "exceeds"},
		{"unknown route", "GET", "/api/v1/nope", token, "", 404, "no route"},
		{"wrong method", "POST", "/api/v1/region", token, "", 405, ""},
		{"dev route absent outside dev mode", "POST", "/api/v1/dev/nodes/n1/stop", token, "", 404, ""},
		{"audit needs a token", "GET", "/api/v1/audit", "", "", 401, "missing API token"},
		{"audit checkpoint", "GET", "/api/v1/audit/checkpoint", token, "", 200, ""},
		{"audit key", "GET", "/api/v1/audit/key", token, "", 200, ""},
		{"audit bad paging", "GET", "/api/v1/audit?from=-1", token, "", 400, "non-negative"},
		{"no audit mutation route", "DELETE", "/api/v1/audit", token, "", 405, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := call(t, srv, tc.method, tc.path, tc.tok, tc.body)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: status %d, want %d (body %s)", tc.method, tc.path, resp.StatusCode, tc.want, body)
			}
			if tc.errHas != "" {
				var e apitypes.Error
				if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tc.errHas) {
					t.Fatalf("error body %q does not contain %q", body, tc.errHas)
				}
			}
		})
	}
	if _, body := call(t, srv, "GET", "/api/v1/kv/a/b", token, ""); body != "hello" {
		t.Fatalf("GET after PUT = %q", body)
	}
	t.Run("no leader is 503 with Retry-After", func(t *testing.T) {
		fr.noLeader = true
		defer func() { fr.noLeader = false }()
		resp, body := call(t, srv, "PUT", "/api/v1/kv/x", token, "v")
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "hint") {
			t.Fatalf("status %d, Retry-After %q, body %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	})
	t.Run("401 carries a hint", func(t *testing.T) {
		_, body := call(t, srv, "GET", "/api/v1/region", "", "")
		if !strings.Contains(body, "see admin.token") {
			t.Fatalf("401 body lacks the hint: %s", body)
		}
	})
}

func TestKVListTruncation(t *testing.T) {
	srv, fr := newTestAPI(t)
	if err := fr.store.Update(func(tx *storage.Tx) error {
		for i := 0; i < maxListKeys+5; i++ {
			if err := tx.Put(storage.BucketKV, []byte(fmt.Sprintf("k%05d", i)), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	resp, body := call(t, srv, "GET", "/api/v1/kv", token, "")
	var es []apitypes.KVEntry
	if err := json.Unmarshal([]byte(body), &es); err != nil {
		t.Fatal(err)
	}
	if len(es) != maxListKeys || resp.Header.Get("X-Outpost-Truncated") != "true" {
		t.Fatalf("%d entries, truncated header %q", len(es), resp.Header.Get("X-Outpost-Truncated"))
	}
	resp, body = call(t, srv, "GET", "/api/v1/kv?prefix=k0000", token, "")
	if err := json.Unmarshal([]byte(body), &es); err != nil || len(es) != 10 || resp.Header.Get("X-Outpost-Truncated") != "" {
		t.Fatalf("prefix list: %d entries, header %q, err %v", len(es), resp.Header.Get("X-Outpost-Truncated"), err)
	}
}
