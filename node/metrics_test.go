package node_test

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/outpost-mesh/outpost/node"
)

// TestMetricsDocumented: every outpost_ series a running node exports is
// listed in docs/metrics.md, and every series listed there is still
// defined in the code; the lease's and the API's series are exported
// from the start (so an alert on them sees a zero, not nothing).
func TestMetricsDocumented(t *testing.T) {
	root := filepath.Join("..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(outpost_[a-z_]+)").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	// Defined in the code: a quoted name in a non-test Go file.
	var source strings.Builder
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			b, _ := os.ReadFile(p)
			source.Write(b)
		}
		return nil
	})
	for name := range documented {
		if !strings.Contains(source.String(), `"`+name+`"`) {
			t.Errorf("docs/metrics.md lists %s, which no code defines: remove it", name)
		}
	}

	tn := startNode(t, nodeConfig(t, t.TempDir()), mustKeys(t, newMasterKey(t), nil), node.Options{})
	resp, err := http.Get(tn.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	exported := map[string]bool{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "outpost_") {
			exported[f[2]] = true
		}
	}
	for name := range exported {
		if !documented[name] {
			t.Errorf("the node exports %s, which docs/metrics.md does not list: add it with its meaning and an alert", name)
		}
	}
	for _, name := range []string{"outpost_lease_held", "outpost_lease_self_fences_total", "outpost_lease_stale_refusals_total",
		"outpost_auth_logins_total", "outpost_api_denials_total", "outpost_raft_state", "outpost_agents_connected"} {
		if !exported[name] {
			t.Errorf("%s is not exported by a fresh node", name)
		}
	}
}
