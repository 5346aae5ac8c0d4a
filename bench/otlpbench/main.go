// Command otlpbench measures the node's telemetry ingest: OTLP/HTTP
// protobuf exports through the receiver (decode, tenant checks,
// Prometheus's OTLP translation, the series budget) into the TSDB, and
// reports samples per second per core of CPU used and the heap per
// active series. With -prometheus it sends the same samples to Debian's
// Prometheus (started with --web.enable-remote-write-receiver) through
// remote write, Prometheus's own ingest path, and prints the ratio.
//
//	go run ./bench/otlpbench -series 10000 -rounds 30
//	go run ./bench/otlpbench -series 10000 -rounds 30 -prometheus /usr/bin/prometheus
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/outpost-mesh/outpost/node/otlp"
	"github.com/outpost-mesh/outpost/storage/telemetry"
)

func main() {
	series := flag.Int("series", 10000, "active series")
	rounds := flag.Int("rounds", 30, "samples per series (one export round each)")
	perReq := flag.Int("per-request", 1000, "data points per export")
	prom := flag.String("prometheus", "", "a prometheus binary to compare with (empty: skip)")
	flag.Parse()
	if err := run(*series, *rounds, *perReq, *prom, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "otlpbench:", err)
		os.Exit(1)
	}
}

// cpu is this process's user+system CPU time.
func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pidCPU is another process's user+system CPU time (/proc/PID/stat).
func pidCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// otlpRequests builds one round's exports: every series one gauge point
// at t, perReq points an export.
func otlpRequests(series, perReq int, t time.Time) [][]byte {
	var out [][]byte
	for first := 0; first < series; first += perReq {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "outpost-agent")
		ms := rm.ScopeMetrics().AppendEmpty().Metrics()
		for i := first; i < min(first+perReq, series); i++ {
			m := ms.AppendEmpty()
			m.SetName("tcp.rtt")
			m.SetUnit("s")
			dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
			dp.Attributes().PutStr("dst", "10.0."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250))
			dp.Attributes().PutInt("dport", int64(443+i%7))
			dp.SetTimestamp(pcommon.NewTimestampFromTime(t))
			dp.SetDoubleValue(float64(i%100) / 1000)
		}
		b, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		out = append(out, b)
	}
	return out
}

// remoteWriteRequests is the same round as Prometheus remote-write v1
// requests (snappy), with the labels Outpost would store.
func remoteWriteRequests(series, perReq int, t time.Time) [][]byte {
	var out [][]byte
	for first := 0; first < series; first += perReq {
		var wr prompb.WriteRequest
		for i := first; i < min(first+perReq, series); i++ {
			wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
				Labels: []prompb.Label{{Name: "__name__", Value: "tcp_rtt_seconds"}, {Name: "agent", Value: "a1"},
					{Name: "dport", Value: strconv.Itoa(443 + i%7)}, {Name: "dst", Value: "10.0." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250)},
					{Name: "host", Value: "h1"}, {Name: "job", Value: "outpost-agent"}, {Name: "tenant", Value: "t1"}},
				Samples: []prompb.Sample{{Value: float64(i%100) / 1000, Timestamp: t.UnixMilli()}},
			})
		}
		b, _ := wr.Marshal()
		out = append(out, snappy.Encode(nil, b))
	}
	return out
}

func run(series, rounds, perReq int, prom string, w io.Writer) error {
	dir, err := os.MkdirTemp("", "otlpbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := telemetry.Open(dir, telemetry.Config{MaxSeriesPerAgent: series * 2, MaxSeriesPerTenant: series * 2}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return err
	}
	defer db.Close()
	rc := otlp.New(otlp.Config{MaxBodyBytes: 64 << 20}, db, nil, nil)
	sender := otlp.Sender{TenantID: "t1", TenantName: "bench", AgentID: "a1", Host: "h1"}
	start := time.Now().Add(-time.Duration(rounds) * 15 * time.Second)
	fmt.Fprintf(w, "ingesting %d series x %d rounds (%d points per export) through the OTLP receiver...\n", series, rounds, perReq)

	var runtimeMem runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&runtimeMem)
	heap0 := runtimeMem.HeapInuse
	var busy time.Duration
	var wall time.Duration
	for r := 0; r < rounds; r++ {
		reqs := otlpRequests(series, perReq, start.Add(time.Duration(r)*15*time.Second))
		c0, t0 := cpu(), time.Now()
		for _, body := range reqs {
			req := httptest.NewRequest("POST", otlp.Path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/x-protobuf")
			rec := httptest.NewRecorder()
			rc.Serve(rec, req, sender)
			if rec.Code != 200 {
				return fmt.Errorf("export refused: %d %s", rec.Code, rec.Body)
			}
		}
		busy += cpu() - c0
		wall += time.Since(t0)
		if r%10 == 9 {
			fmt.Fprintf(w, "  round %d/%d\n", r+1, rounds)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&runtimeMem)
	samples := float64(series * rounds)
	perCore := samples / busy.Seconds()
	fmt.Fprintf(w, "outpost OTLP ingest: %.0f samples/s per core of CPU (%.0f samples/s wall on this machine)\n", perCore, samples/wall.Seconds())
	fmt.Fprintf(w, "outpost heap per active series: %.0f bytes (%d series)\n", float64(int64(runtimeMem.HeapInuse)-int64(heap0))/float64(series), series)
	if prom == "" {
		return nil
	}
	promPerCore, err := promIngest(prom, series, rounds, perReq, start, w)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "ratio outpost/prometheus, samples per CPU-second: %.2fx\n", perCore/promPerCore)
	return nil
}

// promIngest starts prometheus with the remote-write receiver and sends
// the same samples; it returns Prometheus's samples per CPU-second.
func promIngest(bin string, series, rounds, perReq int, start time.Time, w io.Writer) (float64, error) {
	dir, err := os.MkdirTemp("", "otlpbench-prom-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := dir + "/prometheus.yml"
	if err := os.WriteFile(cfg, []byte("global: {}\n"), 0o600); err != nil {
		return 0, err
	}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+dir+"/data", "--web.listen-address="+addr,
		"--web.enable-remote-write-receiver", "--log.level=error")
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	url := "http://" + addr + "/api/v1/write"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if ctx.Err() != nil {
			return 0, errors.New("prometheus did not become ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(w, "sending the same samples to %s through remote write...\n", bin)
	var busy time.Duration
	for r := 0; r < rounds; r++ {
		reqs := remoteWriteRequests(series, perReq, start.Add(time.Duration(r)*15*time.Second))
		c0, err := pidCPU(cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		for _, body := range reqs {
			req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/x-protobuf")
			req.Header.Set("Content-Encoding", "snappy")
			req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return 0, err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return 0, fmt.Errorf("prometheus refused a write: %d %s", resp.StatusCode, b)
			}
		}
		c1, _ := pidCPU(cmd.Process.Pid)
		busy += c1 - c0
	}
	perCore := float64(series*rounds) / busy.Seconds()
	fmt.Fprintf(w, "prometheus remote-write ingest: %.0f samples/s per core of CPU\n", perCore)
	return perCore, nil
}
