package node

import (
	"bytes"
	"cmp"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-mesh/outpost/internal/editdist"
)

// ConfigProblem is one problem in a node's config file, in the file's own
// terms: the field as YAML writes it and the line it is on.
type ConfigProblem struct {
	// Line is the line of the field (or of the nearest enclosing field
	// the file has); 0 when the file does not set it (a default is at
	// fault) or the problem is the file's as a whole.
	Line int
	// Field is the field's path: "lease.drift_margin", "gossip.seeds[1]";
	// empty for the file as a whole.
	Field string
	// Msg says what is wrong; it names Field.
	Msg string
}

func (p ConfigProblem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
	}
	return p.Msg
}

// CheckConfigFile is CheckConfig on a file.
func CheckConfigFile(path string) ([]ConfigProblem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	return CheckConfig(f)
}

// CheckConfig reads a config the way ParseConfig does, but lists every
// problem instead of stopping at the first: the YAML's syntax; fields that
// do not exist and values of the wrong kind, each with its line; then
// every check of Validate, each with the line of the field it names. No
// problem means ParseConfig accepts the file. The error is for a reader
// that fails.
func CheckConfig(r io.Reader) ([]ConfigProblem, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigSize {
		return []ConfigProblem{{Msg: fmt.Sprintf("the file is larger than %d bytes", maxConfigSize)}}, nil
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return []ConfigProblem{syntaxProblem(err)}, nil
	}
	var ps []ConfigProblem
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		ps = append(ps, ConfigProblem{Line: extra.Line, Msg: "only one YAML document is allowed (a second begins here)"})
	}
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = doc.Content[0]
		w := &shapeWalk{add: func(p ConfigProblem) { ps = append(ps, p) }}
		w.walk(root, reflect.TypeFor[Config](), "")
	}
	// The checks of Validate, on the file decoded as far as it decodes:
	// a value of the wrong kind stays at its default, reported above.
	c := fileDefaults()
	_ = doc.Decode(&c)
	c.fillDerived()
	for _, err := range c.problems() {
		field := fieldOf(err.Error())
		ps = append(ps, ConfigProblem{Line: lineOf(root, field), Field: field, Msg: err.Error()})
	}
	// In the file's order; those about defaults (no line) last.
	slices.SortStableFunc(ps, func(a, b ConfigProblem) int {
		return cmp.Compare(lineKey(a.Line), lineKey(b.Line))
	})
	return ps, nil
}

func lineKey(l int) int {
	if l == 0 {
		return math.MaxInt
	}
	return l
}

// syntaxProblem words a YAML parse error ("yaml: line 3: mapping values
// are not allowed in this context"). The YAML library gives a syntax
// error no structure, only this text: the line is read from it for the
// report, and nothing is decided on it (the error is a problem either
// way).
func syntaxProblem(err error) ConfigProblem {
	m := syntaxText.FindStringSubmatch(err.Error())
	line, _ := strconv.Atoi(m[1])
	return ConfigProblem{Line: line, Msg: "not valid YAML: " + m[2]}
}

// syntaxText splits a YAML syntax error's text into its line (if any) and
// the rest; it matches any text.
var syntaxText = regexp.MustCompile(`(?s)^(?:yaml: )?(?:line (\d+): )?(.*)$`)

// fieldPattern is the field a Validate message begins with: every check
// names the field first, as YAML writes it.
var fieldPattern = regexp.MustCompile(`^[a-z_]+(\.[a-z_0-9]+|\[\d+\])*`)

func fieldOf(msg string) string { return fieldPattern.FindString(msg) }

// lineOf is the line of field in the file, or of the nearest enclosing
// field the file has (0 when it has none of it).
func lineOf(root *yaml.Node, field string) int {
	line := 0
	n := root
	for _, step := range splitPath(field) {
		if n == nil {
			break
		}
		next, at := child(n, step)
		if next == nil {
			break
		}
		n, line = next, at
	}
	return line
}

// splitPath splits "a.b[2].c" into "a", "b", "[2]", "c".
func splitPath(p string) []string {
	var out []string
	for _, part := range strings.Split(p, ".") {
		for part != "" {
			i := strings.Index(part[1:], "[")
			if i < 0 {
				out = append(out, part)
				break
			}
			out = append(out, part[:i+1])
			part = part[i+1:]
		}
	}
	return out
}

