package dev

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/agent/dataplane"
	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/node"
)

// observingRegion starts a dev region whose agent observes this machine
// with eBPF and exports every second. It needs root.
func observingRegion(t *testing.T, nodes int) *Region {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the agent's eBPF data plane needs root (or CAP_BPF and CAP_PERFMON); CI runs as root")
	}
	if testing.Short() {
		t.Skip("starts a dev region with an observing agent; run without -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := Start(ctx, Options{HTTP: "127.0.0.1:0", DataDir: t.TempDir(), Nodes: nodes, Agents: 1, Out: io.Discard,
		Telemetry: &agent.TelemetryConfig{DataPlane: dataplane.Config{Mode: dataplane.ModeEBPF, PollInterval: 500 * time.Millisecond},
			ExportInterval: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d.Stop(sctx)
	})
	h, ok := d.Agents()[0].Telemetry()
	if !ok || h.Mode != dataplane.ModeEBPF {
		t.Fatalf("the dev agent observes in mode %q (%s), want ebpf as root", h.Mode, h.Reason)
	}
	return d
}

// query asks the dev tenant's PromQL API of the node at api for the
// single value of q (at the time at, if set); ok is false when the answer
// has no sample.
func query(t *testing.T, d *Region, api, q string, at time.Time) (float64, bool) {
	t.Helper()
	tok, err := os.ReadFile(d.QueryTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	v := url.Values{"query": {q}}
	if !at.IsZero() {
		v.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	req, _ := http.NewRequest("GET", api+"/api/v1/tenants/dev/prometheus/api/v1/query?"+v.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false // a node stopping; asked again
	}
	defer resp.Body.Close()
	var out struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Status != "success" || len(out.Data.Result) != 1 {
		return 0, false
	}
	s, _ := out.Data.Result[0].Value[1].(string)
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// waitValue waits until q answers want.
func waitValue(t *testing.T, d *Region, api, q string, at time.Time, want float64) {
	t.Helper()
	var got float64
	var ok bool
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if got, ok = query(t, d, api, q, at); ok && got == want {
			return
		}
	}
	t.Fatalf("%s = %v (answered %v), want %v", q, got, ok, want)
}

// server accepts connections on loopback; each reads everything sent to
// it and writes reply bytes once it has read want.
func server(t *testing.T, want, reply int) (port string) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := io.CopyN(io.Discard, c, int64(want)); err != nil {
					return
				}
				c.Write(make([]byte, reply))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// TestDevAgentFlowsInPromQL: `outpost dev`'s agent, observing with the
// real eBPF programs, exports loopback connections of known sizes over
// OTLP to its node; the tenant's PromQL API reports exactly those
// connections and bytes each way, and an RTT for them.
func TestDevAgentFlowsInPromQL(t *testing.T) {
	d := observingRegion(t, 1)
	const conns, up, down = 4, 300_001, 7_777
	port := server(t, up, down)
	for range conns {
		c, err := net.Dial("tcp4", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(make([]byte, up)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(io.Discard, c, down); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	sel := fmt.Sprintf(`{direction="out",port=%q,remote_addr="127.0.0.1"}`, port)
	api := d.APIURL()
	waitValue(t, d, api, "sum(outpost_flow_connections_total"+sel+")", time.Time{}, conns)
	waitValue(t, d, api, "sum(outpost_flow_sent_bytes_total"+sel+")", time.Time{}, conns*up)
	waitValue(t, d, api, "sum(outpost_flow_received_bytes_total"+sel+")", time.Time{}, conns*down)
	waitValue(t, d, api, "sum(outpost_flow_closed_total"+sel+")", time.Time{}, conns)
	in := fmt.Sprintf(`{direction="in",port=%q}`, port)
	waitValue(t, d, api, "sum(outpost_flow_received_bytes_total"+in+")", time.Time{}, conns*up)
	if n, ok := query(t, d, api, "sum(outpost_flow_rtt_seconds_count"+sel+") > 0", time.Time{}); !ok || n == 0 {
		t.Fatalf("no RTT samples for the flow: %v %v", n, ok)
	}
	if v, ok := query(t, d, api, `sum(outpost_agent_mode{mode="ebpf"})`, time.Time{}); !ok || v != 1 {
		t.Fatalf("the agent's mode is not in the store: %v %v", v, ok)
	}
	if _, ok := query(t, d, api, `sum(outpost_agent_losses_total)`, time.Time{}); !ok {
		t.Fatal("the agent's losses by stage are not in the store")
	}
	checkDocumented(t, d)
}

// TestDevAgentSpoolsAcrossNodeRestart: while its only node is down the
// agent keeps exporting into its on-disk spool; after the node restarts
// the spooled exports arrive, so the store has the traffic of the outage
// at the times it happened.
func TestDevAgentSpoolsAcrossNodeRestart(t *testing.T) {
	d := observingRegion(t, 1)
	const up = 500_000
	port := server(t, up, 1)
	sel := fmt.Sprintf(`{direction="out",port=%q}`, port)
	if err := d.StopNode("n1"); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp4", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(make([]byte, up)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, c, 1); err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(3500 * time.Millisecond) // three exports while the node is down
	during := time.Now()
	time.Sleep(1500 * time.Millisecond)
	if q := d.Agents()[0]; q.Status().Connected {
		t.Fatal("the agent is attached with its only node down")
	}
	if err := d.StartNode("n1"); err != nil {
		t.Fatal(err)
	}
	// Asked at a time inside the outage: only a spooled export answers.
	waitValue(t, d, d.APIURL(), "sum(outpost_flow_sent_bytes_total"+sel+")", during, up)
}

// TestAgentFailoverMidTransferAddsUp: the agent's node is stopped in the
// middle of a transfer; the agent fails over to another node, and the
// region-wide query (every node's store merged) reports every byte.
func TestAgentFailoverMidTransferAddsUp(t *testing.T) {
	d := observingRegion(t, 3)
	const first, second = 400_000, 600_000
	port := server(t, first+second, 1)
	sel := fmt.Sprintf(`{direction="out",port=%q}`, port)
	c, err := net.Dial("tcp4", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, first)); err != nil {
		t.Fatal(err)
	}
	a := d.Agents()[0]
	var from string
	for deadline := time.Now().Add(30 * time.Second); from == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		from = a.Status().Node
	}
	other := liveNodeAPI(t, d, from)
	waitValue(t, d, other, "sum(outpost_flow_sent_bytes_total"+sel+")", time.Time{}, first)
	if err := d.StopNode(from); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(make([]byte, second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, c, 1); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st := a.Status(); st.Connected && st.Node != from {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not fail over from %s: %+v", from, a.Status())
		}
	}
	afterFailover := time.Now()
	time.Sleep(2 * time.Second) // exports to the new node
	if err := d.StartNode(from); err != nil {
		t.Fatal(err)
	}
	waitValue(t, d, other, "sum(outpost_flow_sent_bytes_total"+sel+")", time.Time{}, first+second)
	// The exports of the failover itself arrived (the value at a time
	// between the failover and the restart), and none was dropped.
	waitValue(t, d, other, "sum(outpost_flow_sent_bytes_total"+sel+")", afterFailover.Add(2*time.Second), first+second)
	waitValue(t, d, other, "sum(outpost_agent_export_dropped_batches_total)", time.Time{}, 0)
}

// liveNodeAPI is the API URL of a running node other than not.
func liveNodeAPI(t *testing.T, d *Region, not string) string {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, n := range d.nodes {
		if id != not && n != nil {
			return (*node.Node).APIURL(n)
		}
	}
	t.Fatalf("no running node other than %s", not)
	return ""
}

// TestProcfsAgentReportsModeAndRunsProbes: an agent told to observe
// through procfs says so, with its reason, in the region's agent
// registry; a tenant Admin allows loopback for the tenant's probes, a
// fenced config dispatch gives the agent a tcp and an http probe, and
// their results reach the tenant's PromQL API. A probe of a guarded
// target outside the allowance is refused at the API, naming its rule.
func TestProcfsAgentReportsModeAndRunsProbes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dev region; run without -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := Start(ctx, Options{HTTP: "127.0.0.1:0", DataDir: t.TempDir(), Nodes: 1, Agents: 1, Out: io.Discard,
		Telemetry: &agent.TelemetryConfig{DataPlane: dataplane.Config{Mode: dataplane.ModeProcfs}, ExportInterval: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d.Stop(sctx)
	})
	tok, _ := os.ReadFile(d.TokenFile())
	admin := api.NewClient(d.APIURL(), strings.TrimSpace(string(tok)))
	var listed []api.Agent
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := admin.Do(ctx, "GET", "/api/v1/agents", nil, &listed); err != nil {
			t.Fatal(err)
		}
		if len(listed) == 1 && listed[0].Mode == "procfs" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents: %+v, want one in procfs mode", listed)
		}
	}
	if listed[0].ModeReason != "configured" {
		t.Fatalf("mode reason %q, want configured", listed[0].ModeReason)
	}

	pw, _ := os.ReadFile(d.DevPasswordFile())
	tenantAdmin := api.NewClient(d.APIURL(), "")
	if err := tenantAdmin.Login(ctx, DevTenant, strings.TrimSpace(string(pw))); err != nil {
		t.Fatal(err)
	}
	port := server(t, 1<<30, 0)
	webSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	t.Cleanup(webSrv.Close)
	web := webSrv.URL
	dispatch := func(probes string) error {
		return tenantAdmin.Do(ctx, "POST", "/api/v1/tenants/dev/dispatches",
			map[string]any{"kind": "config", "payload": json.RawMessage(`{"probes":` + probes + `}`)}, nil)
	}
	probes := `[{"kind":"tcp","target":"127.0.0.1:` + port + `","interval":"1s"},{"kind":"http","target":"` + web + `","interval":"1s"}]`
	if err := dispatch(probes); err == nil || !strings.Contains(err.Error(), "loopback 127.0.0.0/8") {
		t.Fatalf("a loopback probe without an allowance: %v, want refused naming the loopback rule", err)
	}
	if err := tenantAdmin.Do(ctx, "PUT", "/api/v1/tenants/dev/settings", map[string]any{"probe_allow": []string{"127.0.0.0/8"}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := dispatch(probes); err != nil {
		t.Fatal(err)
	}
	waitValue(t, d, d.APIURL(), `outpost_probe_success{kind="tcp",target="127.0.0.1:`+port+`"}`, time.Time{}, 1)
	waitValue(t, d, d.APIURL(), `outpost_probe_http_status{kind="http"}`, time.Time{}, 200)
	// procfs mode sees a connection held open.
	c, err := net.Dial("tcp4", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if v, ok := query(t, d, d.APIURL(), `sum(outpost_flow_established{direction="out",port="`+port+`",remote_addr="127.0.0.1"})`, time.Time{}); ok && v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("procfs mode did not report a connection held open")
		}
	}
	if v, ok := query(t, d, d.APIURL(), `outpost_agent_mode{mode="procfs",reason="configured"}`, time.Time{}); !ok || v != 1 {
		t.Fatalf("procfs mode not exported: %v %v", v, ok)
	}
	checkDocumented(t, d)
}

// checkDocumented fails when the tenant's store holds an agent metric
// (outpost_…) that docs/agent-metrics.md does not list: the page is
// checked against what real agents export.
func checkDocumented(t *testing.T, d *Region) {
	t.Helper()
	doc, err := os.ReadFile("../docs/agent-metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(d.QueryTokenFile())
	req, _ := http.NewRequest("GET", d.APIURL()+"/api/v1/tenants/dev/prometheus/api/v1/label/__name__/values", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Data []string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range out.Data {
		if !strings.HasPrefix(name, "outpost_") {
			continue
		}
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && strings.Contains(string(doc), "`"+base+"`") {
				name = base
			}
		}
		n++
		if !strings.Contains(string(doc), "`"+name+"`") && !strings.Contains(string(doc), "`"+name+"{") {
			t.Errorf("the agents export %s; docs/agent-metrics.md does not list it", name)
		}
	}
	if n == 0 {
		t.Fatal("no agent metrics in the store")
	}
}
