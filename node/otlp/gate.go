package otlp

import "sync"

// Why a request was not admitted (gate.enter).
const (
	busyNode   = "node"   // every slot of the node is taken
	busyTenant = "tenant" // every slot the sender's tenant may hold is taken
	busyBytes  = "bytes"  // the requests in flight hold the memory budget
	tooBig     = "too_big"
)

// gate admits requests within the node's bounds on requests and memory
// in flight, and each tenant's share of the requests.
type gate struct {
	maxCount, maxPerTenant int
	maxBytes               int64

	mu      sync.Mutex
	count   int
	bytes   int64
	tenants map[string]int // requests in flight per tenant; no zero entries
}

func newGate(cfg Config) *gate {
	return &gate{maxCount: cfg.MaxInFlight, maxPerTenant: cfg.perTenant(), maxBytes: cfg.MaxInFlightBytes, tenants: map[string]int{}}
}

// enter admits a request of tenant that will hold cost bytes, or says why
// not ("" when admitted; then leave must follow).
func (g *gate) enter(tenant string, cost int64) string {
	if cost > g.maxBytes {
		return tooBig
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.count >= g.maxCount:
		return busyNode
	case g.tenants[tenant] >= g.maxPerTenant:
		return busyTenant
	case g.bytes+cost > g.maxBytes:
		return busyBytes
	}
	g.count++
	g.bytes += cost
	g.tenants[tenant]++
	return ""
}

// leave releases what enter admitted.
func (g *gate) leave(tenant string, cost int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.count--
	g.bytes -= cost
	if g.tenants[tenant]--; g.tenants[tenant] == 0 {
		delete(g.tenants, tenant)
	}
}
