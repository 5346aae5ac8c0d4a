package writeload

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ds := func(ms ...int) []time.Duration {
		out := make([]time.Duration, len(ms))
		for i, m := range ms {
			out[i] = time.Duration(m) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ds(7), 0.99, 7 * time.Millisecond},
		{"median of odd", ds(3, 1, 2), 0.5, 2 * time.Millisecond},
		{"p99 of 100", ds(seq(100)...), 0.99, 99 * time.Millisecond},
		{"max", ds(5, 9, 1), 1, 9 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.in, tc.q); got != tc.want {
				t.Errorf("Percentile(q=%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func TestRunCountsOnlyTheWindow(t *testing.T) {
	var calls, fails atomic.Int64
	errBoom := errors.New("boom")
	r := Run(context.Background(), Options{Writers: 4, Warmup: 50 * time.Millisecond, Measure: 200 * time.Millisecond},
		func(ctx context.Context, w, s int) error {
			calls.Add(1)
			time.Sleep(time.Millisecond)
			// Every other call fails, so a window of a few calls on a
			// starved machine still sees failures.
			if s%2 == 1 {
				fails.Add(1)
				return errBoom
			}
			return nil
		})
	if r.Ops == 0 || r.Ops+r.Errors >= int(calls.Load()) {
		t.Fatalf("ops %d + errors %d should be below all calls %d (warm-up excluded)", r.Ops, r.Errors, calls.Load())
	}
	if r.Errors == 0 || !errors.Is(r.FirstErr, errBoom) {
		t.Fatalf("errors %d, first %v; want the injected failures counted", r.Errors, r.FirstErr)
	}
	if r.P50 < time.Millisecond || r.P99 < r.P50 || r.Max < r.P99 {
		t.Fatalf("latencies out of order: p50 %v p99 %v max %v", r.P50, r.P99, r.Max)
	}
	if r.Elapsed < 200*time.Millisecond || r.Elapsed > 5*time.Second {
		t.Fatalf("elapsed %v, want about the 200ms window", r.Elapsed)
	}
	if ps := r.PerSecond(); ps <= 0 {
		t.Fatalf("rate %v", ps)
	}
}
