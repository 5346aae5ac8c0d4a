package storage

import (
	"os"
	"strings"
)

// bootID names this boot of the machine: a marker written in another boot
// means the page cache the file's unsynced commits were in is gone.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
