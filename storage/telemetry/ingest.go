package telemetry

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
)

// Why a sample was not stored, the reason label of
// outpost_telemetry_samples_shed_total.
const (
	ShedAgentSeries  = "agent_series_limit"
	ShedTenantSeries = "tenant_series_limit"
	ShedOutOfOrder   = "out_of_order"
	ShedTooOld       = "too_old"
	ShedDuplicate    = "duplicate"
	ShedOutOfWindow  = "out_of_window" // older than 1h or over 5m ahead (the receiver's window)
	ShedLabels       = "label_limit"   // over MaxLabels labels, or a name or value over MaxLabelBytes
	ShedTranslation  = "translation"   // a point the OTLP translator could not convert, or a sample the store refused as invalid
)

// ShedReasons lists every reason, for metrics and messages.
var ShedReasons = []string{ShedAgentSeries, ShedTenantSeries, ShedOutOfOrder, ShedTooOld, ShedDuplicate, ShedOutOfWindow, ShedLabels, ShedTranslation}

// Bounds of one series' labels: a series is counted once by the budgets
// whatever its labels weigh, so they are bounded here.
const (
	MaxLabels     = 64
	MaxLabelBytes = 2048
)

// Appender writes one request's samples from src. It is a
// storage.AppenderV2 (what Prometheus's OTLP translator writes to). Every
// series gets src's tenant, agent and host labels, replacing any the
// payload carried; a sample the store refuses or a budget sheds is
// counted (Shed) and skipped, so the rest of the request still lands.
type Appender struct {
	d        *DB
	app      storage.AppenderV2
	src      Source
	sc       *srcCache // src's series, stamped, across requests (cache.go)
	lb       labels.Builder
	now      int64
	lastT    map[uint64]int64 // series hash → its last sample's time in this request
	refresh  []*cached        // active series seen, their budget times renewed at the end (cache.go)
	scratch  []labels.Label
	Accepted int
	Shed     map[string]int
	sunk     []prompb.TimeSeries // accepted samples for the sink (sink.go)
}

// Ingest starts an append for src; Commit makes it durable (WAL) and
// visible.
func (d *DB) Ingest(ctx context.Context, src Source) *Appender {
	now := time.Now().UnixMilli()
	return &Appender{d: d, app: d.db.AppenderV2(ctx), src: src, sc: d.cache.of(src, now), now: now, Shed: map[string]int{}}
}

// Append stores one sample (see storage.AppenderV2).
func (a *Appender) Append(_ storage.SeriesRef, in labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	c := a.series(in)
	if c == nil {
		a.shed(ShedLabels)
		return 0, nil
	}
	ls, sh := c.ls, c.hash
	// The TSDB checks a sample against what is committed only: a second
	// sample of a series at the same timestamp in one request passes
	// Append and is dropped at Commit, silently. Catch it here.
	if last, ok := a.lastT[sh]; ok {
		if last == t {
			a.shed(ShedDuplicate)
			return 0, nil
		}
		// admitted earlier in this request: the budget has it at a.now
	} else if reason := a.admit(c); reason != "" {
		a.shed(reason)
		return 0, nil
	}
	if a.lastT == nil {
		a.lastT = map[uint64]int64{}
	}
	a.lastT[sh] = t
	// A cached ref whose series the head has since dropped is unknown to
	// it: it then finds or creates the series by ls (refs are never
	// reused; TestStaleRefFindsItsSeries).
	ref, err := a.app.Append(storage.SeriesRef(c.ref.Load()), ls, st, t, v, h, fh, opts)
	switch {
	case err == nil:
		c.ref.Store(uint64(ref))
		a.accept(ls, t, v, h, fh)
		return ref, nil
	case errors.Is(err, storage.ErrOutOfOrderSample):
		a.shed(ShedOutOfOrder)
	case errors.Is(err, storage.ErrOutOfBounds), errors.Is(err, storage.ErrTooOldSample):
		a.shed(ShedTooOld)
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		a.shed(ShedDuplicate)
	default:
		var partial *storage.AppendPartialError
		if errors.As(err, &partial) { // exemplars refused, the sample stored
			c.ref.Store(uint64(ref))
			a.accept(ls, t, v, h, fh)
			return ref, nil
		}
		return 0, err
	}
	return 0, nil
}

