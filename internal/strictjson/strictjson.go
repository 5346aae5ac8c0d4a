// Package strictjson decodes a JSON request body strictly: field names
// must match the struct's exactly (encoding/json matches them in any
// case), no object may repeat a key (encoding/json keeps the last), no
// unknown field is accepted, and nothing may follow the value. A body a
// lenient parser and a strict one would read differently is refused
// rather than guessed at.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// ErrInvalid is wrapped by every refusal of a body's shape.
var ErrInvalid = errors.New("bad JSON body")

// maxDepth bounds nesting, so a hostile body cannot exhaust the stack.
const maxDepth = 64

// Decode reads one JSON value from r into v (a pointer).
func Decode(r io.Reader, v any) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return Unmarshal(data, v)
}

// Unmarshal is Decode of data.
func Unmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: unexpected data after the JSON value", ErrInvalid)
	}
	if err := checkKeys(data); err != nil {
		return err
	}
	if err := checkNames(raw, reflect.TypeOf(v), "", 0); err != nil {
		return err
	}
	strict := json.NewDecoder(bytes.NewReader(data))
	strict.DisallowUnknownFields()
	if err := strict.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// checkKeys walks the tokens and refuses an object that repeats a key.
func checkKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		expect bool // next string token in an object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.object {
					top.expect = true
				}
				if len(stack) >= maxDepth {
					return fmt.Errorf("%w: nested deeper than %d", ErrInvalid, maxDepth)
				}
				stack = append(stack, &frame{object: t == '{', keys: map[string]bool{}, expect: t == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top != nil && top.object && top.expect {
				if top.keys[t] {
					return fmt.Errorf("%w: field %q appears twice in one object", ErrInvalid, t)
				}
				top.keys[t] = true
				top.expect = false
				continue
			}
			if top != nil && top.object {
				top.expect = true
			}
		default:
			if top != nil && top.object {
				top.expect = true
			}
		}
	}
}

// checkNames refuses an object key that matches a struct field only when
// case is ignored.
func checkNames(raw any, t reflect.Type, path string, depth int) error {
	if depth > maxDepth || t == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[json.RawMessage]() || t.Implements(reflect.TypeFor[json.Unmarshaler]()) ||
		reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return nil
	}
	switch v := raw.(type) {
	case map[string]any:
		switch t.Kind() {
		case reflect.Struct:
			fields := map[string]reflect.Type{}
			jsonFields(t, fields)
			for k, sub := range v {
				ft, ok := fields[k]
				if !ok {
					for name := range fields {
						if strings.EqualFold(name, k) {
							return fmt.Errorf("%w: unknown field %q%s (field names are case-sensitive: %q)", ErrInvalid, k, at(path), name)
						}
					}
					continue // DisallowUnknownFields names it
				}
				if err := checkNames(sub, ft, path+"."+k, depth+1); err != nil {
					return err
				}
			}
		case reflect.Map:
			for k, sub := range v {
				if err := checkNames(sub, t.Elem(), path+"."+k, depth+1); err != nil {
					return err
				}
			}
		}
	case []any:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, sub := range v {
				if err := checkNames(sub, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " at " + strings.TrimPrefix(path, ".")
}

// jsonFields collects the JSON names of t's fields (embedded structs
// without a name flattened, as encoding/json does).
func jsonFields(t reflect.Type, out map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				jsonFields(ft, out)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, taken := out[name]; !taken {
			out[name] = f.Type
		}
	}
}
