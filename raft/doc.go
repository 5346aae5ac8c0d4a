// Package raft runs the region's Raft group: the batching FSM over the bbolt
// state store, the mutual-TLS stream layer that carries Raft and the small
// node-to-node RPCs (stats, write forwarding), memberlist discovery and the
// raft-autopilot delegate that adds, promotes and removes servers.
//
// It stays below node: TestImportDirection (internal/pkgdoc) keeps node
// and cmd out of its imports. The package shares its name with
// github.com/hashicorp/raft, which it imports as hraft.
package raft
