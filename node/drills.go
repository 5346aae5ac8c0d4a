package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/lease"
	"github.com/outpost-mesh/outpost/raft"
)

// ErrStoppedByDrill is what Run returns when a stop drill stopped the
// node; `outpost serve` exits with status 75 on it so its supervisor
// (systemd's Restart=on-failure) starts it again.
var ErrStoppedByDrill = errors.New("node stopped by a failover drill")

// drills runs failover drills on this node (node/httpapi.Drills).
type drills struct {
	n *Node

	mu     sync.Mutex
	healAt time.Time
	timer  *time.Timer
}

func (d *drills) Enabled() bool              { return d.n.cfg.Drills.Enabled }
func (d *drills) MaxDuration() time.Duration { return d.n.cfg.Drills.MaxDuration }
func (d *drills) Timings() raft.Tuning       { return d.n.cfg.Raft.Tuning }

func (d *drills) Faults() (raft.Faults, time.Duration) {
	f := d.n.region.Faults()
	d.mu.Lock()
	defer d.mu.Unlock()
	var left time.Duration
	if (f.Isolated || len(f.Blocked) > 0) && !d.healAt.IsZero() {
		left = max(0, time.Until(d.healAt))
	}
	return f, left
}

// Isolate cuts the node off and heals it by itself after dur, so a drill
// whose client vanished does not leave a node cut off. dur is held to
// drills.max_duration whatever the caller checked: the self-heal is what
// bounds a drill's outage.
func (d *drills) Isolate(dur time.Duration, peers []string) {
	dur = min(dur, d.MaxDuration())
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
	}
	if len(peers) > 0 {
		d.n.region.Partition(peers...)
	} else {
		d.n.region.Isolate()
	}
	d.healAt = time.Now().Add(dur)
	d.timer = time.AfterFunc(dur, d.Heal)
}

func (d *drills) Heal() {
	d.mu.Lock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.healAt = time.Time{}
	d.mu.Unlock()
	d.n.region.Heal()
}

// Transfer hands the lease and leadership to another node: release first
// (the next leader then need not wait the lease out), then transfer. If
// the transfer fails this node takes the lease again.
func (d *drills) Transfer(ctx context.Context) error {
	if _, held := d.n.lease.Holding(); held {
		if err := d.n.lease.Release(ctx); err != nil {
			d.n.lease.Resume()
			return err
		}
	}
	if err := d.n.region.TransferLeadership(); err != nil {
		d.n.lease.Resume()
		return err
	}
	return nil
}

// Stop stops the node from another goroutine: the caller answers the
// request that asked for it, in full, before calling Stop (Kill closes
// every connection at once).
func (d *drills) Stop(restartAfter time.Duration) {
	d.n.logger.Warn("stop drill: stopping this node abruptly", "restart_after", restartAfter)
	if d.n.opts.StopDrill != nil {
		go d.n.opts.StopDrill(restartAfter)
		return
	}
	go func() {
		d.n.Kill()
		select {
		case d.n.drillStopped <- struct{}{}:
		default:
		}
	}()
}

// StaleProbe proposes a dispatch under this node's last token with the
// caller's id (made here when empty).
func (d *drills) StaleProbe(ctx context.Context, id string) (lease.Dispatch, error) {
	return d.n.lease.StaleProbeID(ctx, id)
}
