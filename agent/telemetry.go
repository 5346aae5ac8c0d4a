package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/agent/dataplane"
	"github.com/outpost-mesh/outpost/agent/export"
	"github.com/outpost-mesh/outpost/agent/probe"
	"github.com/outpost-mesh/outpost/internal/agentwire"
)

// Telemetry defaults.
const (
	DefaultExportInterval = 15 * time.Second
	DefaultSpoolBytes     = 64 << 20
)

// TelemetryConfig turns on the agent's data plane: it observes the
// host's TCP traffic (eBPF, or procfs when eBPF cannot load), runs the
// probes its dispatched config names, and exports both as OTLP metrics
// to the node it is attached to, through an on-disk spool so that a
// failover or a node restart loses nothing.
type TelemetryConfig struct {
	DataPlane dataplane.Config
	// ExportInterval is how often an export is made (default 15s); a
	// dispatched config's export_interval replaces it.
	ExportInterval time.Duration
	// SpoolDir keeps exports not yet accepted (default StateDir/spool);
	// SpoolBytes bounds it (default 64 MiB), dropping the oldest, counted.
	SpoolDir   string
	SpoolBytes int64
	// Export tunes the sender (timeouts, backoff); Target is set here.
	Export export.Config
}

// telemetry is the running data plane, probes and exporter.
type telemetry struct {
	a      *Agent
	plane  *dataplane.Plane
	probes *probe.Runner
	spool  *export.Spool
	sender *export.Sender
	client *http.Client

	mu       sync.Mutex
	interval time.Duration
	reset    chan struct{}
}

// startTelemetry starts the data plane, the probe runner and the
// exporter; they stop when ctx ends (wait on the returned WaitGroup).
func (a *Agent) startTelemetry(ctx context.Context, wg *sync.WaitGroup) error {
	tc := a.cfg.Telemetry
	if tc == nil {
		return nil
	}
	tc.DataPlane.Logger = a.logger.With("component", "dataplane")
	plane, err := dataplane.Start(ctx, tc.DataPlane)
	if err != nil {
		return err
	}
	dir := tc.SpoolDir
	if dir == "" {
		dir = filepath.Join(a.cfg.StateDir, "spool")
	}
	spoolBytes := tc.SpoolBytes
	if spoolBytes <= 0 {
		spoolBytes = DefaultSpoolBytes
	}
	spool, err := export.OpenSpool(dir, spoolBytes)
	if err != nil {
		plane.Close()
		return fmt.Errorf("export spool: %w", err)
	}
	t := &telemetry{a: a, plane: plane, probes: probe.NewRunner(a.logger.With("component", "probes")), spool: spool,
		interval: tc.ExportInterval, reset: make(chan struct{}, 1)}
	if t.interval <= 0 {
		t.interval = DefaultExportInterval
	}
	t.client = &http.Client{Transport: &http.Transport{TLSClientConfig: a.tlsConfig(), ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 2}}
	ecfg := tc.Export
	ecfg.Target = t.target
	ecfg.Logger = a.logger.With("component", "export")
	if t.sender, err = export.New(spool, ecfg); err != nil {
		plane.Close()
		return err
	}
	a.mu.Lock()
	a.tel = t
	a.mu.Unlock()
	if cfg, ok := a.appliedConfig(); ok {
		t.apply(cfg)
	}
	wg.Add(3)
	go func() { defer wg.Done(); t.probes.Start(ctx) }()
	go func() { defer wg.Done(); _ = t.sender.Run(ctx) }()
	go func() {
		defer wg.Done()
		t.exportLoop(ctx)
		t.client.CloseIdleConnections()
		plane.Close()
	}()
	return nil
}

// target is where exports go: the attached node's OTLP path.
func (t *telemetry) target() (string, *http.Client, bool) {
	t.a.mu.Lock()
	defer t.a.mu.Unlock()
	if !t.a.conn || t.a.url == "" {
		return "", nil, false
	}
	return strings.TrimRight(t.a.url, "/") + agentwire.PathMetrics, t.client, true
}

// apply takes a dispatched config's probes and export interval.
func (t *telemetry) apply(cfg agentwire.Config) {
	var allow []netip.Prefix
	for _, s := range cfg.ProbeAllow {
		if p, err := netip.ParsePrefix(s); err == nil {
			allow = append(allow, p)
		}
	}
	t.probes.Set(cfg.Probes, allow)
	if cfg.ExportInterval != "" {
		if d, err := time.ParseDuration(cfg.ExportInterval); err == nil {
			t.mu.Lock()
			t.interval = d
			t.mu.Unlock()
			select {
			case t.reset <- struct{}{}:
			default:
			}
		}
	}
}

func (t *telemetry) exportLoop(ctx context.Context) {
	t.mu.Lock()
	every := t.interval
	t.mu.Unlock()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// A last export, so a clean stop keeps what was seen since
			// the previous one; the spool sends it after the restart.
			t.exportNow(time.Now())
			return
		case <-t.reset:
			t.mu.Lock()
			every = t.interval
			t.mu.Unlock()
			tick.Reset(every)
		case now := <-tick.C:
			t.exportNow(now)
		}
	}
}

// exportNow makes one export and queues it.
func (t *telemetry) exportNow(now time.Time) {
	st := t.sender.Stats()
	dropped := map[string]uint64{"spool_full": st.DroppedBatches, "corrupt": st.Corrupt}
	for code, n := range st.Rejected {
		dropped["rejected_"+strconv.Itoa(code)] = n
	}
	res := map[string]string{agentwire.AttrService: "outpost-agent", agentwire.AttrVersion: Version, agentwire.AttrHost: t.a.cfg.Host}
	b, err := t.plane.Export(now, res, t.probes.Results(), dataplane.ExportStats{DroppedBatches: dropped, QueuedBatches: st.Queued, QueuedBytes: st.QueuedBytes})
	if err != nil {
		t.a.logger.Warn("encoding an export failed", "err", err)
		return
	}
	if err := t.spool.Put(b); err != nil {
		t.a.logger.Warn("queueing an export failed; it is lost", "err", err, "bytes", len(b))
		return
	}
	t.sender.Kick()
}
