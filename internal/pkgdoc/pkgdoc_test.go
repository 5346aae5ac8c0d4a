// Package pkgdoc holds repository-wide checks: every package has a doc
// comment, the import direction ARCHITECTURE.md sets holds, and crypto
// primitives are imported only by reviewed packages.
package pkgdoc

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

type pkg struct {
	ImportPath string
	Dir        string
	Name       string
	Deps       []string
	GoFiles    []string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var ps []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// TestEveryPackageDocumented fails on a package without a doc comment.
func TestEveryPackageDocumented(t *testing.T) {
	for _, p := range listPackages(t) {
		documented := false
		fset := token.NewFileSet()
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil && strings.TrimSpace(af.Doc.Text()) != "" {
				documented = true
			}
		}
		if !documented && len(p.GoFiles) > 0 {
			t.Errorf("package %s has no doc comment (add one, in doc.go if it needs more than a line)", p.ImportPath)
		}
	}
}

// TestImportDirection enforces ARCHITECTURE.md: dependencies point inward, and
// the CLI links no server code.
func TestImportDirection(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string
		allowed   []string // exceptions under a forbidden prefix
		why       string
	}{
		{"drill", []string{mod + "node", mod + "raft", mod + "storage", mod + "lease", mod + "cmd", mod + "dev"}, nil,
			"the drill runner drives a region from outside, over the HTTP API, as outpostctl (which imports it) does"},
		{"agent", []string{mod + "node", mod + "raft", mod + "storage", mod + "lease", mod + "cmd"}, nil,
			"the agent runtime links no server code"},
		{"federation", []string{mod + "raft", mod + "lease", mod + "storage", mod + "node", mod + "cmd"}, nil,
			"federation is read-only: it can compile no write (no raft, no lease, no storage: it reads through its View), and node wires it, not the reverse"},
		{"ui", []string{mod}, nil, "the UI's server side serves static files; its data comes from the API in the browser, so it imports nothing of ours"},
		{"bpf", []string{mod}, nil, "the eBPF data plane stands alone: the agent imports it, it imports nothing of ours"},
		{"internal/agentwire", []string{mod}, nil, "the agent's wire shapes are importable by agent and node alike"},
		{"raft", []string{mod + "node", mod + "cmd"}, nil, "raft is below node"},
		{"lease", []string{mod + "node", mod + "cmd"}, nil, "lease is below node"},
		{"storage", []string{mod + "node", mod + "raft", mod + "cmd"}, nil, "storage is the innermost layer"},
		{"storage/telemetry", []string{mod + "storage/remotewrite"}, nil,
			"the store hands committed samples to a Sink; the node wires remote_write as that sink"},
		{"node/query", []string{mod + "raft", mod + "node/httpapi"}, nil,
			"the query API reaches other nodes through its Region interface, which the node implements over raft"},
		{"node/pki", []string{mod + "raft", mod + "storage", mod + "node/httpapi"}, nil, "pki stands alone"},
		{"api", []string{mod}, nil, "the API client and its types must be importable by any client"},
		{"internal/meshid", []string{mod}, nil, "certificate identities are read by node and agent alike"},
		{"audit", []string{mod}, nil, "audit verification must be importable by any client"},
		{"node/keys", []string{mod + "raft", mod + "storage", mod + "node/httpapi"}, nil, "the KeyProtector stands alone"},
		{"node/agentlink", []string{mod + "node/clientaddr", mod + "node/httpapi"}, nil,
			"agents connect to the agent port directly: it never reads forwarding headers (X-Forwarded-For), and it gets the enrollment route as a plain handler"},
	}
	deps := map[string][]string{}
	for _, p := range listPackages(t) {
		deps[strings.TrimPrefix(p.ImportPath, mod)] = p.Deps
	}
	for _, r := range rules {
		ds, ok := deps[r.pkg]
		if !ok {
			t.Errorf("rule names package %s, which does not exist", r.pkg)
			continue
		}
	next:
		for _, d := range ds {
			for _, a := range r.allowed {
				if d == a {
					continue next
				}
			}
			for _, f := range r.forbidden {
				if d == strings.TrimSuffix(f, "/") || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/") || d+"/" == f {
					t.Errorf("%s imports %s: %s", r.pkg, d, r.why)
				}
			}
		}
	}
}

