// Command querybench measures PromQL latency as Grafana sees it: a day of
// flow telemetry for N series is written into a node's telemetry store
// (storage/telemetry, the tenant-stamping appender the OTLP receiver
// writes through), the TSDB compacts it as a node's would, and instant
// and day-long range queries are sent K times each through the node's
// Prometheus-compatible HTTP API (node/query). It prints p50, p99 and max
// per query, the series and samples each one reads, and the rate at
// which the data was generated.
//
// With -nodes N (N > 1) it also builds a region of N nodes in this
// process: the same samples are written again into N node stores, each
// agent's series on one node (every 20th agent fails over halfway to the
// next node), node-1 … node-N-1 serve remote-read (query.ReadPath) on
// loopback HTTP servers, and node-0's API reads them through a
// query.Region that dials plain TCP: the node port's mutual TLS is not
// measured, and all N nodes share this process and its CPUs. The same
// queries are measured region-wide (the default scope) and with
// scope=node on node-0; every region-wide answer must list every node
// as ok, and each query's region-wide series, samples and answer must
// equal the one-node store's, or the run fails.
//
//	go run ./bench/querybench -series 10000 -runs 50
//	go run ./bench/querybench -series 10000 -runs 50 -max-samples 50000000 -nodes 3
//	go run ./bench/querybench -series 1000 -span 6h -runs 10   # a quick look
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/outpost-mesh/outpost/node/query"
	"github.com/outpost-mesh/outpost/storage/telemetry"
)

// config is what one run generates and measures.
type config struct {
	series   int           // total series: half retransmit counters, half RTT native histograms
	agents   int           // agents the flows are spread over, one host each
	span     time.Duration // how much data, ending now
	interval time.Duration // one sample per series per interval
	runs     int           // measured runs per query
	nodes    int           // 1: one node's store; N > 1: also a region of N nodes (see runRegion)
	// maxSamples is the node's query.max_samples (0: its default).
	maxSamples int
	// settle is how long the TSDB's block set must stay unchanged before
	// the queries start: its leveled compactions (2h blocks into 6h and
	// 18h ones) start on its block reload tick, once a minute.
	settle time.Duration
}

func main() {
	var c config
	flag.IntVar(&c.series, "series", 10000, "series: half outpost_flow_retransmits_total counters, half outpost_flow_rtt_seconds native histograms")
	flag.IntVar(&c.agents, "agents", 50, "agents (and hosts) the flows are spread over")
	flag.DurationVar(&c.span, "span", 24*time.Hour, "data written, ending now; range queries cover all of it")
	flag.DurationVar(&c.interval, "interval", time.Minute, "sample interval of every series")
	flag.IntVar(&c.runs, "runs", 50, "measured runs per query (after one warm-up run)")
	flag.IntVar(&c.nodes, "nodes", 1, "1: one node's store alone; N > 1: also a region of N nodes in this process (remote-read over loopback plain TCP, no TLS)")
	flag.IntVar(&c.maxSamples, "max-samples", 0, "the node's query.max_samples (0: its default)")
	flag.DurationVar(&c.settle, "settle", 75*time.Second, "wait until the TSDB's blocks stay unchanged this long (its compactions run each minute)")
	flag.Parse()
	if err := run(context.Background(), c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "querybench:", err)
		os.Exit(1)
	}
}

// tenantID is the one tenant every series belongs to.
const tenantID = "bench"

