package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/agent/dataplane"
	"github.com/outpost-mesh/outpost/dev"
)

// The service map's tests read what it drew from the page: the
// section#map element's data attributes (data-state, data-nodes,
// data-edges, data-visible-edges, data-render-ms), the details panel and
// the table of edges. For positions and programmatic zoom and pan they
// use the cytoscape instance that cytoscape itself keeps on its container
// element (`_cyreg.cy`, set by cytoscape 3.x for every instance): the
// page exposes nothing of its own for tests.

// cyJS is the cytoscape instance on screen, in the page's JavaScript;
// cyAllJS the one holding every node and edge (the map shows it while no
// filter is on; a filter shows another, built from the edges it keeps).
const (
	cyJS    = `document.querySelector("#map-canvas .map-cy[data-active]")._cyreg.cy`
	cyAllJS = `document.getElementById("map-cy-all")._cyreg.cy`
)

// mapReady waits (up to limit) until the map is drawn with the given
// number of nodes ("" for any) and returns its data attributes.
func mapReady(t *testing.T, ctx context.Context, nodes string, limit time.Duration) map[string]string {
	t.Helper()
	cond := `(() => { const m = document.getElementById("map"); return !!m && m.dataset.state === "ready"` +
		map[bool]string{true: "", false: ` && m.dataset.nodes === "` + nodes + `"`}[nodes == ""] + ` })()`
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(limit))); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("main").outerHTML.slice(0, 4000)`))
		t.Fatalf("the map was not drawn (nodes %q): %v\n%s", nodes, err, html)
	}
	return mapData(t, ctx)
}

func mapData(t *testing.T, ctx context.Context) map[string]string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({...document.getElementById("map").dataset})`))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// evalJSON runs an async expression in the page and decodes its JSON.
func evalJSON(t *testing.T, ctx context.Context, what, js string, v any) {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%s: %v in %s", what, err, s)
	}
}

// positionsJS: every host and address node's model position.
const positionsJS = `(async () => JSON.stringify(Object.fromEntries(` + cyAllJS + `.nodes().not(".region").map(n => [n.id(), [n.position("x"), n.position("y")]]))))()`

