package lease

import (
	"fmt"
	"time"
)

// Config holds the lease timings. The node's YAML embeds it under
// `lease:`.
type Config struct {
	// Duration: how long a lease lasts without renewal. The holder renews
	// every Duration/3. A new leader waits until Duration + DriftMargin has
	// passed since it applied the last renewal before acquiring, so a
	// longer lease makes failover slower; a shorter one renews (one Raft
	// entry, one fsync per node) more often. Default 1s.
	Duration time.Duration `yaml:"duration"`
	// DriftMargin: how much the clocks of two nodes may disagree on an
	// interval of Duration, plus scheduling delay (a GC pause between a
	// check and an action). The holder stops at Duration - DriftMargin
	// after a renewal started; the next waits Duration + DriftMargin after
	// applying it. Default 100ms.
	DriftMargin time.Duration `yaml:"drift_margin"`
}

// maxDuration bounds a lease: longer would stall dispatch for minutes
// after a holder dies.
const maxDuration = 5 * time.Minute

// DefaultConfig returns the defaults (Duration 1s, DriftMargin 100ms).
func DefaultConfig() Config {
	return Config{Duration: time.Second, DriftMargin: 100 * time.Millisecond}
}

// Validate rejects unsafe timings, naming the field.
func (c Config) Validate() error {
	switch {
	case c.Duration < 300*time.Millisecond || c.Duration > maxDuration:
		return fmt.Errorf("lease.duration %v must be in [300ms, %v]", c.Duration, maxDuration)
	case c.DriftMargin < 10*time.Millisecond:
		return fmt.Errorf("lease.drift_margin %v is below 10ms", c.DriftMargin)
	case c.DriftMargin >= c.Duration/3:
		// The holder renews every Duration/3 and fences at Duration -
		// margin: a margin of a third or more leaves it one renewal's
		// chance, so one slow fsync would cost the lease.
		return fmt.Errorf("lease.drift_margin %v must be under a third of lease.duration %v", c.DriftMargin, c.Duration)
	}
	return nil
}
