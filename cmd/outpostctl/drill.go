package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/drill"
)

// drillFailover runs the drill (progress on cfg.Progress) and prints the
// report. It fails (exit 1) when the drill could not finish, when a stale
// dispatch was accepted, or when an acknowledged write was lost.
func drillFailover(ctx context.Context, cfg drill.Config, g *globals, w io.Writer) error {
	rep, runErr := drill.Run(ctx, cfg)
	if len(rep.PerRound) > 0 || runErr == nil {
		var err error
		if g.json {
			err = printJSON(w, rep)
		} else {
			err = printDrillReport(w, rep)
		}
		if err != nil {
			return err
		}
	}
	var errs []error
	if runErr != nil {
		if ctx.Err() != nil {
			runErr = fmt.Errorf("interrupted (%w); a node under fault heals or restarts by itself", runErr)
		}
		errs = append(errs, fmt.Errorf("drill failed: %w", runErr))
	}
	return errors.Join(append(errs, reportErrors(rep)...)...)
}

// reportErrors are what a report shows went wrong: a stale dispatch
// accepted, something acknowledged lost, or a round that did not test
// the fence.
func reportErrors(rep api.DrillReport) []error {
	var errs []error
	if rep.StaleAccepted > 0 {
		errs = append(errs, fmt.Errorf("FENCING FAILURE: %d stale dispatch(es) committed or delivered; see stale_accepted_ids in --json", rep.StaleAccepted))
	}
	if rep.AckedWritesLost > 0 {
		errs = append(errs, fmt.Errorf("DATA LOSS: %d of %d acknowledged writes lost; see lost_keys in --json", rep.AckedWritesLost, rep.AckedWrites))
	}
	if rep.ProbesLost > 0 {
		errs = append(errs, fmt.Errorf("DATA LOSS: %d of %d committed probe dispatches lost; see lost_probe_ids in --json", rep.ProbesLost, rep.ProbesCommitted))
	}
	if rs := untestedRounds(rep); len(rs) > 0 {
		errs = append(errs, fmt.Errorf("INCONCLUSIVE: in round(s) %v no stale dispatch reached the fence (none was refused by the FSM for its token); run the drill again", rs))
	}
	return errs
}

// untestedRounds lists the completed rounds whose stale probes never
// reached the fence: nothing refused by the FSM for its token (a stop
// drill sends none). Probes never appended, or refused as malformed, do
// not count: they did not test the fence.
func untestedRounds(r api.DrillReport) []int {
	var out []int
	if r.Mode == "stop" {
		return nil
	}
	for _, x := range r.PerRound {
		if x.Error == "" && x.StaleRefused == 0 {
			out = append(out, x.Round)
		}
	}
	return out
}

