// Package e2e holds end-to-end tests that build and run the real outpost
// and outpostctl binaries as separate processes on loopback: a region of
// `outpost serve` nodes killed with SIGKILL mid-write, the refusals of bad
// starts, and `outpost dev`.
//
// It has no non-test code and nothing imports it.
package e2e
