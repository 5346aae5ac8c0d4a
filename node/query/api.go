// Package query is the node's Prometheus-compatible query API over its
// telemetry store: query, query_range, series, labels, label values and
// metadata, on the promql engine with a timeout, a sample limit and a
// bound on concurrent queries. Every query is scoped to the caller's
// tenant twice: its parsed AST gets tenant="ID" on every selector
// (scope), and the store adds it again to every selection.
package query

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// Config bounds what queries may cost.
type Config struct {
	// Timeout bounds one query (default 30s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxSamples bounds the samples one query may hold in memory
	// (default 5,000,000).
	MaxSamples int `yaml:"max_samples"`
	// MaxConcurrent bounds queries evaluated at once on this node; more
	// wait for a slot within their timeout (default 4).
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxConcurrentPerTenant bounds one tenant's share of them, so one
	// tenant's dashboards cannot hold every slot (default: half of
	// MaxConcurrent, at least 1).
	MaxConcurrentPerTenant int `yaml:"max_concurrent_per_tenant"`
	// LookbackDelta is how far back an instant selector looks (default 5m).
	LookbackDelta time.Duration `yaml:"lookback_delta"`
	// NodeTimeout bounds the wait for each other node's part of a
	// region-wide answer; a node slower than this is reported missing
	// (default: the lesser of 10s and half of Timeout; must be less than
	// Timeout).
	NodeTimeout time.Duration `yaml:"node_timeout"`
}

// Defaults fills unset fields.
func (c Config) Defaults() Config {
	c.Timeout = cmp.Or(c.Timeout, 30*time.Second)
	c.MaxSamples = cmp.Or(c.MaxSamples, 5_000_000)
	c.MaxConcurrent = cmp.Or(c.MaxConcurrent, 4)
	c.LookbackDelta = cmp.Or(c.LookbackDelta, 5*time.Minute)
	c.MaxConcurrentPerTenant = cmp.Or(c.MaxConcurrentPerTenant, max(1, c.MaxConcurrent/2))
	return c
}

// nodeTimeout is NodeTimeout, or unset, the lesser of 10s and half of
// Timeout.
func (c Config) nodeTimeout() time.Duration {
	return cmp.Or(c.NodeTimeout, min(10*time.Second, c.Timeout/2))
}

// Validate rejects bounds the API cannot work with, naming the option.
func (c Config) Validate() error {
	switch {
	case c.Timeout < 0 || c.MaxSamples < 0 || c.MaxConcurrent < 0 || c.MaxConcurrentPerTenant < 0 || c.LookbackDelta < 0 || c.NodeTimeout < 0:
		return errors.New("telemetry.query: timeout, max_samples, max_concurrent, lookback_delta and node_timeout must not be negative")
	case c.Timeout > 0 && c.NodeTimeout >= c.Timeout:
		return fmt.Errorf("telemetry.query.node_timeout %v must be less than telemetry.query.timeout %v, so a slow node is reported rather than failing the query", c.NodeTimeout, c.Timeout)
	}
	return nil
}

// maxRangePoints bounds a range query's resolution, as Prometheus does;
// maxQueryBytes a query's text (parsing deeply nested text costs time the
// engine's timeout does not cover); maxBody a request body.
const (
	maxRangePoints = 11000
	maxQueryBytes  = 16 << 10
	maxBody        = 1 << 20
)

// API serves the query endpoints.
type API struct {
	cfg     Config
	db      *telemetry.DB
	region  Region
	readers *readers
	engine  *promql.Engine
	slots   chan struct{}
	tenants tenantSlots
	m       *metrics
}

