package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `outpost dev --regions 2` starts two federated regions, and the tour its
// banner prints runs as printed: peers list, global health, the dev
// tenant's global agents (rows of both regions, labelled), and taking the
// second region down, after which the first's global view still answers,
// saying which peer is missing.
func TestDevFederation(t *testing.T) {
	bin := binaries(t)
	p := start(t, bin+"/outpost", "dev", "--regions", "2", "--http", "127.0.0.1:0", "--observe", "off")
	var tour string
	waitFor(t, 90*time.Second, "dev to print its tour", func() bool {
		m := regexp.MustCompile(`(?s)\nTry \(against [^\n]*\n(.*?)\nPress Ctrl-C`).FindStringSubmatch(p.out.String())
		if m != nil {
			tour = m[1]
		}
		return m != nil
	})
	run := func(script string) string {
		t.Helper()
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v running:\n%s\n%s", err, script, out)
		}
		return string(out)
	}
	out := run(tour)
	for _, want := range []string{"eu-west", "peer:eu-west", "local", "complete: every peer answered"} {
		if !strings.Contains(out, want) {
			t.Errorf("the tour's output lacks %q:\n%s", want, out)
		}
	}
	// The tour's last step took eu-west down: us-east's view answers
	// without it, and says so.
	export := regexp.MustCompile(`export OUTPOST_ADDR=\S+ OUTPOST_TOKEN=\$\(cat \S+\)`).FindString(tour)
	query := regexp.MustCompile(`OUTPOST_TOKEN=\$\(cat \S+dev-query.token\)`).FindString(tour)
	if export == "" || query == "" {
		t.Fatalf("the tour has no export or query-token line:\n%s", tour)
	}
	start := time.Now()
	out = run(export + "\n" + query + " outpostctl global agents --tenant dev")
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("global view with a region down took %v", took)
	}
	if !strings.Contains(out, "PARTIAL") || !regexp.MustCompile(`eu-west\s+(timeout|error)`).MatchString(out) {
		t.Errorf("with eu-west down, the global view does not say so:\n%s", out)
	}
	dataDir := filepath.Dir(filepath.Dir(regexp.MustCompile(`token file (\S+)`).FindStringSubmatch(p.out.String())[1]))
	p.signal(syscall.SIGINT)
	if code := p.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("dev exited %d after Ctrl-C:\n%s", code, p.out.String())
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("temp data dir %s was not removed (err %v)", dataDir, err)
	}
}
