package export

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps: the package, linked into the privileged agent, brings in no
// test code, no server code and no gRPC.
func TestDeps(t *testing.T) {
	const mod = "github.com/outpost-mesh/outpost/"
	forbidden := map[string]string{
		"testing":                       "the agent links no test code",
		"net/http/httptest":             "the agent links no test code",
		"google.golang.org/grpc":        "OTLP goes over HTTP; gRPC would add its weight to every host (response.go decodes the answer with protowire)",
		"github.com/grpc-ecosystem/":    "gRPC gateway, brought by the generated OTLP collector package",
		mod + "node":                    "the agent links no server code",
		mod + "storage":                 "the agent links no server code",
		"go.opentelemetry.io/collector": "pdata brings gRPC; the batches are opaque bytes here",
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for p, why := range forbidden {
			if dep == p || strings.HasPrefix(dep, strings.TrimSuffix(p, "/")+"/") {
				t.Errorf("agent/export links %s: %s", dep, why)
			}
		}
	}
}