// New returns the API over db, its metrics registered on reg. With a
// region, answers are region-wide (see region.go); nil answers from db
// alone.
func New(cfg Config, db *telemetry.DB, region Region, reg prometheus.Registerer) (*API, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	eng := promql.NewEngine(promql.EngineOpts{
		MaxSamples: cfg.MaxSamples, Timeout: cfg.Timeout, LookbackDelta: cfg.LookbackDelta,
		EnableAtModifier: true, EnableNegativeOffset: true,
		// A subquery without a step (x[5m:]) takes this one, as Prometheus's
		// takes its evaluation interval (default 1m); unset, the engine
		// dereferences nil (found by FuzzQueryParams).
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
	})
	return &API{cfg: cfg, db: db, region: region, readers: &readers{region: region, timeout: cfg.nodeTimeout()},
		engine: eng, slots: make(chan struct{}, cfg.MaxConcurrent), m: m}, nil
}

// Endpoints are the paths served, below a prefix ending in /api/v1/.
var Endpoints = []string{"query", "query_range", "series", "labels", "label/{name}/values", "metadata"}

// Serve answers endpoint (one of Endpoints; "label/{name}/values" with
// r.PathValue("name")) for tenant tenantID: region-wide, or from this
// node's store alone with the parameter scope=node.
func (a *API) Serve(w http.ResponseWriter, r *http.Request, endpoint, tenantID string) {
	start := time.Now()
	defer func() { a.m.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds()) }()
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		a.fail(w, endpoint, http.StatusBadRequest, "bad_data", "reading the parameters: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.Timeout)
	defer cancel()
	own := a.tenants.of(tenantID, a.cfg.MaxConcurrentPerTenant)
	select {
	case own <- struct{}{}:
		defer func() { <-own }()
	case <-ctx.Done():
		a.fail(w, endpoint, http.StatusServiceUnavailable, "unavailable",
			fmt.Sprintf("no query slot for this tenant within %v (telemetry.query.max_concurrent_per_tenant %d): retry later", a.cfg.Timeout, a.cfg.MaxConcurrentPerTenant))
		return
	}
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-ctx.Done():
		a.fail(w, endpoint, http.StatusServiceUnavailable, "unavailable",
			fmt.Sprintf("no query slot within %v (telemetry.query.max_concurrent %d): retry later", a.cfg.Timeout, a.cfg.MaxConcurrent))
		return
	}
	var data any
	var warn annotations.Annotations
	var err error
	var st *readStatus
	var src storage.Queryable
	switch sc := r.FormValue("scope"); sc {
	case "", "region":
		st = newReadStatus()
		src = a.source(tenantID, true, st)
	case "node":
		src = a.source(tenantID, false, nil)
	default:
		err = badData(fmt.Errorf("scope %q: use region (the default) or node", sc))
	}
	if err == nil {
		start := time.Now()
		switch endpoint {
		case "query":
			data, warn, err = a.instant(ctx, r, tenantID, src)
		case "query_range":
			data, warn, err = a.rangeQuery(ctx, r, tenantID, src)
		case "series":
			data, warn, err = a.series(ctx, r, tenantID, src)
		case "labels":
			data, warn, err = a.labelNames(ctx, r, tenantID, src)
		case "label/{name}/values":
			data, warn, err = a.labelValues(ctx, r, tenantID, src, r.PathValue("name"))
		case "metadata":
			data, warn, err = a.metadata(ctx, r, src)
		default:
			err = badData(fmt.Errorf("no endpoint %q", endpoint))
		}
		if _, regionWide := src.(regionQueryable); regionWide {
			st.note(a.nodeID(), time.Since(start), 0, nil)
		} else {
			st = nil
		}
	}
	if err != nil {
		var bd *badDataError
		switch {
		case errors.As(err, &bd):
			a.fail(w, endpoint, http.StatusBadRequest, "bad_data", err.Error())
		case errors.Is(err, context.DeadlineExceeded), errors.As(err, new(promql.ErrQueryTimeout)):
			a.fail(w, endpoint, http.StatusServiceUnavailable, "timeout", fmt.Sprintf("%v (query.timeout %v): narrow the query", err, a.cfg.Timeout))
		case errors.As(err, new(promql.ErrTooManySamples)):
			a.fail(w, endpoint, http.StatusUnprocessableEntity, "execution", fmt.Sprintf("%v (query.max_samples %d): narrow the range or raise the step", err, a.cfg.MaxSamples))
		default:
			a.fail(w, endpoint, http.StatusUnprocessableEntity, "execution", err.Error())
		}
		return
	}
	resp := response{Status: "success", Data: data, Warnings: warnings(warn)}
	if from, to, ok := lossWindow(r, endpoint); ok && readsAgentData(r.FormValue("query")) {
		// What the agents lost in the window: an answer on their flows
		// says whether it is complete.
		if l, err := a.losses(ctx, tenantID, src, from, to); err == nil {
			resp.Losses = l
			if !l.Complete {
				resp.Warnings = append(resp.Warnings, lossWarning(l))
			}
		}
	}
	if st != nil {
		resp.Nodes = st.list()
	}
	writeJSON(w, http.StatusOK, resp)
}

