package ui_test

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/dev"
)

// TestFederatedRowsChippedInBrowser: two federated dev regions; the dev
// tenant's admin in us-east sees eu-west's agents in the global view,
// each row chipped with its peer's name, and the answer marked complete;
// with eu-west stopped the page says the answer is partial and names the
// peer that did not answer, instead of silently showing fewer rows.
func TestFederatedRowsChippedInBrowser(t *testing.T) {
	ctx, problems := browser(t)
	f, err := dev.StartFederation(context.Background(), dev.Options{Regions: 2, HTTP: "127.0.0.1:0", Agents: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Stop(context.Background()) })
	if err := f.WaitGlobal(context.Background(), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	us := f.Regions[0]
	login(t, ctx, us.APIURL(), "dev", secret(t, us.DevPasswordFile()))
	visit(t, ctx, us.APIURL(), "#/federation")
	waitFor(t, ctx, "a row from eu-west chipped with its peer", `[...document.querySelectorAll("table.global-agents tbody tr")].some(r => r.textContent.includes("peer eu-west") && r.textContent.includes("eu-west"))`)
	waitFor(t, ctx, "local rows chipped local", `[...document.querySelectorAll("table.global-agents tbody tr td:first-child")].some(c => c.textContent === "local")`)
	waitFor(t, ctx, "the answer marked complete", `document.getElementById("main").textContent.includes("every peer answered")`)
	checkA11y(t, ctx, "federation (tenant admin)")
	shot(t, ctx, "federation")

	if err := f.Regions[1].Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	visit(t, ctx, us.APIURL(), "#/overview")
	visit(t, ctx, us.APIURL(), "#/federation")
	waitFor(t, ctx, "a partial answer with eu-west down", `document.getElementById("main").textContent.includes("Partial answer")`)
	waitFor(t, ctx, "eu-west's status not ok", `[...document.querySelectorAll("main table tbody tr")].some(r => r.cells[0].textContent === "eu-west" && !/^ok/.test(r.cells[1].textContent))`)
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}
