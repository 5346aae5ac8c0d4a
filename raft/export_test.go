package raft

import (
	"context"
	"net"
)

// SetWALSegmentSize sets the WAL segment size, so tests can compact the
// log below what a new node needs and force a snapshot install.
func SetWALSegmentSize(c *Config, bytes int) { c.walSegmentSize = bytes }

// DialKind opens a mutual-TLS node connection of the given kind, so tests
// can send hand-made frames to a node.
func DialKind(r *Region, ctx context.Context, addr string, kind byte) (net.Conn, error) {
	return r.stream.dialKind(ctx, addr, kind)
}

// ConnApply is the forwarded-write connection kind.
const ConnApply = connApply
