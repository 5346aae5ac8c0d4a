package node_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// tenantKey matches the spellings a log key for a tenant could take.
var tenantKey = regexp.MustCompile(`(?i)^tenant([._-]?(id|name|slug))?$`)

// TestTenantLogKeys reads every log call in the module (slog's and the
// loggers passed around: Debug, Info, Warn, Error, Log, LogAttrs, With,
// logf) and checks a tenant is logged one way: its name under "tenant",
// its id under "tenant_id". A "tenant" whose value reads an ID field
// (s.TenantID) is the id under the name's key.
func TestTenantLogKeys(t *testing.T) {
	logCalls := map[string]bool{"Debug": true, "Info": true, "Warn": true, "Error": true, "Log": true, "LogAttrs": true, "With": true, "logf": true}
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "node_modules" || n == "testdata" || strings.HasPrefix(n, ".") && n != ".." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			var name string
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			case *ast.Ident:
				name = fn.Name
			}
			if !logCalls[name] {
				return true
			}
			for i, a := range call.Args {
				lit, ok := a.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				key, _ := strconv.Unquote(lit.Value)
				if !tenantKey.MatchString(key) {
					continue
				}
				checked++
				pos := fset.Position(lit.Pos())
				switch {
				case key != "tenant" && key != "tenant_id":
					t.Errorf("%s: log key %q: a tenant's name is logged as \"tenant\", its id as \"tenant_id\"", pos, key)
				case key == "tenant" && i+1 < len(call.Args) && strings.Contains(exprText(call.Args[i+1]), "ID"):
					t.Errorf("%s: \"tenant\" holds %s, an id: log it as \"tenant_id\" (\"tenant\" is the name)", pos, exprText(call.Args[i+1]))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("found no tenant in any log call; is the walk reading the module?")
	}
}

// exprText is the source of a simple expression: a.B.C, or a call's name.
func exprText(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprText(e.X) + "." + e.Sel.Name
	case *ast.CallExpr:
		return exprText(e.Fun) + "(…)"
	}
	return ""
}
