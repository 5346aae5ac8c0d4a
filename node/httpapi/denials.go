package httpapi

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// DefaultDenialWindow is how long refusals of one identity are counted
// into one audit record after the first, which is recorded at once.
const DefaultDenialWindow = 10 * time.Second

// maxDenialRequests bounds the distinct requests an aggregated record
// names; the rest are counted under "other".
const maxDenialRequests = 16

// denials aggregates refusal records (auth.denied, breakglass.refused),
// which any authenticated caller can cause at will: the first refusal of
// an identity (actor, tenant, action, stream) is recorded at once; the
// ones after it within the window are counted, and one record with the
// count and the requests is written when the window ends. So a caller
// hammering a refused route costs one Raft entry per window, not one per
// request, and no refusal goes uncounted.
type denials struct {
	window time.Duration
	now    func() time.Time
	commit func(ctx context.Context, ch change) error

	mu   sync.Mutex
	open map[denialKey]*denialWindow
}

type denialKey struct{ actor, tenant, action, stream string }

// denialWindow is one identity's refusals since its last record.
type denialWindow struct {
	start       time.Time // the window's start
	ch          change    // the latest refusal
	count       int
	first, last time.Time
	requests    map[string]int // "METHOD path" → count
}

// denialDetail is the detail of an aggregated refusal record.
type denialDetail struct {
	Count    int            `json:"count"`
	First    time.Time      `json:"first"`
	Last     time.Time      `json:"last"`
	Needs    string         `json:"needs,omitempty"`
	Requests map[string]int `json:"requests"`
}

// refused notes one refusal; it reports whether it must be recorded now
// (the first of its identity's window).
func (d *denials) refused(ch change, r *http.Request, needs string) bool {
	k := denialKey{ch.actor, ch.tenant, ch.action, ch.stream}
	if ch.p != nil {
		k.actor = ch.p.Actor
	}
	if d.window <= 0 {
		return true // not aggregating: no one would write the counts
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.open[k]
	if w == nil {
		if d.open == nil {
			d.open = map[denialKey]*denialWindow{}
		}
		d.open[k] = &denialWindow{start: now, requests: map[string]int{}}
		return true
	}
	if w.count == 0 {
		w.first = now
	}
	w.count++
	w.last, w.ch = now, ch
	req := r.Method + " " + r.URL.Path
	if _, ok := w.requests[req]; !ok && len(w.requests) >= maxDenialRequests {
		req = "other"
	}
	w.requests[req]++
	if needs != "" {
		w.ch.detail = needs
	}
	return false
}

// due takes the windows that have ended (all with flush): those with
// refusals become records; idle ones are forgotten, so the next refusal
// of that identity is recorded at once again.
func (d *denials) due(all bool) []change {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []change
	for k, w := range d.open {
		if !all && now.Sub(w.start) < d.window {
			continue
		}
		if w.count == 0 {
			delete(d.open, k)
			continue
		}
		ch := w.ch
		needs, _ := ch.detail.(string)
		ch.detail = denialDetail{Count: w.count, First: w.first, Last: w.last, Needs: needs, Requests: w.requests}
		out = append(out, ch)
		w.start, w.count, w.requests = now, 0, map[string]int{}
	}
	return out
}

// run writes the aggregated records as windows end, and the open ones
// when stopping closes.
func (d *denials) run(stopping <-chan struct{}, logf func(msg string, args ...any)) {
	t := time.NewTicker(max(d.window/4, 10*time.Millisecond))
	defer t.Stop()
	flush := func(all bool) {
		for _, ch := range d.due(all) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := d.commit(ctx, ch); err != nil {
				det := ch.detail.(denialDetail)
				logf("could not record refusals in the audit log", "action", ch.action, "tenant_id", ch.tenant, "count", det.Count, "first", det.First, "last", det.Last, "err", err)
			}
			cancel()
		}
	}
	for {
		select {
		case <-stopping:
			flush(true)
			return
		case <-t.C:
			flush(false)
		}
	}
}
