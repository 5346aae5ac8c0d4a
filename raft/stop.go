package raft

import (
	"context"
	"errors"
	"time"
)

// Shutdown leaves the region gracefully: hand off leadership if this node
// leads, leave gossip, stop Raft and close the log. The state store stays
// open for the caller to close.
func (r *Region) Shutdown(ctx context.Context) error {
	if r.IsLeader() {
		if n, _ := r.Configuration(); len(n) > 1 {
			if err := r.raft.LeadershipTransfer().Error(); err != nil {
				r.logger.Warn("leadership transfer before shutdown failed", "err", err)
			} else {
				r.logger.Info("handed leadership to another node before shutdown")
			}
		}
	}
	if r.ml != nil {
		r.SetMeta(func(m *NodeMeta) { m.Leaving = true })
		timeout := 2 * time.Second
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
			timeout = time.Until(dl)
		}
		if err := r.ml.Leave(timeout); err != nil && r.ml.NumMembers() > 1 {
			r.logger.Warn("leaving gossip failed; peers will notice this node is gone by failure detection", "err", err)
		}
	}
	return r.Close()
}

// Close stops the node abruptly, as a crash would (no leadership handoff,
// no gossip leave). Safe to call more than once.
func (r *Region) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	var errs []error
	if r.ml != nil {
		errs = append(errs, r.ml.Shutdown())
	}
	if r.raft != nil {
		errs = append(errs, r.raft.Shutdown().Error())
	}
	if r.trans != nil {
		errs = append(errs, r.trans.Close())
	}
	if r.stream != nil {
		r.stream.Close()
		r.stream.wait()
	}
	r.nodeHTTP.stop()
	r.wg.Wait()
	if r.wal != nil {
		errs = append(errs, r.wal.Close())
	}
	if r.walMeta != nil {
		errs = append(errs, r.walMeta.Close())
	}
	if r.metrics != nil {
		r.metrics.unregister()
	}
	return errors.Join(errs...)
}
