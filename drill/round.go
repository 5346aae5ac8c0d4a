package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// errMoved: the region changed leader or holder before the fault took
// hold, so the attempt measured nothing and the round tries again.
var errMoved = errors.New("the region moved before the fault")

// roundState is what a round's attempts add up.
type roundState struct {
	n int
	// Sequence numbers of keys, probe dispatch ids and stale probe ids.
	writes, probes, stales atomic.Int64

	mu         sync.Mutex
	acked      []ackedWrite
	committed  []string // probe dispatch ids answered as committed
	probesSent int
}

// absorb adds a stopped load's counts.
func (rs *roundState) absorb(l *load) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.acked = append(rs.acked, l.acked...)
	rs.committed = append(rs.committed, l.committed...)
	rs.probesSent += l.probes
}

// probeCounts is how many probes were sent and answered as committed.
func (rs *roundState) probeCounts() (sent, committed int) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.probesSent, len(rs.committed)
}

// round runs round n: settle, fault, measure, recover, verify.
func (d *drill) round(ctx context.Context, n int) (api.DrillRound, error) {
	label := fmt.Sprintf("round %d/%d", n, d.cfg.Rounds)
	rs := &roundState{n: n}
	res := api.DrillRound{Round: n, LeaderElectedMs: -1, LeaseAcquiredMs: -1, FirstDispatchMs: -1}
	fail := func(err error) (api.DrillRound, error) {
		res.Error = err.Error()
		res.Probes, res.ProbesCommitted = rs.probeCounts()
		d.say("%s: FAILED: %v", label, err)
		return res, err
	}
	var after regionView
	for attempt := 1; ; attempt++ {
		v, err := d.settle(ctx, label)
		if err != nil {
			return fail(err)
		}
		after, err = d.fault(ctx, label, rs, v, &res)
		if err == nil {
			break
		}
		if !errors.Is(err, errMoved) || attempt == maxAttempts {
			return fail(err)
		}
		d.say("%s: %v; settling and trying again", label, err)
	}
	res.Probes, res.ProbesCommitted = rs.probeCounts()
	readFrom := after.others(res.Node)[0]
	if err := d.readBack(ctx, readFrom.APIURL, rs, &res); err != nil {
		return fail(fmt.Errorf("on %s: %w", readFrom.ID, err))
	}
	d.say("%s: leader %s after %dms, lease %s token %d after %dms, first dispatch after %dms; stale dispatches %d refused of %d (%d not appended, %d malformed, %d unknown), %d accepted; %d writes acknowledged, %d lost; %d probes committed, %d lost",
		label, res.NewLeader, res.LeaderElectedMs, res.NewHolder, res.NewToken, res.LeaseAcquiredMs, res.FirstDispatchMs,
		res.StaleRefused, res.StaleAttempted, res.StaleNotAppended, res.StaleBadCommand, res.StaleUnknown, res.StaleAccepted,
		res.AckedWrites, res.AckedWritesLost, res.ProbesCommitted, res.ProbesLost)
	return res, nil
}

