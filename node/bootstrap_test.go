package node_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-mesh/outpost/node"
)

// TestFirstAdminCredentials: the first admin's token and password files
// are written 0600, the token works, and no temporary file is left. The
// files are renamed into place only after the region accepted the
// bootstrap entry: an attempt the region refuses (the admin already
// exists) leaves no credential file and no temporary file behind.
func TestFirstAdminCredentials(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	files := []string{cfg.AdminTokenFile, tn.n.AdminPasswordFile()}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	tn.must(t, 200, "GET", "/api/v1/whoami", tn.token, "")
	noTemp := func() {
		t.Helper()
		ents, err := os.ReadDir(filepath.Dir(cfg.AdminTokenFile))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("temporary credential file %s left behind", e.Name())
			}
		}
	}
	noTemp()

	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	_ = node.CreateAdmin(context.Background(), tn.n)
	for _, f := range files {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("a bootstrap the region refused left %s (stat: %v); credentials must be renamed into place only after the region accepts them", f, err)
		}
	}
	noTemp()
	tn.must(t, 200, "GET", "/api/v1/whoami", tn.token, "")
}
