package lease

import "time"

// Clock is the time source of the lease: Now must be monotonic (time.Now
// carries a monotonic reading), so wall-clock steps do not move a lease.
// Tests inject a clock they advance by hand.
type Clock interface {
	Now() time.Time
	// After fires once d has passed on this clock.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RealClock is the system's monotonic clock.
var RealClock Clock = realClock{}
