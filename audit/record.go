package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Meta is what the proposer of an audited change says about it; the FSM
// adds the sequence number and the before/after values.
type Meta struct {
	Time   time.Time `json:"time"`
	Node   string    `json:"node"`
	Actor  string    `json:"actor"`
	Tenant string    `json:"tenant,omitempty"`
	Action string    `json:"action"`
	Entity string    `json:"entity"`
	// Redact replaces before/after with their SHA-256 (secrets, hashes).
	Redact bool `json:"redact,omitempty"`
	// Detail is free-form context for non-KV changes.
	Detail json.RawMessage `json:"detail,omitempty"`
	// Stream is the log the record goes to: "" for the region's log,
	// StreamProvider for the provider stream.
	Stream string `json:"stream,omitempty"`
}

// Record is one audit log entry as stored and hashed.
type Record struct {
	Seq    int64           `json:"seq"`
	Index  uint64          `json:"raft_index"`
	Time   time.Time       `json:"time"`
	Node   string          `json:"node"`
	Actor  string          `json:"actor"`
	Tenant string          `json:"tenant,omitempty"`
	Action string          `json:"action"`
	Entity string          `json:"entity"`
	Before *Value          `json:"before,omitempty"`
	After  *Value          `json:"after,omitempty"`
	Detail json.RawMessage `json:"detail,omitempty"`
	// Outcome is "unchanged" when the command changed nothing it read
	// (a create that lost to an existing key, a write of the same value);
	// empty otherwise.
	Outcome string `json:"outcome,omitempty"`
}

// OutcomeUnchanged marks a record whose command changed nothing.
const OutcomeUnchanged = "unchanged"

// Value is a before/after value: text when it is UTF-8, else base64, or
// only its digest when redacted.
type Value struct {
	Text   *string `json:"text,omitempty"`
	Base64 []byte  `json:"base64,omitempty"`
	SHA256 string  `json:"sha256,omitempty"`
}

// NewValue makes a before/after Value, only a digest when redact is set.
func NewValue(b []byte, redact bool) *Value {
	if b == nil {
		return nil
	}
	if redact {
		return &Value{SHA256: digest(b)}
	}
	if utf8.Valid(b) {
		s := string(b)
		return &Value{Text: &s}
	}
	return &Value{Base64: b}
}

// EncodeMeta validates and encodes audit metadata for raft.Audited.
func EncodeMeta(m Meta) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

func (m Meta) validate() error {
	switch {
	case m.Time.IsZero():
		return errors.New("audit: time is required")
	case m.Node == "" || m.Actor == "" || m.Action == "" || m.Entity == "":
		return errors.New("audit: node, actor, action and entity are required")
	case len(m.Detail) > 0 && !json.Valid(m.Detail):
		return errors.New("audit: detail is not JSON")
	case m.Stream != "" && m.Stream != StreamProvider:
		return fmt.Errorf("audit: unknown stream %q", m.Stream)
	}
	return nil
}

// DecodeMeta strictly decodes and validates audit metadata.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("audit: bad metadata: %w", err)
	}
	return m, m.validate()
}
