package remotewrite

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/outpost-mesh/outpost/internal/freeport"
	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// promServer is Debian's prometheus with its remote-write receiver.
type promServer struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func startPrometheus(t *testing.T, bin, dir, addr string) *promServer {
	t.Helper()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &promServer{}
	p.cmd = exec.Command(bin, "--web.enable-remote-write-receiver", "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--config.file="+cfg, "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(t) })
	waitFor(t, "prometheus to be ready", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

func (p *promServer) stop(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	if t.Failed() {
		t.Logf("prometheus output:\n%s", p.out.String())
	}
}

// queryByBatch runs an instant query and returns its value per batch
// label.
func queryByBatch(t *testing.T, addr, q string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		t.Fatalf("query %s: %v, status %q", q, err, body.Status)
	}
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, _ := strconv.ParseFloat(s, 64)
		out[r.Metric["batch"]] = v
	}
	return out
}

// ingest commits n one-sample series named metric, labelled batch=b,
// through the real telemetry store (whose sink is the queue).
func ingest(t *testing.T, db *telemetry.DB, metric string, b, n int) {
	t.Helper()
	app := db.Ingest(context.Background(), telemetry.Source{TenantID: "t1", Agent: "agent-1", Host: "web-1"})
	now := time.Now().UnixMilli()
	for i := range n {
		ls := labels.FromStrings("__name__", metric, "batch", strconv.Itoa(b), "i", strconv.Itoa(i))
		if _, err := app.Append(0, ls, 0, now, float64(i), nil, nil, storage.AppendV2Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if app.Accepted != n {
		t.Fatalf("store took %d of %d samples: %v", app.Accepted, n, app.Shed)
	}
}

// TestPrometheusReceivesAcrossRestart writes through a real telemetry
// store into Debian's Prometheus: samples arrive with their tenant
// label; then, with Prometheus down, the queue overflows (drops counted)
// and the node restarts; once Prometheus is back, every batch not
// dropped arrives, and the dropped are exactly the counted ones.
func TestPrometheusReceivesAcrossRestart(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skipf("needs Debian's prometheus binary (apt-get install prometheus): %v", err)
	}
	addrs, err := freeport.Addrs("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	addr, promDir, data := addrs[0], t.TempDir(), t.TempDir()
	cfg := Config{URL: "http://" + addr + "/api/v1/write", MaxBytes: minMaxBytes,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Timeout: 5 * time.Second}
	prom := startPrometheus(t, bin, promDir, addr)

	// The node: the store with the queue as its sink.
	open := func() (*telemetry.DB, *Queue) {
		q := openQueue(t, data, cfg)
		db, err := telemetry.Open(data, telemetry.Config{}, nil, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		db.SetSink(q)
		return db, q
	}
	db, q := open()

	ingest(t, db, "rw_live", 0, 20)
	waitFor(t, "the live samples in prometheus", 30*time.Second, func() bool {
		return queryByBatch(t, addr, `count by (batch) (rw_live{tenant="t1",agent="agent-1",host="web-1"})`)["0"] == 20
	})
	waitFor(t, "the queue to drain", 10*time.Second, func() bool { return pending(q) == 0 })

	// Prometheus down: the queue fills past max_bytes.
	prom.stop(t)
	const perBatch = 50
	n := 0
	for ; n < 1000 && (dropped(q, DropQueueFull) == 0 || n < 100); n++ {
		ingest(t, db, "rw_outage", n, perBatch)
	}
	lost := dropped(q, DropQueueFull)
	if lost == 0 {
		t.Fatalf("%d batches did not overflow a %d-byte queue", n, cfg.MaxBytes)
	}
	// Wait for an attempt that began after the last drop (see
	// TestFullQueueDropsOldest), then restart the node.
	f0 := failures(q, FailNetwork)
	waitFor(t, "two more attempts", 10*time.Second, func() bool { return failures(q, FailNetwork) >= f0+2 })
	queued := pending(q)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if float64(n*perBatch) != queued+lost {
		t.Fatalf("queued %v + dropped %v != enqueued %d", queued, lost, n*perBatch)
	}

	t.Logf("outage: %d batches of %d samples; %v queued, %v dropped (queue_full)", n, perBatch, queued, lost)
	startPrometheus(t, bin, promDir, addr)
	_, q = open()
	waitFor(t, "the queue to drain after the restart", 60*time.Second, func() bool { return pending(q) == 0 })
	var got map[string]float64
	waitFor(t, "the queued batches in prometheus", 30*time.Second, func() bool {
		got = queryByBatch(t, addr, `count by (batch) (rw_outage{tenant="t1"})`)
		var sum float64
		for _, v := range got {
			sum += v
		}
		return sum == queued
	})
	var missing []int
	for b := range n {
		switch got[strconv.Itoa(b)] {
		case perBatch:
		case 0:
			missing = append(missing, b)
		default:
			t.Errorf("batch %d: %v samples in prometheus, want %d or none", b, got[strconv.Itoa(b)], perBatch)
		}
	}
	if len(missing) == 0 || missing[0] != 0 || missing[len(missing)-1] != len(missing)-1 || float64(len(missing)*perBatch) != lost {
		t.Errorf("missing batches %v (%d samples), want the oldest, as many as dropped{queue_full} = %v", missing, len(missing)*perBatch, lost)
	}
	if live := queryByBatch(t, addr, `count by (batch) (rw_live{tenant="t1"})`)["0"]; live != 20 {
		t.Errorf("after the restart prometheus has %v live samples, want 20", live)
	}
}
