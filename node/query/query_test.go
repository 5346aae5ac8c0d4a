package query

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// twoTenants is a store where tenant "own" and tenant "other" each have
// series of the same metrics, other's with a secret label.
func twoTenants(t *testing.T) (*telemetry.DB, *API) {
	t.Helper()
	db, err := telemetry.Open(t.TempDir(), telemetry.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	now := time.Now()
	for _, tn := range []string{"own", "other"} {
		app := db.Ingest(context.Background(), telemetry.Source{TenantID: tn, Agent: "agent-" + tn, Host: "host-" + tn})
		for i := range 10 {
			ts := now.Add(-time.Duration(9-i) * time.Minute).UnixMilli()
			for _, ls := range []labels.Labels{
				labels.FromStrings("__name__", "tcp_retransmits_total", "dst", "db-"+tn, "secret", "s-"+tn),
				labels.FromStrings("__name__", "tcp_rtt_seconds", "dst", "db-"+tn),
			} {
				if _, err := app.Append(0, ls, 0, ts, float64(i), nil, nil, storage.AppendV2Options{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	a, err := New(Config{}, db, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db, a
}

// ask calls endpoint for tenant "own" and returns the status and body.
func ask(t *testing.T, a *API, method, endpoint string, params url.Values) (int, string) {
	t.Helper()
	var r *http.Request
	if method == "POST" {
		r = httptest.NewRequest("POST", "/x", strings.NewReader(params.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest("GET", "/x?"+params.Encode(), nil)
	}
	if strings.HasPrefix(endpoint, "label/") {
		r.SetPathValue("name", strings.Split(endpoint, "/")[1])
		endpoint = "label/{name}/values"
	}
	w := httptest.NewRecorder()
	a.Serve(w, r, endpoint, "own")
	return w.Code, w.Body.String()
}

// TestQueriesSeeOnlyTheirTenant: crafted PromQL and metadata requests
// answer nothing of another tenant: tenant matchers of every kind,
// __name__ regexes, subqueries, label_replace, absent, or-vectors, and
// the series, labels and label values endpoints.
func TestQueriesSeeOnlyTheirTenant(t *testing.T) {
	_, a := twoTenants(t)
	queries := []string{
		`tcp_retransmits_total`,
		`tcp_retransmits_total{tenant="other"}`,
		`tcp_retransmits_total{tenant=~".*"}`,
		`tcp_retransmits_total{tenant=~"own|other"}`,
		`tcp_retransmits_total{tenant!="own"}`,
		`{tenant!=""}`,
		`{__name__=~".+"}`,
		`{__name__=~"tcp_.*", tenant=~"o.*"}`,
		`sum by (tenant, secret) (tcp_retransmits_total{tenant="other"})`,
		`max_over_time(tcp_retransmits_total{tenant="other"}[10m:1m])`,
		`rate(tcp_retransmits_total{tenant=~".+"}[5m])`,
		`label_replace(tcp_retransmits_total{tenant="other"}, "tenant", "own", "", "")`,
		`absent(tcp_retransmits_total{tenant="other"})`,
		`tcp_rtt_seconds or on() tcp_retransmits_total{tenant="other"}`,
		`count_values("v", {__name__=~".+", tenant="other"})`,
		`{secret="s-other"}`,
	}
	for _, q := range queries {
		for _, method := range []string{"GET", "POST"} {
			code, body := ask(t, a, method, "query", url.Values{"query": {q}})
			if code != 200 {
				t.Errorf("%s %s: %d %s", method, q, code, body)
				continue
			}
			if strings.Contains(body, "other") {
				t.Errorf("%s %s answered another tenant's data: %s", method, q, body)
			}
		}
		now := time.Now()
		code, body := ask(t, a, "GET", "query_range", url.Values{"query": {q},
			"start": {strconv.FormatInt(now.Add(-15*time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix(), 10)}, "step": {"60"}})
		if code != 200 || strings.Contains(body, "other") {
			t.Errorf("range %s: %d %s", q, code, body)
		}
	}
	// The tenant's own data is there (the rewrite does not empty it).
	if code, body := ask(t, a, "GET", "query", url.Values{"query": {`sum(tcp_retransmits_total)`}}); code != 200 || !strings.Contains(body, `"9"`) {
		t.Fatalf("own data: %d %s", code, body)
	}
	for _, tc := range []struct {
		endpoint string
		params   url.Values
	}{
		{"series", url.Values{"match[]": {`{__name__=~".+"}`, `{tenant="other"}`, `{secret=~".+"}`}}},
		{"labels", url.Values{}},
		{"labels", url.Values{"match[]": {`{tenant="other"}`}}},
		{"label/secret/values", url.Values{}},
		{"label/tenant/values", url.Values{"match[]": {`{tenant=~".+"}`}}},
		{"label/dst/values", url.Values{}},
		{"metadata", url.Values{}},
	} {
		code, body := ask(t, a, "GET", tc.endpoint, tc.params)
		if code != 200 || strings.Contains(body, "other") {
			t.Errorf("%s %v: %d %s", tc.endpoint, tc.params, code, body)
		}
	}
}

// TestScopeRewritesEverySelector: the rewrite reaches selectors in every
// position and leaves exactly one tenant matcher, the caller's.
func TestScopeRewritesEverySelector(t *testing.T) {
	for _, q := range []string{
		`a{tenant="x"} + on() b{tenant=~".*"}`,
		`sum(rate(a{tenant!="y"}[5m])) by (tenant)`,
		`max_over_time((a{tenant="x"} * b)[10m:1m] offset 5m)`,
		`label_join(a, "t", ",", "tenant")`,
		`histogram_quantile(0.9, sum by (le) (rate(h_bucket{tenant="x"}[5m])))`,
	} {
		expr, err := parse(q)
		if err != nil {
			t.Fatal(err)
		}
		out := scope(expr, "me").String()
		again, err := parse(out)
		if err != nil {
			t.Fatalf("%s printed unparseable %s: %v", q, out, err)
		}
		if strings.Contains(out, `"x"`) || strings.Contains(out, `"y"`) || strings.Contains(out, `".*"`) {
			t.Errorf("%s -> %s keeps a tenant matcher of the caller's", q, out)
		}
		// Every selector carries the caller's tenant, once.
		parser.Inspect(again, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				c := 0
				for _, m := range vs.LabelMatchers {
					if m.Name == "tenant" {
						c++
						if m.Type != labels.MatchEqual || m.Value != "me" {
							t.Errorf("%s: selector %s has tenant matcher %s", q, vs, m)
						}
					}
				}
				if c != 1 {
					t.Errorf("%s: selector %s has %d tenant matchers", q, vs, c)
				}
			}
			return nil
		})
	}
	expr, _ := parse(`a{tenant="x"} + b`)
	if got := scope(expr, "me").String(); got != `a{tenant="me"} + b{tenant="me"}` {
		t.Fatalf("got %s", got)
	}
}

// TestQueryBadInput: bad parameters are 400 with Prometheus's error shape.
func TestQueryBadInput(t *testing.T) {
	_, a := twoTenants(t)
	for _, tc := range []struct {
		endpoint string
		params   url.Values
	}{
		{"query", url.Values{}},
		{"query", url.Values{"query": {"sum("}}},
		{"query", url.Values{"query": {"up"}, "time": {"yesterday"}}},
		{"query_range", url.Values{"query": {"up"}, "start": {"1"}, "end": {"0"}, "step": {"1"}}},
		{"query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"100000"}, "step": {"1"}}},
		{"query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"10"}, "step": {"-1"}}},
		{"query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"0.001"}, "step": {"0.0000001"}}},
		{"query", url.Values{"query": {strings.Repeat("(", 20000) + "1" + strings.Repeat(")", 20000)}}},
		{"series", url.Values{}},
		{"series", url.Values{"match[]": {"{"}}},
		{"label/\xff/values", url.Values{}},
	} {
		code, body := ask(t, a, "GET", tc.endpoint, tc.params)
		var resp struct{ Status, ErrorType, Error string }
		if code != 400 || json.Unmarshal([]byte(body), &resp) != nil || resp.Status != "error" || resp.ErrorType != "bad_data" || resp.Error == "" {
			t.Errorf("%s %v: %d %s, want 400 bad_data", tc.endpoint, tc.params, code, body)
		}
	}
}

// FuzzQueryParams: hostile parameters never panic the API and never
// answer another tenant's data.
func FuzzQueryParams(f *testing.F) {
	for _, s := range []string{`up`, `{tenant="other"}`, `sum(rate(x[5m]))`, `a[5m:1m]`, `1e309`, `label_replace(a,"tenant","x","","")`} {
		f.Add(s, "1700000000", "60")
	}
	db, err := telemetry.Open(f.TempDir(), telemetry.Config{}, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	app := db.Ingest(context.Background(), telemetry.Source{TenantID: "other", Agent: "a", Host: "h"})
	_, _ = app.Append(0, labels.FromStrings("__name__", "up"), 0, time.Now().UnixMilli(), 1, nil, nil, storage.AppendV2Options{})
	_ = app.Commit()
	a, err := New(Config{Timeout: 2 * time.Second}, db, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, q, ts, step string) {
		for _, ep := range []string{"query", "query_range", "series"} {
			code, body := ask(t, a, "GET", ep, url.Values{"query": {q}, "time": {ts}, "start": {ts}, "end": {ts}, "step": {step}, "match[]": {q}})
			if code == 200 && strings.Contains(body, `"tenant":"other"`) {
				t.Fatalf("%s %q answered another tenant: %s", ep, q, body)
			}
		}
	})
}

// TestSubqueryWithoutStep: x[10m:] takes a 1m step, as Prometheus's
// default evaluation interval, rather than crashing the engine (found by
// FuzzQueryParams: the engine's default for it is nil).
func TestSubqueryWithoutStep(t *testing.T) {
	_, a := twoTenants(t)
	for _, ep := range []string{"query", "query_range"} {
		code, body := ask(t, a, "GET", ep, url.Values{"query": {"max_over_time(tcp_rtt_seconds[10m:])"},
			"start": {strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)}, "end": {strconv.FormatInt(time.Now().Unix(), 10)}, "step": {"60"}})
		if code != 200 || !strings.Contains(body, "db-own") {
			t.Errorf("%s: %d %s, want own's series", ep, code, body)
		}
	}
}
