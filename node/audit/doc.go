// Package audit is the region's append-only, tamper-evident audit log.
//
// Every audited state change commits in the same Raft entry as its record
// (raft.CmdAudited). The FSM appends the record to the "audit" bucket and
// the RFC 6962 Merkle tree hashes for it (golang.org/x/mod/sumdb/tlog) to
// "audit_hashes". Any node can sign a checkpoint of the tree (the C2SP
// tlog-checkpoint text in the signed-note format, golang.org/x/mod/sumdb/note)
// with the region's Ed25519 audit key, which is derived from the region CA
// key with HKDF and so never enters the database.
//
// There is no API to change or delete a record. Verify recomputes the tree
// from the records and names the first one that does not match; given an
// older checkpoint it proves the log only grew.
//
// Imported by node and node/api; imports storage only.
package audit