func run(ctx context.Context, c config, w io.Writer) error {
	switch {
	case c.series < 2 || c.agents < 1 || c.runs < 1:
		return errors.New("-series must be at least 2, -agents and -runs at least 1")
	case c.interval <= 0 || c.span < 10*c.interval:
		return fmt.Errorf("-span %v must hold at least 10 samples of -interval %v", c.span, c.interval)
	case c.nodes < 1 || c.nodes > c.agents:
		return fmt.Errorf("-nodes %d: use 1 to %d (-agents), so every node holds an agent", c.nodes, c.agents)
	}
	dir, err := os.MkdirTemp("", "querybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	open := func(name string) (*telemetry.DB, error) {
		return telemetry.Open(filepath.Join(dir, name), telemetry.Config{MaxSeriesPerAgent: c.series, MaxSeriesPerTenant: 2 * c.series}, slog.New(slog.DiscardHandler), nil)
	}
	db, err := open("one")
	if err != nil {
		return err
	}
	defer db.Close()

	end := time.Now().Truncate(c.interval)
	fmt.Fprintf(w, "PromQL latency: %d series (%d agents), one sample each %v for %v; %d CPUs, %s\n",
		c.series, c.agents, c.interval, c.span, runtime.NumCPU(), runtime.Version())
	n, took, err := generate(ctx, []*telemetry.DB{db}, func(int, int) int { return 0 }, c, end)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "generated %d samples in %v: %.0f samples/s through telemetry.Appender into the TSDB\n",
		n[0], took.Round(time.Millisecond), float64(n[0])/took.Seconds())
	dirs := []string{filepath.Join(dir, "one", "tsdb")}
	var nodes []*telemetry.DB
	if c.nodes > 1 {
		for i := range c.nodes {
			ndb, err := open(fmt.Sprintf("node-%d", i))
			if err != nil {
				return err
			}
			defer ndb.Close()
			nodes = append(nodes, ndb)
			dirs = append(dirs, filepath.Join(dir, fmt.Sprintf("node-%d", i), "tsdb"))
		}
		steps := int(c.span / c.interval)
		n, took, err := generate(ctx, nodes, func(a, s int) int { return home(c, a, s, steps) }, c, end)
		if err != nil {
			return err
		}
		var each []string
		total := 0
		for i, k := range n {
			each = append(each, fmt.Sprintf("node-%d %d", i, k))
			total += k
		}
		var moved []string
		for a := range c.agents {
			if from, to := home(c, a, 0, steps), home(c, a, steps-1, steps); from != to {
				moved = append(moved, fmt.Sprintf("agent-%02d node-%d→node-%d", a, from, to))
			}
		}
		fmt.Fprintf(w, "region: the same %d samples written again into %d node stores in %v (%s); agents round-robin over the nodes, %d of %d failing over halfway (%s)\n",
			total, c.nodes, took.Round(time.Millisecond), strings.Join(each, ", "), len(moved), c.agents, strings.Join(moved, ", "))
	}
	waited, blocks, err := waitCompacted(ctx, dirs, end.Add(-c.span), end, c.settle, c.settle+5*time.Minute)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "compacted by the TSDB in %v more: %s\n", waited.Round(time.Second), blocks[0])
	for i, b := range blocks[1:] {
		fmt.Fprintf(w, "  node-%d: %s\n", i, b)
	}

	cfg := query.Config{MaxSamples: c.maxSamples}
	api, err := query.New(cfg, db, nil, nil)
	if err != nil {
		return err
	}
	srv := serveAPI(api)
	defer srv.Close()
	// scope=node: this node's store alone, not the region's.
	t := target{name: fmt.Sprintf("local (1 node, query.max_samples %d)", cfg.Defaults().MaxSamples),
		base: srv.URL + "/api/v1/tenants/" + tenantID + "/prometheus", client: srv.Client(), params: url.Values{"scope": {"node"}}}
	qs := queries(c, end)
	one, err := measure(ctx, w, t, qs, c.runs)
	if err != nil {
		return err
	}
	if c.nodes > 1 {
		if err := runRegion(ctx, w, c, cfg, nodes, qs, one); err != nil {
			return err
		}
	}
	listQueries(w, qs)
	return nil
}

// serveAPI serves api's Prometheus endpoints on a loopback HTTP server,
// below /api/v1/tenants/{tenant}/prometheus/api/v1/ as a node does.
func serveAPI(api *query.API) *httptest.Server {
	mux := http.NewServeMux()
	for _, ep := range query.Endpoints {
		mux.HandleFunc("GET /api/v1/tenants/{tenant}/prometheus/api/v1/"+ep, func(w http.ResponseWriter, r *http.Request) {
			api.Serve(w, r, ep, r.PathValue("tenant"))
		})
	}
	return httptest.NewServer(mux)
}

// home is the node agent a's samples of step s (of steps) are written
// to: agents round-robin over the nodes, and every 20th agent (5%) fails
// over halfway through, to the next node.
func home(c config, a, s, steps int) int {
	n := a % c.nodes
	if a%20 == 0 && s >= steps/2 {
		n = (n + 1) % c.nodes
	}
	return n
}

