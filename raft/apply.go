package raft

import (
	"context"
	"errors"
	"fmt"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Apply commits cmd through Raft and returns its result once the leader's
// FSM has applied it (it is then durable on a quorum). Followers forward the
// write to the leader over mutual TLS. A write is retried only when it is
// certain nothing was appended (no leader yet, or the target was not the
// leader); ErrOutcomeUnknown reports the rest.
func (r *Region) Apply(ctx context.Context, cmd []byte) (Result, error) {
	start := time.Now()
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	backoff := 20 * time.Millisecond
	for {
		if r.ctx.Err() != nil {
			return Result{}, ErrShutdown
		}
		var res Result
		var err error
		if r.raft.State() == hraft.Leader {
			res, err = r.applyLocal(cmd, timeout)
			if errors.Is(err, hraft.ErrNotLeader) {
				err = errNotLeaderRetry
			}
		} else if addr, _ := r.raft.LeaderWithID(); addr != "" {
			res, err = r.forwardApply(ctx, string(addr), cmd, timeout)
			if err == nil {
				// Read your writes: answer once this node has applied the
				// entry too, so a read here right after sees it.
				r.waitApplied(ctx, res.Index, timeout)
			}
		} else {
			err = errNotLeaderRetry
		}
		if err == nil {
			r.metrics.applyDuration.Observe(time.Since(start).Seconds())
			return res, nil
		}
		if !errors.Is(err, errNotLeaderRetry) {
			if errors.Is(err, hraft.ErrLeadershipLost) {
				err = fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
			}
			return Result{}, err
		}
		if failFast(ctx) {
			return Result{}, fmt.Errorf("%w: no leader reachable from this node now (it may be cut off from its region)", ErrNoLeader)
		}
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("%w: %v", ErrNoLeader, ctx.Err())
		case <-r.ctx.Done():
			return Result{}, ErrShutdown
		case <-time.After(backoff):
		}
		// Capped low: these retries provably appended nothing, and a long
		// backoff only delays the first write after an election (BENCHMARKS.md).
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

// waitApplied waits, at most timeout, until this node's FSM has applied
// index. The entry is committed either way; a node that lags longer
// answers anyway (its reads then say how stale they are).
func (r *Region) waitApplied(ctx context.Context, index uint64, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, min(timeout, 5*time.Second))
	defer cancel()
	_ = r.fsm.waitApplied(ctx, r.ctx.Done(), index)
}

type failFastKey struct{}

// FailFast marks ctx so that Apply returns ErrNoLeader at once when the
// node knows no leader, instead of waiting for an election until ctx ends.
// Nothing was appended then, so the caller may retry elsewhere. Drill
// probes use it: a node cut off from its region answers at once.
func FailFast(ctx context.Context) context.Context {
	return context.WithValue(ctx, failFastKey{}, true)
}

func failFast(ctx context.Context) bool { v, _ := ctx.Value(failFastKey{}).(bool); return v }

func (r *Region) applyLocal(cmd []byte, timeout time.Duration) (Result, error) {
	f := r.raft.Apply(cmd, timeout)
	if err := r.await(f); err != nil {
		return Result{}, err
	}
	res, _ := f.Response().(Result)
	return res, nil
}

// await waits for a future, or until the region closes. hashicorp/raft
// gives its apply and barrier futures no shutdown channel, and one whose
// entry was in flight when it shut down may never be answered: a stop
// drill's Kill hung on the lease renewal waiting for one. The entry may
// still commit elsewhere, so the outcome is unknown; the goroutine left
// waiting ends if raft ever answers.
func (r *Region) await(f hraft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-r.ctx.Done():
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrShutdown)
	}
}

// Barrier waits until every entry committed before the call is applied to
// this node's FSM; on the leader it makes the next read linearizable.
func (r *Region) Barrier(timeout time.Duration) error { return r.await(r.raft.Barrier(timeout)) }
