package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"

	"github.com/outpost-mesh/outpost/dev"
)

// tamper makes the browser see every answer to a URL matching pattern
// (DevTools' wildcards) rewritten by change, until the returned func
// undoes it.
func tamper(t *testing.T, ctx context.Context, pattern string, change func([]byte) []byte) func() {
	t.Helper()
	ictx, cancel := context.WithCancel(ctx)
	paused := chromedp.Events(ictx, fetch.RequestPaused)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range paused {
			if err != nil {
				return
			}
			body, err := chromedp.Call(ctx, fetch.GetResponseBody, fetch.GetResponseBodyParams{RequestID: ev.RequestID})
			if err != nil {
				t.Errorf("reading an intercepted answer: %v", err)
				continue
			}
			var headers []*fetch.HeaderEntry
			for _, hd := range ev.ResponseHeaders {
				if !strings.EqualFold(hd.Name, "Content-Length") {
					headers = append(headers, hd)
				}
			}
			if _, err := chromedp.Call(ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{RequestID: ev.RequestID, ResponseCode: ev.ResponseStatusCode,
				ResponseHeaders: headers, Body: change(body.Body)}); err != nil {
				t.Errorf("answering an intercepted request: %v", err)
			}
		}
	}()
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
		{URLPattern: pattern, RequestStage: fetch.RequestStageResponse}}}); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := chromedp.Call(ctx, fetch.Disable, cdp.Empty{}); err != nil {
			t.Error(err)
		}
		cancel()
		<-done
	}
}

// renameLastActor rewrites the last record of a page of audit entries:
// its actor becomes "mallory", its leaf hash stays.
func renameLastActor(body []byte) []byte {
	var page struct {
		Entries []struct {
			Seq      int64           `json:"seq"`
			Data     []byte          `json:"data"`
			LeafHash json.RawMessage `json:"leaf_hash"`
		} `json:"entries"`
		Size int64 `json:"size"`
	}
	if json.Unmarshal(body, &page) != nil || len(page.Entries) == 0 {
		return body
	}
	last := &page.Entries[len(page.Entries)-1]
	var rec map[string]any
	if json.Unmarshal(last.Data, &rec) != nil {
		return body
	}
	rec["actor"] = "mallory"
	last.Data, _ = json.Marshal(rec)
	out, _ := json.Marshal(page)
	return out
}

// growCheckpoint claims one record more in a signed checkpoint's size
// line, leaving its signature as it was.
func growCheckpoint(body []byte) []byte {
	lines := strings.SplitN(string(body), "\n", 3)
	n, err := strconv.Atoi(lines[1])
	if len(lines) < 3 || err != nil {
		return body
	}
	return []byte(lines[0] + "\n" + strconv.Itoa(n+1) + "\n" + lines[2])
}

// download clicks sel and returns the file the browser downloaded.
func download(t *testing.T, ctx context.Context, sel string) []byte {
	t.Helper()
	dir := t.TempDir()
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	progress := chromedp.BrowserEvents(dctx, cdpbrowser.DownloadProgress)
	if err := chromedpClick(ctx, sel); err != nil {
		t.Fatal(err)
	}
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("waiting for the download: %v", err)
		}
		switch ev.State {
		case cdpbrowser.DownloadProgressStateCompleted:
			p := ev.FilePath
			if p == "" {
				p = filepath.Join(dir, ev.GUID)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			return b
		case cdpbrowser.DownloadProgressStateCanceled:
			t.Fatal("the download was canceled")
		}
	}
	t.Fatal("no download")
	return nil
}