// loopbackRegion is node-0's view of the region: the other nodes,
// reached over plain TCP on loopback (a node dials the node port's
// mutual TLS), as node/query's tests do.
type loopbackRegion struct{ peers []query.Peer }

func (r loopbackRegion) NodeID() string      { return "node-0" }
func (r loopbackRegion) Peers() []query.Peer { return r.peers }
func (r loopbackRegion) DialNode(ctx context.Context, addr string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
}

// runRegion measures qs through node-0 of the region whose stores are
// nodes: region-wide (checked against one, the one-node store's results
// for the same samples), then node-0's share alone (scope=node).
func runRegion(ctx context.Context, w io.Writer, c config, cfg query.Config, nodes []*telemetry.DB, qs []benchQuery, one []result) error {
	var peers []query.Peer
	var ids []string
	for i, ndb := range nodes[1:] {
		api, err := query.New(cfg, ndb, nil, nil)
		if err != nil {
			return err
		}
		srv := httptest.NewServer(http.HandlerFunc(api.ServeRemoteRead))
		defer srv.Close()
		peers = append(peers, query.Peer{ID: fmt.Sprintf("node-%d", i+1), Addr: strings.TrimPrefix(srv.URL, "http://")})
		ids = append(ids, peers[i].ID)
	}
	api, err := query.New(cfg, nodes[0], loopbackRegion{peers: peers}, nil)
	if err != nil {
		return err
	}
	srv := serveAPI(api)
	defer srv.Close()
	base := srv.URL + "/api/v1/tenants/" + tenantID + "/prometheus"
	fmt.Fprintf(w, "\nregion: node-0 answers, reading %s through remote-read (%s) on loopback HTTP servers over plain TCP:\n"+
		"the node port's mutual TLS is NOT included, and all %d nodes share this one process and its %d CPUs\n",
		strings.Join(ids, " and "), query.ReadPath, c.nodes, runtime.NumCPU())
	region := target{name: fmt.Sprintf("region-wide (%d nodes, scope=region, through node-0; query.max_samples %d)", c.nodes, cfg.Defaults().MaxSamples),
		base: base, client: srv.Client(), nodes: c.nodes}
	got, err := measure(ctx, w, region, qs, c.runs)
	if err != nil {
		return err
	}
	if err := compare(w, qs, one, got); err != nil {
		return err
	}
	local := target{name: fmt.Sprintf("node-0's share alone (scope=node, %d of %d nodes' stores)", 1, c.nodes),
		base: base, client: srv.Client(), params: url.Values{"scope": {"node"}}, partial: true}
	_, err = measure(ctx, w, local, qs, c.runs)
	return err
}

// compare checks that the region-wide results equal the one-node
// store's: the same series and samples within each query's reach, and
// the same answer (its series, and the sum of its values). A node whose
// part went missing without an error would show here.
func compare(w io.Writer, qs []benchQuery, one, region []result) error {
	checked := 0
	for i, q := range qs {
		a, b := one[i], region[i]
		if a.series != b.series || a.samples != b.samples {
			return fmt.Errorf("%s: region-wide %.0f series, %.0f samples; the one-node store has %.0f and %.0f", q.name, b.series, b.samples, a.series, a.samples)
		}
		switch {
		case (a.refused == "") != (b.refused == ""):
			fmt.Fprintf(w, "note: %s refused on one setup only (1 node: %q, region: %q)\n", q.name, a.refused, b.refused)
		case a.refused == "":
			if a.sum.Series != b.sum.Series || a.sum.Values != b.sum.Values || a.sum.NaNs != b.sum.NaNs ||
				math.Abs(a.sum.Sum-b.sum.Sum) > 1e-9*max(math.Abs(a.sum.Sum), 1) {
				return fmt.Errorf("%s: the region-wide answer differs from the one-node store's: %+v, want %+v", q.name, b.sum, a.sum)
			}
			checked++
		}
	}
	fmt.Fprintf(w, "check: every region-wide answer listed all nodes ok; series and samples read equal the one-node store's for all %d queries, and the %d answered ones sum to the same values\n", len(qs), checked)
	return nil
}

