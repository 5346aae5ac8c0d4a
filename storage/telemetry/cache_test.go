package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// TestStaleRefFindsItsSeries: the cache keeps a series' head ref across
// requests; once the head has dropped the series (garbage-collected), the
// ref is unknown to it and the next sample lands in a new series of the
// right labels, not in another series.
func TestStaleRefFindsItsSeries(t *testing.T) {
	db := openTest(t, Config{})
	src := Source{TenantID: "t1", Agent: "a1", Host: "h1"}
	gone := labels.FromStrings("__name__", "gone", "k", "v")
	old := time.Now().Add(-3 * time.Hour).UnixMilli()
	app := db.Ingest(context.Background(), src)
	if _, err := app.Append(0, gone, 0, old, 1, nil, nil, storage.AppendV2Options{}); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	c := db.cache.of(src, time.Now().UnixMilli()).m[gone.Hash()]
	if c == nil || c.ref.Load() == 0 {
		t.Fatalf("series not cached with its ref: %+v", c)
	}
	stale := c.ref.Load()
	if err := db.db.Head().Truncate(time.Now().Add(-time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if n := db.db.Head().NumSeries(); n != 0 {
		t.Fatalf("head keeps %d series after the truncation, want 0", n)
	}
	// A new series takes a new ref; then the dropped one comes back.
	other := labels.FromStrings("__name__", "other")
	put(t, db, src, other)
	app = put(t, db, src, gone)
	if app.Accepted != 1 || len(app.Shed) != 0 {
		t.Fatalf("accepted %d, shed %v", app.Accepted, app.Shed)
	}
	if c.ref.Load() == stale {
		t.Fatalf("the cached ref %d was not replaced", stale)
	}
	want := map[string]labels.Labels{
		"gone":  labels.FromStrings("__name__", "gone", "agent", "a1", "host", "h1", "k", "v", "tenant", "t1"),
		"other": labels.FromStrings("__name__", "other", "agent", "a1", "host", "h1", "tenant", "t1"),
	}
	q, err := db.Tenant("t1").Querier(time.Now().Add(-time.Hour).UnixMilli(), time.Now().Add(time.Hour).UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	n := 0
	for ss.Next() {
		ls := ss.At().Labels()
		if w := want[ls.Get("__name__")]; !labels.Equal(ls, w) {
			t.Errorf("series %v, want %v", ls, w)
		}
		samples := 0
		for it := ss.At().Iterator(nil); it.Next() != chunkenc.ValNone; {
			samples++
		}
		if samples != 1 {
			t.Errorf("series %v has %d samples, want 1", ls, samples)
		}
		n++
	}
	if n != 2 {
		t.Errorf("selected %d series, want 2", n)
	}
}

// TestCacheStampsEachSource: one payload series from two sources, and
// forged stamps, land as each sender's series.
func TestCacheStampsEachSource(t *testing.T) {
	db := openTest(t, Config{})
	s1 := Source{TenantID: "t1", Agent: "a1", Host: "h1"}
	s2 := Source{TenantID: "t1", Agent: "a2", Host: "h2"}
	s3 := Source{TenantID: "t2", Agent: "a3", Host: "h3"}
	ls := labels.FromStrings("__name__", "up")
	forged := labels.FromStrings("__name__", "up", "agent", "a1", "host", "h1", "tenant", "t1")
	for range 2 {
		put(t, db, s1, ls)
		put(t, db, s2, ls)
		put(t, db, s3, forged)
		put(t, db, s3, ls)
		time.Sleep(2 * time.Millisecond) // the next round's samples are new
	}
	up := labels.MustNewMatcher(labels.MatchEqual, "__name__", "up")
	got := map[string]string{}
	for _, g := range selectAll(t, db.Tenant("t1"), up) {
		got[g.Get("agent")] = g.Get("host")
	}
	if len(got) != 2 || got["a1"] != "h1" || got["a2"] != "h2" {
		t.Errorf("t1's series by agent %v, want a1 on h1 and a2 on h2, each its own", got)
	}
	t2 := selectAll(t, db.Tenant("t2"), up)
	if len(t2) != 1 || t2[0].Get("agent") != "a3" || t2[0].Get("host") != "h3" {
		t.Errorf("t2's series %v, want one, a3's on h3 (the forged stamp replaced)", t2)
	}
}

// TestSameSeries: the cache's check that payload labels stamp to a cached
// series.
func TestSameSeries(t *testing.T) {
	a := &Appender{}
	st := labels.FromStrings("__name__", "m", "agent", "a1", "host", "h1", "k", "v", "tenant", "t1")
	for _, c := range []struct {
		in   labels.Labels
		want bool
	}{
		{labels.FromStrings("__name__", "m", "k", "v"), true},
		{labels.FromStrings("__name__", "m", "agent", "x", "k", "v", "tenant", "y"), true},
		{labels.FromStrings("__name__", "m", "e", "", "k", "v"), true},
		{labels.FromStrings("__name__", "m", "k", "w"), false},
		{labels.FromStrings("__name__", "m"), false},
		{labels.FromStrings("__name__", "m", "k", "v", "z", "1"), false},
		{labels.New(labels.Label{Name: "k", Value: "v"}, labels.Label{Name: "__name__", Value: "m"}), true}, // New sorts
	} {
		if got := a.sameSeries(c.in, st); got != c.want {
			t.Errorf("sameSeries(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
