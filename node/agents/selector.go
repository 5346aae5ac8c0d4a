package agents

import (
	"fmt"
	"strings"
)

// Selector keys a dispatch may match agents on.
var selectorKeys = map[string]bool{"agent": true, "host": true, "os": true, "arch": true, "mode": true, "version": true}

// Selector picks the agents a dispatch is for: "", "*" or "all" is every agent
// in the dispatch's scope, "none" is no agent (drills), otherwise
// comma-separated key=value terms that must all hold, with keys agent,
// host, os, arch, mode and version ("os=linux,mode=ebpf").
type Selector struct {
	none  bool
	terms [][2]string
}

// ParseSelector parses and validates a selector.
func ParseSelector(s string) (Selector, error) {
	switch strings.TrimSpace(s) {
	case "", "*", "all":
		return Selector{}, nil
	case "none":
		return Selector{none: true}, nil
	}
	var sel Selector
	for term := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(term), "=")
		if !ok || v == "" || !selectorKeys[k] {
			return Selector{}, fmt.Errorf("selector term %q: use key=value with key one of agent, host, os, arch, mode, version (or \"all\" for every agent, \"none\" for none)", term)
		}
		sel.terms = append(sel.terms, [2]string{k, v})
	}
	return sel, nil
}

// Matches reports whether an agent with attrs (keyed as the selector's
// keys) is selected. An unparsable selector matches no agent.
func (s Selector) Matches(attrs map[string]string) bool {
	if s.none {
		return false
	}
	for _, t := range s.terms {
		if attrs[t[0]] != t[1] {
			return false
		}
	}
	return true
}

// MatchSelector parses s and matches it; a bad selector matches nothing.
func MatchSelector(s string, attrs map[string]string) bool {
	sel, err := ParseSelector(s)
	return err == nil && sel.Matches(attrs)
}