// child is the value node under key step ("name" or "[i]") and the line
// of its key (or element).
func child(n *yaml.Node, step string) (*yaml.Node, int) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == step {
				return n.Content[i+1], n.Content[i].Line
			}
		}
	}
	if n.Kind == yaml.SequenceNode && strings.HasPrefix(step, "[") {
		if i, err := strconv.Atoi(strings.Trim(step, "[]")); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i], n.Content[i].Line
		}
	}
	return nil, 0
}

// shapeWalk compares the YAML tree with the Config type: each field must
// exist (yaml.v3's KnownFields), and each value be of its field's kind.
// It reports in YAML's terms, never Go's type names.
type shapeWalk struct {
	add   func(ConfigProblem)
	nodes int // visited, bounding what aliases can expand to
}

const maxShapeNodes = 100000

func (w *shapeWalk) walk(n *yaml.Node, t reflect.Type, path string) {
	if w.nodes++; w.nodes > maxShapeNodes {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // left empty: the field keeps its default
	}
	pt := reflect.PointerTo(t)
	switch {
	case pt.Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) || pt.Implements(reflect.TypeFor[yaml.Unmarshaler]()):
		// The type reads itself (a role name): its own words.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(ConfigProblem{Line: n.Line, Field: path, Msg: fmt.Sprintf("%s: %v", label(path), err)})
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(ConfigProblem{Line: n.Line, Field: path, Msg: fmt.Sprintf("%s: want a mapping of fields (name: value), not %s", label(path), nodeWords(n))})
			return
		}
		fields := yamlFields(t)
		seen := map[string]int{}
		kept := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if k.Tag == "!!merge" {
				// "<<: *defaults": the merged mappings' fields are this one's.
				kept = append(kept, k, v)
				for _, m := range append([]*yaml.Node{v}, v.Content...) {
					if m.Kind == yaml.AliasNode || m.Kind == yaml.MappingNode {
						w.walk(m, t, path)
					}
				}
				continue
			}
			if first, dup := seen[k.Value]; dup {
				w.add(ConfigProblem{Line: k.Line, Field: p, Msg: fmt.Sprintf("%s is set twice (first on line %d)", p, first)})
				continue
			}
			seen[k.Value] = k.Line
			kept = append(kept, k, v)
			ft, ok := fields[k.Value]
			if !ok {
				w.add(ConfigProblem{Line: k.Line, Field: p, Msg: fmt.Sprintf("%s: no such field%s", p, nearest(k.Value, fields))})
				continue
			}
			w.walk(v, ft, p)
		}
		// Without the repeats, so the decode for Validate's checks goes
		// on past them (yaml.v3 stops at a repeated key).
		n.Content = kept
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(ConfigProblem{Line: n.Line, Field: path, Msg: fmt.Sprintf("%s: want a list, not %s", path, nodeWords(n))})
			return
		}
		for i, e := range n.Content {
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(ConfigProblem{Line: n.Line, Field: path, Msg: fmt.Sprintf("%s: want a mapping (name: value), not %s", path, nodeWords(n))})
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	default:
		if n.Kind != yaml.ScalarNode {
			w.add(ConfigProblem{Line: n.Line, Field: path, Msg: fmt.Sprintf("%s: want %s, not %s", path, kindWords(t), nodeWords(n))})
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(ConfigProblem{Line: n.Line, Field: path, Msg: fmt.Sprintf("%s: %q is not %s", path, n.Value, kindWords(t))})
		}
	}
}

// yamlFields maps the YAML names of struct t's fields to their types,
// with inlined structs' fields in line, as yaml.v3 decodes them.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// kindWords says what a field of type t takes.
func kindWords(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration (such as 500ms, 10s or 1h30m)"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a single value"
	}
	return "a single value"
}

// nodeWords names what the file wrote.
func nodeWords(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// nearest suggests the field the user may have meant.
func nearest(typed string, fields map[string]reflect.Type) string {
	best, dist := "", 3
	for name := range fields {
		if d := editdist.Levenshtein(typed, name); d < dist || d == dist && name < best {
			best, dist = name, d
		}
	}
	for name := range fields {
		if best == "" && strings.HasPrefix(name, typed+"_") {
			best = name // "heartbeat" for heartbeat_timeout
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// label names a path in a message.
func label(path string) string {
	if path == "" {
		return "the file"
	}
	return path
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
