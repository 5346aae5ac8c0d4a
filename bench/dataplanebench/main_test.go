package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/leakcheck"
)

// TestMain runs the load generator when the benchmark re-executes the
// test binary as its child (startLoad), and the tests otherwise.
func TestMain(m *testing.M) {
	if p := os.Getenv(loadEnv); p != "" {
		os.Exit(loadMain(p))
	}
	leakcheck.Main(m)
}

func TestParseFlags(t *testing.T) {
	def := defaultConfig()
	sh := shortConfig(def)
	tests := []struct {
		name    string
		args    []string
		check   func(config) bool
		wantErr string
	}{
		{"defaults", nil, func(c config) bool {
			return c.duration == def.duration && len(c.rates) == 4 && len(c.procfsPolls) == 2 && c.rampSteps == def.rampSteps
		}, ""},
		{"short", []string{"-short"}, func(c config) bool {
			return c.duration == sh.duration && len(c.rates) == len(sh.rates) && c.procfsRates == 1 && c.rampStep == sh.rampStep
		}, ""},
		{"short keeps explicit flags", []string{"-short", "-duration", "7s", "-rates", "20_000"}, func(c config) bool {
			return c.duration == 7*time.Second && len(c.rates) == 1 && c.rates[0] == 20_000 && c.rampStep == sh.rampStep
		}, ""},
		{"no procfs under load", []string{"-procfs-polls", ""}, func(c config) bool { return len(c.procfsPolls) == 0 }, ""},
		{"bad rate", []string{"-rates", "10k"}, nil, "-rates"},
		{"zero rate", []string{"-rates", "0"}, nil, "-rates"},
		{"poll out of range", []string{"-procfs-polls", "10ms"}, nil, "-procfs-polls"},
		{"short window", []string{"-duration", "100ms"}, nil, "-duration"},
		{"stray argument", []string{"extra"}, nil, "unexpected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("dataplanebench", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c, err := parseFlags(fs, tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseFlags(%q) = %v, want an error naming %s", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tc.args, err)
			}
			if !tc.check(c) {
				t.Fatalf("parseFlags(%q) = %+v", tc.args, c)
			}
		})
	}
}

func TestParseProgID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint32
		err  bool
	}{
		{"fdinfo", "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t5\nprog_jited:\t1\nprog_tag:\tb8d1f3c5a0a5e1f2\nmemlock:\t4096\nprog_id:\t123\nrun_time_ns:\t0\nrun_cnt:\t0\n", 123, false},
		{"missing", "pos:\t0\nflags:\t02\n", 0, true},
		{"garbage id", "prog_id:\tx\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProgID(strings.NewReader(tc.in))
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("parseProgID = %d, %v; want %d, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestCount(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 123456.6: "123,457", -1234: "-1,234", 1e6: "1,000,000"} {
		if got := count(in); got != want {
			t.Errorf("count(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestPacerNeverRunsAhead: a pacer lets no more operations through than
// its rate allows (it may fall behind on a busy machine, never ahead).
func TestPacerNeverRunsAhead(t *testing.T) {
	const rate = 2000.0
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var p pacer
	start := time.Now()
	n := 0
	for p.wait(ctx, func() (uint64, float64) { return 1, rate }) {
		n++
	}
	if limit := rate*time.Since(start).Seconds() + 1; float64(n) > limit {
		t.Fatalf("%d operations in %v, more than %.0f", n, time.Since(start), limit)
	}
	if n < 100 {
		t.Fatalf("only %d operations in %v at %v/s", n, time.Since(start), rate)
	}
}

// TestLoadGenerator drives the generator in this process through its
// command protocol: round trips and new connections at the asked rates,
// counted in its reports.
func TestLoadGenerator(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- runLoad(inR, outW, loadParams{Conns: 4, Msg: 32}); _ = outW.Close() }()
	l := &load{in: inW, out: bufio.NewReader(outR)}
	if err := l.set(2000, 100); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	c, err := l.report()
	if err != nil {
		t.Fatal(err)
	}
	_ = inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.ops < 500 || c.ops > 2100 || c.conns < 25 || c.conns > 105 || c.errs != 0 {
		t.Fatalf("after 1s at 2000 round trips/s and 100 connections/s: %+v", c)
	}
}

// TestSmoke runs the whole benchmark briefly, so a change that breaks it
// (the plane's programs renamed, a mode that no longer starts) fails
// `make test` rather than `make bench`.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("loads eBPF and generates load for about 20s; run without -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the benchmark loads eBPF programs and reads their run-time statistics")
	}
	c := defaultConfig()
	c.duration, c.rates, c.churn = time.Second, []float64{5000}, 50
	c.procfsPolls, c.rampStep, c.rampSteps = []time.Duration{time.Second}, time.Second, 2
	var out strings.Builder
	if err := run(context.Background(), c, &out, io.Discard); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"### eBPF mode: CPU per event rate", "| 5,000 |", "per 10k events/s", "### Highest event rate without loss",
		"### The same load observed in procfs mode", "procfs (poll 1s)", "### Idle (no load of ours)", "on_send"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	t.Log(out.String())
}
