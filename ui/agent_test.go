package ui_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/agent/dataplane"
	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/dev"
)

// agentPageRegion starts a dev region whose agent observes this machine
// (eBPF as root, else procfs; mode forces one) and exports every second.
func agentPageRegion(t *testing.T, mode string) *dev.Region {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a dev region with an observing agent; run without -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := dev.Start(ctx, dev.Options{HTTP: "127.0.0.1:0", DataDir: t.TempDir(), Agents: 1, Out: io.Discard,
		Telemetry: &agent.TelemetryConfig{DataPlane: dataplane.Config{Mode: mode, PollInterval: 500 * time.Millisecond}, ExportInterval: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = d.Stop(sctx)
	})
	return d
}

// agentPageTraffic serves on loopback and, until the test ends, opens a
// connection every 200 ms that sends 64 KiB and reads a reply, while
// eight stay open. It returns the port.
func agentPageTraffic(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				_, _ = c.Write(buf[:4096])
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	// Eight held open: what procfs mode sees, above the other flows of a
	// busy machine, which have one or two.
	for range 8 {
		held, err := net.Dial("tcp4", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { held.Close() })
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		payload := make([]byte, 64<<10)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			c, err := net.DialTimeout("tcp4", "127.0.0.1:"+port, time.Second)
			if err != nil {
				continue
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(payload); err == nil {
				_, _ = io.ReadFull(c, make([]byte, 4096))
			}
			c.Close()
		}
	}()
	return port
}

// TestAgentPageChartsRealFlows: the dev tenant's Admin opens the agent's
// page from the agents list; its traffic charts draw the agent's real
// flows (loopback connections this test makes, seen by eBPF, or procfs
// without root), its top flows list the test's port, the Admin is
// offered Revoke, and the page passes axe with no console error. Where
// the agent observes with eBPF, the page is checked again with one in
// procfs mode: its charts are the host's TCP counters, and the page says
// what that mode lacks.
func TestAgentPageChartsRealFlows(t *testing.T) {
	var observed string
	t.Run("auto", func(t *testing.T) { observed = agentPageRealFlows(t, dataplane.ModeAuto, "agent") })
	if observed != dataplane.ModeProcfs {
		// What procfs mode has, shown in its place, and what it lacks said.
		t.Run("procfs", func(t *testing.T) { agentPageRealFlows(t, dataplane.ModeProcfs, "agent-procfs") })
	}
}

// agentPageRealFlows is TestAgentPageChartsRealFlows with the agent in
// mode; it returns the mode the agent observed in.
func agentPageRealFlows(t *testing.T, mode, shotName string) string {
	d := agentPageRegion(t, mode)
	port := agentPageTraffic(t)
	ctx, problems := browser(t)
	base := d.APIURL()
	a := d.Agents()[0]
	for deadline := time.Now().Add(30 * time.Second); !a.Status().Connected; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the dev agent did not attach")
		}
	}
	h, ok := a.Telemetry()
	if !ok {
		t.Fatal("the dev agent does not observe")
	}
	t.Logf("the agent observes in mode %s (%s)", h.Mode, h.Reason)
	chart := "chart-bytes"
	if h.Mode == dataplane.ModeProcfs {
		chart = "chart-established"
	}

	login(t, ctx, base, "dev", secret(t, d.DevPasswordFile()))
	visit(t, ctx, base, "#/agents")
	link := `#agents-table a[href^="#/agents/dev/"]`
	waitFor(t, ctx, "the agent's link", `document.querySelector('`+link+`') !== null`)
	if err := chromedpClick(ctx, link); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the agent page", `location.hash.startsWith("#/agents/dev/") && document.getElementById("agent-facts") !== null`)
	if got := evalJS[string](t, ctx, `document.querySelector("main h1").textContent`); !strings.HasPrefix(got, "Agent ") {
		t.Errorf("heading %q", got)
	}
	// The chart drew real data: uPlot's canvas, and points above zero.
	waitWithin(t, ctx, "the "+chart+" chart drawn with the agent's traffic",
		`document.querySelector("#`+chart+` canvas") && +document.getElementById("`+chart+`").dataset.nonzero > 0`, 60*time.Second)
	if h.Mode == dataplane.ModeEBPF {
		// The test sends 64 KiB five times a second: over 100 kB/s.
		waitWithin(t, ctx, "the bytes chart showing the test's traffic",
			`(m => m && +m[1] * {k: 1e3, M: 1e6, G: 1e9}[m[2]] >= 100e3)(/sent: ([\d.]+) ([kMG])B\/s/.exec(document.querySelector("#chart-bytes .chart-legend").textContent))`, 40*time.Second)
	}
	waitWithin(t, ctx, "the test's port among the top flows",
		`document.getElementById("agent-flows") && [...document.querySelectorAll("#agent-flows tbody tr")].some(r => r.cells[1].textContent === "`+port+`")`, 40*time.Second)
	t.Logf("%s: %s points, %s above zero, partial=%s: %s", chart,
		evalJS[string](t, ctx, `document.getElementById("`+chart+`").dataset.points`),
		evalJS[string](t, ctx, `document.getElementById("`+chart+`").dataset.nonzero`),
		evalJS[string](t, ctx, `document.getElementById("`+chart+`").dataset.partial`),
		evalJS[string](t, ctx, `document.querySelector("#`+chart+` .chart-partial").textContent`))
	// Each chart is labelled, with its latest values in words.
	if n := evalJS[string](t, ctx, `String([...document.querySelectorAll("figure.chart")].filter(f => !f.querySelector(".chart-plot").getAttribute("aria-label").includes("Latest:")).length)`); n != "0" {
		t.Errorf("%s charts have no summary of their latest values", n)
	}
	if mode := evalJS[string](t, ctx, `document.getElementById("agent-facts").textContent`); !strings.Contains(mode, h.Mode) {
		t.Errorf("the page does not name the mode %s: %q", h.Mode, mode)
	}
	if evalJS[string](t, ctx, `String(document.getElementById("agent-revoke") !== null)`) != "true" {
		t.Error("the tenant's Admin is not offered Revoke")
	}
	checkA11y(t, ctx, "agent")
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
	if h.Mode == dataplane.ModeProcfs {
		if note := evalJS[string](t, ctx, `document.getElementById("agent-mode-note").textContent`); !strings.Contains(note, "no bytes or RTT per connection") {
			t.Errorf("procfs mode does not say what it lacks: %q", note)
		}
	}
	shot(t, ctx, shotName)
	return h.Mode
}