// flow is one agent's connection to a destination: a retransmit counter
// and an RTT histogram.
type flow struct {
	counter, rtt labels.Labels
	retrans      float64
	buckets      []float64 // cumulative RTT bucket counts
	rttSum       float64
	rate         float64 // retransmits per interval, on average
}

// rttOffset is the first RTT bucket's index at schema 0: bucket i holds
// (2^(i-1), 2^i] seconds, so -9 is (1 ms, 2 ms].
const rttOffset = -9

// generate writes c.span of samples ending at end, every series each
// c.interval, agent a's at step s into dbs[place(a, s)], and returns how
// many each store accepted. The samples depend on c alone, not on
// place. The TSDB takes a series' samples in time order, and only
// within an hour of the newest sample in its head (plus a 10-minute
// out-of-order window, telemetry.Open's), so the day is written oldest
// first, one interval at a time: each interval every agent commits one
// export of all its flows, as agents do. The head compacts behind the
// writes into 2h blocks (and those into larger ones) on its own.
func generate(ctx context.Context, dbs []*telemetry.DB, place func(a, s int) int, c config, end time.Time) ([]int, time.Duration, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	flows := make([][]flow, c.agents)
	for i := range c.series / 2 {
		a := i % c.agents
		dst := fmt.Sprintf("db-%03d", rng.IntN(200))
		dport := strconv.Itoa([]int{443, 5432, 6379, 9092}[i%4])
		flows[a] = append(flows[a], flow{
			counter: labels.FromStrings("__name__", "outpost_flow_retransmits_total", "dst", dst, "dport", dport, "proto", "tcp", "flow", strconv.Itoa(i)),
			rtt:     labels.FromStrings("__name__", "outpost_flow_rtt_seconds", "dst", dst, "dport", dport, "proto", "tcp", "flow", strconv.Itoa(i)),
			buckets: make([]float64, 6),
			rate:    rng.ExpFloat64(),
		})
	}
	steps := int(c.span / c.interval)
	start := end.Add(-time.Duration(steps-1) * c.interval)
	samples := make([]int, len(dbs))
	t0 := time.Now()
	for s := range steps {
		ts := start.Add(time.Duration(s) * c.interval).UnixMilli()
		for a, fs := range flows {
			db := place(a, s)
			app := dbs[db].Ingest(ctx, telemetry.Source{TenantID: tenantID, Agent: fmt.Sprintf("agent-%02d", a), Host: fmt.Sprintf("web-%02d", a)})
			for i := range fs {
				f := &fs[i]
				f.retrans += math.Floor(rng.ExpFloat64() * f.rate) // mostly 0, now and then a burst
				if _, err := app.Append(0, f.counter, 0, ts, f.retrans, nil, nil, storage.AppendV2Options{}); err != nil {
					_ = app.Rollback()
					return nil, 0, err
				}
				if _, err := app.Append(0, f.rtt, 0, ts, 0, f.observe(rng), nil, storage.AppendV2Options{}); err != nil {
					_ = app.Rollback()
					return nil, 0, err
				}
			}
			if err := app.Commit(); err != nil {
				return nil, 0, err
			}
			for reason, n := range app.Shed {
				if n > 0 {
					return nil, 0, fmt.Errorf("the store shed %d samples at %v (%s)", n, time.UnixMilli(ts), reason)
				}
			}
			samples[db] += app.Accepted
		}
	}
	return samples, time.Since(t0), nil
}

// observe adds one interval of RTT observations (a few dozen, mostly in
// the flow's usual bucket) and returns the cumulative native histogram.
func (f *flow) observe(rng *rand.Rand) *histogram.Histogram {
	usual := int(f.rate*2) % 4
	for range 20 + rng.IntN(20) {
		b := min(max(usual+int(math.Round(rng.NormFloat64())), 0), len(f.buckets)-1)
		f.buckets[b]++
		f.rttSum += math.Ldexp(0.75, rttOffset+b) // the bucket's middle
	}
	h := &histogram.Histogram{Schema: 0, ZeroThreshold: 1e-128, Sum: f.rttSum,
		PositiveSpans: []histogram.Span{{Offset: rttOffset, Length: uint32(len(f.buckets))}}, PositiveBuckets: make([]int64, len(f.buckets))}
	prev := 0.0
	for i, n := range f.buckets {
		h.Count += uint64(n)
		h.PositiveBuckets[i] = int64(n - prev) // deltas, as native histograms store buckets
		prev = n
	}
	return h
}

