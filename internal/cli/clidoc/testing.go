package clidoc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// The checks each binary's tests run against its command tree (this
// package is linked only into tests).

// TestReference fails t when the generated reference in dir (docs/cli,
// from the test's package directory) is not what root generates. With
// update it rewrites it; with manDir it writes the man pages there. pkg
// names the package for the message (go generate ./cmd/…).
func TestReference(t *testing.T, root *cobra.Command, dir, pkg string, update bool, manDir string) {
	t.Helper()
	if update {
		if err := Markdown(root, dir); err != nil {
			t.Fatal(err)
		}
	}
	if manDir != "" {
		if err := Man(root, manDir); err != nil {
			t.Fatal(err)
		}
	}
	stale, err := Stale(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Errorf("docs/cli/ is out of date for %s\nregenerate it: go generate %s (or make docs)", strings.Join(stale, ", "), pkg)
	}
}

// TestDocLines fails t for every command line of root's binary, in code
// in repo's README.md and docs/*.md, that names a command or flag the
// tree does not have, and when fewer than atLeast lines were found (the
// parser must be finding them).
func TestDocLines(t *testing.T, root *cobra.Command, repo string, atLeast int) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	files = append(files, filepath.Join(repo, "README.md"))
	slices.Sort(files)
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		problems, n := CheckLines(root, string(b))
		checked += n
		for _, p := range problems {
			t.Errorf("%s:%s", filepath.Base(f), p)
		}
	}
	if checked < atLeast {
		t.Errorf("checked only %d %s command lines; is the parser finding them?", checked, root.Name())
	}
}
