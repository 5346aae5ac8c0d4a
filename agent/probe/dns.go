package probe

import (
	"context"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// runDNS resolves p.Target's A and AAAA records with the guard's
// resolver (the system's).
func runDNS(ctx context.Context, p agentwire.Probe, g Guard, res *Result) error {
	addrs, err := g.lookup().LookupNetIP(ctx, "ip", p.Target)
	res.DNSAnswers = len(addrs)
	return err
}
