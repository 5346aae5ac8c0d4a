// Package auth is who may do what: tenants, users with a role per tenant,
// region admins, API tokens, local passwords (argon2id), login lockout,
// signed session cookies and break-glass grants.
//
// Identity records live in the FSM (region-level buckets, written through
// audited raft.Batch commands this package builds); secrets are stored only
// as hashes. A Principal is resolved from a request's bearer token or
// session cookie, and Principal.Access is the one place a storage.Tenant
// handle is minted for a caller: from its role in that tenant, or, for a
// region admin, from an approved, unexpired break-glass grant — never from
// anything the request body says.
package auth
