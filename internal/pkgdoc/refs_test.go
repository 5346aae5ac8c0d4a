package pkgdoc

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoReferencesOutsideTheRepository: no Go file or document cites a
// file the repository does not hold (the first design document, the
// planning notes beside the checkout); ARCHITECTURE.md is the design.
func TestNoReferencesOutsideTheRepository(t *testing.T) {
	outside := []string{"DESIGN" + ".md", "../" + "shared/", "shared/" + "seeds", "shared/" + "DEPENDENCIES"}
	root := filepath.Join("..", "..")
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "dist", "bin", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".go" && ext != ".md" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		for i, line := range strings.Split(string(b), "\n") {
			for _, o := range outside {
				if strings.Contains(line, o) {
					t.Errorf("%s:%d cites %q, which is not in the repository: point to ARCHITECTURE.md or docs/ instead", strings.TrimPrefix(path, root+string(filepath.Separator)), i+1, o)
				}
			}
		}
		return nil
	})
	if err != nil || checked < 100 {
		t.Fatalf("checked %d files (err %v)", checked, err)
	}
}