// TestMapAtScale draws a generated graph of 2,000 nodes and 10,000 edges
// and measures, in the page (performance.now), the first render, each
// filter, zooming and panning, and a click on a node to its details; it
// logs the figures (BENCHMARKS.md, "Web UI: service map") and asserts
// only behaviour: every node and edge drawn, the filters drawing what they
// should, a click showing the details, and the placement kept exactly as
// the graph grows to 2,100 nodes, and again on a fresh load.
func TestMapAtScale(t *testing.T) {
	ctx, problems := browser(t)
	d, err := dev.Start(context.Background(), dev.Options{HTTP: "127.0.0.1:0", Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	base := d.APIURL()
	login(t, ctx, base, "admin", secret(t, d.PasswordFile()))

	// A fresh load of the page, timed from the navigation's start.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/map?synthetic=2000,10000"), chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	m := mapReady(t, ctx, "2000", 60*time.Second)
	loaded, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.now()`))
	if err != nil {
		t.Fatal(err)
	}
	heap, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.memory ? performance.memory.usedJSHeapSize / 1048576 : 0`))
	t.Logf("first render: the graph generated, placed and drawn in %s ms (data-render-ms); page ready about %.0f ms after the navigation started; JS heap %.0f MiB", m["renderMs"], loaded, heap)
	if m["nodes"] != "2000" || m["edges"] != "10000" || m["visibleEdges"] != "10000" || m["synthetic"] != "true" {
		t.Fatalf("the map says %v, want 2000 nodes and 10000 edges, all drawn, synthetic", m)
	}
	var counts struct{ Nodes, Edges, Drawn, Groups int }
	evalJSON(t, ctx, "counting", `(async () => { const cy = `+cyJS+`; return JSON.stringify({Nodes: cy.nodes().not(".region").length, Edges: cy.edges().length, Drawn: cy.edges(":visible").length, Groups: cy.nodes(".region").length}); })()`, &counts)
	if counts.Nodes != 2000 || counts.Edges != 10000 || counts.Drawn != 10000 || counts.Groups != 4 {
		t.Fatalf("cytoscape holds %+v, want 2000 nodes and 10000 edges, all visible", counts)
	}
	synth, _ := chromedp.Run(ctx, chromedp.Text(id("map-synthetic")))
	if !strings.Contains(synth, "Synthetic graph") {
		t.Errorf("the page does not say the graph is synthetic: %q", synth)
	}

	// The filters: each applied as a person does (the control's event),
	// timed to the end of the next frame's script (cytoscape draws in it).
	var f struct {
		Errors, ErrorsWant, ErrorsDrawn int
		ErrorsMs                        float64
		Top, TopDrawn                   int
		TopOK                           bool
		TopMs                           float64
		Text, TextWant                  int
		TextMs                          float64
		Clear, ClearDrawn               int
		ClearMs                         float64
		Rows                            int
	}
	evalJSON(t, ctx, "filters", `(async () => {
		const all = `+cyAllJS+`, cur = () => `+cyJS+`, m = document.getElementById("map");
		const frame = () => new Promise(r => requestAnimationFrame(r));
		const timed = async (act) => { await frame(); const t0 = performance.now(); act(); await frame(); return performance.now() - t0; };
		const drawn = () => cur().edges(":visible");
		const fig = (e) => e.scratch("map");
		// The filtered view is built while the browser is idle after the
		// first render; wait for that as a person would take a second to
		// reach for a control.
		for (let i = 0; i < 50 && !document.getElementById("map-cy-filtered")._cyreg; i++) await new Promise(r => setTimeout(r, 100));
		const out = {};
		out.ErrorsMs = await timed(() => document.getElementById("map-errors").click());
		out.Errors = +m.dataset.visibleEdges; out.ErrorsDrawn = drawn().length;
		out.ErrorsWant = all.edges().filter(e => fig(e).r > 0 || fig(e).f > 0).length;
		document.getElementById("map-errors").click();
		const top = document.getElementById("map-top");
		out.TopMs = await timed(() => { top.value = "100"; top.dispatchEvent(new Event("change")); });
		out.Top = +m.dataset.visibleEdges; out.TopDrawn = drawn().length;
		const ids = new Set(drawn().map(e => e.id()));
		const shown = all.edges().filter(e => ids.has(e.id())).map(e => fig(e).b), hidden = all.edges().filter(e => !ids.has(e.id())).map(e => fig(e).b);
		out.TopOK = shown.length === 100 && Math.min(...shown) >= Math.max(...hidden);
		out.Rows = document.querySelectorAll("#map-edges tbody tr").length;
		const text = document.getElementById("map-text");
		out.TextMs = await timed(() => { document.getElementById("map-show-all").click(); text.value = "eu-west-host-00"; text.dispatchEvent(new Event("change")); });
		out.Text = +m.dataset.visibleEdges;
		out.TextWant = all.edges().filter(e => e.source().data("label").includes("eu-west-host-00") || e.target().data("label").includes("eu-west-host-00")).length;
		out.ClearMs = await timed(() => document.getElementById("map-show-all").click());
		out.Clear = +m.dataset.visibleEdges; out.ClearDrawn = drawn().length;
		return JSON.stringify(out);
	})()`, &f)
	t.Logf("filter errors only: %.1f ms (%d edges drawn); top 100 talkers: %.1f ms; text filter: %.1f ms (%d edges); show all again: %.1f ms",
		f.ErrorsMs, f.Errors, f.TopMs, f.TextMs, f.Text, f.ClearMs)
	if f.Errors != f.ErrorsWant || f.ErrorsDrawn != f.ErrorsWant || f.Errors == 0 || f.Errors >= 10000 {
		t.Errorf("errors only: the map says %d drawn, cytoscape shows %d, want the %d edges with retransmits or failed connects", f.Errors, f.ErrorsDrawn, f.ErrorsWant)
	}
	if f.Top != 100 || f.TopDrawn != 100 || !f.TopOK {
		t.Errorf("top 100: the map says %d, cytoscape shows %d, the busiest: %v", f.Top, f.TopDrawn, f.TopOK)
	}
	if f.Rows != 50 {
		t.Errorf("the table lists %d edges, want the 50 busiest", f.Rows)
	}
	if f.Text != f.TextWant || f.Text == 0 {
		t.Errorf("text filter: %d drawn, want %d", f.Text, f.TextWant)
	}
	if f.Clear != 10000 || f.ClearDrawn != 10000 {
		t.Errorf("show all: %d (cytoscape %d), want 10000", f.Clear, f.ClearDrawn)
	}

	// Zoom and pan: 20 programmatic steps (cy.zoom, cy.panBy: every
	// frame a full redraw with every edge), then 10 mouse-wheel notches
	// as a person turns the wheel (drawn without edges while it turns),
	// then 10 arrow-key pans (each a 120 ms animation, also drawn without
	// edges), every frame timed until the view settles whole.
	type frames struct{ Mean, Max float64 }
	var z struct{ Prog, Wheel, Keys frames }
	evalJSON(t, ctx, "zoom and pan", `(async () => {
		const cy = `+cyJS+`, c = document.getElementById("map-canvas");
		const frame = () => new Promise(r => requestAnimationFrame(r));
		const run = async (n, step) => { const ts = []; await frame(); for (let i = 0; i < n; i++) { const t0 = performance.now(); step(i); await frame(); ts.push(performance.now() - t0); } return {Mean: ts.reduce((a, b) => a + b, 0) / ts.length, Max: Math.max(...ts)}; };
		const w = c.clientWidth, h = c.clientHeight, r = c.getBoundingClientRect();
		const out = {};
		out.Prog = await run(20, i => i < 10 ? cy.zoom({level: cy.zoom() * 1.15, renderedPosition: {x: w / 2, y: h / 2}}) : cy.panBy({x: 40, y: 25}));
		cy.fit(undefined, 24); await frame();
		out.Wheel = await run(10, i => c.querySelector("canvas").dispatchEvent(new WheelEvent("wheel", {deltaY: -100, deltaMode: 0, clientX: r.left + w / 2, clientY: r.top + h / 2, bubbles: true, cancelable: true})));
		await new Promise(r => setTimeout(r, 300));
		c.focus();
		const keys = [];
		for (let i = 0; i < 10; i++) {
			c.dispatchEvent(new KeyboardEvent("keydown", {key: i % 2 ? "ArrowDown" : "ArrowRight", bubbles: true, cancelable: true}));
			let t0 = performance.now();
			do { await frame(); const t = performance.now(); keys.push(t - t0); t0 = t; } while (cy.animated());
		}
		await frame();
		out.Keys = {Mean: keys.reduce((a, b) => a + b, 0) / keys.length, Max: Math.max(...keys)};
		return JSON.stringify(out);
	})()`, &z)
	t.Logf("zoom+pan, 20 programmatic steps (full redraw each): mean %.1f ms, max %.1f ms a frame", z.Prog.Mean, z.Prog.Max)
	t.Logf("mouse wheel, 10 notches: mean %.1f ms, max %.1f ms a frame; arrow keys, 10 animated pans: mean %.1f ms, max %.1f ms a frame", z.Wheel.Mean, z.Wheel.Max, z.Keys.Mean, z.Keys.Max)

	// A click on a node, through the browser's input (the DevTools
	// protocol), to its details in the panel: the node is brought to the
	// middle of the map first, as a person would zoom to it.
	var target struct {
		ID, Label string
		X, Y      float64
	}
	evalJSON(t, ctx, "a node to click", `(async () => {
		const cy = `+cyJS+`, c = document.getElementById("map-canvas");
		const n = cy.nodes().not(".region").max(n => n.degree()).ele;
		cy.elements().unselect();
		cy.zoom(1.2); cy.center(n);
		await new Promise(r => setTimeout(r, 500));
		const p = n.renderedPosition(), r = c.getBoundingClientRect();
		window.__mapClickAt = 0;
		window.addEventListener("mousedown", () => { window.__mapClickAt = performance.now(); }, {capture: true, once: true});
		return JSON.stringify({ID: n.id(), Label: n.data("label"), X: r.left + p.x, Y: r.top + p.y});
	})()`, &target)
	if err := chromedp.Do(ctx, chromedp.MouseClickXY(target.X, target.Y)); err != nil {
		t.Fatal(err)
	}
	var click struct {
		Ms      float64
		Heading string
	}
	evalJSON(t, ctx, "the click's details", `new Promise((res, rej) => {
		const want = `+jsString(target.ID)+`, t = setTimeout(() => rej("no details for " + want + ", panel shows " + document.getElementById("map-details").dataset.selected), 10000);
		const f = () => { if (document.getElementById("map-details").dataset.selected === want) { clearTimeout(t); res(JSON.stringify({Ms: performance.now() - window.__mapClickAt, Heading: document.querySelector("#map-details h3").textContent})); } else requestAnimationFrame(f); };
		requestAnimationFrame(f);
	})`, &click)
	t.Logf("click on node %s to its details shown: %.1f ms", target.Label, click.Ms)
	if click.Heading != target.Label {
		t.Errorf("the details panel shows %q, want %q", click.Heading, target.Label)
	}
	checkA11y(t, ctx, "map (synthetic)")
	shot(t, ctx, "map-synthetic")

	// Stability: the graph grows by 100 nodes (the same ids for the first
	// 2,000); none of those moves.
	var before, after, fresh map[string][2]float64
	evalJSON(t, ctx, "positions at 2000", positionsJS, &before)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`location.hash = "#/map?synthetic=2100,10500"; true`)); err != nil {
		t.Fatal(err)
	}
	m = mapReady(t, ctx, "2100", 60*time.Second)
	t.Logf("grown to 2100 nodes and 10500 edges: drawn in %s ms", m["renderMs"])
	evalJSON(t, ctx, "positions at 2100", positionsJS, &after)
	moved := comparePositions(before, after)
	if len(after) != 2100 || len(moved) > 0 {
		t.Errorf("grown to %d nodes: %d of the first 2000 moved (%v)", len(after), len(moved), moved[:min(5, len(moved))])
	}
	// A fresh load of the same graph places it the same way.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/map?synthetic=2000,10000"), chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	mapReady(t, ctx, "2000", 60*time.Second)
	evalJSON(t, ctx, "positions after a reload", positionsJS, &fresh)
	if moved := comparePositions(before, fresh); len(fresh) != 2000 || len(moved) > 0 {
		t.Errorf("a fresh load placed %d of 2000 nodes elsewhere (%v)", len(moved), moved[:min(5, len(moved))])
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}

