// Package audit defines the region's tamper-evident audit log format and
// verifies it: records, the RFC 6962 Merkle tree over them
// (golang.org/x/mod/sumdb/tlog), checkpoints in the C2SP tlog-checkpoint
// form signed as notes (golang.org/x/mod/sumdb/note) with the region's
// Ed25519 audit key (derived from the region CA key with HKDF, so it never
// enters the database), inclusion and consistency proofs, and offline
// verification of exports.
//
// It imports no Outpost package, so outpostctl can verify a log without
// linking server code. node/auditlog stores the log in the state file.
package audit
