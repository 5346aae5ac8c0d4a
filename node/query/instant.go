package query

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/promql"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// Sample is one series of an instant answer, without the tenant label.
type Sample struct {
	Labels map[string]string
	T      int64 // milliseconds
	V      float64
}

// InstantResult is an instant query's answer for global views: a vector
// or a scalar, with whether the region's answer is complete (every node
// read, nothing lost by the agents in the last 5 minutes) and why not.
type InstantResult struct {
	ResultType string
	Samples    []Sample
	Warnings   []string
	Complete   bool
}

// ErrBadQuery marks a query the caller must correct.
var ErrBadQuery = errors.New("bad query")

// maxInstantSamples bounds an instant answer given to federation.
const maxInstantSamples = 10000

// Instant evaluates q for tenantID at ts, region-wide, under the same
// slots and timeout as the HTTP API. Only vectors and scalars are
// answered. The tenant label is removed from every sample.
func (a *API) Instant(ctx context.Context, tenantID, q string, ts time.Time) (InstantResult, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	own := a.tenants.of(tenantID, a.cfg.MaxConcurrentPerTenant)
	select {
	case own <- struct{}{}:
		defer func() { <-own }()
	case <-ctx.Done():
		return InstantResult{}, fmt.Errorf("no query slot for this tenant within %v", a.cfg.Timeout)
	}
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-ctx.Done():
		return InstantResult{}, fmt.Errorf("no query slot within %v", a.cfg.Timeout)
	}
	scoped, err := a.scoped(q, tenantID)
	if err != nil {
		return InstantResult{}, fmt.Errorf("%w: %v", ErrBadQuery, err)
	}
	st := newReadStatus()
	src := a.source(tenantID, true, st)
	start := time.Now()
	qry, err := a.engine.NewInstantQuery(ctx, src, nil, scoped, ts)
	if err != nil {
		return InstantResult{}, fmt.Errorf("%w: %v", ErrBadQuery, err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	st.note(a.nodeID(), time.Since(start), 0, nil)
	if res.Err != nil {
		return InstantResult{}, res.Err
	}
	out := InstantResult{Complete: true, Warnings: warnings(res.Warnings)}
	switch v := res.Value.(type) {
	case promql.Vector:
		if len(v) > maxInstantSamples {
			return InstantResult{}, fmt.Errorf("%w: %d series, over %d: narrow the query", ErrBadQuery, len(v), maxInstantSamples)
		}
		out.ResultType = "vector"
		for _, s := range v {
			m := s.Metric.Map()
			delete(m, telemetry.LabelTenant)
			out.Samples = append(out.Samples, Sample{Labels: m, T: s.T, V: s.F})
		}
	case promql.Scalar:
		out.ResultType = "scalar"
		out.Samples = []Sample{{Labels: map[string]string{}, T: v.T, V: v.V}}
	default:
		return InstantResult{}, fmt.Errorf("%w: the answer is a %s; a global query answers instant vectors and scalars", ErrBadQuery, res.Value.Type())
	}
	for _, n := range st.list() {
		if n.Status != NodeOK {
			out.Complete = false
			out.Warnings = append(out.Warnings, fmt.Sprintf("node %s: %s: %s", n.Node, n.Status, n.Error))
		}
	}
	if readsAgentData(q) {
		if l, err := a.losses(ctx, tenantID, src, ts.Add(-5*time.Minute), ts); err == nil && !l.Complete {
			out.Complete = false
			out.Warnings = append(out.Warnings, lossWarning(l))
		}
	}
	if len(out.Warnings) > 16 {
		out.Warnings = out.Warnings[:16]
	}
	return out, nil
}

// FormatValue writes v as Prometheus does on the wire ("NaN", "+Inf").
func FormatValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
