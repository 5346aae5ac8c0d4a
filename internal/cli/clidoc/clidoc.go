// Package clidoc writes the markdown reference and the man pages of a
// cobra command tree, and says whether a committed reference is current.
// The commands' tests use it (`go generate ./cmd/...` rewrites docs/cli/,
// `make man` writes the man pages); no binary links it, so cobra/doc and
// its markdown renderer stay out of the shipped programs.
package clidoc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Markdown writes one markdown page per command of root's tree into dir
// (ROOT.md, ROOT_SUB.md, …), replacing the tree's old pages.
func Markdown(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := pages(root, dir)
	if err != nil {
		return err
	}
	for _, p := range old {
		if err := os.Remove(filepath.Join(dir, p)); err != nil {
			return err
		}
	}
	root.DisableAutoGenTag = true
	return doc.GenMarkdownTree(root, dir)
}

// Man writes one man page (section 1) per command of root's tree into dir.
func Man(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return doc.GenManTree(root, &doc.GenManHeader{Title: strings.ToUpper(root.Name()), Section: "1",
		Source: "Outpost", Manual: "Outpost manual"}, dir)
}

// Stale compares dir's markdown pages of root's tree with what Markdown
// would write now, and names each page that differs, is missing or
// should not be there.
func Stale(root *cobra.Command, dir string) ([]string, error) {
	fresh, err := os.MkdirTemp("", "clidoc")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(fresh)
	if err := Markdown(root, fresh); err != nil {
		return nil, err
	}
	want, err := pages(root, fresh)
	if err != nil {
		return nil, err
	}
	have, err := pages(root, dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var stale []string
	for _, p := range want {
		a, _ := os.ReadFile(filepath.Join(fresh, p))
		b, err := os.ReadFile(filepath.Join(dir, p))
		switch {
		case err != nil:
			stale = append(stale, p+" (missing)")
		case !bytes.Equal(a, b):
			stale = append(stale, p)
		}
	}
	for _, p := range have {
		if !slices.Contains(want, p) {
			stale = append(stale, p+" (no such command now)")
		}
	}
	return stale, nil
}

// pages lists dir's pages of root's tree: ROOT.md and ROOT_*.md.
func pages(root *cobra.Command, dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var out []string
	for _, e := range es {
		n := e.Name()
		if n == root.Name()+".md" || strings.HasPrefix(n, root.Name()+"_") && strings.HasSuffix(n, ".md") {
			out = append(out, n)
		}
	}
	return out, nil
}
