package strictjson

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

type inner struct {
	Kind string `json:"kind"`
}

type body struct {
	Name   string            `json:"name"`
	Role   string            `json:"role,omitempty"`
	Probes []inner           `json:"probes"`
	Labels map[string]string `json:"labels"`
	Raw    json.RawMessage   `json:"raw"`
	Plain  int
}

func TestUnmarshal(t *testing.T) {
	for _, c := range []struct {
		name, in, refuse string // refuse: "" accepted, else a word the error says
	}{
		{"exact", `{"name":"a","role":"viewer","probes":[{"kind":"tcp"}],"labels":{"Any":"x"},"raw":{"NAME":1,"name":2},"Plain":3}`, ""},
		{"white space after", "{\"name\":\"a\"}\n\t ", ""},
		{"case-folded name", `{"Name":"a"}`, "case-sensitive"},
		{"case-folded nested name", `{"probes":[{"KIND":"tcp"}]}`, "probes[0]"},
		{"untagged field in another case", `{"plain":3}`, "case-sensitive"},
		{"duplicate key", `{"role":"viewer","role":"admin"}`, "appears twice"},
		{"duplicate nested key", `{"probes":[{"kind":"a","kind":"b"}]}`, "appears twice"},
		{"duplicate key in a map", `{"labels":{"a":"1","a":"2"}}`, "appears twice"},
		{"trailing garbage", `{"name":"a"} x`, "after the JSON value"},
		{"second value", `{"name":"a"}{"name":"b"}`, "after the JSON value"},
		{"unknown field", `{"nmae":"a"}`, "unknown field"},
		{"not JSON", `{"name":`, "bad JSON body"},
		{"too deep", strings.Repeat("[", 100) + strings.Repeat("]", 100), "deeper"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b body
			err := Unmarshal([]byte(c.in), &b)
			switch {
			case c.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.refuse != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.refuse)):
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, c.refuse)
			}
		})
	}
}

// FuzzUnmarshal: no input panics, and whatever is accepted is accepted
// by encoding/json alike.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{`{"name":"a","probes":[{"kind":"x"}]}`, `{"Name":1}`, `{"a":1,"a":2}`, `[]`, `{"labels":{"k":"v"}} `, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b body
		if Unmarshal(data, &b) == nil {
			var lenient body
			if err := json.Unmarshal(data, &lenient); err != nil {
				t.Fatalf("strict accepted what encoding/json refuses: %v", err)
			}
		}
	})
}
