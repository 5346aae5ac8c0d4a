package main

import (
	"bytes"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the benchmark briefly against a freshly built outpost
// binary, so a change that breaks it (an enrollment limit that refuses a
// burst of 64 from one address, a changed route) fails `make test` rather
// than `make bench` weeks later.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds outpost and starts a dev region; run without -short")
	}
	bin := filepath.Join(t.TempDir(), "outpost")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/outpost-mesh/outpost/cmd/outpost").CombinedOutput(); err != nil {
		t.Fatalf("building outpost: %v\n%s", err, out)
	}
	var out bytes.Buffer
	// 128 agents, 64 enrolling at a time from one address: the burst the
	// enrollment limiter refused.
	if err := run(128, 2, 64, bin, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"| agents connected to one node | 128 |", "| node Go heap + stacks per agent |", "| full fan-out"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())
}

// TestBannerURL: the address is found whatever the banner calls the
// line, and output without one fails within the limit instead of hanging.
func TestBannerURL(t *testing.T) {
	u, err := bannerURL(strings.NewReader("  node n1 up: API http://127.0.0.1:1\nOutpost dev region is up.\n  API and UI:   http://127.0.0.1:4646   (open it)\n"), time.Second)
	if err != nil || u != "http://127.0.0.1:4646" {
		t.Fatalf("got %q, %v", u, err)
	}
	if _, err := bannerURL(strings.NewReader("no address here\n"), time.Second); err == nil {
		t.Fatal("output without an address was accepted")
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	if _, err := bannerURL(pr, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "within") {
		t.Fatalf("silent output: %v, want a timeout", err)
	}
}