// fault injects the fault once on the settled region v and fills res
// with what the survivors reported. It returns the region settled again.
func (d *drill) fault(ctx context.Context, label string, rs *roundState, v regionView, res *api.DrillRound) (regionView, error) {
	h, t, hURL := v.holder, v.token, v.url(v.holder)
	others := v.others(h)
	w := newWatch(h, t)
	d.arm(w)
	defer d.disarm()

	ld := d.startLoad(ctx, rs, others[(rs.n-1)%len(others)].APIURL, others)
	stopLoad := sync.OnceFunc(func() {
		ld.stop()
		rs.absorb(ld)
	})
	defer stopLoad()
	if err := d.waitLoad(ctx, ld); err != nil {
		return v, err
	}
	var moved string
	d.observe(func(w *watch) {
		moved = w.disturbed
		w.injected = time.Now()
	})
	if moved != "" {
		return v, fmt.Errorf("%w: %s", errMoved, moved)
	}

	// Inject the fault, and make sure it is undone however this ends.
	recovered := false
	defer func() {
		if !recovered && d.cfg.Mode == ModeIsolate {
			d.heal(context.WithoutCancel(ctx), h, hURL)
		}
	}()
	t0, err := d.inject(ctx, h, hURL)
	if err != nil {
		if s := statusOf(err); s == http.StatusConflict || s == http.StatusServiceUnavailable {
			return v, fmt.Errorf("%w: %s refused the %s drill: %v", errMoved, h, d.cfg.Mode, err)
		}
		return v, fmt.Errorf("%s drill on %s: %w", d.cfg.Mode, h, err)
	}
	d.observe(func(w *watch) { w.t0 = t0 })
	res.Node, res.Token = h, t
	d.say("%s: %s on %s, which held lease token %d", label, faultVerb(d.cfg.Mode), h, t)

	// Watch the survivors until the first dispatch under the new lease,
	// probing the deposed holder's stale token once the new lease exists.
	var sp *staleProber
	defer func() {
		if sp != nil {
			sp.finish() // on every way out: no probe outlives the round
		}
	}()
	var dispatchAt time.Time
	for {
		var newLease, first *seen
		d.observe(func(w *watch) { newLease, first = w.lease, w.dispatch })
		if sp == nil && d.cfg.Mode != ModeStop && (newLease != nil || first != nil) {
			sp = d.startStale(ctx, hURL, rs)
		}
		if sp != nil && d.cfg.Mode == ModeIsolate && time.Since(t0) > d.cfg.IsolateFor-staleLaunchSlack {
			if launched, _ := sp.counts(); launched >= minStale {
				sp.halt() // keep the probes inside the isolation
			}
		}
		if first != nil {
			if dispatchAt.IsZero() {
				dispatchAt = time.Now()
				ld.slow.Store(true)
			}
			staleDone := sp == nil
			if sp != nil {
				_, answered := sp.counts()
				staleDone = answered >= minStale || time.Since(dispatchAt) > 15*time.Second
			}
			_, writesAfter := ld.ackedCount(dispatchAt)
			if staleDone && (writesAfter >= minWritesAfter || time.Since(dispatchAt) > 5*time.Second) {
				break
			}
		} else if time.Since(t0) > firstDispatchTimeout {
			d.observe(func(w *watch) { w.fill(res) })
			return v, d.noDispatchError(ld, t)
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	d.observe(func(w *watch) { w.fill(res) })
	var answers []api.StaleProbe
	if sp != nil {
		answers = sp.finish()
	}
	stopLoad()

	// Undo the fault and wait for the region to settle again; the streams
	// keep watching for stale deliveries meanwhile.
	switch d.cfg.Mode {
	case ModeIsolate:
		d.heal(ctx, h, hURL)
	case ModeStop:
		if err := d.waitBack(ctx, label, h, hURL, others); err != nil {
			return v, err
		}
	}
	recovered = true
	after, err := d.settle(ctx, label)
	if err != nil {
		return v, fmt.Errorf("after the fault: %w", err)
	}
	switch {
	case d.cfg.Mode != ModeIsolate:
	case after.holder == h:
		// It holds the lease again: its last token is current, so a
		// probe would rightly be accepted. Nothing to test this round.
		d.say("%s: %s holds the lease again after the heal; no stale probes after the heal", label, h)
	default:
		// Cut off, the holder could append nothing, so its probes did not
		// reach the fence. Healed, it reaches the leader again: its stale
		// proposals now go through the log and the FSM must refuse them.
		answers = append(answers, d.probeHealed(ctx, hURL, rs)...)
	}

	// Stale deliveries seen until the region settled count too.
	stale := map[string]bool{}
	d.observe(func(w *watch) {
		for id := range w.stale {
			stale[id] = true
		}
	})

	// Every stale probe is looked up once the region is whole again: a
	// committed one is a fencing failure, whatever its answer said.
	lookup := after.others(h)[0]
	if err := d.classifyStale(ctx, lookup.APIURL, answers, stale, res); err != nil {
		return after, fmt.Errorf("on %s: %w", lookup.ID, err)
	}
	if sp != nil {
		if errs, last := sp.failures(); res.StaleAttempted-errs < minStale {
			d.say("%s: warning: only %d stale probes answered (%d more failed; last error: %s)", label, res.StaleAttempted-errs, errs, orNone(last))
		}
	}
	res.StaleAccepted = len(stale)
	res.StaleAcceptedIDs = slices.Sorted(maps.Keys(stale))
	res.StaleAcceptedIDs = res.StaleAcceptedIDs[:min(len(res.StaleAcceptedIDs), 10)]
	return after, nil
}

// classifyStale counts the stale probes' outcomes into res, each looked
// up on url first (a probe whose call failed too: its id is the drill's):
// one that committed is a fencing failure whatever its answer said, and
// goes into stale. Only the FSM's refusal of the token counts as refused.
func (d *drill) classifyStale(ctx context.Context, url string, answers []api.StaleProbe, stale map[string]bool, res *api.DrillRound) error {
	for _, a := range answers {
		res.StaleAttempted++
		committed := false
		if a.ID != "" {
			var err error
			if committed, err = d.committed(ctx, url, a.ID); err != nil {
				return fmt.Errorf("looking up stale probe %s: %w", a.ID, err)
			}
		}
		switch {
		case committed || a.Outcome == api.StaleOutcomeAccepted:
			stale[a.ID] = true
		case a.Outcome == api.StaleOutcomeRefused:
			res.StaleRefused++
		case a.Outcome == api.StaleOutcomeNotAppended:
			res.StaleNotAppended++
		case a.Outcome == api.StaleOutcomeBadCommand:
			res.StaleBadCommand++
		default:
			res.StaleUnknown++
		}
	}
	return nil
}

func faultVerb(m Mode) string {
	switch m {
	case ModeTransfer:
		return "leadership transfer"
	case ModeIsolate:
		return "isolation"
	}
	return "stop"
}

// waitLoad waits for the first acknowledged write: the region takes
// writes before the fault, so a write lost later is the fault's doing.
func (d *drill) waitLoad(ctx context.Context, ld *load) error {
	deadline := time.Now().Add(loadStartTimeout)
	for {
		if n, _ := ld.ackedCount(time.Time{}); n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			_, _, _, werr := ld.status()
			return fmt.Errorf("no write was acknowledged within %v before the fault (last error: %s)", loadStartTimeout, werr)
		}
		sleep(ctx, 20*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// inject sends the fault to holder h at url and returns t0: just
// before sending, or for a stop when the answer arrives (the node dies
// right after answering).
func (d *drill) inject(ctx context.Context, h, url string) (time.Time, error) {
	if d.cfg.Mode == ModeIsolate && d.cfg.Isolator != nil {
		t0 := time.Now()
		return t0, d.cfg.Isolator.Isolate(ctx, h)
	}
	switch d.cfg.Mode {
	case ModeTransfer:
		t0 := time.Now()
		return t0, d.api.call(ctx, 15*time.Second, "POST", url, "/api/v1/drills/transfer", nil, nil)
	case ModeIsolate:
		t0 := time.Now()
		return t0, d.api.call(ctx, 10*time.Second, "POST", url, "/api/v1/drills/isolate",
			api.DrillFault{DurationMs: d.cfg.IsolateFor.Milliseconds()}, nil)
	}
	ends := d.streams.ends(h)
	err := d.api.call(ctx, 10*time.Second, "POST", url, "/api/v1/drills/stop",
		api.DrillStop{RestartAfterMs: d.cfg.RestartAfter.Milliseconds()}, nil)
	if err == nil || statusOf(err) != 0 || ctx.Err() != nil {
		return time.Now(), err
	}
	// No answer, or one cut short: the node may have died while writing
	// it (older nodes did). Confirm the stop another way.
	if cerr := d.confirmStopped(ctx, h, url, ends); cerr != nil {
		return time.Now(), fmt.Errorf("%w; %w", err, cerr)
	}
	d.say("drill: the answer to the stop of %s was lost (%v), but %s did stop", h, err, h)
	return time.Now(), nil
}

// errNotStopped: a stop drill's node kept answering after the stop.
var errNotStopped = errors.New("the node did not stop")

// stopConfirmTimeout bounds how long the drill looks for signs that a
// node whose stop answer was lost did stop.
const stopConfirmTimeout = 10 * time.Second

// confirmStopped waits for a sign that node h at url stopped: its event
// stream ended (ends counted them before the stop), its API port refuses
// connections, or three health checks in a row had their connection cut.
// A slow answer is no sign: on a busy machine a live node can take
// longer than the check's second. A restart can be quick, so it looks
// often.
func (d *drill) confirmStopped(ctx context.Context, h, url string, ends int64) error {
	deadline := time.Now().Add(d.stopConfirm)
	cut := 0
	for {
		if d.streams.ends(h) > ends {
			return nil
		}
		var hl api.Health
		err := d.api.call(ctx, time.Second, "GET", url, "/api/v1/health", nil, &hl)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil // nothing listens: down
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
			if cut++; cut >= 3 {
				return nil // hanging up on every check: going down
			}
		default:
			cut = 0
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s still answers (or answers too slowly to tell) %v after the stop request", errNotStopped, h, d.stopConfirm)
		}
		sleep(ctx, 50*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// noDispatchError says what the drill saw when no dispatch came.
func (d *drill) noDispatchError(ld *load, t uint64) error {
	var last string
	d.observe(func(w *watch) { last = w.lastSeen() })
	probes, commits, lastProbe, _ := ld.status()
	return fmt.Errorf("no dispatch under a lease token above %d within %v of the fault; last seen: %s; probes: %d sent, %d committed, last refusal: %s",
		t, firstDispatchTimeout, last, probes, commits, orNone(lastProbe))
}

// heal ends an isolation; the node also heals itself when it runs out.
func (d *drill) heal(ctx context.Context, h, url string) {
	var err error
	for i := 0; i < 5; i++ {
		if d.cfg.Isolator != nil {
			err = d.cfg.Isolator.Heal(ctx, h)
		} else {
			err = d.api.call(ctx, 5*time.Second, "POST", url, "/api/v1/drills/heal", nil, nil)
		}
		if err == nil {
			return
		}
		sleep(ctx, 500*time.Millisecond)
	}
	if d.cfg.Isolator != nil {
		d.say("drill: warning: healing %s through %s failed: %v; undo it by hand", h, d.cfg.Isolator.Name(), err)
		return
	}
	d.say("drill: warning: healing %s failed (%v); it heals itself when its isolation runs out", h, err)
}

// waitBack waits for a stopped node's API to answer again.
func (d *drill) waitBack(ctx context.Context, label, h, url string, others []api.Node) error {
	start := time.Now()
	said := start
	for {
		var hl api.Health
		err := d.api.call(ctx, 2*time.Second, "GET", url, "/api/v1/health", nil, &hl)
		if err == nil {
			d.say("%s: %s is back after %.1fs", label, h, time.Since(start).Seconds())
			return nil
		}
		if time.Since(start) > restartTimeout {
			for _, n := range others {
				if d.api.call(ctx, 2*time.Second, "GET", n.APIURL, "/api/v1/health", nil, &hl) == nil {
					return fmt.Errorf("stopped node %s did not answer again within %v (%v); under `outpost serve` its supervisor must restart it (exit status 75); see its log", h, restartTimeout, err)
				}
			}
			return fmt.Errorf("stopped node %s did not answer again within %v (%v), and no other node answers either: the region's process may have died (see its log)", h, restartTimeout, err)
		}
		if time.Since(said) >= 5*time.Second {
			d.say("%s: waiting for %s to restart (%.0fs)", label, h, time.Since(start).Seconds())
			said = time.Now()
		}
		sleep(ctx, 200*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// retry retries fn on 503 (a linearizable read during an election) for
// a few seconds.
func (d *drill) retry(ctx context.Context, fn func() error) error {
	var err error
	for i := 0; i < 20; i++ {
		if err = fn(); statusOf(err) != http.StatusServiceUnavailable {
			return err
		}
		sleep(ctx, 250*time.Millisecond)
	}
	return err
}