// TestTenantHandlesComeFromTheCaller: only node/auth (from an
// authenticated principal) and raft and lease (replaying a command built
// from such a handle) may mint a storage.Tenant; no package links the test-only OIDC
// provider, network lab or state-file damage helpers.
func TestTenantHandlesComeFromTheCaller(t *testing.T) {
	mayMint := map[string]bool{mod + "node/auth": true, mod + "raft": true, mod + "lease": true, mod + "storage": true}
	for _, p := range listPackages(t) {
		for _, d := range p.Deps {
			if d == mod+"internal/oidctest" || d == mod+"internal/netlab" || d == mod+"internal/testfault" {
				t.Errorf("%s links %s, which is for tests only", p.ImportPath, d)
			}
		}
		if mayMint[p.ImportPath] {
			continue
		}
		fset := token.NewFileSet()
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(af, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "Scope" {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "storage" {
					t.Errorf("%s: %s calls storage.Scope; tenant handles come from auth.Principal.Access", p.ImportPath, fset.Position(sel.Pos()))
				}
				return true
			})
		}
	}
}

// binaryDeps lists, per binary, the packages it must not link and why,
// the way tailscale's deptest does: a rule here replaces a claim in a doc
// comment. A rule ending in "/" covers the packages below it too.
var binaryDeps = map[string]map[string]string{
	"cmd/outpost-agent": {
		"testing":                                   "the agent runs privileged on every host: it links no test code",
		"net/http/httptest":                         "the agent runs privileged on every host: it links no test code",
		"github.com/stretchr/testify/":              "the agent links no test libraries (opamp-go's client package would bring them: the agent has its own OpAMP client)",
		"github.com/open-telemetry/opamp-go/client": "opamp-go's client links its mock server, testify and testing (agent/opamp.go says why)",
		mod + "node/":                               "the agent links no server code",
		mod + "node":                                "the agent links no server code",
		mod + "raft":                                "the agent links no server code",
		mod + "storage":                             "the agent links no server code",
		mod + "lease":                               "the agent links no server code",
		mod + "dev":                                 "the agent links no server code",
		mod + "internal/netlab":                     "test-only network lab",
		"github.com/hashicorp/raft":                 "the agent links no server code",
		"go.etcd.io/bbolt":                          "the agent keeps its state in a file, not the server's store",
	},
	"cmd/outpostctl": {
		"testing":                           "the admin CLI links no test code",
		"net/http/httptest":                 "the admin CLI links no test code",
		"github.com/stretchr/testify/":      "the admin CLI links no test libraries",
		mod + "node/":                       "the admin CLI talks to the HTTP API through api/; it links no server code",
		mod + "node":                        "the admin CLI links no server code",
		mod + "raft":                        "the admin CLI links no server code",
		mod + "storage":                     "the admin CLI links no server code",
		mod + "lease":                       "the admin CLI links no server code",
		mod + "dev":                         "dev mode is the server's (outpost dev); outpostctl drives it over the API",
		"github.com/hashicorp/raft":         "the admin CLI links no server code",
		"github.com/prometheus/prometheus/": "the admin CLI queries the node's API; it links no TSDB or engine",
	},
}

const mod = "github.com/outpost-mesh/outpost/"

// TestBinaryDependencies: each binary links none of the packages its
// rules forbid; and no package linked into any binary imports test-only
// code (testing, testify, httptest) except the known upstream importers
// below, each an upstream package that ships mocks or test helpers in
// non-test files (allowed in the node binary only). A new importer fails
// here: cut it or, if it is upstream and cannot be avoided, list it with
// the reason.
func TestBinaryDependencies(t *testing.T) {
	testOnly := func(p string) bool {
		return p == "testing" || p == "net/http/httptest" || strings.HasPrefix(p, "github.com/stretchr/testify/")
	}
	known := map[string]string{
		// testing.go: the in-memory test cluster helpers.
		"github.com/hashicorp/raft": "hashicorp/raft ships its test helpers (testing.go) in the package",
		// mock_*.go: generated testify mocks.
		"github.com/hashicorp/raft-autopilot": "raft-autopilot ships testify mocks in the package",
		// The telemetry store (issue 16): prometheus v0.316's tsdb package
		// has test helpers in non-test files, and imports tsdbutil and
		// util/testutil, which are test helpers too.
		"github.com/prometheus/prometheus/tsdb":          "prometheus's tsdb ships test helpers in the package",
		"github.com/prometheus/prometheus/tsdb/tsdbutil": "prometheus's tsdb test helpers",
		"github.com/prometheus/prometheus/util/testutil": "prometheus's test helpers, imported by its tsdb",
	}
	for _, bin := range []string{"cmd/outpost", "cmd/outpostctl", "cmd/outpost-agent"} {
		cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "-deps", "./"+bin)
		cmd.Dir = moduleRoot(t)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %s: %v", bin, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			for rule, why := range binaryDeps[bin] {
				if f[0] == rule || strings.HasSuffix(rule, "/") && strings.HasPrefix(f[0], rule) {
					t.Errorf("%s links %s: %s", bin, f[0], why)
				}
			}
			if testOnly(f[0]) {
				continue
			}
			for _, imp := range f[1:] {
				if !testOnly(imp) {
					continue
				}
				switch _, ok := known[f[0]]; {
				case strings.HasPrefix(f[0], mod):
					t.Errorf("%s: our package %s imports %s, test-only code, in a non-test file", bin, f[0], imp)
				case !ok:
					t.Errorf("%s: %s imports %s, test-only code; cut the dependency or list it here with the upstream reason", bin, f[0], imp)
				}
			}
		}
	}
}