// printDrillReport is the text form of a drill report.
func printDrillReport(w io.Writer, r api.DrillReport) error {
	fmt.Fprintf(w, "Failover drill: mode %s, %d round(s)\n\n", r.Mode, r.Rounds)
	tw := newTable(w, "ROUND\tFAULT ON\tTOKEN\tNEW LEADER\tNEW HOLDER\tNEW TOKEN\tELECTED\tLEASE\tFIRST DISPATCH\tSTALE REFUSED\tACKED WRITES\tLOST")
	for _, x := range r.PerRound {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%d/%d\t%d\t%d\n", x.Round, dash(x.Node), x.Token, dash(x.NewLeader), dash(x.NewHolder), x.NewToken,
			msOrDash(x.LeaderElectedMs), msOrDash(x.LeaseAcquiredMs), msOrDash(x.FirstDispatchMs), x.StaleRefused, x.StaleAttempted, x.AckedWrites, x.AckedWritesLost)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, x := range r.PerRound {
		if x.Error != "" {
			fmt.Fprintf(w, "round %d failed: %s\n", x.Round, x.Error)
		}
	}
	fmt.Fprintln(w)
	completed := 0
	for _, x := range r.PerRound {
		if x.Error == "" {
			completed++
		}
	}
	if completed > 0 {
		tw = newTable(w, "FROM THE FAULT TO\tP50\tP99\tMAX")
		for _, s := range []struct {
			name string
			st   api.DrillStat
		}{{"new Raft leader", r.LeaderElectedMs}, {"new lease", r.LeaseAcquiredMs}, {"first dispatch", r.FirstDispatchMs}} {
			fmt.Fprintf(tw, "%s\t%dms\t%dms\t%dms\n", s.name, s.st.P50, s.st.P99, s.st.Max)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if completed < len(r.PerRound) {
			fmt.Fprintf(w, "(over the %d round(s) that completed)\n", completed)
		}
	} else {
		fmt.Fprintln(w, "no round completed: no times to summarize")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Stale dispatches:    %d attempted, %d refused by the fence, %d not appended (no leader reached), %d accepted, %d malformed (not a test of the fence)\n",
		r.StaleAttempted, r.StaleRefused, r.StaleNotAppended, r.StaleAccepted, r.StaleBadCommand)
	fmt.Fprintf(w, "Acknowledged writes: %d, lost %d\n", r.AckedWrites, r.AckedWritesLost)
	fmt.Fprintf(w, "Committed probes:    %d, lost %d\n", r.ProbesCommitted, r.ProbesLost)
	t := r.Timings
	fmt.Fprintf(w, "Timings (from %s):   lease %dms, drift margin %dms, Raft heartbeat timeout %dms, election timeout %dms",
		dash(t.Node), t.LeaseDurationMs, t.LeaseDriftMarginMs, t.HeartbeatTimeoutMs, t.ElectionTimeoutMs)
	if t.IsolateForMs > 0 {
		fmt.Fprintf(w, "; isolated for %dms", t.IsolateForMs)
		if t.IsolatedBy != "" {
			fmt.Fprintf(w, " by %s", t.IsolatedBy)
		}
	}
	if t.RestartAfterMs > 0 {
		fmt.Fprintf(w, "; restarted after %dms", t.RestartAfterMs)
	}
	fmt.Fprintln(w)
	verdict := "PASS: no stale dispatch accepted, no acknowledged write lost"
	switch {
	case r.StaleAccepted > 0 || r.AckedWritesLost > 0 || r.ProbesLost > 0:
		verdict = "FAIL: the fencing or the log lost something (see above)"
	case len(r.PerRound) > 0 && r.PerRound[len(r.PerRound)-1].Error != "":
		verdict = "FAIL: the drill did not finish"
	case len(untestedRounds(r)) > 0:
		verdict = fmt.Sprintf("INCONCLUSIVE: no stale dispatch reached the fence in round(s) %v", untestedRounds(r))
	}
	_, err := fmt.Fprintln(w, verdict)
	return err
}

func msOrDash(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return fmt.Sprintf("%dms", ms)
}

// partitionReport is `outpostctl drill partition --json`.
type partitionReport struct {
	Node       string `json:"node"`
	DurationMs int64  `json:"duration_ms"`
	// Observations are what the other nodes reported while Node was cut
	// off, about once a second.
	Observations []partitionObservation `json:"observations"`
	Healed       bool                   `json:"healed"`
	// HealedAfterMs runs from the isolation to the moment the node was
	// seen following a leader again.
	HealedAfterMs int64      `json:"healed_after_ms"`
	Leader        string     `json:"leader"` // after the heal
	Lease         *api.Lease `json:"lease"`  // after the heal
}

type partitionObservation struct {
	AtMs        int64    `json:"at_ms"`
	Observer    string   `json:"observer"`
	Leader      string   `json:"leader"`
	LeaseHolder string   `json:"lease_holder"`
	LeaseToken  uint64   `json:"lease_token"`
	Isolated    bool     `json:"isolated"` // as the cut-off node says
	Unreachable []string `json:"unreachable,omitempty"`
	Error       string   `json:"error,omitempty"`
}

// healTimeout bounds the wait for a partitioned node to rejoin.
const healTimeout = 30 * time.Second

// drillPartition cuts node off from its peers for d, reports what the
// others see meanwhile, and confirms the node healed.
func drillPartition(ctx context.Context, c *client, g *globals, node string, d time.Duration, stdout, stderr io.Writer) error {
	out := stdout
	if g.json {
		out = stderr // progress; stdout gets the report
	}
	var r api.Region
	if err := c.do(ctx, "GET", "/api/v1/region", nil, &r); err != nil {
		return err
	}
	var target *client
	var observers []*client
	var ids []string
	obsID := map[*client]string{}
	for _, n := range r.Nodes {
		ids = append(ids, n.ID)
		if n.APIURL == "" {
			continue
		}
		nc := newClient(n.APIURL, c.Token)
		if n.ID == node {
			target = nc
		} else {
			observers = append(observers, nc)
			obsID[nc] = n.ID
		}
	}
	if target == nil {
		return fmt.Errorf("no node %q with an API URL in region %s (nodes: %s); see `outpostctl status`", node, r.Region, strings.Join(ids, ", "))
	}
	if len(observers) == 0 {
		return fmt.Errorf("region %s has no other node to watch the partition from", r.Region)
	}
	var st api.DrillState
	if err := target.send(ctx, "POST", "/api/v1/drills/isolate", api.DrillFault{DurationMs: d.Milliseconds()}, &st); err != nil {
		return fmt.Errorf("isolating %s: %w", node, err)
	}
	start := time.Now()
	fmt.Fprintf(out, "%s cut off from its peers for %v (it heals itself after that)\n", node, d)
	rep := partitionReport{Node: node, DurationMs: d.Milliseconds(), Observations: []partitionObservation{}}
	interrupted := func() error {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := target.do(hctx, "POST", "/api/v1/drills/heal", nil, nil); err != nil {
			return fmt.Errorf("interrupted; healing %s failed (%v): it heals itself %v after the start", node, err, d)
		}
		return fmt.Errorf("interrupted; %s healed", node)
	}
	for time.Since(start) < d {
		if sleepCtx(ctx, min(time.Second, d-time.Since(start))) != nil {
			return interrupted()
		}
		o := observe(ctx, observers, obsID, target, node)
		o.AtMs = time.Since(start).Milliseconds()
		rep.Observations = append(rep.Observations, o)
		fmt.Fprintln(out, formatObservation(o, node))
	}
	// Healed: the node says it is no longer cut off and follows a leader
	// the rest of the region agrees on.
	for {
		var ds api.DrillState
		var h api.Health
		var rr api.Region
		if target.do(ctx, "GET", "/api/v1/drills", nil, &ds) == nil && !ds.Isolated && len(ds.Blocked) == 0 &&
			target.do(ctx, "GET", "/api/v1/health", nil, &h) == nil && h.Leader != "" &&
			observers[0].do(ctx, "GET", "/api/v1/region", nil, &rr) == nil && rr.Leader == h.Leader {
			rep.Healed, rep.HealedAfterMs, rep.Leader, rep.Lease = true, time.Since(start).Milliseconds(), rr.Leader, rr.Lease
			break
		}
		if time.Since(start) > d+healTimeout {
			break
		}
		if sleepCtx(ctx, 250*time.Millisecond) != nil {
			return interrupted()
		}
	}
	if g.json {
		if err := printJSON(stdout, rep); err != nil {
			return err
		}
	} else if rep.Healed {
		lease := "no lease"
		if rep.Lease != nil {
			lease = fmt.Sprintf("lease %s token %d", dash(rep.Lease.Holder), rep.Lease.Token)
		}
		fmt.Fprintf(out, "%s healed after %.1fs: it follows leader %s (%s)\n", node, float64(rep.HealedAfterMs)/1000, rep.Leader, lease)
	}
	if !rep.Healed {
		return fmt.Errorf("%s did not rejoin within %v of the isolation's end; check `outpostctl status`, and heal it with POST /api/v1/drills/heal on %s", node, healTimeout, target.Addr)
	}
	return nil
}

// observe asks the first observer that answers for the region, and the
// cut-off node whether it is still isolated.
func observe(ctx context.Context, observers []*client, ids map[*client]string, target *client, node string) partitionObservation {
	var o partitionObservation
	var ds api.DrillState
	if target.do(ctx, "GET", "/api/v1/drills", nil, &ds) == nil {
		o.Isolated = ds.Isolated || len(ds.Blocked) > 0
	}
	for _, oc := range observers {
		var r api.Region
		if err := oc.do(ctx, "GET", "/api/v1/region", nil, &r); err != nil {
			o.Observer, o.Error = ids[oc], firstLine(err.Error())
			continue
		}
		o.Observer, o.Error, o.Leader = ids[oc], "", r.Leader
		if r.Lease != nil {
			o.LeaseHolder, o.LeaseToken = r.Lease.Holder, r.Lease.Token
		}
		for _, n := range r.Nodes {
			if n.RaftState != "leader" && n.RaftState != "follower" {
				o.Unreachable = append(o.Unreachable, n.ID)
			}
		}
		break
	}
	return o
}

func formatObservation(o partitionObservation, node string) string {
	cut := "healed"
	if o.Isolated {
		cut = "cut off"
	}
	if o.Error != "" {
		return fmt.Sprintf("+%5.1fs  %s %s; %s: %s", float64(o.AtMs)/1000, node, cut, o.Observer, o.Error)
	}
	s := fmt.Sprintf("+%5.1fs  %s %s; %s sees leader %s, lease %s token %d", float64(o.AtMs)/1000, node, cut, o.Observer, orNone(o.Leader), orNone(o.LeaseHolder), o.LeaseToken)
	if len(o.Unreachable) > 0 {
		s += ", unreachable: " + strings.Join(o.Unreachable, ", ")
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
