// Package storage owns the node's bbolt state store: the file the region's
// FSM applies committed entries to, its metadata (format version, region,
// last applied index) and its consistent snapshot and restore.
//
// Only the raft package writes through Update; everything else reads
// through View. Later capabilities add tenant-scoped handles here so that
// an unscoped read does not compile.
package storage
