package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/outpost-mesh/outpost/bench/internal/writeload"
)

// failoverRound is one abrupt kill of the leader, timed from the kill.
type failoverRound struct {
	Elected  time.Duration // until a surviving node reports a new leader
	Writable time.Duration // until a write through a survivor is acknowledged
}

// failoverTimeout bounds one round; a region that cannot write for this
// long after losing one of three nodes is broken, not slow.
const failoverTimeout = 60 * time.Second

// pollLeader calls elected every interval until it returns true and sends
// the time since t0, or -1 when ctx ends first.
func pollLeader(ctx context.Context, t0 time.Time, interval time.Duration, elected func() bool) <-chan time.Duration {
	ch := make(chan time.Duration, 1)
	go func() {
		for ctx.Err() == nil {
			if elected() {
				ch <- time.Since(t0)
				return
			}
			time.Sleep(interval)
		}
		ch <- -1
	}()
	return ch
}

// retryWrite calls write with a fresh attempt timeout until it succeeds and
// returns the time since t0. Both systems get the same client policy: a
// short attempt timeout, then an immediate retry, so neither is charged
// for the other's client library backoff.
func retryWrite(ctx context.Context, t0 time.Time, attempt time.Duration, write func(ctx context.Context, seq int) error) (time.Duration, error) {
	for seq := 0; ; seq++ {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := write(actx, seq)
		cancel()
		if err == nil {
			return time.Since(t0), nil
		}
		if time.Since(t0) > failoverTimeout || ctx.Err() != nil {
			return 0, fmt.Errorf("no write acknowledged %v after the kill: %w", failoverTimeout, err)
		}
		if actx.Err() == nil {
			// Failed fast (refused, no leader): do not spin.
			time.Sleep(time.Millisecond)
		}
	}
}

// outpostFailover kills -9 the leader process of a settled region, times
// the recovery through a survivor, and restarts the killed node on its
// data dir.
func outpostFailover(ctx context.Context, o *outpostRegion, round int, attempt time.Duration) (failoverRound, error) {
	var rd failoverRound
	old, err := o.settle(ctx, 30*time.Second)
	if err != nil {
		return rd, err
	}
	var survivors []*outpostNode
	for _, nd := range o.live() {
		if nd != old {
			survivors = append(survivors, nd)
		}
	}
	if len(survivors) == 0 {
		return rd, errNoSurvivor
	}
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()

	t0 := time.Now()
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		o.kill(old)
	}()
	elected := pollLeader(pollCtx, t0, 2*time.Millisecond, func() bool {
		for _, nd := range survivors {
			if st, err := o.status(pollCtx, nd); err == nil && st.Leader {
				return true
			}
		}
		return false
	})
	rd.Writable, err = retryWrite(ctx, t0, attempt, func(ctx context.Context, seq int) error {
		_, err := o.put(ctx, survivors[0], string(writeload.Key(fmt.Sprintf("failover%d", round), 0, seq)), attempt)
		return err
	})
	<-killed
	if err != nil {
		return rd, fmt.Errorf("outpost: %w", err)
	}
	select {
	case rd.Elected = <-elected:
	case <-time.After(5 * time.Second):
		return rd, errors.New("outpost: a write succeeded but no survivor reports leading")
	}
	if err := o.start(ctx, old); err != nil {
		return rd, err
	}
	_, err = o.settle(ctx, 60*time.Second)
	return rd, err
}

// etcdFailover kills -9 the leader member of a settled cluster, times the
// recovery through a client pointed at the survivors, and restarts the
// killed member on its data dir.
func etcdFailover(ctx context.Context, c *etcdCluster, round int, attempt time.Duration) (failoverRound, error) {
	var rd failoverRound
	if _, err := c.settle(ctx, 30*time.Second); err != nil {
		return rd, err
	}
	old, oldID, err := c.leader(ctx, c.live(), 0, 5*time.Second)
	if err != nil {
		return rd, err
	}
	var survivors []*etcdMember
	for _, m := range c.live() {
		if m != old {
			survivors = append(survivors, m)
		}
	}
	cli, err := etcdClient(survivors...)
	if err != nil {
		return rd, err
	}
	defer cli.Close()
	statusCli, err := etcdClient(survivors...)
	if err != nil {
		return rd, err
	}
	defer statusCli.Close()
	value := string(writeload.Value())
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()

	t0 := time.Now()
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		c.kill(old)
	}()
	elected := pollLeader(pollCtx, t0, 2*time.Millisecond, func() bool {
		for _, m := range survivors {
			if _, lead, err := memberStatus(pollCtx, statusCli, m); err == nil && lead != 0 && lead != oldID {
				return true
			}
		}
		return false
	})
	rd.Writable, err = retryWrite(ctx, t0, attempt, func(ctx context.Context, seq int) error {
		_, err := cli.Put(ctx, string(writeload.Key(fmt.Sprintf("failover%d", round), 0, seq)), value)
		return err
	})
	<-killed
	if err != nil {
		return rd, fmt.Errorf("etcd: %w", err)
	}
	select {
	case rd.Elected = <-elected:
	case <-time.After(5 * time.Second):
		return rd, errors.New("etcd: a write succeeded but no survivor reports a new leader")
	}
	if err := c.start(old); err != nil {
		return rd, err
	}
	_, err = c.settle(ctx, 60*time.Second)
	return rd, err
}

// failoverSummary is the p50 and max of each measure over the rounds.
type failoverSummary struct {
	Rounds                     int
	ElectedP50, ElectedMax     time.Duration
	WritableP50, WritableMax   time.Duration
	WritableP99                time.Duration
	PerRoundElected, PerRoundW []time.Duration
}

func summarizeFailover(rounds []failoverRound) failoverSummary {
	s := failoverSummary{Rounds: len(rounds)}
	for _, r := range rounds {
		s.PerRoundElected = append(s.PerRoundElected, r.Elected)
		s.PerRoundW = append(s.PerRoundW, r.Writable)
	}
	el, wr := slices.Clone(s.PerRoundElected), slices.Clone(s.PerRoundW)
	s.ElectedP50, s.ElectedMax = writeload.Percentile(el, 0.5), writeload.Percentile(el, 1)
	s.WritableP50, s.WritableMax = writeload.Percentile(wr, 0.5), writeload.Percentile(wr, 1)
	s.WritableP99 = writeload.Percentile(wr, 0.99)
	return s
}