func (a *Appender) shed(reason string) { a.ShedN(reason, 1) }

// ShedN counts n samples not stored for reason (the receiver's own
// refusals, such as out_of_window).
func (a *Appender) ShedN(reason string, n int) {
	a.Shed[reason] += n
	a.d.m.shed.WithLabelValues(reason).Add(float64(n))
}

func withinLabelLimits(ls labels.Labels) bool {
	if ls.Len() > MaxLabels {
		return false
	}
	ok := true
	ls.Range(func(l labels.Label) {
		if len(l.Name) > MaxLabelBytes || len(l.Value) > MaxLabelBytes {
			ok = false
		}
	})
	return ok
}

// Commit makes the request's samples durable in the WAL and queryable.
func (a *Appender) Commit() error {
	a.renew()
	if err := a.app.Commit(); err != nil {
		return err
	}
	a.d.m.samples.Add(float64(a.Accepted))
	a.toSink()
	return nil
}

// Rollback drops the request's samples.
func (a *Appender) Rollback() error {
	a.renew()
	a.sunk = nil
	return a.app.Rollback()
}

// budget tracks the active series of every agent and tenant.
type budget struct {
	cfg Config
	mu  sync.Mutex
	// last sample time (ms) per series hash, per agent and per tenant
	agents  map[string]map[uint64]int64
	tenants map[string]map[uint64]int64
	// scanned is when a full map was last scanned for expired series: at
	// most once a second per map, so a source over its budget does not
	// turn every sample into a scan under the lock.
	scanned map[string]int64
}

func newBudget(cfg Config) *budget {
	return &budget{cfg: cfg, agents: map[string]map[uint64]int64{}, tenants: map[string]map[uint64]int64{}, scanned: map[string]int64{}}
}

// admit notes a sample of series h from src at now and says why it must
// be shed ("" to keep it): a series new to the agent is admitted only
// within both budgets.
func (b *budget) admit(src Source, h uint64, now int64) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	as := b.agents[src.Agent]
	if as == nil {
		as = map[uint64]int64{}
		b.agents[src.Agent] = as
	}
	ts := b.tenants[src.TenantID]
	if ts == nil {
		ts = map[uint64]int64{}
		b.tenants[src.TenantID] = ts
	}
	if _, ok := as[h]; ok {
		as[h], ts[h] = now, now
		return ""
	}
	if len(as) >= b.cfg.MaxSeriesPerAgent && b.expire("a/"+src.Agent, as, now) >= b.cfg.MaxSeriesPerAgent {
		return ShedAgentSeries
	}
	if _, ok := ts[h]; !ok && len(ts) >= b.cfg.MaxSeriesPerTenant && b.expire("t/"+src.TenantID, ts, now) >= b.cfg.MaxSeriesPerTenant {
		return ShedTenantSeries
	}
	as[h], ts[h] = now, now
	return ""
}

// expire drops series not seen within SeriesTTL and returns how many
// stay; the map named key is scanned at most once a second.
func (b *budget) expire(key string, m map[uint64]int64, now int64) int {
	if now-b.scanned[key] < 1000 {
		return len(m)
	}
	b.scanned[key] = now
	cut := now - b.cfg.SeriesTTL.Milliseconds()
	for h, at := range m {
		if at < cut {
			delete(m, h)
		}
	}
	return len(m)
}

// Active returns the active series of a tenant (for its budget).
func (d *DB) Active(tenantID string) int {
	d.budget.mu.Lock()
	defer d.budget.mu.Unlock()
	return len(d.budget.tenants[tenantID])
}
