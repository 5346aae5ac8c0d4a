// Package telemetry is the node's telemetry store: a Prometheus TSDB (the
// tsdb package of github.com/prometheus/prometheus) under the node's data
// dir, written by the OTLP receiver and read by the query API.
//
// Tenancy is enforced here, below the receiver and the query engine: an
// Ingest appender stamps every series with the tenant (and agent and
// host) of the certificate that sent it, replacing whatever the payload
// said, and a Tenant queryable adds tenant="ID" to every selection, so
// no query, however crafted, reads another tenant's series.
package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/annotations"
)

// Labels the node sets on every series; a payload cannot set them.
const (
	LabelTenant = "tenant"
	LabelAgent  = "agent"
	LabelHost   = "host"
)

// Config is the store's retention and its cardinality budgets.
type Config struct {
	// Retention keeps samples this long (default 15 days).
	Retention time.Duration `yaml:"retention"`
	// MaxBytes, if set, also bounds the blocks on disk (oldest dropped).
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxSeriesPerAgent and MaxSeriesPerTenant bound the active series
	// (seen within SeriesTTL) one agent and one tenant may have; samples
	// of a new series beyond them are shed and counted. Defaults 10,000
	// and 200,000.
	MaxSeriesPerAgent  int `yaml:"max_series_per_agent"`
	MaxSeriesPerTenant int `yaml:"max_series_per_tenant"`
	// SeriesTTL is how long a series counts as active after its last
	// sample (default 1h).
	SeriesTTL time.Duration `yaml:"series_ttl"`
}

// Defaults fills unset fields.
func (c Config) Defaults() Config {
	c.Retention = cmp.Or(c.Retention, 15*24*time.Hour)
	c.MaxSeriesPerAgent = cmp.Or(c.MaxSeriesPerAgent, 10_000)
	c.MaxSeriesPerTenant = cmp.Or(c.MaxSeriesPerTenant, 200_000)
	c.SeriesTTL = cmp.Or(c.SeriesTTL, time.Hour)
	return c
}

// Validate rejects a config the store cannot run with, naming the field.
func (c Config) Validate() error {
	switch {
	case c.Retention < 0 || c.Retention > 0 && c.Retention < time.Hour:
		return fmt.Errorf("telemetry.retention %v: use at least 1h", c.Retention)
	case c.MaxBytes < 0:
		return fmt.Errorf("telemetry.max_bytes %d must not be negative", c.MaxBytes)
	case c.MaxSeriesPerAgent < 0 || c.MaxSeriesPerTenant < 0:
		return errors.New("telemetry.max_series_per_agent and max_series_per_tenant must not be negative")
	case c.SeriesTTL < 0:
		return fmt.Errorf("telemetry.series_ttl %v must not be negative", c.SeriesTTL)
	}
	return nil
}

// DB is the node's telemetry store.
type DB struct {
	cfg    Config
	db     *tsdb.DB
	budget *budget
	cache  *seriesCache // cache.go
	m      *metrics
	sink   Sink // set by SetSink (sink.go); nil: none
}

// Open opens (or creates) the store in dir/tsdb. Its WAL makes every
// committed append survive a crash of the process; compaction and
// retention run in the background.
func Open(dir string, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*DB, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = cfg.Retention.Milliseconds()
	opts.MaxBytes = cfg.MaxBytes
	// As the Prometheus server does: compact blocks up to a tenth of the
	// retention (at most 31 days), so a day's query reads a few blocks,
	// not one per 2 hours.
	opts.MaxBlockDuration = max(opts.MinBlockDuration, min(cfg.Retention.Milliseconds()/10, (31*24*time.Hour).Milliseconds()))
	// OTLP senders may deliver a little out of order (retries, two links
	// during a failover): accept up to 10 minutes.
	opts.OutOfOrderTimeWindow = (10 * time.Minute).Milliseconds()
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	// The TSDB creates its files and directories with the umask's modes;
	// its directory, 0700, shields them (as raft/ does the Raft files).
	tdir := filepath.Join(dir, "tsdb")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		m.unregister()
		return nil, err
	}
	if err := os.Chmod(tdir, 0o700); err != nil {
		m.unregister()
		return nil, err
	}
	db, err := tsdb.Open(tdir, logger.With("component", "tsdb"), nil, opts, nil)
	if err != nil {
		m.unregister()
		return nil, fmt.Errorf("opening the telemetry store in %s: %w (if it is damaged, move it aside: only telemetry is lost)", filepath.Join(dir, "tsdb"), err)
	}
	return &DB{cfg: cfg, db: db, budget: newBudget(cfg), cache: newSeriesCache(cfg), m: m}, nil
}

// Close flushes and closes the store.
func (d *DB) Close() error {
	d.m.unregister()
	return d.db.Close()
}

// Source is who sent samples: from the sender's certificate and the
// agent registry, never from the payload.
type Source struct {
	TenantID, Agent, Host string
}

// Tenant returns a queryable that only ever selects tenant tenantID's
// series: every selection gets tenant="tenantID", whatever other tenant
// matchers it carries (those are dropped).
func (d *DB) Tenant(tenantID string) storage.Queryable {
	return tenantQueryable{q: d.db, tenant: tenantID}
}

type tenantQueryable struct {
	q      storage.Queryable
	tenant string
}

func (t tenantQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := t.q.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return tenantQuerier{q: q, m: labels.MustNewMatcher(labels.MatchEqual, LabelTenant, t.tenant)}, nil
}

// tenantQuerier wraps a querier with exactly the methods of
// storage.Querier (not embedded, so no other method of the store, such as
// a search API, is reachable through it unscoped).
type tenantQuerier struct {
	q storage.Querier
	m *labels.Matcher
}

func (q tenantQuerier) Close() error { return q.q.Close() }

// scope replaces every tenant matcher with the caller's.
func (q tenantQuerier) scope(ms []*labels.Matcher) []*labels.Matcher {
	out := make([]*labels.Matcher, 0, len(ms)+1)
	for _, m := range ms {
		if m.Name != LabelTenant {
			out = append(out, m)
		}
	}
	return append(out, q.m)
}

func (q tenantQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return q.q.Select(ctx, sortSeries, hints, q.scope(ms)...)
}

func (q tenantQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.q.LabelValues(ctx, name, hints, q.scope(ms)...)
}

func (q tenantQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.q.LabelNames(ctx, hints, q.scope(ms)...)
}
