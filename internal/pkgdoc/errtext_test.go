package pkgdoc

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"testing"
)

// TestNoErrorTextMatching: production code decides on an error by its
// identity (errors.Is against a sentinel, errors.As to a type, a wire
// code), never by its text: a reworded message, or one forwarded between
// nodes, must not change what the code does. STYLE.md names matching
// error strings as the habit not to copy.
func TestNoErrorTextMatching(t *testing.T) {
	fset := token.NewFileSet()
	for _, p := range listPackages(t) {
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			af, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, pos := range errorTextMatches(af) {
				t.Errorf("%s: decides on an error's text; compare with errors.Is/errors.As or a code instead", fset.Position(pos))
			}
		}
	}
}

// errorTextMatches finds where f compares or searches an Error() string:
// an argument of strings.Contains/HasPrefix/HasSuffix/Index/EqualFold/
// TrimPrefix/TrimSuffix/Cut, or an operand of == or !=, or a switch tag.
func errorTextMatches(f *ast.File) []token.Pos {
	var out []token.Pos
	isErrorCall := func(e ast.Expr) bool {
		c, ok := ast.Unparen(e).(*ast.CallExpr)
		if !ok || len(c.Args) != 0 {
			return false
		}
		sel, ok := c.Fun.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == "Error"
	}
	searches := map[string]bool{"Contains": true, "HasPrefix": true, "HasSuffix": true, "Index": true,
		"EqualFold": true, "TrimPrefix": true, "TrimSuffix": true, "Cut": true, "CutPrefix": true, "CutSuffix": true}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "strings" || !searches[sel.Sel.Name] {
				return true
			}
			for _, a := range n.Args {
				if isErrorCall(a) {
					out = append(out, n.Pos())
				}
			}
		case *ast.BinaryExpr:
			if (n.Op == token.EQL || n.Op == token.NEQ) && (isErrorCall(n.X) || isErrorCall(n.Y)) {
				out = append(out, n.Pos())
			}
		case *ast.SwitchStmt:
			if n.Tag != nil && isErrorCall(n.Tag) {
				out = append(out, n.Pos())
			}
		}
		return true
	})
	return out
}

// TestErrorTextMatchesFound: the check sees the forms it names, and not
// the use of an error's text for display.
func TestErrorTextMatchesFound(t *testing.T) {
	src := `package x
import ("strings"; "fmt")
func f(err error) {
	_ = strings.Contains(err.Error(), "stale")
	_ = err.Error() == "no leader"
	switch err.Error() { case "x": }
	_, _, _ = strings.Cut(e().Error(), ":")
	fmt.Println("failed: " + err.Error())
	_ = strings.TrimSpace(err.Error())
}`
	f, err := parser.ParseFile(token.NewFileSet(), "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(errorTextMatches(f)); got != 4 {
		t.Fatalf("found %d matches, want 4", got)
	}
}
