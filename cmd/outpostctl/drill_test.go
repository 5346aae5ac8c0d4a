package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/outpost-mesh/outpost/api"
)

// TestDrillVerdicts: the drill fails on a lost probe dispatch as on a
// lost write, and a round whose stale probes were never refused for
// their token (none appended, or refused as malformed) is INCONCLUSIVE:
// it did not test the fence.
func TestDrillVerdicts(t *testing.T) {
	clean := func() api.DrillReport {
		return api.DrillReport{Mode: "isolate", Rounds: 1, StaleAttempted: 6, StaleRefused: 6, AckedWrites: 50, ProbesCommitted: 12,
			PerRound: []api.DrillRound{{Round: 1, StaleAttempted: 6, StaleRefused: 6, AckedWrites: 50, ProbesCommitted: 12}}}
	}
	tests := []struct {
		name    string
		edit    func(r *api.DrillReport)
		errs    []string // what each error starts with
		verdict string
	}{
		{"clean", func(*api.DrillReport) {}, nil, "PASS:"},
		{"a committed probe lost", func(r *api.DrillReport) { r.ProbesLost, r.PerRound[0].ProbesLost = 1, 1 },
			[]string{"DATA LOSS: 1 of 12 committed probe dispatches lost"}, "FAIL:"},
		{"a write lost", func(r *api.DrillReport) { r.AckedWritesLost, r.PerRound[0].AckedWritesLost = 2, 2 },
			[]string{"DATA LOSS: 2 of 50 acknowledged writes lost"}, "FAIL:"},
		{"malformed probes only", func(r *api.DrillReport) {
			r.StaleRefused, r.StaleBadCommand = 0, 6
			r.PerRound[0].StaleRefused, r.PerRound[0].StaleBadCommand = 0, 6
		}, []string{"INCONCLUSIVE:"}, "INCONCLUSIVE:"},
		{"probes never appended", func(r *api.DrillReport) {
			r.StaleRefused, r.StaleNotAppended = 0, 6
			r.PerRound[0].StaleRefused, r.PerRound[0].StaleNotAppended = 0, 6
		}, []string{"INCONCLUSIVE:"}, "INCONCLUSIVE:"},
		{"stop mode sends no stale probes", func(r *api.DrillReport) {
			r.Mode, r.StaleAttempted, r.StaleRefused = "stop", 0, 0
			r.PerRound[0].StaleAttempted, r.PerRound[0].StaleRefused = 0, 0
		}, nil, "PASS:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := clean()
			tt.edit(&r)
			errs := reportErrors(r)
			if len(errs) != len(tt.errs) {
				t.Fatalf("errors %v, want %d starting %q", errs, len(tt.errs), tt.errs)
			}
			for i, want := range tt.errs {
				if !strings.HasPrefix(errs[i].Error(), want) {
					t.Errorf("error %q, want it to start with %q", errs[i], want)
				}
			}
			var b bytes.Buffer
			if err := printDrillReport(&b, r); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(b.String()), "\n")
			if v := lines[len(lines)-1]; !strings.HasPrefix(v, tt.verdict) {
				t.Errorf("verdict %q, want %s…\n%s", v, tt.verdict, b.String())
			}
		})
	}
}

// TestDrillReportCounts: the text report shows the stale probes refused
// as malformed apart from the fence's refusals, and the probe read-back.
func TestDrillReportCounts(t *testing.T) {
	r := api.DrillReport{Mode: "transfer", Rounds: 1, StaleAttempted: 9, StaleRefused: 5, StaleNotAppended: 1, StaleBadCommand: 3,
		AckedWrites: 40, ProbesCommitted: 11, ProbesLost: 1, PerRound: []api.DrillRound{{Round: 1}}}
	var b bytes.Buffer
	if err := printDrillReport(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"9 attempted, 5 refused by the fence, 1 not appended (no leader reached), 0 accepted, 3 malformed (not a test of the fence)",
		"Committed probes:    11, lost 1",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
