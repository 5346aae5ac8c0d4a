package drill

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// ackedWrite is a key the region acknowledged, with the value written.
type ackedWrite struct {
	key, value string
	at         time.Time
}

// load is a round's background traffic: a writer whose acknowledged keys
// must all survive, and a prober whose dispatches find the first one
// issued under the new lease. Neither sends to the node under fault.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	slow   atomic.Bool // the first new dispatch was seen: probe less often

	mu        sync.Mutex
	acked     []ackedWrite
	writeErr  string
	probes    int
	committed []string // probe ids answered as committed: read back after the round
	lastProbe string   // the last refusal or error, for error messages
}

const (
	writeTimeout = time.Second
	probeTimeout = time.Second
	probeEvery   = 5 * time.Millisecond
	probeSlowly  = 50 * time.Millisecond
)

// startLoad starts the writer on writeTo and the prober over probeTo;
// keys and dispatch ids continue rs's numbering.
func (d *drill) startLoad(ctx context.Context, rs *roundState, writeTo string, probeTo []api.Node) *load {
	ctx, cancel := context.WithCancel(ctx)
	l := &load{cancel: cancel}
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		d.write(ctx, l, rs, writeTo)
	}()
	go func() {
		defer l.wg.Done()
		d.probe(ctx, l, rs, probeTo)
	}()
	return l
}

// stop ends the load and waits for it.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// write puts keys one at a time, recording each acknowledged one.
func (d *drill) write(ctx context.Context, l *load, rs *roundState, url string) {
	for ctx.Err() == nil {
		seq := rs.writes.Add(1)
		key := fmt.Sprintf("%s%s/%d/%d", api.DrillKeys, d.runID, rs.n, seq)
		val := fmt.Sprintf("%s round %d write %d", d.runID, rs.n, seq)
		err := d.api.call(ctx, writeTimeout, "PUT", url, "/api/v1/kv/"+key, []byte(val), nil)
		l.mu.Lock()
		if err == nil {
			l.acked = append(l.acked, ackedWrite{key: key, value: val, at: time.Now()})
		} else if ctx.Err() == nil {
			l.writeErr = err.Error()
		}
		l.mu.Unlock()
		pause := 10 * time.Millisecond
		if err != nil {
			pause = 50 * time.Millisecond
		}
		sleep(ctx, pause)
	}
}

// probe sends region-wide dispatches round-robin to the nodes in to. The
// ones that do not hold the lease refuse (409, or 503 during a
// failover); that is expected.
func (d *drill) probe(ctx context.Context, l *load, rs *roundState, to []api.Node) {
	for i := 0; ctx.Err() == nil; i++ {
		n := to[i%len(to)]
		seq := rs.probes.Add(1)
		req := api.DispatchRequest{ID: fmt.Sprintf("drill-%s-%d-%d", d.runID, rs.n, seq), Selector: "none", Kind: "drill.probe"}
		err := d.api.call(ctx, probeTimeout, "POST", n.APIURL, "/api/v1/dispatches", req, nil)
		l.mu.Lock()
		l.probes++
		switch {
		case err == nil:
			l.committed = append(l.committed, req.ID)
		case ctx.Err() == nil:
			l.lastProbe = fmt.Sprintf("%s answered %s", n.ID, shorten(err.Error()))
		}
		l.mu.Unlock()
		if s := statusOf(err); err != nil && s != http.StatusConflict && s != http.StatusServiceUnavailable {
			sleep(ctx, probeSlowly) // not the expected refusal: do not hammer
		}
		if l.slow.Load() {
			sleep(ctx, probeSlowly)
		} else {
			sleep(ctx, probeEvery)
		}
	}
}

// ackedCount is how many writes were acknowledged, and how many of them
// after since.
func (l *load) ackedCount(since time.Time) (all, after int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.acked {
		if a.at.After(since) {
			after++
		}
	}
	return len(l.acked), after
}

func (l *load) status() (probes, commits int, lastProbe, writeErr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.probes, len(l.committed), l.lastProbe, l.writeErr
}

// staleProber asks the deposed holder, every 50ms, to propose a dispatch
// under its old token. A probe can take the node's whole 2s timeout (an
// isolated node finds no leader), so several are in flight at once.
type staleProber struct {
	stopLaunch context.CancelFunc
	wg         sync.WaitGroup

	mu       sync.Mutex
	launched int
	answers  []api.StaleProbe
	// failed are the probes whose call failed, as unknown outcomes: the
	// drill chose their ids, so it can still look them up.
	failed  []api.StaleProbe
	lastErr string
}

const (
	staleEvery       = 50 * time.Millisecond
	staleInFlight    = 10
	staleTimeout     = 5 * time.Second // the node gives up after 2s
	staleLaunchSlack = 300 * time.Millisecond
)

// startStale starts probing url, with ids that continue rs's numbering.
// ctx bounds the probes in flight; halt only ends the launching, so no
// answer is lost.
func (d *drill) startStale(ctx context.Context, url string, rs *roundState) *staleProber {
	lctx, cancel := context.WithCancel(ctx)
	p := &staleProber{stopLaunch: cancel}
	slots := make(chan struct{}, staleInFlight)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(staleEvery)
		defer tick.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case slots <- struct{}{}:
			}
			p.mu.Lock()
			p.launched++
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer func() { <-slots }()
				id := fmt.Sprintf("stale-%s-%d-%d", d.runID, rs.n, rs.stales.Add(1))
				var sp api.StaleProbe
				err := d.api.call(ctx, staleTimeout, "POST", url, "/api/v1/drills/stale?id="+id, nil, &sp)
				p.mu.Lock()
				defer p.mu.Unlock()
				if err != nil {
					p.failed = append(p.failed, api.StaleProbe{ID: id, Outcome: api.StaleOutcomeUnknown, Error: err.Error()})
					p.lastErr = err.Error()
					return
				}
				if sp.ID == "" {
					sp.ID = id
				}
				p.answers = append(p.answers, sp)
			}()
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// counts is how many probes were launched and answered.
func (p *staleProber) counts() (launched, answered int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.launched, len(p.answers)
}

// failures is how many probes got no answer, and the last error.
func (p *staleProber) failures() (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.failed), p.lastErr
}

// halt stops launching probes; finish also waits for those in flight.
func (p *staleProber) halt() { p.stopLaunch() }

// probeHealed probes the healed, deposed holder at url until minStale
// probes answered (or 10 s passed) and returns the outcomes.
func (d *drill) probeHealed(ctx context.Context, url string, rs *roundState) []api.StaleProbe {
	sp := d.startStale(ctx, url, rs)
	deadline := time.Now().Add(10 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if _, answered := sp.counts(); answered >= minStale {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return sp.finish()
}

// finish stops launching, waits for the probes in flight, and returns
// every probe's outcome: the answers, then the failed calls as unknown.
func (p *staleProber) finish() []api.StaleProbe {
	p.stopLaunch()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return append(slices.Clone(p.answers), p.failed...)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// shorten keeps an error message to one readable line.
func shorten(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
