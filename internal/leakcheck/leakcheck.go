// Package leakcheck is the goroutine-leak check every package that starts
// goroutines runs in its TestMain (tests only).
package leakcheck

import (
	"testing"

	"go.uber.org/goleak"
)

// Ignored are goroutines that end on their own (memberlist's and
// raft-wal's short timers), and one that cannot: raft.Region.await waits
// on a hashicorp/raft future in a goroutine so its caller can return at
// shutdown, and a future raft took just before it shut down (a barrier,
// a leadership check) is never answered, its ShutdownCh unset; one such
// goroutine per call in flight at a node's stop, seen once in CI.
var Ignored = []goleak.Option{
	goleak.IgnoreTopFunction("time.Sleep"),
	goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	goleak.IgnoreAnyFunction("github.com/outpost-mesh/outpost/raft.(*Region).await.func1"),
}

// Main runs the tests and fails them if they leave goroutines running.
func Main(m *testing.M, more ...goleak.Option) {
	goleak.VerifyTestMain(m, append(append([]goleak.Option{}, Ignored...), more...)...)
}
