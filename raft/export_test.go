package raft

import (
	"context"
	"net"

	hraft "github.com/hashicorp/raft"
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

// ConfigEntries lists the indexes of the configuration entries in the
// node's Raft log: the bootstrap entry, then one per server added,
// promoted, demoted or removed.
func ConfigEntries(r *Region) ([]uint64, error) {
	first, err := r.wal.FirstIndex()
	if err != nil {
		return nil, err
	}
	last, err := r.wal.LastIndex()
	if err != nil {
		return nil, err
	}
	var out []uint64
	for i := max(first, 1); i <= last; i++ {
		var l hraft.Log
		if err := r.wal.GetLog(i, &l); err != nil {
			return nil, err
		}
		if l.Type == hraft.LogConfiguration {
			out = append(out, i)
		}
	}
	return out, nil
}

// ConnStats and ConnReadIndex are the stats and read-index connection
// kinds.
const (
	ConnStats     = connStats
	ConnReadIndex = connReadIndex
)

// DurableIndex is the last index whose effect the node's state file has
// synced to disk.
func DurableIndex(r *Region) uint64 { return r.fsm.durable.Load() }

// SnapshotIndex is the index of the node's newest snapshot, 0 without one.
func SnapshotIndex(r *Region) uint64 {
	snaps, err := r.snaps.List()
	if err != nil || len(snaps) == 0 {
		return 0
	}
	return snaps[0].Index
}

// FirstLogIndex is the first index in the node's Raft log.
func FirstLogIndex(r *Region) uint64 {
	i, _ := r.wal.FirstIndex()
	return i
}
