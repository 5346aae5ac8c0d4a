package query

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// Losses says what the agents lost in a query's window, so an answer
// built on their flows or probes can be told complete from partial: the
// agents count every event they drop (by stage: the kernel's ring
// buffer, its full tables, the agent's queue) and every export batch they
// could not deliver, and export those counts with the rest.
type Losses struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Events lost in the window, by stage; ExportBatches dropped, by
	// reason (spool_full, corrupt, rejected_<code>).
	Events        map[string]float64 `json:"events"`
	ExportBatches map[string]float64 `json:"export_batches"`
	// Complete is true when nothing was lost in the window.
	Complete bool `json:"complete"`
}

// agentPrefixes name the metrics agents observe; a query reading one of
// them gets the agents' losses in its window.
var agentPrefixes = []string{"outpost_flow_", "outpost_probe_", "outpost_host_tcp_"}

// readsAgentData reports whether q selects a metric an agent observes.
func readsAgentData(q string) bool {
	expr, err := parse(q)
	if err != nil {
		return false
	}
	found := false
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name != model.MetricNameLabel {
				continue
			}
			for _, p := range agentPrefixes {
				// An equality on the name, or a regexp that names the
				// prefix or can match a name with it.
				if m.Type == labels.MatchEqual && strings.HasPrefix(m.Value, p) ||
					m.Type == labels.MatchRegexp && (m.Matches(p+"x") || strings.Contains(m.Value, p)) {
					found = true
				}
			}
		}
		return nil
	})
	return found
}

// lossWindow is the window a query reads: [start, end] of a range query
// (at least the lookback), the lookback before an instant query's time.
func lossWindow(r *http.Request, endpoint string) (from, to time.Time, ok bool) {
	const lookback = 5 * time.Minute
	switch endpoint {
	case "query":
		ts, err := parseTimeParam(r, "time", time.Now())
		return ts.Add(-lookback), ts, err == nil
	case "query_range":
		start, err1 := parseTimeParam(r, "start", time.Time{})
		end, err2 := parseTimeParam(r, "end", time.Time{})
		if err1 != nil || err2 != nil {
			return time.Time{}, time.Time{}, false
		}
		if from := end.Add(-lookback); from.Before(start) {
			start = from
		}
		return start, end, true
	}
	return time.Time{}, time.Time{}, false
}

// losses sums the agents' losses in [from, to] for the tenant.
func (a *API) losses(ctx context.Context, tenantID string, src storage.Queryable, from, to time.Time) (*Losses, error) {
	l := &Losses{From: from, To: to, Events: map[string]float64{}, ExportBatches: map[string]float64{}, Complete: true}
	window := fmt.Sprintf("%ds", max(int64(to.Sub(from).Seconds()), 1))
	for _, c := range []struct {
		q    string
		by   string
		into map[string]float64
	}{
		{"sum by (stage) (increase(outpost_agent_losses_total[" + window + "]))", "stage", l.Events},
		{"sum by (reason) (increase(outpost_agent_export_dropped_batches_total[" + window + "]))", "reason", l.ExportBatches},
	} {
		q, err := a.scoped(c.q, tenantID)
		if err != nil {
			return nil, err
		}
		qry, err := a.engine.NewInstantQuery(ctx, src, nil, q, to)
		if err != nil {
			return nil, err
		}
		res := qry.Exec(ctx)
		v, err := res.Vector()
		qry.Close()
		if err != nil {
			return nil, err
		}
		for _, s := range v {
			n := s.F
			if n < 0.5 { // increase() extrapolates; a count under one is none
				n = 0
			}
			c.into[s.Metric.Get(c.by)] = n
			if n > 0 {
				l.Complete = false
			}
		}
	}
	return l, nil
}

// lossWarning is the warning an answer carries when agents lost data in
// its window.
func lossWarning(l *Losses) string {
	var parts []string
	for _, m := range []map[string]float64{l.Events, l.ExportBatches} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if m[k] > 0 {
				parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
			}
		}
	}
	return "agents lost data in this query's window (" + strings.Join(parts, ", ") + "): flow and probe counts may be low; see the losses block"
}
