package ui_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestReadmeScreenshotsTaken: every screenshot README.md shows is in
// docs/screenshots and is taken by a browser test (shot(…, "NAME"), or a
// helper given the name as its last argument), so
// `OUTPOST_ARTIFACTS=$PWD/docs/screenshots go test …` can refresh it.
func TestReadmeScreenshotsTaken(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	tests, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var src []byte
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	shown := regexp.MustCompile(`docs/screenshots/([\w-]+)\.png`).FindAllStringSubmatch(string(readme), -1)
	if len(shown) == 0 {
		t.Fatal("README.md shows no screenshots")
	}
	for _, m := range shown {
		if _, err := os.Stat(filepath.Join("..", "docs", "screenshots", m[1]+".png")); err != nil {
			t.Errorf("README.md shows %s: %v", m[0], err)
		}
		if !regexp.MustCompile(`(shot\(t, \w+|RealFlows\(t, [\w.]+), "` + regexp.QuoteMeta(m[1]) + `"\)`).Match(src) {
			t.Errorf("README.md shows %s, which no browser test takes (shot(t, ctx, %q))", m[0], m[1])
		}
	}
}
