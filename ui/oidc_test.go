package ui_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/outpost-mesh/outpost/dev"
	"github.com/outpost-mesh/outpost/internal/freeport"
	"github.com/outpost-mesh/outpost/internal/oidctest"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/node/keys"
)

// TestOIDCLoginInBrowser: the login page's single sign-on link takes a
// real browser through a real OpenID provider (PKCE, code exchange, signed
// ID token) and back into the UI, logged in with the role its group maps
// to: here a Viewer of the dev tenant, who sees no Admin page.
func TestOIDCLoginInBrowser(t *testing.T) {
	ctx, problems := browser(t)
	idp := oidctest.New(t)
	addrs, err := freeport.Addrs("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	callback := "http://" + addrs[0] + "/api/v1/auth/oidc/callback"
	idp.AddClient("outpost", "client-secret-1", callback)
	idp.SetUser(oidctest.User{Subject: "sub-7", Email: "vera@example.test", Groups: []string{"dev-viewers"}})
	secretDir := t.TempDir()
	d, err := dev.Start(context.Background(), dev.Options{HTTP: addrs[0], Agents: 1,
		NodeConfig: func(cfg *node.Config, kp *keys.Protector) error {
			f := filepath.Join(secretDir, cfg.NodeID+".oidc-secret")
			if err := keys.WriteFile(kp, f, node.PurposeOIDCSecret, []byte("client-secret-1")); err != nil {
				return err
			}
			cfg.Auth.OIDC = &auth.OIDCConfig{Issuer: idp.Issuer(), ClientID: "outpost", ClientSecretFile: f, RedirectURL: callback,
				Groups: []auth.GroupMapping{{Group: "dev-viewers", Tenant: dev.DevTenant, Role: "viewer"}}}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	base := d.APIURL()
	visit(t, ctx, base, "#/login")
	if err := chromedpClick(ctx, "#oidc-login"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "back in the UI, logged in through OIDC", `location.hash === "#/overview" && document.getElementById("who").textContent.startsWith("oidc:")`)
	waitFor(t, ctx, "the dev tenant with the mapped role", `document.getElementById("main").textContent.includes("viewer")`)
	waitFor(t, ctx, "no Admin page for a viewer", `document.querySelectorAll('nav a[href="#/admin"]').length === 0 && document.querySelectorAll('nav a[href="#/agents"]').length === 1`)
	checkA11y(t, ctx, "overview (OIDC viewer)")
	if p := problems(); len(p) > 0 {
		t.Errorf("console errors or exceptions: %q", p)
	}
}
