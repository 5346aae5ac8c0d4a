package federation

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
)

// FuzzAnswers feeds arbitrary bytes through the client's strict decode
// and Validate (decodeAnswer with the checks Client.Health, Agents and
// Query use) for each answer shape. It must never panic; whatever it
// accepts must be one JSON value within the limits, and whatever it
// refuses is ErrMalformed.
func FuzzAnswers(f *testing.F) {
	for _, s := range []string{
		`{"region":"eu-west","node":"n1","leader":"n1","nodes":[{"id":"n1","raft_state":"Leader","last_contact_ms":0,"agents":1}],"lease":{"holder":"n1","token":1,"expires_in_ms":1},"age_ms":0}`,
		`{"link":"lnk-1","age_ms":5,"agents":[{"id":"a","host":"h","version":"1","node":"n1","rtt_ms":1.5,"mode":"ebpf","last_seen":"2030-01-01T00:00:00Z","cert_expires":"2030-01-01T00:00:00Z"}]}`,
		`{"link":"lnk-1","age_ms":0,"result_type":"vector","samples":[{"labels":{"__name__":"up"},"t":1,"v":"NaN"}],"complete":true,"warnings":["w"]}`,
		`{"link":"lnk-1","age_ms":0,"result_type":"scalar","samples":[{"labels":{},"t":1,"v":"+Inf"}],"complete":false}`,
		`{"link":"lnk-1","age_ms":0,"agents":[{"id":"a","peer":"local"}]}`,
		`{"link":"lnk-1","age_ms":0,"result_type":"vector","samples":[{"labels":{"outpost_peer":"x"},"t":1,"v":"1"}]}`,
		`{"region":"eu-west"}]`,
		`{"region":"eu-west"} {}`,
		`null`, ``, `[]`, `{"age_ms":-1}`, `{"link":"lnk-1","age_ms":1e30}`, "{\"region\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	const region, link = "eu-west", "lnk-1"
	f.Fuzz(func(t *testing.T, body []byte) {
		refused := func(kind string, err error) {
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: a refusal that is not ErrMalformed: %v", kind, err)
			}
			// Accepted is one JSON value and nothing after it.
			if err == nil && !json.Valid(body) {
				t.Fatalf("%s: accepted %q, which is not one JSON value", kind, body)
			}
		}

		var h Health
		age, n, err := decodeAnswer(body, &h, func() (int64, int, error) { return h.AgeMs, len(h.Nodes), h.Validate(region) })
		refused("health", err)
		if err == nil && (h.Region != region || n != len(h.Nodes) || n > MaxNodes || age < 0 || age > MaxAgeMs) {
			t.Fatalf("health accepted out of its limits: %+v", h)
		}

		var a Agents
		age, n, err = decodeAnswer(body, &a, func() (int64, int, error) { return a.AgeMs, len(a.Agents), a.Validate(link) })
		refused("agents", err)
		if err == nil {
			if a.Link != link || n != len(a.Agents) || n > MaxAgents || age < 0 || age > MaxAgeMs {
				t.Fatalf("agents accepted out of their limits: %+v", a)
			}
			for _, r := range a.Agents {
				if r.ID == "" || len(r.Host) > MaxString || r.RTTMs != nil && (*r.RTTMs < 0 || *r.RTTMs > MaxRTTMs) {
					t.Fatalf("agent row accepted out of its limits: %+v", r)
				}
			}
		}

		var q Query
		age, n, err = decodeAnswer(body, &q, func() (int64, int, error) { return q.AgeMs, len(q.Samples), q.Validate(link) })
		refused("query", err)
		if err == nil {
			if q.Link != link || n != len(q.Samples) || n > MaxSamples || age < 0 || age > MaxAgeMs {
				t.Fatalf("query accepted out of its limits: %+v", q)
			}
			for _, s := range q.Samples {
				if _, ok := s.Labels[PeerLabel]; ok {
					t.Fatalf("a sample carrying %s accepted", PeerLabel)
				}
				if _, err := strconv.ParseFloat(s.V, 64); err != nil {
					t.Fatalf("a sample value %q accepted", s.V)
				}
			}
		}
	})
}
