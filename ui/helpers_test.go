package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

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
		case *cdplog.EventEntryAdded:
			// The browser's own errors: a CSP violation (an inline style
			// or script the policy refused), a failed load.
			if e.Entry.Level == cdplog.EntryLevelError {
				problems = append(problems, "browser: "+string(e.Entry.Source)+": "+e.Entry.Text+" "+e.Entry.URL)
			}
		}
	}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{})
		return err
	})); err != nil {
		t.Fatalf("enabling the browser's log: %v", err)
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

// id selects an element by its id.
func id(x string) chromedp.CSS { return chromedp.CSS("#" + x) }

// waitFor fails the test, with the page's HTML and problems, unless expr
// becomes true within 20 s.
func waitFor(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	waitWithin(t, ctx, what, expr, 20*time.Second)
}

// waitWithin is waitFor with a patience of its own: for what waits on a
// page's refresh, or on a region recovering from a drill on a busy
// machine (nothing is timed).
func waitWithin(t *testing.T, ctx context.Context, what, expr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for {
		poll := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(max(time.Until(deadline), 100*time.Millisecond)))
		// A page that navigates (a login redirect) drops the document the
		// poll ran in; poll again in the new one.
		if _, err = chromedp.Run(ctx, poll); err == nil || !strings.Contains(err.Error(), "Cannot find context") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("main").outerHTML`))
		t.Fatalf("%s: not within %v (%v)\n%s", what, within, err, html)
	}
}

// evalJS runs a JavaScript expression in the page, failing the test on
// error.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// secret is a dev region's credential file's content (a password or a
// token).
func secret(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// login logs in through the UI's form (clicking its button, as a person
// does) and waits for the overview.
func login(t *testing.T, ctx context.Context, base, user, password string) {
	t.Helper()
	for i, step := range []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(base + "/#/login"),
		chromedp.WaitVisible(id("username")),
		chromedp.SendKeys(id("username"), user),
		chromedp.SendKeys(id("password"), password),
		chromedp.Click(chromedp.CSS(`form.login button[type="submit"]`)),
	} {
		if err := chromedp.Do(ctx, step); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
			t.Fatalf("log in as %s, step %d: %v\n%s", user, i, err, html)
		}
	}
	// Logged in: the overview route ran with a session (the nav shows).
	waitFor(t, ctx, "logged in as "+user, `location.hash === "#/overview" && !document.getElementById("nav").hidden && document.querySelectorAll("nav a").length > 0`)
}

// visit opens a page of the UI and waits for its heading.
func visit(t *testing.T, ctx context.Context, base, hash string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"+hash), chromedp.WaitVisible(chromedp.CSS("main h1"))); err != nil {
		t.Fatalf("opening %s: %v", hash, err)
	}
}

var axeSource = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile(filepath.Join("node_modules", "axe-core", "axe.min.js"))
	return string(b), err
})

// axeViolation is one rule axe-core found broken, with where.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any `json:"target"`
	} `json:"nodes"`
}

// axeRun runs axe-core (WCAG 2 A and AA rules) on the current page. axe
// is injected by the test over the DevTools protocol; it is not part of
// the UI.
func axeRun(ctx context.Context) ([]axeViolation, error) {
	src, err := axeSource()
	if err != nil {
		return nil, fmt.Errorf("axe-core is not installed in ui/node_modules (make ui installs it): %w", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](src+";true")); err != nil {
		return nil, fmt.Errorf("loading axe-core: %w", err)
	}
	res, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}).then(r => JSON.stringify(r.violations))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		return nil, err
	}
	var vs []axeViolation
	return vs, json.Unmarshal([]byte(res), &vs)
}

// checkA11y fails the test on any serious or critical axe-core violation
// on the current page, and logs the lesser ones.
func checkA11y(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	vs, err := axeRun(ctx)
	if err != nil {
		t.Fatalf("axe on %s: %v", page, err)
	}
	for _, v := range vs {
		where := []string{}
		for _, n := range v.Nodes {
			where = append(where, fmt.Sprint(n.Target...))
		}
		msg := fmt.Sprintf("axe on %s: %s (%s): %s at %s", page, v.ID, v.Impact, v.Help, strings.Join(where, ", "))
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Error(msg)
		} else {
			t.Log(msg)
		}
	}
}

// chromedpClick clicks the element the CSS selector names, once visible.
func chromedpClick(ctx context.Context, sel string) error {
	return chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}
