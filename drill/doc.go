// Package drill runs failover drills against a running region from
// the outside, over the node HTTP API alone: it injects a fault on the
// dispatch-lease holder (a leadership transfer, an isolation on the Raft
// port, or a crash), times the recovery from the surviving nodes' event
// streams (new Raft leader, new lease, first dispatch under the new
// token), checks that the deposed holder's stale dispatches are refused,
// and that no write the region acknowledged was lost.
//
// It is the engine of `outpostctl drill failover`. It imports only
// api and the standard library, so the CLI links no server code
// (TestImportDirection in internal/pkgdoc enforces it). The nodes must
// have drills enabled (`drills: {enabled: true}`; `outpost dev` does).
package drill
