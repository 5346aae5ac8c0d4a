package ui_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/outpost-mesh/outpost/dev"
	"github.com/outpost-mesh/outpost/ui"
)

// TestOverviewLiveInBrowser: a region admin logs in through the UI in a
// real browser; the overview shows the region's three nodes up, and when
// one is stopped the count changes without a reload; the agents and
// federation pages render; no console error or exception on any page;
// every UI response carries the strict CSP.
func TestOverviewLiveInBrowser(t *testing.T) {
	ctx, problems := browser(t)
	d, err := dev.Start(context.Background(), dev.Options{Nodes: 3, HTTP: "127.0.0.1:0", Agents: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	base := d.APIURL()
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Content-Security-Policy"); got != ui.CSP || !strings.Contains(got, "script-src 'self'") {
		t.Fatalf("CSP %q", got)
	}
	login(t, ctx, base, "admin", secret(t, d.PasswordFile()))
	nodesAre := func(want string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("stat-nodes") && document.getElementById("stat-nodes").textContent === "`+want+`"`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			now, _ := chromedp.Run(ctx, chromedp.Text(id("stat-nodes")))
			t.Fatalf("the overview shows %q nodes up, want %q: %v", now, want, err)
		}
	}
	nodesAre("3 / 3")
	waitFor(t, ctx, "recent audit records on the overview", `document.querySelectorAll("#recent-audit tbody tr").length >= 1`)
	waitFor(t, ctx, "the ingest table", `document.querySelectorAll("#ingest tbody tr").length >= 1`)
	checkA11y(t, ctx, "overview")
	shot(t, ctx, "overview")
	// Stop a node that does not answer this page's API calls (n1 does):
	// the count follows without a reload.
	if err := d.StopNode("n3"); err != nil {
		t.Fatal(err)
	}
	nodesAre("2 / 3")
	visit(t, ctx, base, "#/agents")
	waitFor(t, ctx, "agents page rows", `document.querySelectorAll("#agents-table tbody tr").length >= 1`)
	checkA11y(t, ctx, "agents")
	shot(t, ctx, "agents")
	visit(t, ctx, base, "#/federation")
	checkA11y(t, ctx, "federation")
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
	// The problem listener can fail: an inline style the CSP refuses is
	// reported by the browser.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("main").append(Object.assign(document.createElement("div"), {innerHTML: '<p style="color:red">x</p>'})); true`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`true`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(problems()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if p := problems(); len(p) != 1 || !strings.Contains(p[0], "Content Security Policy") {
		t.Errorf("an inline style under the CSP was not reported as one problem: %q", p)
	}
	// The accessibility check can fail: an unlabelled control and an
	// image without text are found.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("main").append(Object.assign(document.createElement("input"), {type: "text"}), Object.assign(document.createElement("img"), {src: "data:,"})); true`)); err != nil {
		t.Fatal(err)
	}
	if vs, err := axeRun(ctx); err != nil || len(vs) < 2 {
		t.Errorf("axe did not report an unlabelled input and an image without alt: %+v, %v", vs, err)
	}
}
