package probe

import (
	"context"
	"net/http/httptrace"

	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// runTCP connects to p.Target (host:port) and closes the connection.
func runTCP(ctx context.Context, p agentwire.Probe, g Guard, res *Result) error {
	var ct connTimes
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{ConnectStart: ct.start, ConnectDone: ct.done})
	c, err := g.dialer().DialContext(ctx, "tcp", p.Target)
	if err != nil {
		return err
	}
	_, res.Connect = ct.get()
	res.Addr = addrOf(c.RemoteAddr())
	_ = c.Close() // the probe is the connect; a close error says nothing about the target
	return nil
}