// TestProbesDefineAndChart: the dev tenant's Admin (an operator and
// more) defines a tcp probe set through the form; a probe without a
// target is refused by the form with the node's words, one of a cloud
// metadata address by the node (its error and hint shown as sent); a
// probe of a loopback service, which the tenant allows, is dispatched,
// listed with its fencing token and issuing node, and its results are
// charted.
func TestProbesDefineAndChart(t *testing.T) {
	d := agentPageRegion(t, dataplane.ModeProcfs)
	ctx := context.Background()
	owner := api.NewClient(d.APIURL(), "")
	if err := owner.Login(ctx, "dev", secret(t, d.DevPasswordFile())); err != nil {
		t.Fatal(err)
	}
	if err := owner.Do(ctx, "PUT", "/api/v1/tenants/dev/settings", map[string]any{"probe_allow": []string{"127.0.0.0/8"}}, nil); err != nil {
		t.Fatal(err)
	}
	port := agentPageTraffic(t)
	bctx, problems := browser(t)
	base := d.APIURL()
	login(t, bctx, base, "dev", secret(t, d.DevPasswordFile()))
	visit(t, bctx, base, "#/probes")
	waitFor(t, bctx, "the probe form", `document.getElementById("probe-form") !== null && document.getElementById("probe-allow").textContent.includes("127.0.0.0/8")`)
	submit := func() {
		t.Helper()
		if err := chromedpClick(bctx, "#probe-submit"); err != nil {
			t.Fatal(err)
		}
	}
	set := func(sel, v string) {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.SetValue(chromedp.CSS(sel), v)); err != nil {
			t.Fatal(err)
		}
	}

	// No target: the form says what the node would.
	submit()
	waitFor(t, bctx, "the form's refusal of an empty target", `document.getElementById("probe-form-errors").textContent.includes("probes[0]: target: 1..512 characters") && document.getElementById("probe-target-1").getAttribute("aria-invalid") === "true"`)
	// A bad interval and a bad selector, both caught before sending.
	set("#probe-target-1", "127.0.0.1:"+port)
	set("#probe-interval-1", "5 s")
	set("#probe-selector", "os linux")
	submit()
	waitFor(t, bctx, "the form's refusal of the interval and selector", `document.getElementById("probe-form-errors").textContent.includes('interval "5 s": use a duration from 1s to 1h') && document.getElementById("probe-form-errors").textContent.includes('selector term "os linux"')`)
	// A cloud metadata address: the node refuses it, and says why.
	set("#probe-selector", "all")
	set("#probe-interval-1", "1s")
	set("#probe-target-1", "169.254.169.254:80")
	submit()
	waitFor(t, bctx, "the node's refusal shown as sent", `document.getElementById("probe-form-server-error") && document.getElementById("probe-form-server-error").textContent.includes("refused by the SSRF guard: 169.254.169.254:80: rule cloud metadata") && document.getElementById("probe-form-server-hint").textContent.includes("probe_allow")`)
	checkA11y(t, bctx, "probes (refused)")

	// A probe of the loopback service the tenant allows.
	target := "127.0.0.1:" + port
	set("#probe-target-1", target)
	submit()
	waitFor(t, bctx, "the dispatch confirmed", `document.getElementById("probe-form-status").textContent.includes("fencing token")`)
	var ds []api.Dispatch
	if err := owner.Do(ctx, "GET", "/api/v1/tenants/dev/dispatches", nil, &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || !strings.Contains(string(ds[0].Payload), target) {
		t.Fatalf("dispatches %+v, want the one probe set", ds)
	}
	row := `[...document.querySelectorAll("#probe-sets tbody tr")].find(r => r.cells[0].textContent === "` + ds[0].ID + `")`
	waitFor(t, bctx, "the probe set listed with its fencing token and node",
		row+` && `+row+`.cells[3].textContent.includes("tcp `+target+` every 1s") && `+row+`.cells[5].textContent === "`+strconv.FormatUint(ds[0].Token, 10)+`" && `+row+`.cells[4].textContent === "`+ds[0].Node+`"`)
	waitWithin(t, bctx, "the probe's results charted", `document.querySelector("#chart-probes-success canvas") && +document.getElementById("chart-probes-success").dataset.points > 0 && document.getElementById("chart-probes-success").textContent.includes("tcp `+target+`")`, 60*time.Second)
	// The probe succeeds every run: the chart says so (a range answer
	// whose points were reused before it was encoded would not).
	waitWithin(t, bctx, "the chart's latest success 100%", `document.querySelector("#chart-probes-success .chart-legend").textContent === "tcp `+target+`: 100%"`, 30*time.Second)
	waitWithin(t, bctx, "the agent's latest result ok", `document.getElementById("probe-latest") && document.getElementById("probe-latest").textContent.includes("ok")`, 20*time.Second)
	waitWithin(t, bctx, "the set applied on the agent", row+`.cells[7].textContent.includes("applied")`, 20*time.Second)
	checkA11y(t, bctx, "probes")
	// The one refusal the test asked for is logged by the browser as a
	// failed load; anything else is a problem.
	var unexpected []string
	refusals := 0
	for _, p := range problems() {
		if strings.Contains(p, "status of 400") && strings.HasSuffix(p, "/api/v1/tenants/dev/dispatches") {
			refusals++
			continue
		}
		unexpected = append(unexpected, p)
	}
	if len(unexpected) > 0 || refusals != 1 {
		t.Errorf("console errors or exceptions: %q (and %d refused dispatches, want the 1 asked for)", unexpected, refusals)
	}
	shot(t, bctx, "probes")
}

