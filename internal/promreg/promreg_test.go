package promreg

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestAllOrNone: a registration that fails part-way leaves nothing of the
// component registered, and says which component it was.
func TestAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "a"})
	if err := reg.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "b_total", Help: "b"})); err != nil {
		t.Fatal(err)
	}
	b := prometheus.NewCounter(prometheus.CounterOpts{Name: "b_total", Help: "b"})
	err := Register(reg, "test", a, b)
	if err == nil || !strings.Contains(err.Error(), "registering the test metrics") {
		t.Fatalf("got %v, want the component named", err)
	}
	if err := reg.Register(a); err != nil {
		t.Fatalf("a stayed registered after the failure: %v", err)
	}
}
