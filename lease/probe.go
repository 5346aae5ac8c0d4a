package lease

import (
	"context"

	"github.com/outpost-mesh/outpost/storage"
)

// StaleProbeID is StaleProbe with the dispatch id chosen by the caller: a
// drill whose call failed or timed out can still look that id up
// (committed would be a fencing failure). An empty id is made here. The
// caller must choose an id no other dispatch uses: a retry of a committed
// id is answered with that dispatch.
func (m *Manager) StaleProbeID(ctx context.Context, id string) (Dispatch, error) {
	if id == "" {
		return m.StaleProbe(ctx)
	}
	m.mu.Lock()
	token := m.token
	m.mu.Unlock()
	d := Dispatch{ID: id, Kind: "drill.stale", Selector: "none"}
	out, err := m.issue(ctx, storage.Tenant{}, d, token, "dispatch.issue")
	if err != nil {
		d.Token, d.Node = token, m.raft.NodeID()
		return d, err
	}
	return out, nil
}
