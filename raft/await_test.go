package raft

import (
	"context"
	"errors"
	"testing"
	"time"
)

// unansweredFuture is a raft future not answered until the test ends, as
// an apply in flight when hashicorp/raft shuts down can be never.
type unansweredFuture chan struct{}

func (f unansweredFuture) Error() error { <-f; return nil }

// TestAwaitEndsWhenTheRegionCloses: a caller waiting on a future raft
// never answers is released when the region closes, with an outcome
// unknown (the entry may commit elsewhere). Waiting on the future alone
// hung a stop drill's Kill on the lease renewal.
func TestAwaitEndsWhenTheRegionCloses(t *testing.T) {
	r := &Region{}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	f := make(unansweredFuture)
	defer close(f)
	done := make(chan error, 1)
	go func() { done <- r.await(f) }()
	time.Sleep(20 * time.Millisecond)
	r.cancel()
	select {
	case err := <-done:
		if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrShutdown) {
			t.Fatalf("got %v, want an unknown outcome because of the shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("await did not return after the region closed")
	}
}
