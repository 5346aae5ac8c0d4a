package bpf

import (
	"os"
	"syscall"
	"testing"
)

// TestMain mounts tracefs when it is missing and this is root (the
// tracepoints are found there), as CI's fresh machines may need.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		if _, err := os.Stat("/sys/kernel/tracing/events"); err != nil {
			_ = syscall.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, "")
		}
	}
	os.Exit(m.Run())
}
