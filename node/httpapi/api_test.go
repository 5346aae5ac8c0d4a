package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

// TestRouteTableRoles walks the route table: every route declares a role;
// only liveness, self-metrics, the login entry points and agent
// enrollment (with a bootstrap token) are public; no
// state-changing route is public, open to any authenticated caller other
// than acting on itself, or reachable with a tenant Viewer role. The
// live check of the same property (a Viewer's token against every route)
// is TestViewerCannotChangeState in node.
func TestRouteTableRoles(t *testing.T) {
	public := map[string]bool{
		"GET /api/v1/health": true, "GET /metrics": true, "POST /api/v1/login": true,
		"GET /api/v1/auth/oidc/login": true, "GET /api/v1/auth/oidc/callback": true,
		// Agent enrollment: the bootstrap token in the body is the credential.
		"POST /api/v1/agents/enroll": true,
		// The web UI's static files: no data; what it shows comes from
		// the API under the caller's session.
		"GET /{$}": true, "GET /ui/{file...}": true,
	}
	// Self-service routes change only the caller's own state: its session,
	// or its answer to an invitation addressed to it (the {tenant} in
	// their path names the inviting tenant, not one the caller is in).
	selfService := map[string]bool{"POST /api/v1/logout": true,
		"POST /api/v1/invitations/{tenant}/accept": true, "POST /api/v1/invitations/{tenant}/decline": true}
	for _, rt := range Routes(true) {
		name := rt.Method + " " + rt.Pattern
		if rt.Role < Public || rt.Role > TenantAdmin {
			t.Errorf("route %s has no declared role", name)
		}
		if rt.Role == Public && !public[name] {
			t.Errorf("route %s is public; only %v may be", name, public)
		}
		changes := rt.Method != http.MethodGet && !ReadOnlyPOST(rt.Pattern)
		switch {
		case changes && rt.Role == Public && name != "POST /api/v1/login" && name != "POST /api/v1/agents/enroll":
			t.Errorf("state-changing route %s is public", name)
		case changes && rt.Role == Authenticated && !selfService[name]:
			t.Errorf("state-changing route %s is open to any authenticated caller", name)
		case changes && rt.Role == TenantViewer:
			t.Errorf("state-changing route %s is reachable by a tenant Viewer", name)
		}
		if strings.Contains(rt.Pattern, "{tenant}") != (rt.Role >= TenantViewer) && name != "POST /api/v1/tenants/{tenant}/breakglass" && !selfService[name] {
			t.Errorf("route %s: tenant routes (and only they) take a tenant role", name)
		}
	}
	for _, rt := range Routes(false) {
		if strings.Contains(rt.Pattern, "/dev/") {
			t.Errorf("dev route %s exists outside dev mode", rt.Pattern)
		}
	}
}
