package gcpolicy

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestDefaultWhenUnset(t *testing.T) {
	t.Setenv("GOGC", "") // restored after the test
	os.Unsetenv("GOGC")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	p, fromEnv := Apply()
	if p != Percent || fromEnv {
		t.Errorf("GOGC unset: Apply() = %d, %v; want %d, false", p, fromEnv, Percent)
	}
	if got := debug.SetGCPercent(100); got != Percent {
		t.Errorf("GOGC unset: the runtime runs with %d after Apply, want %d", got, Percent)
	}
}

func TestEnvironmentWins(t *testing.T) {
	t.Setenv("GOGC", "250") // the runtime read GOGC at start; what it runs with is what counts
	defer debug.SetGCPercent(debug.SetGCPercent(123))
	p, fromEnv := Apply()
	if p != 123 || !fromEnv {
		t.Errorf("GOGC set: Apply() = %d, %v; want the runtime's 123, true", p, fromEnv)
	}
	if got := debug.SetGCPercent(123); got != 123 {
		t.Errorf("GOGC set: Apply changed the runtime's GOGC to %d", got)
	}
}