// cryptoPrimitive reports whether an import is a cryptographic primitive:
// ciphers and modes, MACs, key derivation, password hashing, signatures
// and key agreement used directly, constant-time comparison, and all of
// golang.org/x/crypto. Hashing (crypto/sha256), randomness (crypto/rand),
// certificates and TLS (crypto/x509, crypto/tls, crypto/ecdsa key
// generation) are the standard library's high-level APIs and are used
// widely; they are not listed.
func cryptoPrimitive(imp string) bool {
	switch imp {
	case "crypto/aes", "crypto/cipher", "crypto/des", "crypto/rc4",
		"crypto/hmac", "crypto/hkdf", "crypto/pbkdf2", "crypto/sha3",
		"crypto/ed25519", "crypto/ecdh", "crypto/mlkem", "crypto/subtle":
		return true
	}
	return strings.HasPrefix(imp, "golang.org/x/crypto/")
}

// TestCryptoPrimitivesOnlyWhereReviewed: crypto primitives are imported
// by production code only in the packages listed here, each with what it
// uses them for, so new cryptography gets a review (and a threat-model
// row) instead of appearing anywhere. A new importer fails; an entry no
// longer used fails too, so the list stays today's.
func TestCryptoPrimitivesOnlyWhereReviewed(t *testing.T) {
	allowed := map[string]map[string]string{
		mod + "node/keys": {
			"crypto/aes":    "KeyProtector: AES-256-GCM wrapping of secrets",
			"crypto/cipher": "KeyProtector: the GCM mode",
			"crypto/subtle": "refuses a previous master key equal to the current one",
		},
		mod + "node/auth": {
			"crypto/hmac":                "session and OIDC flow cookie signatures (HMAC-SHA256), state and nonce comparison",
			"crypto/hkdf":                "session key derived from the CA key",
			"crypto/subtle":              "constant-time password and API token hash comparison",
			"golang.org/x/crypto/argon2": "password hashing (argon2id)",
		},
		mod + "audit": {
			"crypto/hkdf": "audit checkpoint signing key derived from the CA key",
		},
		mod + "node/agents": {
			"crypto/subtle": "constant-time bootstrap token comparison",
		},
		mod + "node/pki": {
			"crypto/ed25519": "accepts Ed25519 public keys in agent CSRs (a type switch; no signing)",
		},
		mod + "federation/httpsig": {
			"crypto/hmac": "federation request signatures (HMAC-SHA256 in the RFC 9421 shape) and constant-time comparison of the MAC and the content digest",
		},
		mod + "internal/oidctest": {
			"crypto/subtle": "the test OIDC provider: client secret and PKCE comparison (linked by tests only)",
		},
	}
	used := map[string]bool{}
	for _, p := range listPackages(t) {
		for _, imp := range p.Imports {
			if !cryptoPrimitive(imp) {
				continue
			}
			if _, ok := allowed[p.ImportPath][imp]; !ok {
				t.Errorf("%s imports %s, a crypto primitive, outside the reviewed packages; use a reviewed package (node/keys, node/auth) or add it here with its purpose and a row in docs/threat-model.md", p.ImportPath, imp)
				continue
			}
			used[p.ImportPath+" "+imp] = true
		}
	}
	for pkg, imps := range allowed {
		for imp := range imps {
			if !used[pkg+" "+imp] {
				t.Errorf("%s no longer imports %s: remove it from the list", pkg, imp)
			}
		}
	}
}
