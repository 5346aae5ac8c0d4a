package node_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/internal/otlptest"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/storage/remotewrite"
)

// TestRemoteWriteConfig: telemetry.remote_write decodes over its
// defaults; a bad one is refused naming the field.
func TestRemoteWriteConfig(t *testing.T) {
	const base = "region: eu\nnode_id: n1\ngossip:\n  bind: 127.0.0.2:7302\nraft:\n  bind: 127.0.0.2:7301\n"
	cases := []struct {
		name, yaml string
		field      string // the error names it; "" for valid
	}{
		{"off by default", "", ""},
		{"enabled", "telemetry:\n  remote_write:\n    enabled: true\n    url: https://mimir.example/api/v1/push\n    org_id_header: {t-1: org-a}\n", ""},
		{"missing url", "telemetry:\n  remote_write:\n    enabled: true\n", "telemetry.remote_write.url"},
		{"not http", "telemetry:\n  remote_write:\n    enabled: true\n    url: ftp://mimir.example/\n", "telemetry.remote_write.url"},
		{"tls files on http", "telemetry:\n  remote_write:\n    enabled: true\n    url: http://mimir.example/api/v1/push\n    tls:\n      ca_file: /etc/ca.pem\n", "telemetry.remote_write.tls"},
		{"negative max_bytes", "telemetry:\n  remote_write:\n    enabled: true\n    url: https://mimir.example/\n    max_bytes: -1\n", "telemetry.remote_write.max_bytes"},
		{"telemetry off", "telemetry:\n  enabled: false\n  remote_write:\n    enabled: true\n    url: https://mimir.example/\n", "telemetry.remote_write.enabled"},
		{"typo", "telemetry:\n  remote_write:\n    enabled: true\n    url: https://mimir.example/\n    org_id: x\n", "org_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := node.ParseConfig(strings.NewReader(base + tc.yaml))
			if tc.field != "" {
				if err == nil || !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("got %v, want an error naming %s", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rw := c.Telemetry.RemoteWrite
			if rw.MaxBytes != remotewrite.DefaultMaxBytes || rw.BatchSize != 2000 || rw.TLS.InsecureSkipVerify {
				t.Errorf("defaults not kept under the file's values: %+v", rw)
			}
			if strings.Contains(tc.yaml, "enabled: true") != rw.Enabled {
				t.Errorf("enabled = %v", rw.Enabled)
			}
		})
	}
}

// TestRemoteWriteFromAgent: with remote_write on, an agent's export
// lands in the local TSDB and at the remote store, with the tenant label
// and the tenant's X-Scope-OrgID; the queue lives in data_dir
// (0700) and the node exports its metrics.
func TestRemoteWriteFromAgent(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]prompb.TimeSeries{} // by X-Scope-OrgID
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		var wr prompb.WriteRequest
		if err == nil {
			err = wr.Unmarshal(raw)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got[r.Header.Get("X-Scope-OrgID")] = append(got[r.Header.Get("X-Scope-OrgID")], wr.Timeseries...)
		mu.Unlock()
	}))
	defer store.Close()

	dataDir := t.TempDir()
	cfg := nodeConfig(t, dataDir)
	cfg.Telemetry.RemoteWrite.Enabled = true
	cfg.Telemetry.RemoteWrite.URL = store.URL + "/api/v1/push"
	cfg.Telemetry.RemoteWrite.OrgIDFromTenant = true
	cfg.Telemetry.RemoteWrite.MinBackoff = 10 * time.Millisecond
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	waitLease(t, tn)
	bt := newToken(t, tn, alice, "acme")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := agent.New(ctx, agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: dir, CAPin: bt.CAPin, Host: "web-1"}); err != nil {
		t.Fatal(err)
	}
	exp := otlptest.Exporter(t, bt.Servers[0], dir)
	if err := exp.Export(ctx, flows(resource.NewSchemaless(attribute.String("service.name", "outpost-agent")), time.Now())); err != nil {
		t.Fatalf("export: %v", err)
	}

	var org string
	var names []string
	eventually(t, 10*time.Second, "the export at the remote store", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for o, series := range got {
			org, names = o, nil
			for _, ts := range series {
				var tenant string
				for _, l := range ts.Labels {
					switch l.Name {
					case "__name__":
						names = append(names, l.Value)
					case "tenant":
						tenant = l.Value
					}
				}
				if tenant == "" || tenant != o {
					t.Errorf("series %v went with X-Scope-OrgID %q: want its tenant label", ts.Labels, o)
				}
			}
		}
		joined := strings.Join(names, ",")
		return strings.Contains(joined, "tcp_rtt_seconds") && strings.Contains(joined, "tcp_send_bytes")
	})
	if org == "" {
		t.Fatal("no X-Scope-OrgID")
	}
	body := tn.must(t, 200, "GET", "/metrics", "", "")
	for _, m := range []string{"outpost_remote_write_samples_sent_total", "outpost_remote_write_queue_bytes"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if fi, err := os.Stat(filepath.Join(dataDir, remotewrite.DirName)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("queue dir: %v, %v; want 0700", fi, err)
	}
}
