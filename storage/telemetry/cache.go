package telemetry

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
)

// The series cache: what Append works out for a series the first time it
// sees it from a source (the stamped labels, their hash, the TSDB's ref,
// when the budget last admitted it) is kept, per source and keyed by the
// hash of the labels as the payload sent them, so later samples skip the
// labels.Builder, the label limits, the re-hash, the head's lookup by
// labels and, while the series is surely active, the budget's lock.

// cached is one series of a source.
type cached struct {
	ls   labels.Labels // stamped with the source's tenant, agent and host; within the label limits
	hash uint64        // ls.Hash()
	ref  atomic.Uint64 // the head's ref, 0 unknown; possibly stale (the head dropped the series)
	// admitted is when the budget last set the series' time (ms), 0 not
	// yet: within half the TTL of it, the series is still in its agent's
	// budget, so Append only renews its time at the end of the request.
	admitted atomic.Int64
}

// srcCache is one source's series.
type srcCache struct {
	mu   sync.Mutex
	m    map[uint64]*cached // hash of the payload's labels → series
	used atomic.Int64       // last Ingest (ms)
}

// seriesCache is the sources' caches.
type seriesCache struct {
	mu      sync.Mutex
	max     int // series per source; beyond, its cache starts over
	ttl     int64
	srcs    map[Source]*srcCache
	sweptAt int64
}

func newSeriesCache(cfg Config) *seriesCache {
	return &seriesCache{max: 2 * max(cfg.MaxSeriesPerAgent, 1000), ttl: cfg.SeriesTTL.Milliseconds(), srcs: map[Source]*srcCache{}}
}

// of returns src's cache; caches of sources silent for a TTL are dropped
// (looked for once a minute).
func (sc *seriesCache) of(src Source, now int64) *srcCache {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if now-sc.sweptAt > 60_000 {
		sc.sweptAt = now
		for s, c := range sc.srcs {
			if c.used.Load() < now-sc.ttl {
				delete(sc.srcs, s)
			}
		}
	}
	c := sc.srcs[src]
	if c == nil {
		c = &srcCache{m: map[uint64]*cached{}}
		sc.srcs[src] = c
	}
	c.used.Store(now)
	return c
}

// series returns in's series from the cache, or stamps it and caches it;
// nil if the stamped labels are over the limits.
func (a *Appender) series(in labels.Labels) *cached {
	ih := in.Hash()
	a.sc.mu.Lock()
	c := a.sc.m[ih]
	a.sc.mu.Unlock()
	if c != nil && a.sameSeries(in, c.ls) {
		return c
	}
	a.lb.Reset(in)
	a.lb.Set(LabelTenant, a.src.TenantID)
	a.lb.Set(LabelAgent, a.src.Agent)
	a.lb.Set(LabelHost, a.src.Host)
	ls := a.lb.Labels()
	if !withinLabelLimits(ls) {
		return nil
	}
	n := &cached{ls: ls, hash: ls.Hash()}
	if c != nil { // another series of the same hash: leave the cache to it
		return n
	}
	a.sc.mu.Lock()
	if len(a.sc.m) >= a.d.cache.max {
		a.sc.m = map[uint64]*cached{}
	}
	if c = a.sc.m[ih]; c == nil {
		a.sc.m[ih] = n
	}
	a.sc.mu.Unlock()
	return n
}

// sameSeries says whether the payload's labels in stamp to st: in,
// without the stamped names and empty values, is st without the stamped
// names, label for label. Labels not strictly sorted by name (which the
// labels.Builder would not stamp as they are) never match.
func (a *Appender) sameSeries(in, st labels.Labels) bool {
	a.scratch = a.scratch[:0]
	st.Range(func(l labels.Label) {
		if !isStamped(l.Name) {
			a.scratch = append(a.scratch, l)
		}
	})
	i, ok, first, prev := 0, true, true, ""
	in.Range(func(l labels.Label) {
		if !ok {
			return
		}
		if !first && l.Name <= prev {
			ok = false
			return
		}
		first, prev = false, l.Name
		if isStamped(l.Name) || l.Value == "" {
			return
		}
		if i >= len(a.scratch) || a.scratch[i] != l {
			ok = false
			return
		}
		i++
	})
	return ok && i == len(a.scratch)
}

func isStamped(name string) bool {
	return name == LabelTenant || name == LabelAgent || name == LabelHost
}

// admit asks the budget about series c, unless it admitted it within half
// the TTL: then c is still active (so it would be admitted) and its time
// is renewed at the end of the request, under one lock for all.
func (a *Appender) admit(c *cached) string {
	if at := c.admitted.Load(); at != 0 && a.now-at < a.d.cfg.SeriesTTL.Milliseconds()/2 && a.now >= at {
		a.refresh = append(a.refresh, c)
		return ""
	}
	reason := a.d.budget.admit(a.src, c.hash, a.now)
	if reason == "" {
		c.admitted.Store(a.now)
	}
	return reason
}

// renew sets the budget's time of the series admitted from the cache.
func (a *Appender) renew() {
	if len(a.refresh) == 0 {
		return
	}
	a.d.budget.renew(a.src, a.refresh, a.now)
	a.refresh = nil
}

// renew sets the time of series cs, active in src's agent, to now.
func (b *budget) renew(src Source, cs []*cached, now int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	as, ts := b.agents[src.Agent], b.tenants[src.TenantID]
	if as == nil || ts == nil { // not after an admit; cannot happen
		return
	}
	for _, c := range cs {
		as[c.hash], ts[c.hash] = now, now
		c.admitted.Store(now)
	}
}