// blockMeta is the part of a TSDB block's meta.json read here.
type blockMeta struct {
	MinTime, MaxTime int64
	Stats            struct{ NumSamples int64 }
}

// waitCompacted waits until the TSDB in each of dirs has compacted the
// head up to the last 3 hours before end (it keeps 1.5 block ranges in
// the head) and their block sets have stayed the same for settle (the
// leveled compactions that follow are done), and describes each one's
// blocks. It reads the blocks' meta.json: the store does not expose its
// compaction.
func waitCompacted(ctx context.Context, dirs []string, start, end time.Time, settle, limit time.Duration) (time.Duration, []string, error) {
	t0 := time.Now()
	var last string
	stable := time.Now()
	for {
		descs := make([]string, len(dirs))
		done, anyBusy := true, false
		for i, dir := range dirs {
			metas, busy, err := readBlocks(dir)
			if err != nil {
				return 0, nil, err
			}
			covered := start.UnixMilli()
			var samples int64
			for _, m := range metas {
				covered = max(covered, m.MaxTime)
				samples += m.Stats.NumSamples
			}
			descs[i] = fmt.Sprintf("%d blocks (%s), %d samples, up to %v before the newest sample; the rest in the head", len(metas), spans(metas),
				samples, end.Sub(time.UnixMilli(covered)).Round(time.Minute))
			done = done && end.Sub(time.UnixMilli(covered)) <= 3*time.Hour
			anyBusy = anyBusy || busy
		}
		desc := strings.Join(descs, "\n")
		if desc != last || anyBusy {
			last, stable = desc, time.Now()
		}
		if done && time.Since(stable) >= settle {
			return time.Since(t0), descs, nil
		}
		if time.Since(t0) > limit {
			return 0, nil, fmt.Errorf("the TSDB had not compacted the head within %v: %s", limit, desc)
		}
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// spans lists the blocks' time ranges, oldest first ("18h, 2h, 2h").
func spans(metas []blockMeta) string {
	slices.SortFunc(metas, func(a, b blockMeta) int { return cmp.Compare(a.MinTime, b.MinTime) })
	var out []string
	for _, m := range metas {
		out = append(out, fmt.Sprintf("%gh", (time.Duration(m.MaxTime-m.MinTime)*time.Millisecond).Hours()))
	}
	return strings.Join(out, ", ")
}

// readBlocks reads every block's meta.json in dir; busy is whether a
// compaction's temporary directory is there.
func readBlocks(dir string) (metas []blockMeta, busy bool, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, false, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if strings.Contains(e.Name(), ".tmp") {
			busy = true
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "meta.json"))
		if errors.Is(err, os.ErrNotExist) {
			continue // wal, chunks_head
		}
		if err != nil {
			return nil, false, err
		}
		var m blockMeta
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, false, fmt.Errorf("block %s: %w", e.Name(), err)
		}
		metas = append(metas, m)
	}
	return metas, busy, nil
}

// benchQuery is one query as Grafana would send it.
type benchQuery struct {
	name  string
	expr  string
	span  time.Duration // 0: an instant query; else a range query ending at at, step 1m
	at    time.Time
	sel   string        // the selector it reads, to count what it touches
	reach time.Duration // how far back from at it reads
}

// queries are the measured queries, evaluated at the newest sample.
func queries(c config, end time.Time) []benchQuery {
	const (
		retrans = `outpost_flow_retransmits_total`
		rtt     = `outpost_flow_rtt_seconds`
	)
	host := fmt.Sprintf(`outpost_flow_retransmits_total{host="web-%02d"}`, 7%c.agents)
	w := 5 * time.Minute
	return []benchQuery{
		{name: "instant: retransmits/s by host", expr: `sum by (host) (rate(` + retrans + `[5m]))`, at: end, sel: retrans, reach: w},
		{name: "instant: p99 RTT by host", expr: `histogram_quantile(0.99, sum by (host) (rate(` + rtt + `[5m])))`, at: end, sel: rtt, reach: w},
		{name: "instant: top 10 host→dst", expr: `topk(10, sum by (host, dst) (rate(` + retrans + `[5m])))`, at: end, sel: retrans, reach: w},
		{name: "range: retransmits/s by host", expr: `sum by (host) (rate(` + retrans + `[5m]))`, span: c.span, at: end, sel: retrans, reach: c.span + w},
		{name: "range: one host's flows", expr: `rate(` + host + `[5m])`, span: c.span, at: end, sel: host, reach: c.span + w},
		{name: "range: p99 RTT by host", expr: `histogram_quantile(0.99, sum by (host) (rate(` + rtt + `[5m])))`, span: c.span, at: end, sel: rtt, reach: c.span + w},
	}
}

