// Package e2e holds end-to-end tests that build and run the real outpost
// and outpostctl binaries as separate processes on loopback: a region of
// `outpost serve` nodes killed with SIGKILL mid-write, the refusals of bad
// starts, and `outpost dev`; and, as root, a region whose nodes each run
// in a network namespace of their own (internal/netlab), where the isolate
// drill cuts the lease holder off with nftables drop rules.
//
// It has no non-test code and nothing imports it.
package e2e