// comparePositions lists the nodes of before that are not at the same
// place in after.
func comparePositions(before, after map[string][2]float64) []string {
	var moved []string
	for id, p := range before {
		if q, ok := after[id]; !ok || q != p {
			moved = append(moved, fmt.Sprintf("%s %v→%v", id, p, q))
		}
	}
	return moved
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestMapRealFlows: the dev region's agent observes this machine (eBPF as
// root, else procfs) and exports every second; the test makes HTTP
// requests to the node, waits until the tenant's PromQL API has their
// flows, and the dev tenant's admin sees them on the map: at least one
// edge, listed in the table, whose details name both ends, and the agent's
// host with a link to its agent page.
func TestMapRealFlows(t *testing.T) {
	ctx, problems := browser(t)
	d, err := dev.Start(context.Background(), dev.Options{HTTP: "127.0.0.1:0", Agents: 1, Out: io.Discard,
		Telemetry: &agent.TelemetryConfig{DataPlane: dataplane.Config{PollInterval: 500 * time.Millisecond}, ExportInterval: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	base := d.APIURL()
	h, ok := d.Agents()[0].Telemetry()
	for deadline := time.Now().Add(10 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		h, ok = d.Agents()[0].Telemetry()
	}
	t.Logf("the dev agent observes in mode %s %s", h.Mode, h.Reason)
	agentID := d.Agents()[0].Status().AgentID

	flows := flowsSeen(t, d)
	t.Logf("PromQL has flows to %s remote addresses", flows)

	login(t, ctx, base, "dev", secret(t, d.DevPasswordFile()))
	visit(t, ctx, base, "#/map")
	waitFor(t, ctx, "an edge on the map", `(() => { const m = document.getElementById("map"); return !!m && m.dataset.state === "ready" && +m.dataset.edges >= 1 && document.querySelectorAll("#map-edges tbody tr").length >= 1; })()`)
	m := mapData(t, ctx)
	t.Logf("the map: %s nodes, %s edges (%s drawn) in %s regions, drawn %s ms after asking", m["nodes"], m["edges"], m["visibleEdges"], m["groups"], m["renderMs"])
	var counts struct{ Nodes, Edges int }
	evalJSON(t, ctx, "counting", `(async () => { const cy = `+cyAllJS+`; return JSON.stringify({Nodes: cy.nodes().not(".region").length, Edges: cy.edges().length}); })()`, &counts)
	if fmt.Sprint(counts.Nodes) != m["nodes"] || fmt.Sprint(counts.Edges) != m["edges"] || counts.Edges < 1 || m["synthetic"] != "false" {
		t.Errorf("the map says %v; cytoscape holds %+v", m, counts)
	}
	answer, _ := chromedp.Run(ctx, chromedp.Text(id("map-answer")))
	t.Logf("the answer: %s", answer)

	// The first edge's details, then its client's: the agent's host, with
	// a link to the agent's page.
	if err := chromedpClick(ctx, `#map-edges tbody tr button[data-edge]`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the edge's details", `document.getElementById("map-details").dataset.selected.includes(">")`)
	edge, _ := chromedp.Run(ctx, chromedp.Text(id("map-details")))
	t.Logf("edge details: %s", edge)
	if !strings.Contains(edge, "dev-agent-1") || !strings.Contains(edge, "Bytes/s") {
		t.Errorf("the edge's details do not name the agent's host: %q", edge)
	}
	if err := chromedpClick(ctx, `#map-details button[data-node*="|a|"]`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the host's details", `!!document.getElementById("map-agent-link")`)
	href, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("map-agent-link").getAttribute("href")`))
	if want := "#/agents/dev/" + agentID; href != want {
		t.Errorf("the host links to %q, want %q", href, want)
	}
	checkA11y(t, ctx, "map")
	shot(t, ctx, "map")
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}

// flowsSeen makes HTTP requests to the region's API, on a few keep-alive
// connections, until the test ends, and waits until the dev tenant's
// PromQL API has flows; it returns how many remote addresses they reach.
func flowsSeen(t *testing.T, d *dev.Region) string {
	t.Helper()
	base := d.APIURL()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if r, err := http.Get(base + "/api/v1/whoami"); err == nil {
				_, _ = io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
		}
	}()
	tok := secret(t, d.QueryTokenFile())
	q := `count(sum by (remote_addr) (rate(outpost_flow_sent_bytes_total[5m])) > 0 or sum by (remote_addr) (outpost_flow_established) > 0)`
	var flows string
	for deadline := time.Now().Add(45 * time.Second); flows == "" && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		flows = promValue(base, tok, q)
	}
	if flows == "" {
		t.Fatalf("no flows in the PromQL API at %s after 45 s", base)
	}
	return flows
}

// promValue asks the dev tenant's PromQL API for q's single value ("" for
// none).
func promValue(base, token, q string) string {
	req, _ := http.NewRequest("GET", base+"/api/v1/tenants/dev/prometheus/api/v1/query?"+url.Values{"query": {q}}.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if json.NewDecoder(resp.Body).Decode(&out) != nil || len(out.Data.Result) != 1 {
		return ""
	}
	s, _ := out.Data.Result[0].Value[1].(string)
	return s
}

// TestMapFederated: two federated dev regions; us-east's agent observes
// this machine. The dev tenant's admin in eu-west (no flows of its own)
// sees us-east's flows on the map through the global query, in a group of
// their own, with the answer marked complete; with us-east stopped the
// page says the map is partial and names the peer, instead of drawing
// nothing silently.
func TestMapFederated(t *testing.T) {
	ctx, problems := browser(t)
	f, err := dev.StartFederation(context.Background(), dev.Options{Regions: 2, HTTP: "127.0.0.1:0", Agents: 1, Out: io.Discard,
		Telemetry: &agent.TelemetryConfig{DataPlane: dataplane.Config{PollInterval: 500 * time.Millisecond}, ExportInterval: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Stop(context.Background()) })
	if err := f.WaitGlobal(context.Background(), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	us, eu := f.Regions[0], f.Regions[1]
	flowsSeen(t, us)
	login(t, ctx, eu.APIURL(), "dev", secret(t, eu.DevPasswordFile()))
	visit(t, ctx, eu.APIURL(), "#/map")
	waitFor(t, ctx, "us-east's flows on eu-west's map", `(() => { const m = document.getElementById("map"); return !!m && m.dataset.state === "ready" && +m.dataset.edges >= 1; })()`)
	var got struct {
		Hosts   []string
		Regions []string
		Answer  string
	}
	evalJSON(t, ctx, "the map's regions", `(async () => { const cy = `+cyAllJS+`; return JSON.stringify({
		Hosts: cy.nodes(".host").map(n => n.id()), Regions: cy.nodes(".region").map(n => n.data("label")),
		Answer: document.getElementById("map-answer").textContent}); })()`, &got)
	t.Logf("eu-west's map: hosts %v in regions %v; %s", got.Hosts, got.Regions, got.Answer)
	if len(got.Regions) != 1 || got.Regions[0] != "us-east" || len(got.Hosts) == 0 || !strings.Contains(got.Hosts[0], "|us-east|a|") {
		t.Errorf("us-east's flows are not grouped under us-east: hosts %v, regions %v", got.Hosts, got.Regions)
	}
	// Complete, or partial with the reason (the agent just started: its
	// losses of connections that predate it make the answer partial).
	if !strings.Contains(got.Answer, "complete") && !strings.Contains(got.Answer, "peer us-east: ") {
		t.Errorf("the answer is neither complete nor says why not: %q", got.Answer)
	}
	peerOK, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`[...document.querySelectorAll("#map-answer details.map-peers tbody tr")].some(r => r.cells[0].textContent === "us-east" && r.cells[1].textContent === "ok")`))
	if !peerOK {
		t.Errorf("the peers asked do not list us-east as ok")
	}
	checkA11y(t, ctx, "map (federated)")

	if err := us.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	visit(t, ctx, eu.APIURL(), "#/overview")
	visit(t, ctx, eu.APIURL(), "#/map")
	waitFor(t, ctx, "a partial map with us-east down", `(() => { const p = document.querySelector("#map-answer .map-partial"); return !!p && p.textContent.includes("peer region us-east"); })()`)
	partial, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#map-answer .map-partial")))
	t.Logf("with us-east down: %s", partial)
	checkA11y(t, ctx, "map (partial)")
	shot(t, ctx, "map-partial")
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}
