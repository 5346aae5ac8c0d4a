package agentlink

import (
	"encoding/json"
	"testing"

	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/lease"
)

// TestScopesKeepTheirOwnIDsAtTheAgent: dispatch ids are unique per
// scope, so a region-wide dispatch and a tenant's may share one. An agent
// receives both, and dedupes by the id it is sent: the two must reach it
// under different ids, or it would take the second for a redelivery of
// the first and never apply it.
func TestScopesKeepTheirOwnIDsAtTheAgent(t *testing.T) {
	region := lease.Dispatch{ID: "cfg-1", Kind: agentwire.DispatchKind, Token: 3, Index: 10, Node: "n1"}
	tenant := region
	tenant.Tenant, tenant.Index = "t1abc", 11
	ids := map[string]string{}
	for name, d := range map[string]lease.Dispatch{"region-wide": region, "tenant": tenant} {
		var w agentwire.Dispatch
		if err := json.Unmarshal(newTarget(d).body, &w); err != nil {
			t.Fatal(err)
		}
		ids[name] = w.ID
	}
	if ids["region-wide"] == ids["tenant"] {
		t.Fatalf("a region-wide and a tenant dispatch with id %q reach the agent under the same id %q", region.ID, ids["tenant"])
	}
	if ids["tenant"] != "cfg-1" {
		t.Errorf("tenant dispatch reaches its agents as %q, want its own id cfg-1", ids["tenant"])
	}
}
