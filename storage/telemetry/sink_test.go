package telemetry

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
)

type recordingSink struct {
	mu  sync.Mutex
	got map[string][]prompb.TimeSeries
}

func (s *recordingSink) Enqueue(tenantID string, series []prompb.TimeSeries) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got[tenantID] = append(s.got[tenantID], series...)
}

// TestSinkGetsCommittedSamples: after Commit the sink has every stored
// sample (float and histogram) with the stored labels, none that a
// budget shed, and nothing before Commit or after Rollback.
func TestSinkGetsCommittedSamples(t *testing.T) {
	db := openTest(t, Config{MaxSeriesPerAgent: 2})
	sink := &recordingSink{got: map[string][]prompb.TimeSeries{}}
	db.SetSink(sink)
	src := Source{TenantID: "t1", Agent: "a1", Host: "h1"}
	now := time.Now().UnixMilli()
	h := &histogram.Histogram{Count: 3, Sum: 4.5, Schema: 0, PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 1}}

	app := db.Ingest(context.Background(), src)
	for _, s := range []struct {
		ls labels.Labels
		v  float64
		h  *histogram.Histogram
	}{
		{labels.FromStrings("__name__", "up", "tenant", "forged"), 1, nil},
		{labels.FromStrings("__name__", "lat"), 0, h},
		{labels.FromStrings("__name__", "shed"), 2, nil}, // over the agent's budget of 2
	} {
		if _, err := app.Append(0, s.ls, 0, now, s.v, s.h, nil, storage.AppendV2Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(sink.got) != 0 {
		t.Fatalf("the sink got samples before Commit: %v", sink.got)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	got := sink.got["t1"]
	if len(got) != 2 {
		t.Fatalf("sink got %d series, want 2 (the shed one left out): %v", len(got), got)
	}
	up, lat := got[0], got[1]
	want := labels.FromStrings("__name__", "up", "agent", "a1", "host", "h1", "tenant", "t1")
	if ls := up.ToLabels(&labels.ScratchBuilder{}, nil); !labels.Equal(ls, want) || len(up.Samples) != 1 || up.Samples[0].Value != 1 || up.Samples[0].Timestamp != now {
		t.Errorf("float series %v %v, want %v with 1@%d", ls, up.Samples, want, now)
	}
	if len(lat.Histograms) != 1 || lat.Histograms[0].ToIntHistogram().Count != 3 || lat.Histograms[0].Timestamp != now {
		t.Errorf("histogram series %v, want the histogram of count 3", lat)
	}

	app = db.Ingest(context.Background(), src)
	if _, err := app.Append(0, labels.FromStrings("__name__", "up"), 0, now+1000, 1, nil, nil, storage.AppendV2Options{}); err != nil {
		t.Fatal(err)
	}
	if err := app.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := len(sink.got["t1"]); n != 2 {
		t.Errorf("after a rollback the sink has %d series, want still 2", n)
	}
}
