package node

import (
	"context"
	"time"

	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/node/httpapi"
	"github.com/outpost-mesh/outpost/node/otlp"
	"github.com/outpost-mesh/outpost/storage"
)

// queryAPI is the query API for the HTTP API, nil when telemetry is off.
func (n *Node) queryAPI() httpapi.QueryAPI {
	if n.query == nil {
		return nil
	}
	return n.query
}

// tenantName is the name of tenant id ("" if unknown).
func (n *Node) tenantName(id string) string {
	var name string
	_ = n.store.View(func(tx *storage.Tx) error {
		for _, t := range (auth.Reader{Tx: tx}).Tenants() {
			if t.ID == id {
				name = t.Name
			}
		}
		return nil
	})
	return name
}

// tenantClaimRefused records an OTLP export refused for naming another
// tenant than the agent's certificate (rate-aggregated per agent).
func (n *Node) tenantClaimRefused(s otlp.Sender, claimed string) {
	if ok, _ := n.claimAudits.Allow(s.AgentID, time.Now()); !ok {
		n.logger.Warn("telemetry refused: the payload claims another tenant (not audited: this agent's refusals are recorded too often)",
			"agent", s.AgentID, "claimed", claimed)
		return
	}
	n.logger.Warn("telemetry refused: the payload claims another tenant", "agent", s.AgentID, "tenant", s.TenantID, "claimed", claimed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.commitAudited(ctx, "agent/"+s.AgentID, "telemetry.tenant_claim_refused", "agent/"+s.AgentID, s.TenantID,
		map[string]string{"claimed": claimed, "host": s.Host}, nil); err != nil {
		n.logger.Warn("could not record a refused telemetry export in the audit log", "agent", s.AgentID, "err", err)
	}
}
