package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

func openTest(t *testing.T, cfg Config) *DB {
	t.Helper()
	db, err := Open(t.TempDir(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// put appends one float sample per series from src and commits.
func put(t *testing.T, db *DB, src Source, series ...labels.Labels) *Appender {
	t.Helper()
	app := db.Ingest(context.Background(), src)
	now := time.Now().UnixMilli()
	for _, ls := range series {
		if _, err := app.Append(0, ls, 0, now, 1, nil, nil, storage.AppendV2Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return app
}

// selectAll returns the label sets a queryable selects for ms.
func selectAll(t *testing.T, q storage.Queryable, ms ...*labels.Matcher) []labels.Labels {
	t.Helper()
	qr, err := q.Querier(0, time.Now().Add(time.Hour).UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer qr.Close()
	ss := qr.Select(context.Background(), false, nil, ms...)
	var out []labels.Labels
	for ss.Next() {
		out = append(out, ss.At().Labels())
	}
	if err := ss.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIngestStampsTheSender: the tenant, agent and host labels are the
// sender's, whatever the payload's labels said.
func TestIngestStampsTheSender(t *testing.T) {
	db := openTest(t, Config{})
	put(t, db, Source{TenantID: "t1", Agent: "a1", Host: "web-1"},
		labels.FromStrings("__name__", "up", "tenant", "t2", "agent", "forged", "host", "elsewhere"))
	got := selectAll(t, db.Tenant("t1"), labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
	if len(got) != 1 || got[0].Get("tenant") != "t1" || got[0].Get("agent") != "a1" || got[0].Get("host") != "web-1" {
		t.Fatalf("stored %v, want the sender's tenant, agent and host", got)
	}
	if got := selectAll(t, db.Tenant("t2"), labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")); len(got) != 0 {
		t.Fatalf("tenant t2 sees %v, which t1's agent sent", got)
	}
}

// TestTenantQueryableSeesOnlyItsTenant: matchers naming other tenants,
// regexes on tenant and negative matches select nothing of another
// tenant through a Tenant queryable, nor do label names and values.
func TestTenantQueryableSeesOnlyItsTenant(t *testing.T) {
	db := openTest(t, Config{})
	put(t, db, Source{TenantID: "t1", Agent: "a1", Host: "h1"}, labels.FromStrings("__name__", "m", "k", "one"))
	put(t, db, Source{TenantID: "t2", Agent: "a2", Host: "h2"}, labels.FromStrings("__name__", "m", "k", "two", "secret", "s"))
	q := db.Tenant("t1")
	for _, ms := range [][]*labels.Matcher{
		{labels.MustNewMatcher(labels.MatchEqual, "tenant", "t2")},
		{labels.MustNewMatcher(labels.MatchRegexp, "tenant", ".+")},
		{labels.MustNewMatcher(labels.MatchNotEqual, "tenant", "t1")},
		{labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+")},
		{labels.MustNewMatcher(labels.MatchEqual, "k", "two")},
	} {
		for _, ls := range selectAll(t, q, ms...) {
			if ls.Get("tenant") != "t1" {
				t.Errorf("select %v through t1 returned %v", ms, ls)
			}
		}
	}
	qr, _ := q.Querier(0, time.Now().Add(time.Hour).UnixMilli())
	defer qr.Close()
	names, _, err := qr.LabelNames(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == "secret" {
			t.Fatalf("label names through t1 include t2's label %q", n)
		}
	}
	vals, _, err := qr.LabelValues(context.Background(), "tenant", nil, labels.MustNewMatcher(labels.MatchRegexp, "tenant", ".*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 1 || vals[0] != "t1" {
		t.Fatalf("tenant values through t1: %v", vals)
	}
}

// TestSeriesBudgets: a new series beyond the agent's or the tenant's
// budget is shed and counted by reason; series already active still land.
func TestSeriesBudgets(t *testing.T) {
	db := openTest(t, Config{MaxSeriesPerAgent: 2, MaxSeriesPerTenant: 3})
	a1 := Source{TenantID: "t1", Agent: "a1", Host: "h1"}
	a2 := Source{TenantID: "t1", Agent: "a2", Host: "h2"}
	s := func(i string) labels.Labels { return labels.FromStrings("__name__", "m", "i", i) }
	app := put(t, db, a1, s("1"), s("2"), s("3"))
	if app.Accepted != 2 || app.Shed[ShedAgentSeries] != 1 {
		t.Fatalf("agent budget 2: accepted %d, shed %v", app.Accepted, app.Shed)
	}
	app = put(t, db, a1, s("1"), s("2"))
	if app.Accepted != 2 || len(app.Shed) != 0 {
		t.Fatalf("active series again: accepted %d, shed %v", app.Accepted, app.Shed)
	}
	app = put(t, db, a2, s("4"), s("5"))
	if app.Accepted != 1 || app.Shed[ShedTenantSeries] != 1 {
		t.Fatalf("tenant budget 3: accepted %d, shed %v", app.Accepted, app.Shed)
	}
	if db.Active("t1") != 3 {
		t.Fatalf("active series of t1: %d, want 3", db.Active("t1"))
	}
}

// TestCommittedSamplesSurviveAReopen: what Commit acknowledged is read
// back after the store is closed and opened again (the WAL replays).
func TestCommittedSamplesSurviveAReopen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	put(t, db, Source{TenantID: "t1", Agent: "a1", Host: "h1"}, labels.FromStrings("__name__", "kept"))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := selectAll(t, db.Tenant("t1"), labels.MustNewMatcher(labels.MatchEqual, "__name__", "kept")); len(got) != 1 {
		t.Fatalf("after reopening: %v", got)
	}
}

// TestDuplicateInOneRequestIsCounted: two samples of a series at the
// same timestamp in one request: the TSDB would keep one and drop the
// other at Commit without a word; the appender sheds the second as a
// duplicate, so the count and the store agree.
func TestDuplicateInOneRequestIsCounted(t *testing.T) {
	db := openTest(t, Config{})
	app := db.Ingest(context.Background(), Source{TenantID: "t1", Agent: "a1", Host: "h1"})
	ls := labels.FromStrings("__name__", "g")
	ts := time.Now().UnixMilli()
	for _, at := range []int64{ts, ts, ts + 1} {
		if _, err := app.Append(0, ls, 0, at, 1, nil, nil, storage.AppendV2Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if app.Accepted != 2 || app.Shed[ShedDuplicate] != 1 {
		t.Errorf("accepted %d, shed %v: want 2 accepted and 1 duplicate", app.Accepted, app.Shed)
	}
	q, err := db.Tenant("t1").Querier(ts-1, ts+10)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "g"))
	n := 0
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != chunkenc.ValNone {
			n++
		}
	}
	if n != app.Accepted {
		t.Errorf("stored %d samples, the appender accepted %d", n, app.Accepted)
	}
}
