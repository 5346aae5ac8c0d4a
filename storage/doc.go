// Package storage owns the node's bbolt state store: the file the region's
// FSM applies committed entries to, its metadata (format version, region,
// last applied index) and its consistent snapshot and restore.
//
// Only the raft package writes (ApplyBatch for the FSM's batches, which
// readers see at once and the file at the next Flush or Sync, batch.go;
// durability.go says how a crash and a power loss are told apart);
// everything else reads through View. A tenant's data lives in buckets reachable only through a
// Tenant handle (Tx.Tenant): the plain Tx methods read them as empty and
// refuse to write them, and handles come from the authenticated caller.
package storage
