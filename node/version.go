package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/internal/buildinfo"
)

// nodeVersionPath is where a node tells the region's other nodes its
// build version, on the node port (mutual TLS), so the region answer
// (`outpostctl status`) shows which node runs what during an upgrade.
const nodeVersionPath = "/node/v1/version"

func serveVersion(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, buildinfo.Read().Short())
}

// nodeVersion is the build version of node id, whose node port is addr:
// this node's own, or the one that node says. "" when it does not say
// within a second (down, or a version older than this question).
func (n *Node) nodeVersion(ctx context.Context, id, addr string) string {
	if id == n.cfg.NodeID {
		return buildinfo.Read().Short()
	}
	if n.region == nil || addr == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	tr := &http.Transport{
		DialContext:       func(ctx context.Context, _, a string) (net.Conn, error) { return n.region.DialNode(ctx, a) },
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	// The URL's host is the node port; DialNode does the mutual TLS, so
	// the scheme is http.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+nodeVersionPath, nil)
	if err != nil {
		return ""
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 128))
	return strings.TrimSpace(string(b))
}
