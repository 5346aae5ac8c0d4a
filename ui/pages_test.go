package ui_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/dev"
)

// stateChanging matches the words of controls that change state. A
// Viewer must see none of them on any page (the server refuses them
// anyway; drawing them would be a lie about what the role may do).
var stateChanging = regexp.MustCompile(`(?i)\b(revoke|clear flags|delete|remove|create|add|approve|rotate|isolate|heal|transfer|stop|run drill|save|define|dispatch|request|unlock|invite|change role)\b`)

// navLinks returns the hrefs of the nav the page drew.
func navLinks(t *testing.T, ctx context.Context) []string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("nav a")].map(a => a.getAttribute("href")).join(" ")`))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(s)
}

// settle waits until the page's content is drawn (no "Loading…" left, a
// heading) and the network has been quiet for a moment.
func settle(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	waitFor(t, ctx, page+" drawn", `document.querySelector("main h1") !== null && !document.getElementById("main").textContent.includes("Loading…")`)
	time.Sleep(700 * time.Millisecond)
}

// devViewer makes account vic a Viewer of the dev tenant (invited by the
// tenant's admin, accepted by vic) and returns vic's password.
func devViewer(t *testing.T, d *dev.Region) string {
	t.Helper()
	ctx := context.Background()
	tok, err := os.ReadFile(d.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	admin := api.NewClient(d.APIURL(), strings.TrimSpace(string(tok)))
	var u api.User
	if err := admin.Do(ctx, "POST", "/api/v1/users", api.UserCreate{Name: "vic"}, &u); err != nil {
		t.Fatal(err)
	}
	devPW, err := os.ReadFile(d.DevPasswordFile())
	if err != nil {
		t.Fatal(err)
	}
	owner := api.NewClient(d.APIURL(), "")
	if err := owner.Login(ctx, "dev", strings.TrimSpace(string(devPW))); err != nil {
		t.Fatal(err)
	}
	if err := owner.Do(ctx, "PUT", "/api/v1/tenants/dev/members/vic", map[string]string{"role": "viewer"}, nil); err != nil {
		t.Fatal(err)
	}
	vic := api.NewClient(d.APIURL(), "")
	if err := vic.Login(ctx, "vic", u.Password); err != nil {
		t.Fatal(err)
	}
	if err := vic.Do(ctx, "POST", "/api/v1/invitations/dev/accept", nil, nil); err != nil {
		t.Fatal(err)
	}
	return u.Password
}

// TestEveryPageByRole visits every page the nav offers, as a tenant
// Viewer and as the region admin: no console error or CSP refusal, no
// serious accessibility violation, no control that changes state for the
// Viewer, nothing wider than a laptop screen (1366×768), and the dark
// theme followed when the system asks for it. It logs how long each page
// takes to draw from a fresh load (BENCHMARKS.md; not asserted).
func TestEveryPageByRole(t *testing.T) {
	ctx, problems := browser(t)
	d, err := dev.Start(context.Background(), dev.Options{HTTP: "127.0.0.1:0", Agents: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	base := d.APIURL()
	vicPW := devViewer(t, d)
	adminPW, err := os.ReadFile(d.PasswordFile())
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 1366, Height: 768, DeviceScaleFactor: 1})
		return err
	})); err != nil {
		t.Fatal(err)
	}

	for _, who := range []struct{ user, password string }{{"vic", vicPW}, {"admin", strings.TrimSpace(string(adminPW))}} {
		login(t, ctx, base, who.user, who.password)
		links := navLinks(t, ctx)
		if len(links) < 3 {
			t.Fatalf("%s sees only %v in the nav", who.user, links)
		}
		for _, href := range links {
			page := who.user + " " + href
			// A fresh load, timed from the navigation's start to the
			// page drawn.
			if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"+href), chromedp.Reload()); err != nil {
				t.Fatal(err)
			}
			ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`new Promise(res => { const f = () => (document.querySelector("main h1") && !document.getElementById("main").textContent.includes("Loading…")) ? res(performance.now()) : requestAnimationFrame(f); f(); })`, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatalf("%s: %v", page, err)
			}
			t.Logf("%s: drawn %.0f ms after the navigation started (a fresh load)", page, ms)
			settle(t, ctx, page)
			checkA11y(t, ctx, page)
			wide, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.scrollWidth > window.innerWidth ? document.documentElement.scrollWidth + " > " + window.innerWidth : ""`))
			if wide != "" {
				t.Errorf("%s is wider than a 1366 px laptop screen: %s", page, wide)
			}
			if who.user == "vic" {
				controls, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("main button, main input[type=submit]")].map(b => (b.textContent || b.value) + " " + (b.getAttribute("aria-label") || "")).join("|")`))
				for _, c := range strings.Split(controls, "|") {
					if stateChanging.MatchString(c) {
						t.Errorf("%s: a Viewer is offered %q", page, strings.TrimSpace(c))
					}
				}
				if href == "#/admin" || href == "#/drills" {
					t.Errorf("a Viewer's nav offers %s", href)
				}
			}
		}
		if p := problems(); len(p) > 0 {
			t.Errorf("as %s: console errors or exceptions: %q", who.user, p)
		}
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("logout").click(); true`)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "logged out", `location.hash === "#/login"`)
	}

	// The dark theme follows the system's preference.
	login(t, ctx, base, "admin", strings.TrimSpace(string(adminPW)))
	bg := func() string {
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
		return s
	}
	light := bg()
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	if dark := bg(); dark == light || dark != "rgb(13, 17, 23)" {
		t.Errorf("background %q in the dark theme, %q in the light one", dark, light)
	}
	settle(t, ctx, "overview (dark)")
	checkA11y(t, ctx, "overview (dark)")
	shot(t, ctx, "overview-dark")
}
