package main

import (
	"context"
	"flag"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// small is a run small enough for the suite: every part, a few views.
func small() config {
	c := defaultConfig()
	c.agents, c.regions, c.views = 200, []int{2, 3}, 3
	c.losses, c.lossViews, c.delay, c.wireViews = []int{0, 5}, 3, 4*time.Millisecond, 2
	c.conc, c.duration = []int{1, 4}, 200*time.Millisecond
	return c
}

// TestFedBenchLoopback: the loopback and throughput parts run end to end
// over both transports, every view complete, and print their figures.
func TestFedBenchLoopback(t *testing.T) {
	c := small()
	c.netns = false
	var out strings.Builder
	if err := run(context.Background(), c, &out, io.Discard); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, w := range []string{
		"| 2 | agents (400 rows) | HTTP/3 (QUIC) |", "| 2 | agents (400 rows) | HTTP/2 + TLS (TCP) |", "| 2 | agents (400 rows) | HTTP/3 ÷ HTTP/2 |",
		"| 3 | agents (600 rows) | HTTP/3 (QUIC) |", "| 3 | query (24 samples) | HTTP/2 + TLS (TCP) |",
		"Aim, a 2-region global agents view under 10 ms", "Skipped: -netns=false.",
		"| HTTP/3 (QUIC) | 4 |", "| HTTP/2 + TLS (TCP) | 4 |",
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	// Every loopback row: no failed view, and one connection per peer (3
	// regions: 2), over the transport under test.
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "| 2 |") && !strings.Contains(l, "÷") && !strings.HasSuffix(l, "| 0 | 1 |") ||
			strings.HasPrefix(l, "| 3 |") && !strings.Contains(l, "÷") && !strings.HasSuffix(l, "| 0 | 2 |") {
			t.Errorf("a view failed, or connections were not kept warm: %s", l)
		}
	}
	t.Log(out.String())
}

// TestFedBenchLossyLink: as root with ip and nft, the lossy-link part
// runs over the veth and the delaying link and removes its namespaces.
func TestFedBenchLossyLink(t *testing.T) {
	if err := labAvailable(); err != nil {
		t.Skip(err)
	}
	before := namespaces(t)
	c := small()
	c.regions, c.conc = []int{2}, nil
	var out strings.Builder
	if err := run(context.Background(), c, &out, io.Discard); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	want := []string{"| veth |", "| 5% | HTTP/3 (QUIC) |", "| 5% | HTTP/2 + TLS (TCP) |"}
	if wireAvailable() == nil {
		want = append(want, "| TUN wire (+2ms each way) |")
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	if after := namespaces(t); after != before {
		t.Errorf("namespaces left behind: %d of ours before the run, %d after", before, after)
	}
	t.Log(out.String())
}

func namespaces(t *testing.T) int {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(out), "ofb")
}

// TestFlags: lists parse, and what cannot be measured is refused naming
// its flag.
func TestFlags(t *testing.T) {
	c, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), []string{"-regions", "2, 3", "-loss", "", "-conc", "1,2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.regions) != 2 || c.regions[1] != 3 || len(c.losses) != 0 || len(c.conc) != 2 {
		t.Fatalf("parsed %+v", c)
	}
	for _, args := range [][]string{{"-regions", "1"}, {"-loss", "60"}, {"-conc", "x"}, {"-views", "0"}} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		if _, err := parseFlags(fs, args); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "-")) {
			t.Errorf("%q: %v, want a refusal naming the flag", args, err)
		}
	}
}
