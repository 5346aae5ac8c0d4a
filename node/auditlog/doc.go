// Package auditlog stores the region's audit log (format: audit) in
// the bbolt state file. Every audited state change commits in the same
// Raft entry as its record (raft.CmdAudited): the FSM calls Append, which
// stores the record in the "audit" bucket and its tree hashes in
// "audit_hashes". Log reads records and signs checkpoints; there is no
// way to change or delete a record.
//
// Imported by node; imports storage and audit.
package auditlog