// target is a Prometheus-compatible query API to measure, as Grafana is
// given it: base is the URL ending in /prometheus (this command's node,
// or any node of a region), token an optional bearer token, params added
// to every request.
type target struct {
	name, base, token string
	params            url.Values
	client            *http.Client
	// nodes, if not 0, is how many nodes every answer's nodes block must
	// list, all ok: a region-wide target.
	nodes int
	// partial: the target holds a share of the data, so a query may
	// rightly find nothing.
	partial bool
}

// result is what measure found of one query.
type result struct {
	series, samples float64 // what its selector holds within its reach
	refused         string  // why the API refused it; "" if it answered
	sum             checksum
}

// checksum sums up an answer, to compare it across setups.
type checksum struct {
	Series, Values, NaNs int
	Sum                  float64 // of the values but NaNs
}

// measure sends each query once to warm up and count what it reads, then
// runs times, and prints its latency from request to the whole decoded
// answer; region-wide, also the median of the slowest other node's read
// (its remote-read round trip, as the nodes block reports it).
func measure(ctx context.Context, w io.Writer, t target, qs []benchQuery, runs int) ([]result, error) {
	fmt.Fprintf(w, "\n%s, %d runs per query after one warm-up; latency of the whole HTTP answer\n", t.name, runs)
	fmt.Fprintf(w, "%-32s %8s %12s %8s %9s %9s %9s", "query", "series", "samples", "result", "p50", "p99", "max")
	if t.nodes > 0 {
		fmt.Fprintf(w, " %14s", "peer read p50")
	}
	fmt.Fprintln(w)
	var out []result
	for _, q := range qs {
		var r result
		reach := strconv.FormatInt(int64(q.reach/time.Second), 10) + "s"
		var err error
		r.series, err = t.scalar(ctx, `count(last_over_time(`+q.sel+`[`+reach+`]))`, q.at)
		if err != nil {
			return nil, fmt.Errorf("%s: counting its series: %w", q.name, err)
		}
		r.samples, err = t.scalar(ctx, `sum(count_over_time(`+q.sel+`[`+reach+`]))`, q.at)
		if err != nil {
			return nil, fmt.Errorf("%s: counting its samples: %w", q.name, err)
		}
		r.sum, _, err = t.do(ctx, q)
		var refused *refusal
		if errors.As(err, &refused) {
			r.refused = refused.Error()
			out = append(out, r)
			fmt.Fprintf(w, "%-32s %8.0f %12.0f   refused: %s\n", q.name, r.series, r.samples, refused)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.name, err)
		}
		lat := make([]time.Duration, 0, runs)
		peer := make([]time.Duration, 0, runs)
		for range runs {
			t0 := time.Now()
			_, p, err := t.do(ctx, q)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", q.name, err)
			}
			lat = append(lat, time.Since(t0))
			peer = append(peer, p)
		}
		slices.Sort(lat)
		slices.Sort(peer)
		fmt.Fprintf(w, "%-32s %8.0f %12.0f %8d %9s %9s %9s", q.name, r.series, r.samples, r.sum.Series,
			fmtMs(quantile(lat, 0.5)), fmtMs(quantile(lat, 0.99)), fmtMs(lat[len(lat)-1]))
		if t.nodes > 0 {
			fmt.Fprintf(w, " %14s", fmtMs(quantile(peer, 0.5)))
		}
		fmt.Fprintln(w)
		out = append(out, r)
	}
	return out, nil
}

// listQueries prints the queries measured.
func listQueries(w io.Writer, qs []benchQuery) {
	fmt.Fprintln(w, "\nqueries (series and samples: what the selector holds within the query's reach; result: series answered):")
	for _, q := range qs {
		kind := "instant"
		if q.span > 0 {
			kind = fmt.Sprintf("range %v, step 1m", q.span)
		}
		fmt.Fprintf(w, "  %-32s %s  (%s)\n", q.name, q.expr, kind)
	}
}

