package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/outpost-mesh/outpost/dev"
	"github.com/outpost-mesh/outpost/ui"
)

// browser starts Debian's chromium headless (skipping, with the reason,
// where it or the built UI is missing) and collects the page's console
// errors and uncaught exceptions.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium; .ci/run installs it): browser tests need it")
	}
	if !ui.Built() {
		t.Skip("the UI is not built into this test binary: run `make ui` (make test does) before go test ./ui/")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	var mu sync.Mutex
	var problems []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value))
				}
				problems = append(problems, "console.error: "+strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text+" "+fmt.Sprint(e.ExceptionDetails.Exception))
		}
	}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), problems...) }
}

// shot saves a screenshot of the page as a test artifact: in
// $OUTPOST_ARTIFACTS when set (CI keeps it), else in the test's temp dir.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("OUTPOST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

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
	pw, err := os.ReadFile(d.PasswordFile())
	if err != nil {
		t.Fatal(err)
	}
	id := func(x string) chromedp.CSS { return chromedp.CSS("#" + x) }
	until := func(expr string) chromedp.Action[bool] {
		return chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second))
	}
	for i, step := range []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(base + "/#/login"),
		chromedp.WaitVisible(id("username")),
		chromedp.SendKeys(id("username"), "admin"),
		chromedp.SendKeys(id("password"), strings.TrimSpace(string(pw))),
		chromedp.Click(chromedp.CSS(`form.login button[type="submit"]`)),
		chromedp.WaitVisible(id("stat-nodes")),
	} {
		if err := chromedp.Do(ctx, step); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
			t.Fatalf("log in, step %d: %v (problems %v)\n%s", i, err, problems(), html)
		}
	}
	nodesAre := func(want string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, until(`document.getElementById("stat-nodes").textContent === "`+want+`"`)); err != nil {
			now, _ := chromedp.Run(ctx, chromedp.Text(id("stat-nodes")))
			t.Fatalf("the overview shows %q nodes up, want %q: %v", now, want, err)
		}
	}
	nodesAre("3 / 3")
	shot(t, ctx, "overview")
	// Stop a node that does not answer this page's API calls (n1 does):
	// the count follows without a reload.
	if err := d.StopNode("n3"); err != nil {
		t.Fatal(err)
	}
	nodesAre("2 / 3")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/agents"), chromedp.WaitVisible(id("agent-search"))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, until(`document.querySelectorAll("main tbody tr").length >= 1`)); err != nil {
		t.Fatalf("agents page has no rows: %v", err)
	}
	shot(t, ctx, "agents")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/federation"), chromedp.WaitVisible(chromedp.CSS("main h1"))); err != nil {
		t.Fatal(err)
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}
