package lease

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestLeaseMetrics: the lease's series follow what the manager does: the
// wait before acquiring, the token and holding, renewals, a self-fence
// with its reason; and registering twice is an error, not a silent loss.
func TestLeaseMetrics(t *testing.T) {
	clock := newFakeClock()
	m, r := newManager(t, "n2", clock, NewHub())
	reg := prometheus.NewRegistry()
	if err := m.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterMetrics(reg); err == nil || !strings.Contains(err.Error(), "lease metrics") {
		t.Fatalf("registering twice: %v, want an error", err)
	}
	got := func(name string, label ...string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		sum := 0.0
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, mt := range mf.GetMetric() {
				if len(label) == 2 && !hasLabel(mt.GetLabel(), label[0], label[1]) {
					continue
				}
				switch {
				case mt.Gauge != nil:
					sum += mt.GetGauge().GetValue()
				case mt.Counter != nil:
					sum += mt.GetCounter().GetValue()
				case mt.Histogram != nil:
					sum += float64(mt.GetHistogram().GetSampleCount())
				}
			}
		}
		return sum
	}
	cfg := m.Config()
	ctx := context.Background()
	// n1 held the lease; n2 waits it out, then acquires token 2.
	for _, o := range []Op{{Kind: OpAcquire, Node: "n1", DurationMs: cfg.Duration.Milliseconds()}} {
		cmd, err := o.Encode()
		apply(t, r, cmd, err)
	}
	m.step(ctx)
	if v := got("outpost_lease_acquisitions_total"); v != 0 {
		t.Fatalf("acquisitions %v while waiting, want 0", v)
	}
	clock.Advance(cfg.Duration + cfg.DriftMargin)
	m.step(ctx)
	if got("outpost_lease_held") != 1 || got("outpost_lease_token") != 2 || got("outpost_lease_acquisitions_total") != 1 ||
		got("outpost_lease_wait_seconds") != 1 {
		t.Fatalf("after acquiring: held %v token %v acquisitions %v waits %v; want 1, 2, 1, 1", got("outpost_lease_held"),
			got("outpost_lease_token"), got("outpost_lease_acquisitions_total"), got("outpost_lease_wait_seconds"))
	}
	clock.Advance(cfg.Duration / 3)
	m.step(ctx)
	if v := got("outpost_lease_renewals_total", "result", "ok"); v != 1 {
		t.Fatalf("renewals ok %v, want 1", v)
	}
	r.mu.Lock()
	r.leader = false
	r.mu.Unlock()
	m.step(ctx)
	if got("outpost_lease_held") != 0 || got("outpost_lease_self_fences_total", "reason", fenceDeposed) != 1 {
		t.Fatalf("after losing leadership: held %v, deposed fences %v; want 0 and 1", got("outpost_lease_held"),
			got("outpost_lease_self_fences_total", "reason", fenceDeposed))
	}
	if got("outpost_lease_token") != 2 {
		t.Fatal("the last token held is no longer shown")
	}
}

func hasLabel(ls []*dto.LabelPair, name, value string) bool {
	for _, l := range ls {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}
