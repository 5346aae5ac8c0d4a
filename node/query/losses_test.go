package query

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// TestAnswerSaysWhatAgentsLost: a query of flows carries the losses the
// tenant's agents counted in its window, by stage, and a warning; a
// window without losses says complete; another tenant's losses are not
// this one's; a query of other data carries no losses block.
func TestAnswerSaysWhatAgentsLost(t *testing.T) {
	db, err := telemetry.Open(t.TempDir(), telemetry.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	now := time.Now()
	for _, tn := range []string{"own", "other"} {
		app := db.Ingest(context.Background(), telemetry.Source{TenantID: tn, Agent: "a-" + tn, Host: "h-" + tn})
		for i := range 30 {
			ts := now.Add(-time.Duration(29-i) * time.Minute).UnixMilli()
			lost := 0.0
			if i >= 25 { // 40 ring buffer losses a minute, in the last five minutes
				lost = float64(i-24) * 40
			}
			if tn == "other" {
				lost = float64(i) * 1000
			}
			for _, s := range []struct {
				ls labels.Labels
				v  float64
			}{
				{labels.FromStrings("__name__", "outpost_flow_sent_bytes_total", "port", "443"), float64(i) * 100},
				{labels.FromStrings("__name__", "outpost_agent_losses_total", "stage", "ringbuf"), lost},
				{labels.FromStrings("__name__", "outpost_agent_losses_total", "stage", "queue"), 0},
				{labels.FromStrings("__name__", "other_metric"), 1},
			} {
				if _, err := app.Append(0, s.ls, 0, ts, s.v, nil, nil, storage.AppendV2Options{}); err != nil {
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
	answer := func(endpoint string, p url.Values) (out struct {
		Warnings []string
		Losses   *Losses
	}) {
		t.Helper()
		code, body := ask(t, a, "GET", endpoint, p)
		if code != 200 {
			t.Fatalf("%s %v: %d %s", endpoint, p, code, body)
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	ts := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

	got := answer("query", url.Values{"query": {"sum(rate(outpost_flow_sent_bytes_total[5m]))"}, "time": {ts(now)}})
	if got.Losses == nil || got.Losses.Complete || got.Losses.Events["ringbuf"] < 150 || got.Losses.Events["ringbuf"] > 210 || got.Losses.Events["queue"] != 0 {
		t.Fatalf("losses of the last 5m: %+v, want about 160-200 ringbuf, none queued, not complete (other tenant's losses are 1000/min)", got.Losses)
	}
	if len(got.Warnings) == 0 {
		t.Fatal("no warning on an answer over lost data")
	}
	early := now.Add(-20 * time.Minute)
	got = answer("query_range", url.Values{"query": {"outpost_flow_sent_bytes_total"}, "start": {ts(early.Add(-5 * time.Minute))}, "end": {ts(early)}, "step": {"60"}})
	if got.Losses == nil || !got.Losses.Complete || len(got.Warnings) != 0 {
		t.Fatalf("a window without losses: %+v %v, want complete and no warning", got.Losses, got.Warnings)
	}
	if got := answer("query", url.Values{"query": {"other_metric"}}); got.Losses != nil {
		t.Fatalf("a query of other data carries losses: %+v", got.Losses)
	}
	if !readsAgentData(`{__name__=~"outpost_flow_.*"}`) || !readsAgentData(`{__name__=~"outpost_flow_sent.*"}`) || readsAgentData("up") {
		t.Fatal("readsAgentData")
	}
}

// TestRangeAnswerSurvivesTheLossesQuery: a range query over agent flows
// answers the points evaluated at its steps. The query's Close returned
// the matrix's points to the engine's pools before the answer was
// encoded, and the losses query run in between overwrote them (raw
// sample times, duplicated ends, wrong values on the wire).
func TestRangeAnswerSurvivesTheLossesQuery(t *testing.T) {
	db, err := telemetry.Open(t.TempDir(), telemetry.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	now := time.Now().Truncate(time.Second) // steps and samples on whole seconds
	app := db.Ingest(context.Background(), telemetry.Source{TenantID: "own", Agent: "a", Host: "h"})
	for i := range 30 {
		ts := now.Add(-time.Duration(29-i) * time.Minute).UnixMilli()
		for _, s := range []struct {
			ls labels.Labels
			v  float64
		}{
			{labels.FromStrings("__name__", "outpost_flow_sent_bytes_total", "port", "443"), float64(i) * 100},
			{labels.FromStrings("__name__", "outpost_agent_losses_total", "stage", "ringbuf"), float64(i)},
		} {
			if _, err := app.Append(0, s.ls, 0, ts, s.v, nil, nil, storage.AppendV2Options{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{}, db, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sec := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
	start := now.Add(-20 * time.Minute)
	code, body := ask(t, a, "GET", "query_range", url.Values{"query": {"outpost_flow_sent_bytes_total"},
		"start": {sec(start)}, "end": {sec(now)}, "step": {"60"}})
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var out struct {
		Data struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Data.Result) != 1 {
		t.Fatalf("%v: %s", err, body)
	}
	vals := out.Data.Result[0].Values
	if len(vals) != 21 {
		t.Fatalf("%d points, want 21 (one per step): %v", len(vals), vals)
	}
	for k, p := range vals {
		wantT := float64(start.Add(time.Duration(k) * time.Minute).Unix())
		wantV := strconv.Itoa((9 + k) * 100)
		if ts, _ := p[0].(float64); ts != wantT || p[1] != wantV {
			t.Fatalf("point %d is %v, want [%.3f %s] (all: %v)", k, p, wantT, wantV, vals)
		}
	}
}
