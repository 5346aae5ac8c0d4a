// Package api serves the node's HTTP API under /api/v1 and /metrics.
//
// Every route is declared in one table (Routes) with the role it needs; a
// test walks the table and fails on a state-changing route that is public.
// The API reads the region through small interfaces it declares here, so
// it can be tested without a cluster and cannot reach Raft internals.
//
// Imported by node only.
package httpapi