// TestAgentPageViewer: a Viewer of the tenant sees the agent's page
// without Revoke or Clear flags and the probes page without the form;
// with a node of the region down, every chart on the agent's page is
// marked partial and names the node. A region admin without a
// break-glass grant is offered Revoke (the region route) and told how to
// read the tenant's telemetry instead of an error; with a grant it reads
// the charts once, offered to read again, as every read is audited.
func TestAgentPageViewer(t *testing.T) {
	d, err := dev.Start(context.Background(), dev.Options{HTTP: "127.0.0.1:0", DataDir: t.TempDir(), Nodes: 3, Agents: 1, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	vicPW := devViewer(t, d)
	ctx, problems := browser(t)
	base := d.APIURL()
	agentPage := "#/agents/dev/" + d.Agents()[0].Status().AgentID

	login(t, ctx, base, "vic", vicPW)
	visit(t, ctx, base, agentPage)
	waitFor(t, ctx, "the agent page", `document.getElementById("agent-facts") !== null && document.getElementById("chart-probe-success") !== null && !document.getElementById("main").textContent.includes("Loading…")`)
	if got := evalJS[string](t, ctx, `[...document.querySelectorAll("main button")].map(b => b.textContent).join("|")`); strings.Contains(got, "Revoke") || strings.Contains(got, "Clear flags") {
		t.Errorf("a Viewer is offered %q", got)
	}
	checkA11y(t, ctx, "agent (viewer)")
	visit(t, ctx, base, "#/probes")
	waitFor(t, ctx, "the probes page", `document.getElementById("probe-no-form") !== null && !!(document.getElementById("probe-sets-empty") || document.getElementById("probe-sets"))`)
	if evalJS[string](t, ctx, `String(document.getElementById("probe-form") === null && document.querySelector("main form") === null)`) != "true" {
		t.Error("a Viewer is offered the probe form")
	}
	checkA11y(t, ctx, "probes (viewer)")

	// A node of the region down: every chart's answer lacks its part,
	// and each chart says so rather than drawing less.
	if err := d.StopNode("n3"); err != nil {
		t.Fatal(err)
	}
	visit(t, ctx, base, agentPage)
	waitWithin(t, ctx, "the charts marked partial, naming the node", `[...document.querySelectorAll("figure.chart")].length >= 4 && [...document.querySelectorAll("figure.chart")].every(f => f.dataset.partial === "true" && f.querySelector(".chart-partial").textContent.includes("Node n3 did not answer"))`, 40*time.Second)
	checkA11y(t, ctx, "agent (viewer, partial)")
	shot(t, ctx, "agent-partial")
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("logout").click(); true`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "logged out", `location.hash === "#/login"`)

	login(t, ctx, base, "admin", secret(t, d.PasswordFile()))
	visit(t, ctx, base, agentPage)
	waitFor(t, ctx, "the grant notice", `document.getElementById("agent-needs-grant") !== null && document.getElementById("agent-revoke") !== null`)
	if got := evalJS[string](t, ctx, `document.getElementById("agent-needs-grant").textContent`); !strings.Contains(got, "break-glass grant") {
		t.Errorf("notice %q", got)
	}
	checkA11y(t, ctx, "agent (region admin)")

	// With a grant (the tenant approves them at once) the region admin
	// reads the charts, once: each read is audited, so the page does not
	// refresh itself and offers to read again.
	owner := api.NewClient(base, "")
	if err := owner.Login(context.Background(), "dev", secret(t, d.DevPasswordFile())); err != nil {
		t.Fatal(err)
	}
	if err := owner.Do(context.Background(), "PUT", "/api/v1/tenants/dev/settings", api.TenantSettings{BreakGlassAutoApprove: true}, nil); err != nil {
		t.Fatal(err)
	}
	// A grant is the requester's own: ask as the account logged in.
	regionAdmin := api.NewClient(base, "")
	if err := regionAdmin.Login(context.Background(), "admin", secret(t, d.PasswordFile())); err != nil {
		t.Fatal(err)
	}
	if err := regionAdmin.Do(context.Background(), "POST", "/api/v1/tenants/dev/breakglass",
		api.BreakGlassRequest{Reason: "ui test: an agent's charts", Duration: "15m"}, nil); err != nil {
		t.Fatal(err)
	}
	visit(t, ctx, base, "#/overview")
	visit(t, ctx, base, agentPage)
	waitFor(t, ctx, "the charts read under the grant", `document.getElementById("agent-needs-grant") === null && document.getElementById("read-again") !== null && document.getElementById("chart-probe-success") !== null && document.getElementById("agent-revoke") !== null`)
	checkA11y(t, ctx, "agent (break-glass)")
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}
