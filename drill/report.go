package drill

import (
	"math"
	"slices"

	"github.com/outpost-mesh/outpost/api"
)

// buildReport adds the rounds up. Time statistics cover the rounds that
// completed; stale, write and probe counts cover every round.
func buildReport(mode Mode, rounds []api.DrillRound, t api.DrillTimings) api.DrillReport {
	r := api.DrillReport{Mode: string(mode), Rounds: len(rounds), PerRound: rounds, Timings: t}
	if r.PerRound == nil {
		r.PerRound = []api.DrillRound{}
	}
	var elected, lease, first []int64
	for _, x := range rounds {
		r.StaleAttempted += x.StaleAttempted
		r.StaleRefused += x.StaleRefused
		r.StaleNotAppended += x.StaleNotAppended
		r.StaleBadCommand += x.StaleBadCommand
		r.StaleAccepted += x.StaleAccepted
		r.AckedWrites += x.AckedWrites
		r.AckedWritesLost += x.AckedWritesLost
		r.ProbesCommitted += x.ProbesCommitted
		r.ProbesLost += x.ProbesLost
		if x.Error != "" {
			continue
		}
		elected = append(elected, x.LeaderElectedMs)
		lease = append(lease, x.LeaseAcquiredMs)
		first = append(first, x.FirstDispatchMs)
	}
	r.LeaderElectedMs, r.LeaseAcquiredMs, r.FirstDispatchMs = summarize(elected), summarize(lease), summarize(first)
	return r
}

// summarize returns the p50, p99 and maximum of vs by the nearest-rank
// method (a percentile is always one of the values); all zero for none.
func summarize(vs []int64) api.DrillStat {
	if len(vs) == 0 {
		return api.DrillStat{}
	}
	s := slices.Sorted(slices.Values(vs))
	return api.DrillStat{P50: percentile(s, 50), P99: percentile(s, 99), Max: s[len(s)-1]}
}

// percentile is the nearest-rank p-th percentile of sorted: the smallest
// value with at least p% of the values at or below it.
func percentile(sorted []int64, p float64) int64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
