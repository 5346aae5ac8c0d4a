package ui_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/outpost-mesh/outpost/dev"
)

// leaderOf returns the id and API URL of the dev region's Raft leader.
func leaderOf(t *testing.T, d *dev.Region) (string, string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, id := range []string{"n1", "n2", "n3"} {
			if n, ok := d.Node(id); ok && n.Region().IsLeader() {
				return id, n.APIURL()
			}
		}
	}
	t.Fatal("no leader in the dev region")
	return "", ""
}

// TestDrillTimelineInBrowser: a region admin opens the Drills page on the
// node that leads and holds the dispatch lease, and isolates it for a few
// seconds through the page's controls (a confirmation first). The live
// timeline shows the drill start, the node fencing itself or losing its
// leader, a new leader elected and the lease acquired under a higher
// fencing token, the heal, the region healthy again and the deposed
// node's stale dispatch refused by the fence; the report is then among
// the past drills, and the drill action in the audit log.
func TestDrillTimelineInBrowser(t *testing.T) {
	ctx, problems := browser(t)
	d, err := dev.Start(context.Background(), dev.Options{Nodes: 3, HTTP: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	pw, err := os.ReadFile(d.PasswordFile())
	if err != nil {
		t.Fatal(err)
	}
	// The drill routes act on the node that answers them, and the page
	// talks to its own node only: drill the leader from its own UI.
	leader, base := leaderOf(t, d)
	login(t, ctx, base, "admin", strings.TrimSpace(string(pw)))
	visit(t, ctx, base, "#/drills")
	waitFor(t, ctx, "the page's node leads and holds the lease",
		`document.getElementById("drill-self")?.dataset.leader === "true" && document.getElementById("drill-self")?.dataset.holder === "true"`)
	waitFor(t, ctx, "three nodes listed", `document.querySelectorAll("#drill-nodes-table tbody tr").length === 3`)
	checkA11y(t, ctx, "drills")

	// Cancelling the confirmation runs nothing.
	if err := chromedpClick(ctx, "#drill-isolate"); err != nil {
		t.Fatal(err)
	}
	if err := chromedpClick(ctx, "#confirm-no"); err != nil {
		t.Fatal(err)
	}
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#drill-timeline li").length`)); n != 0 {
		t.Fatalf("a cancelled drill started a timeline of %d entries", n)
	}

	if err := chromedp.Do(ctx, chromedp.SetValue(id("isolate-seconds"), "4")); err != nil {
		t.Fatal(err)
	}
	if err := chromedpClick(ctx, "#drill-isolate"); err != nil {
		t.Fatal(err)
	}
	checkA11y(t, ctx, "drills (the confirmation)")
	if err := chromedpClick(ctx, "#confirm-yes"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the drill's start on the timeline", `document.querySelector('#drill-timeline li[data-kind="start"]') !== null`)
	waitFor(t, ctx, "the node cut off", `document.querySelector('#drill-timeline li[data-kind="isolated"]') !== null`)
	waitWithin(t, ctx, "the region healthy again", `document.getElementById("drill-run-status")?.dataset.outcome === "recovered"`, time.Minute)

	kinds, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("#drill-timeline li")].map(li => li.dataset.kind + ": " + li.textContent).join("\n")`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timeline:\n%s", kinds)
	for _, want := range []string{"start:", "isolated:", "lease-acquired:", "heal:", "healthy:"} {
		if !strings.Contains(kinds, "\n"+want) && !strings.HasPrefix(kinds, want) {
			t.Errorf("the timeline has no %q entry", strings.TrimSuffix(want, ":"))
		}
	}
	if !strings.Contains(kinds, "new leader elected: ") || strings.Contains(kinds, "new leader elected: "+leader) {
		t.Errorf("the timeline shows no new leader other than %s", leader)
	}
	if !strings.Contains(kinds, "leader-lost:") && !strings.Contains(kinds, "fenced:") {
		t.Error("the timeline shows neither the leader lost nor the holder fenced")
	}
	tokens, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("drill-start-token").textContent + " " + document.getElementById("drill-new-token").textContent`))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(tokens)
	before, err1 := strconv.Atoi(f[0])
	after, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || after <= before {
		t.Errorf("fencing token %q: want a higher token after the drill", tokens)
	}
	waitWithin(t, ctx, "the deposed node's stale dispatch refused", `document.querySelector('#drill-timeline li[data-kind="stale-refused"]') !== null`, time.Minute)
	checkA11y(t, ctx, "drills (after a drill)")
	shot(t, ctx, "drills")

	// The report is kept, and readable among the past drills.
	waitWithin(t, ctx, "the drill among the past drills", `document.querySelector('#drill-reports tbody tr[data-id$="-`+leader+`-isolate"]') !== null`, time.Minute)
	if err := chromedpClick(ctx, `#drill-reports tbody tr[data-id$="-`+leader+`-isolate"] button`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the past report's timeline", `document.querySelectorAll('#drill-report-view li[data-kind="lease-acquired"]').length === 1`)
	waitWithin(t, ctx, "the drill in the audit log", `[...document.querySelectorAll("#drill-audit tbody tr")].some(tr => tr.textContent.includes("drill.isolate"))`, time.Minute)

	// This node no longer leads, so it offers no transfer; the new leader
	// is drilled from its own UI, linked from the nodes table: a planned
	// handoff moves leadership and the lease on, under a higher token.
	waitFor(t, ctx, "no transfer offered on a follower", `document.getElementById("drill-transfer").disabled && document.getElementById("drill-transfer-why").textContent.includes("Only the Raft leader")`)
	next := evalJS[string](t, ctx, `document.getElementById("drill-leader").textContent`)
	if next == leader || next == "" {
		t.Fatalf("the page shows leader %q after the drill on %s", next, leader)
	}
	if err := chromedpClick(ctx, `#drill-nodes-table tr[data-node="`+next+`"] a`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the new leader's Drills page", `document.getElementById("drill-node")?.textContent === `+strconv.Quote(next)+
		` && document.getElementById("drill-self")?.dataset.leader === "true" && document.getElementById("drill-self")?.dataset.holder === "true"`)
	waitFor(t, ctx, "the first report among the past drills there", `document.querySelectorAll("#drill-reports tbody tr").length === 1`)
	if err := chromedpClick(ctx, "#drill-transfer"); err != nil {
		t.Fatal(err)
	}
	if err := chromedpClick(ctx, "#confirm-yes"); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, ctx, "the region healthy after the transfer", `document.getElementById("drill-run-status")?.dataset.outcome === "recovered"`, time.Minute)
	kinds = evalJS[string](t, ctx, `[...document.querySelectorAll("#drill-timeline li")].map(li => li.dataset.kind + ": " + li.textContent).join("\n")`)
	t.Logf("timeline:\n%s", kinds)
	for _, want := range []string{"lease-released:", "lease-acquired:", "healthy:"} {
		if !strings.Contains(kinds, "\n"+want) {
			t.Errorf("the transfer's timeline has no %q entry", strings.TrimSuffix(want, ":"))
		}
	}
	f = strings.Fields(evalJS[string](t, ctx, `document.getElementById("drill-start-token").textContent + " " + document.getElementById("drill-new-token").textContent`))
	if b, _ := strconv.Atoi(f[0]); b != after {
		t.Errorf("the transfer started under token %s, the isolation ended under %d", f[0], after)
	}
	if a, _ := strconv.Atoi(f[1]); a <= after {
		t.Errorf("the transfer ended under token %s, not above %d", f[1], after)
	}
	waitWithin(t, ctx, "both drills among the past drills", `document.querySelectorAll("#drill-reports tbody tr").length === 2`, time.Minute)
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}
