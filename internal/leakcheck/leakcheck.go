// Package leakcheck is the goroutine-leak check every package that starts
// goroutines runs in its TestMain (tests only).
package leakcheck

import (
	"testing"

	"go.uber.org/goleak"
)

// Ignored are goroutines that end on their own: memberlist's and
// raft-wal's short timers.
var Ignored = []goleak.Option{
	goleak.IgnoreTopFunction("time.Sleep"),
	goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
}

// Main runs the tests and fails them if they leave goroutines running.
func Main(m *testing.M, more ...goleak.Option) {
	goleak.VerifyTestMain(m, append(append([]goleak.Option{}, Ignored...), more...)...)
}