// response is the Prometheus API's envelope; Nodes, on a region-wide
// answer, says how each node of the region contributed (a node not
// "ok" is missing from the answer and also named in Warnings).
type response struct {
	Status    string       `json:"status"`
	Data      any          `json:"data,omitempty"`
	ErrorType string       `json:"errorType,omitempty"`
	Error     string       `json:"error,omitempty"`
	Warnings  []string     `json:"warnings,omitempty"`
	Nodes     []NodeStatus `json:"nodes,omitempty"`
	// Losses, on a query of agent data (flows, probes), is what the
	// agents lost in its window.
	Losses *Losses `json:"losses,omitempty"`
}

func (a *API) fail(w http.ResponseWriter, endpoint string, code int, typ, msg string) {
	a.m.refused.WithLabelValues(endpoint, typ).Inc()
	writeJSON(w, code, response{Status: "error", ErrorType: typ, Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func warnings(a annotations.Annotations) []string {
	var out []string
	for _, err := range a {
		out = append(out, err.Error())
	}
	return out
}

// badDataError is a caller's mistake in the parameters.
type badDataError struct{ err error }

func (e *badDataError) Error() string { return e.err.Error() }
func (e *badDataError) Unwrap() error { return e.err }

func badData(err error) error { return &badDataError{err} }

type queryData struct {
	ResultType string `json:"resultType"`
	Result     any    `json:"result"`
}

func (a *API) instant(ctx context.Context, r *http.Request, tenantID string, src storage.Queryable) (any, annotations.Annotations, error) {
	ts, err := parseTimeParam(r, "time", time.Now())
	if err != nil {
		return nil, nil, err
	}
	q, err := a.scoped(r.FormValue("query"), tenantID)
	if err != nil {
		return nil, nil, err
	}
	qry, err := a.engine.NewInstantQuery(ctx, src, nil, q, ts)
	if err != nil {
		return nil, nil, badData(err)
	}
	defer qry.Close()
	return result(qry.Exec(ctx))
}

func (a *API) rangeQuery(ctx context.Context, r *http.Request, tenantID string, src storage.Queryable) (any, annotations.Annotations, error) {
	start, err := parseTimeParam(r, "start", time.Time{})
	if err != nil {
		return nil, nil, err
	}
	end, err := parseTimeParam(r, "end", time.Time{})
	if err != nil {
		return nil, nil, err
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		return nil, nil, badData(fmt.Errorf("step: %w", err))
	}
	switch {
	case start.IsZero() || end.IsZero():
		return nil, nil, badData(errors.New("start and end are required"))
	case end.Before(start):
		return nil, nil, badData(errors.New("end is before start"))
	case step < time.Millisecond:
		return nil, nil, badData(errors.New("step must be at least 1ms (e.g. 60 or 1m)"))
	case end.Sub(start)/step > maxRangePoints:
		return nil, nil, badData(fmt.Errorf("more than %d points per series: raise the step", maxRangePoints))
	}
	q, err := a.scoped(r.FormValue("query"), tenantID)
	if err != nil {
		return nil, nil, err
	}
	qry, err := a.engine.NewRangeQuery(ctx, src, nil, q, start, end, step)
	if err != nil {
		return nil, nil, badData(err)
	}
	defer qry.Close()
	return result(qry.Exec(ctx))
}

// scoped parses q and returns it scoped to the tenant, printed from the
// rewritten AST.
func (a *API) scoped(q, tenantID string) (string, error) {
	if strings.TrimSpace(q) == "" {
		return "", badData(errors.New("query is required"))
	}
	if len(q) > maxQueryBytes {
		return "", badData(fmt.Errorf("the query is over %d bytes", maxQueryBytes))
	}
	expr, err := parse(q)
	if err != nil {
		return "", badData(err)
	}
	return scope(expr, tenantID).String(), nil
}

func result(res *promql.Result) (any, annotations.Annotations, error) {
	if res.Err != nil {
		return nil, res.Warnings, res.Err
	}
	d := queryData{ResultType: string(res.Value.Type()), Result: res.Value}
	// Empty results are [] on the wire, as Prometheus answers.
	switch v := res.Value.(type) {
	case promql.Vector:
		if v == nil {
			d.Result = []promql.Sample{}
		}
	case promql.Matrix:
		if v == nil {
			d.Result = []promql.Series{}
			break
		}
		// The caller's deferred Close returns the points to the engine's
		// pools before the answer is encoded: keep a copy.
		out := make(promql.Matrix, len(v))
		for i, s := range v {
			s.Floats, s.Histograms = slices.Clone(s.Floats), slices.Clone(s.Histograms)
			out[i] = s
		}
		d.Result = out
	}
	return d, res.Warnings, nil
}

// window reads start and end for the metadata endpoints (default: the
// last 6 hours, as Grafana asks).
func window(r *http.Request) (int64, int64, error) {
	now := time.Now()
	start, err := parseTimeParam(r, "start", now.Add(-6*time.Hour))
	if err != nil {
		return 0, 0, err
	}
	end, err := parseTimeParam(r, "end", now)
	if err != nil {
		return 0, 0, err
	}
	return start.UnixMilli(), end.UnixMilli(), nil
}

// eachSelector opens the tenant's querier over the request's window and
// calls fn with every match[] selector, scoped to the tenant (the tenant
// alone when there is none), merging the warnings.
func (a *API) eachSelector(r *http.Request, tenantID string, src storage.Queryable, fn func(q storage.Querier, hints *storage.SelectHints, ms []*labels.Matcher) (annotations.Annotations, error)) (annotations.Annotations, error) {
	sets, err := scopeSelectors(r.Form["match[]"], tenantID)
	if err != nil {
		return nil, badData(err)
	}
	mint, maxt, err := window(r)
	if err != nil {
		return nil, err
	}
	q, err := src.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	var warn annotations.Annotations
	for _, ms := range sets {
		w, err := fn(q, &storage.SelectHints{Start: mint, End: maxt, Func: "series"}, ms)
		if err != nil {
			return nil, err
		}
		warn.Merge(w)
	}
	return warn, nil
}

func (a *API) series(ctx context.Context, r *http.Request, tenantID string, src storage.Queryable) (any, annotations.Annotations, error) {
	if len(r.Form["match[]"]) == 0 {
		return nil, nil, badData(errors.New("at least one match[] selector is required"))
	}
	seen := map[uint64]bool{}
	out := []labels.Labels{}
	warn, err := a.eachSelector(r, tenantID, src, func(q storage.Querier, hints *storage.SelectHints, ms []*labels.Matcher) (annotations.Annotations, error) {
		ss := q.Select(ctx, false, hints, ms...)
		for ss.Next() {
			ls := ss.At().Labels()
			if h := ls.Hash(); !seen[h] {
				seen[h] = true
				out = append(out, ls)
			}
		}
		return ss.Warnings(), ss.Err()
	})
	return out, warn, err
}

func (a *API) labelNames(ctx context.Context, r *http.Request, tenantID string, src storage.Queryable) (any, annotations.Annotations, error) {
	var names []string
	warn, err := a.eachSelector(r, tenantID, src, func(q storage.Querier, _ *storage.SelectHints, ms []*labels.Matcher) (annotations.Annotations, error) {
		ns, w, err := q.LabelNames(ctx, nil, ms...)
		names = append(names, ns...)
		return w, err
	})
	slices.Sort(names)
	return nonNil(slices.Compact(names)), warn, err
}

func (a *API) labelValues(ctx context.Context, r *http.Request, tenantID string, src storage.Queryable, name string) (any, annotations.Annotations, error) {
	if !model.UTF8Validation.IsValidLabelName(name) {
		return nil, nil, badData(fmt.Errorf("invalid label name %q", name))
	}
	var vals []string
	warn, err := a.eachSelector(r, tenantID, src, func(q storage.Querier, _ *storage.SelectHints, ms []*labels.Matcher) (annotations.Annotations, error) {
		vs, w, err := q.LabelValues(ctx, name, nil, ms...)
		vals = append(vals, vs...)
		return w, err
	})
	slices.Sort(vals)
	return nonNil(slices.Compact(vals)), warn, err
}

// metadata answers the metric names of the tenant with the type their
// OpenMetrics suffix implies (the store keeps no scrape metadata):
// _total a counter, _bucket/_sum/_count a histogram's parts, anything
// else a gauge.
func (a *API) metadata(ctx context.Context, r *http.Request, src storage.Queryable) (any, annotations.Annotations, error) {
	mint, maxt, err := window(r)
	if err != nil {
		return nil, nil, err
	}
	q, err := src.Querier(mint, maxt)
	if err != nil {
		return nil, nil, err
	}
	defer q.Close()
	names, warn, err := q.LabelValues(ctx, model.MetricNameLabel, nil)
	if err != nil {
		return nil, nil, err
	}
	type meta struct {
		Type string `json:"type"`
		Help string `json:"help"`
		Unit string `json:"unit"`
	}
	out := map[string][]meta{}
	want := r.FormValue("metric")
	for _, n := range names {
		if want != "" && n != want {
			continue
		}
		typ := "gauge"
		switch {
		case strings.HasSuffix(n, "_total"):
			typ = "counter"
		case strings.HasSuffix(n, "_bucket"), strings.HasSuffix(n, "_sum"), strings.HasSuffix(n, "_count"):
			typ = "histogram"
		}
		out[n] = []meta{{Type: typ}}
	}
	return out, warn, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// parseTimeParam reads a Prometheus API time (Unix seconds, fractions
// allowed, or RFC 3339); def when absent.
func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < -1e12 || f > 1e12 {
			return time.Time{}, badData(fmt.Errorf("%s %q is out of range", name, v))
		}
		s, frac := math.Modf(f)
		return time.Unix(int64(s), int64(frac*1e9)).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badData(fmt.Errorf("%s %q: use Unix seconds or RFC 3339", name, v))
	}
	return t, nil
}

// parseDuration reads seconds (fractions allowed) or a Prometheus
// duration (1m, 1h30m).
func parseDuration(v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f > 1e9 {
			return 0, fmt.Errorf("%q is out of range", v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := model.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q: use seconds or a duration such as 1m", v)
	}
	return time.Duration(d), nil
}

// tenantSlots are each tenant's share of the query slots.
type tenantSlots struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (t *tenantSlots) of(tenantID string, n int) chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]chan struct{}{}
	}
	c, ok := t.m[tenantID]
	if !ok {
		c = make(chan struct{}, n)
		t.m[tenantID] = c
	}
	return c
}
