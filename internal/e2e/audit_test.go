package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/storage"
)

// Every write is audited in the same Raft entry; `outpostctl audit verify`
// recomputes the tree, names a record edited in the bbolt file directly,
// and, given an older checkpoint, catches a truncated log. An export
// verifies offline with the region's key alone.
func TestAuditLogTamperEvidence(t *testing.T) {
	sr := newServedRegion(t, 1)
	nd := sr.nodes[0]
	sr.start(t, nd)
	waitFor(t, 60*time.Second, "the admin token", func() bool { _, err := os.Stat(sr.tokenFile); return err == nil })
	token := readToken(t, sr.tokenFile)
	c := &apiClient{token: token, http: &http.Client{Timeout: 10 * time.Second}}
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code, body, err := c.do(ctx, "PUT", fmt.Sprintf("%s/api/v1/kv/k%d", nd.api, i), []byte(fmt.Sprintf("v%d", i)))
		cancel()
		if err != nil || code != 200 {
			t.Fatalf("put k%d: %d %s %v", i, code, body, err)
		}
	}
	ctl := func(args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(sr.bin+"/outpostctl", args...)
		cmd.Env = append(os.Environ(), "OUTPOST_ADDR="+nd.api, "OUTPOST_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	old := filepath.Join(sr.dir, "checkpoint-1")
	code, out := ctl("audit", "verify", "--save", old)
	// The dispatch lease's acquisition, the admin token's creation and
	// five writes.
	if code != 0 || !strings.Contains(out, "verified: 7 records") {
		t.Fatalf("audit verify: %d\n%s", code, out)
	}
	key := regexp.MustCompile(`--key "([^"]+)"`).FindStringSubmatch(out)
	if key == nil {
		t.Fatalf("no key in output:\n%s", out)
	}
	exp := filepath.Join(sr.dir, "export")
	if code, out := ctl("audit", "export", "--out", exp); code != 0 {
		t.Fatalf("export: %d %s", code, out)
	}
	if code, out := ctl("audit", "verify-export", exp, "--key", key[1]); code != 0 || !strings.Contains(out, "7 records") {
		t.Fatalf("verify-export: %d %s", code, out)
	}
	// An export edited after the fact fails offline verification.
	recs, _ := os.ReadFile(filepath.Join(exp, "records.jsonl"))
	lines := strings.Split(string(recs), "\n")
	lines[2] = strings.Replace(lines[2], `"seq":2`, `"seq":3`, 1)
	os.WriteFile(filepath.Join(exp, "records.jsonl"), []byte(strings.Join(lines, "\n")), 0o644)
	if code, _ := ctl("audit", "verify-export", exp, "--key", key[1]); code != 1 {
		t.Fatalf("a tampered export verified (exit %d)", code)
	}

	stop := func() {
		nd.p.signal(syscall.SIGTERM)
		if code := nd.p.wait(t, 40*time.Second); code != 0 {
			t.Fatalf("SIGTERM exit %d", code)
		}
	}
	editState := func(fn func(tx *storage.Tx) error) {
		st, err := storage.Open(filepath.Join(nd.dataDir, "state.db"), storage.Options{Region: "e2e"})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	restart := func() {
		sr.start(t, nd)
		waitFor(t, 30*time.Second, "the node to lead again", func() bool {
			r, err := c.region(t, nd.api)
			return err == nil && r.Leader == nd.id
		})
	}

	// Someone with the state file rewrites who made change 3.
	stop()
	editState(func(tx *storage.Tx) error {
		rec := tx.Get([]byte("audit"), be64(3))
		return tx.Put([]byte("audit"), be64(3), []byte(strings.Replace(string(rec), `"actor":"token:`, `"actor":"forged:`, 1)))
	})
	restart()
	code, out = ctl("audit", "verify")
	if code != 1 || !strings.Contains(out, "record 3 ") {
		t.Fatalf("audit verify after an edit: exit %d, want 1 naming record 3:\n%s", code, out)
	}

	// Someone truncates the log to its first two records.
	stop()
	editState(func(tx *storage.Tx) error { return tx.Put([]byte("audit_hashes"), []byte("audit_size"), be64(2)) })
	restart()
	code, out = ctl("audit", "verify", "--since", old)
	if code != 1 || !strings.Contains(out, "truncated") {
		t.Fatalf("audit verify --since after truncation: exit %d:\n%s", code, out)
	}
}

func be64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