// answer is the part of a Prometheus API answer read here.
type answer struct {
	Status, Error string
	Warnings      []string
	Data          struct {
		Result []struct {
			Value  []any   `json:"value"`
			Values [][]any `json:"values"`
		} `json:"result"`
	}
	Nodes []query.NodeStatus
}

// do sends q and sums up its answer; peer is the slowest other node's
// read in a region-wide answer.
func (t target) do(ctx context.Context, q benchQuery) (sum checksum, peer time.Duration, err error) {
	v := url.Values{"query": {q.expr}}
	ep := "query"
	if q.span > 0 {
		ep = "query_range"
		v.Set("start", strconv.FormatInt(q.at.Add(-q.span).Unix(), 10))
		v.Set("end", strconv.FormatInt(q.at.Unix(), 10))
		v.Set("step", "60")
	} else {
		v.Set("time", strconv.FormatInt(q.at.Unix(), 10))
	}
	a, err := t.get(ctx, ep, v)
	if err != nil {
		return sum, 0, err
	}
	if len(a.Data.Result) == 0 && !t.partial {
		return sum, 0, errors.New("an empty answer: the data is not where the query looks")
	}
	for _, r := range a.Data.Result {
		sum.Series++
		vs := r.Values
		if r.Value != nil {
			vs = append(vs, r.Value)
		}
		for _, p := range vs {
			s, _ := p[len(p)-1].(string)
			f, err := strconv.ParseFloat(s, 64)
			switch {
			case err != nil:
				return sum, 0, fmt.Errorf("a value %v: %w", p, err)
			case math.IsNaN(f):
				sum.NaNs++
			default:
				sum.Sum += f
			}
			sum.Values++
		}
	}
	for _, n := range a.Nodes {
		if n.Node != "node-0" {
			peer = max(peer, time.Duration(n.LatencyMs*float64(time.Millisecond)))
		}
	}
	return sum, peer, nil
}

// scalar evaluates expr, a one-series aggregation, at at; 0 if a partial
// target finds nothing.
func (t target) scalar(ctx context.Context, expr string, at time.Time) (float64, error) {
	a, err := t.get(ctx, "query", url.Values{"query": {expr}, "time": {strconv.FormatInt(at.Unix(), 10)}})
	if err != nil {
		return 0, err
	}
	if len(a.Data.Result) == 0 && t.partial {
		return 0, nil
	}
	if len(a.Data.Result) != 1 || len(a.Data.Result[0].Value) != 2 {
		return 0, fmt.Errorf("%s: %d series, want 1", expr, len(a.Data.Result))
	}
	s, _ := a.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

func (t target) get(ctx context.Context, endpoint string, v url.Values) (*answer, error) {
	for k, vs := range t.params {
		v[k] = vs
	}
	req, err := http.NewRequestWithContext(ctx, "GET", t.base+"/api/v1/"+endpoint+"?"+v.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return nil, fmt.Errorf("HTTP %d: decoding the answer: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || a.Status != "success" {
		return nil, &refusal{code: resp.StatusCode, msg: a.Error}
	}
	if t.nodes > 0 {
		ok := 0
		for _, n := range a.Nodes {
			if n.Status == query.NodeOK {
				ok++
			}
		}
		if len(a.Nodes) != t.nodes || ok != t.nodes {
			return nil, fmt.Errorf("a region-wide answer without all %d nodes ok: %+v (warnings: %s)", t.nodes, a.Nodes, strings.Join(a.Warnings, "; "))
		}
	}
	if len(a.Warnings) > 0 {
		return nil, fmt.Errorf("warnings: %s", strings.Join(a.Warnings, "; "))
	}
	return &a, nil
}

// refusal is the API's answer to a query it would not run (too many
// samples, a timeout).
type refusal struct {
	code int
	msg  string
}

func (r *refusal) Error() string { return fmt.Sprintf("HTTP %d: %s", r.code, r.msg) }

// quantile is the nearest-rank q-quantile of sorted ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	return ds[max(0, int(math.Ceil(q*float64(len(ds))))-1)]
}

func fmtMs(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
