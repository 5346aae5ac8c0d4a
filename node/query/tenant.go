package query

import (
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// parse parses a PromQL expression with the default functions.
func parse(q string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(q)
}

// scope rewrites expr so every selector in it (in functions, subqueries,
// binary operations, aggregations) selects only tenant tenantID's series:
// any tenant matcher the caller wrote is removed (a regex on tenant, a
// negative match, tenant!="") and tenant="tenantID" added. It works on the
// parsed AST, never on the query's text; the store scopes every selection
// again below it (telemetry.DB.Tenant).
func scope(expr parser.Expr, tenantID string) parser.Expr {
	own := labels.MustNewMatcher(labels.MatchEqual, telemetry.LabelTenant, tenantID)
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			vs.LabelMatchers = scopeMatchers(vs.LabelMatchers, own)
		}
		return nil
	})
	return expr
}

// scopeMatchers drops tenant matchers from ms and adds own.
func scopeMatchers(ms []*labels.Matcher, own *labels.Matcher) []*labels.Matcher {
	out := make([]*labels.Matcher, 0, len(ms)+1)
	for _, m := range ms {
		if m.Name != telemetry.LabelTenant {
			out = append(out, m)
		}
	}
	return append(out, own)
}

// scopeSelectors parses match[] selectors (series, labels, label values)
// and scopes each to the tenant.
func scopeSelectors(sel []string, tenantID string) ([][]*labels.Matcher, error) {
	own := labels.MustNewMatcher(labels.MatchEqual, telemetry.LabelTenant, tenantID)
	if len(sel) == 0 {
		return [][]*labels.Matcher{{own}}, nil
	}
	p := parser.NewParser(parser.Options{})
	var out [][]*labels.Matcher
	for _, s := range sel {
		ms, err := p.ParseMetricSelector(s)
		if err != nil {
			return nil, err
		}
		out = append(out, scopeMatchers(ms, own))
	}
	return out, nil
}