// TestAuditVerifyInBrowser: a region admin's Audit page lists the region
// log's records and says they verify against the signed checkpoint (the
// tree rebuilt and the Ed25519 signature checked in the browser); a
// filter by action narrows the list; the export downloads the matching
// records as JSON Lines, one line each; a record tampered with on its way
// to the browser is caught as a mismatch naming it, and so is a
// checkpoint that claims more than its signature covers; a tenant's
// Admin sees only the tenant's stream, whose records verify by inclusion
// proofs.
func TestAuditVerifyInBrowser(t *testing.T) {
	ctx, problems := browser(t)
	d, err := dev.Start(context.Background(), dev.Options{HTTP: "127.0.0.1:0", Agents: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	base := d.APIURL()
	login(t, ctx, base, "admin", secret(t, d.PasswordFile()))
	visit(t, ctx, base, "#/audit")
	waitFor(t, ctx, "the region log verified", `document.getElementById("audit-verify")?.dataset.state === "verified"`)
	status := evalJS[string](t, ctx, `document.getElementById("audit-verify").textContent`)
	t.Logf("status: %s", status)
	if !strings.Contains(status, "signed checkpoint") || !strings.Contains(status, "Ed25519") {
		t.Errorf("the status does not say what was verified: %q", status)
	}
	loaded := evalJS[int](t, ctx, `Number(document.getElementById("audit-records").dataset.loaded)`)
	rows := evalJS[int](t, ctx, `document.querySelectorAll("#audit-records tbody tr").length`)
	if loaded < 5 || rows < 5 {
		t.Fatalf("%d records loaded, %d shown", loaded, rows)
	}
	if n := evalJS[int](t, ctx, `[...document.querySelectorAll("#audit-records tbody tr")].filter(tr => !tr.lastElementChild.textContent.includes("in signed tree")).length`); n != 0 {
		t.Errorf("%d records shown are not marked in the signed tree", n)
	}
	checkA11y(t, ctx, "audit")
	shot(t, ctx, "audit")

	// Filter by the newest record's action.
	action := evalJS[string](t, ctx, `document.querySelector("#audit-records tbody tr").dataset.action`)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const s = document.getElementById("audit-action"); s.value = `+strconv.Quote(action)+`; s.dispatchEvent(new Event("change")); return true })()`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the list filtered by "+action, `[...document.querySelectorAll("#audit-records tbody tr")].every(tr => tr.dataset.action === `+strconv.Quote(action)+`)`)
	matching := evalJS[int](t, ctx, `Number(document.getElementById("audit-records").dataset.matching)`)
	if matching < 1 || matching >= loaded {
		t.Errorf("filtering by %s leaves %d of %d records", action, matching, loaded)
	}

	// Export what matches: a blob link with a download name, and the file
	// holds one JSON line per matching record.
	file := download(t, ctx, "#audit-export")
	href := evalJS[string](t, ctx, `document.getElementById("audit-download-link").href + " " + document.getElementById("audit-download-link").getAttribute("download")`)
	if !strings.HasPrefix(href, "blob:") || !strings.HasSuffix(href, ".jsonl") {
		t.Errorf("export link %q", href)
	}
	lines := bytes.Split(bytes.TrimSuffix(file, []byte("\n")), []byte("\n"))
	if len(lines) != matching {
		t.Errorf("the export holds %d lines, %d records match", len(lines), matching)
	}
	for _, l := range lines {
		var x struct {
			Seq    int64          `json:"seq"`
			Data   []byte         `json:"data"`
			Record map[string]any `json:"record"`
		}
		if err := json.Unmarshal(l, &x); err != nil || x.Record["action"] != action || len(x.Data) == 0 {
			t.Errorf("export line %s: %v", l, err)
			break
		}
	}

	// A record changed on its way to the browser does not verify.
	undo := tamper(t, ctx, `*/api/v1/audit\?from=*`, renameLastActor)
	if err := chromedpClick(ctx, "#audit-refresh"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the tampered log caught", `document.getElementById("audit-verify")?.dataset.state === "mismatch"`)
	status = evalJS[string](t, ctx, `document.getElementById("audit-verify").textContent`)
	t.Logf("status: %s", status)
	if !strings.Contains(status, "Mismatch") || !strings.Contains(status, "mallory") || !strings.Contains(status, "leaf hash") {
		t.Errorf("the status does not name the changed record: %q", status)
	}
	undo()
	// Nor does a checkpoint that claims more than its signature covers.
	undo = tamper(t, ctx, "*/api/v1/audit/checkpoint", growCheckpoint)
	if err := chromedpClick(ctx, "#audit-refresh"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the forged checkpoint caught", `document.getElementById("audit-verify")?.dataset.state === "mismatch"`)
	status = evalJS[string](t, ctx, `document.getElementById("audit-verify").textContent`)
	t.Logf("status: %s", status)
	if !strings.Contains(status, "signature") || !strings.Contains(status, "not valid") {
		t.Errorf("the status does not say the signature failed: %q", status)
	}
	undo()
	if err := chromedpClick(ctx, "#audit-refresh"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the log verified again", `document.getElementById("audit-verify")?.dataset.state === "verified"`)
	if p := problems(); len(p) > 0 {
		t.Errorf("as admin: console errors or exceptions: %q", p)
	}

	// A tenant's Admin reads the tenant's stream only, and it verifies.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("logout").click(); true`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "logged out", `location.hash === "#/login"`)
	login(t, ctx, base, "dev", secret(t, d.DevPasswordFile()))
	visit(t, ctx, base, "#/audit")
	waitFor(t, ctx, "the Audit page", `document.querySelectorAll("#audit-stream option").length > 0`)
	if opts := evalJS[string](t, ctx, `[...document.querySelectorAll("#audit-stream option")].map(o => o.value).join(" ")`); opts != "tenant:dev tenant-provider:dev" {
		t.Errorf("a tenant Admin is offered the streams %q", opts)
	}
	waitFor(t, ctx, "the tenant's stream verified", `document.getElementById("audit-verify")?.dataset.state === "verified"`)
	status = evalJS[string](t, ctx, `document.getElementById("audit-verify").textContent`)
	t.Logf("status: %s", status)
	tenantLoaded := evalJS[int](t, ctx, `Number(document.getElementById("audit-records").dataset.loaded)`)
	if tenantLoaded < 1 || tenantLoaded >= loaded {
		t.Errorf("the tenant's stream holds %d records, the region log %d", tenantLoaded, loaded)
	}
	waitFor(t, ctx, "every record shown proven", `[...document.querySelectorAll("#audit-records tbody tr")].every(tr => tr.lastElementChild.textContent.includes("in signed tree"))`)
	checkA11y(t, ctx, "audit (tenant admin)")
	shot(t, ctx, "audit-tenant")
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}
