package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// Mode is the fault a drill injects on the lease holder.
type Mode string

const (
	// ModeTransfer asks the holder to release the lease and hand Raft
	// leadership to another node: the planned handoff.
	ModeTransfer Mode = "transfer"
	// ModeIsolate cuts the holder off from every peer on the Raft port
	// (its API stays reachable) for Config.IsolateFor.
	ModeIsolate Mode = "isolate"
	// ModeStop kills the holder as a crash would; it restarts after
	// Config.RestartAfter (outpost dev) or by its supervisor (serve).
	ModeStop Mode = "stop"
)

// Config is one drill. Zero fields take DefaultConfig's values.
type Config struct {
	// Addr is the API URL of any node of the region; the drill finds the
	// others from GET /api/v1/region. Without a scheme, http:// is used.
	Addr string
	// Token is a region-admin API token.
	Token string
	// Mode is the fault: transfer, isolate or stop. Default transfer.
	Mode Mode
	// Rounds is how many faults to inject, one after another, each on the
	// holder of the moment. Default 1.
	Rounds int
	// IsolateFor is how long isolate mode cuts the holder off; the node
	// heals itself after it even if the drill dies. It must exceed the
	// election plus the lease's wait (lease duration + drift margin), or
	// the stale checks run after the heal. Default 5s.
	IsolateFor time.Duration
	// RestartAfter is how long a stopped holder stays down. Default 2s.
	RestartAfter time.Duration
	// Progress receives one line per step (nil discards).
	Progress io.Writer
	// Isolator, when set, cuts the holder off in isolate mode instead of
	// the node's own fault injection in its Raft transport: the root tests
	// drop its packets with nftables in network namespaces. The drill heals
	// through it on every way out; nothing heals by itself.
	Isolator Isolator
	// HTTPClient sends every request; nil uses a client of its own. Its
	// Timeout must be 0: the event streams stay open for the whole drill
	// (every other request has its own deadline).
	HTTPClient *http.Client
}

// Isolator cuts a node off from its peers, and heals it, outside the
// node. Name says how, for the report.
type Isolator interface {
	Isolate(ctx context.Context, node string) error
	Heal(ctx context.Context, node string) error
	Name() string
}

// transportFaults is how a node isolates itself (POST /api/v1/drills/isolate).
const transportFaults = "the node's Raft transport fault injection"

// DefaultConfig returns the defaults: one transfer round, 5s isolations,
// restarts after 2s.
func DefaultConfig() Config {
	return Config{Mode: ModeTransfer, Rounds: 1, IsolateFor: 5 * time.Second, RestartAfter: 2 * time.Second}
}

// MaxFault is the longest isolation or stop a drill asks for: the most
// any node's drills.max_duration allows (each node also holds a drill to
// its own, smaller, setting and answers 400 beyond it).
const MaxFault = time.Hour

// maxRounds bounds one drill; more is a soak test, not a drill.
const maxRounds = 1000

// ConfigError is a config the drill cannot run; Problem names the field
// and what is wrong, without the package prefix Error adds.
type ConfigError struct{ Problem string }

func (e *ConfigError) Error() string { return "drill: " + e.Problem }

// Validate rejects a config the drill cannot run, naming the field (a
// *ConfigError).
func (c Config) Validate() error {
	var p string
	switch {
	case c.Addr == "":
		p = "Addr is required (any node's API URL)"
	case c.Mode != ModeTransfer && c.Mode != ModeIsolate && c.Mode != ModeStop:
		p = fmt.Sprintf("Mode %q: use transfer, isolate or stop", c.Mode)
	case c.Rounds < 1 || c.Rounds > maxRounds:
		p = fmt.Sprintf("Rounds %d must be in 1..%d", c.Rounds, maxRounds)
	case c.IsolateFor < time.Second || c.IsolateFor > MaxFault:
		p = fmt.Sprintf("IsolateFor %v must be in [1s, %v]", c.IsolateFor, MaxFault)
	case c.RestartAfter < 0 || c.RestartAfter > MaxFault:
		p = fmt.Sprintf("RestartAfter %v must be in [0, %v]", c.RestartAfter, MaxFault)
	case c.HTTPClient != nil && c.HTTPClient.Timeout != 0:
		p = fmt.Sprintf("HTTPClient.Timeout is %v; it must be 0, since the event streams stay open", c.HTTPClient.Timeout)
	default:
		return nil
	}
	return &ConfigError{Problem: p}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Mode == "" {
		c.Mode = d.Mode
	}
	if c.Rounds == 0 {
		c.Rounds = d.Rounds
	}
	if c.IsolateFor == 0 {
		c.IsolateFor = d.IsolateFor
	}
	if c.RestartAfter == 0 {
		c.RestartAfter = d.RestartAfter
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Addr != "" && !strings.Contains(c.Addr, "://") {
		c.Addr = "http://" + c.Addr
	}
	c.Addr = strings.TrimRight(c.Addr, "/")
	return c
}

// How long the drill waits for what it needs.
const (
	settleTimeout        = 60 * time.Second // the region settles, before and after a round
	firstDispatchTimeout = 30 * time.Second // from the fault to the first dispatch under the new lease
	loadStartTimeout     = 10 * time.Second // the first acknowledged write, before the fault
	restartTimeout       = 60 * time.Second // a stopped node answers again
	minStale             = 5                // stale probes answered per round (transfer, isolate)
	minWritesAfter       = 10               // writes acknowledged after the first new dispatch, per round
	maxAttempts          = 3                // faults tried per round when the region moved first
)

// Run runs cfg.Rounds rounds and returns the report. On an error the
// report holds the rounds run so far (the failed one with its Error), so
// a caller can still print what was measured. Run returns only after
// every request and stream it started has ended.
func Run(ctx context.Context, cfg Config) (api.DrillReport, error) {
	cfg = cfg.withDefaults()
	report := api.DrillReport{Mode: string(cfg.Mode), PerRound: []api.DrillRound{}}
	if err := cfg.Validate(); err != nil {
		return report, err
	}
	d := newDrill(cfg)
	defer d.close()
	timings, err := d.prepare(ctx)
	report.Timings = timings
	if err != nil {
		return report, err
	}
	var rounds []api.DrillRound
	for n := 1; n <= cfg.Rounds; n++ {
		r, err := d.round(ctx, n)
		rounds = append(rounds, r)
		if err != nil {
			report = buildReport(cfg.Mode, rounds, timings)
			return report, fmt.Errorf("round %d of %d: %w", n, cfg.Rounds, err)
		}
	}
	return buildReport(cfg.Mode, rounds, timings), nil
}

// drill is one run of Run: its streams, the round being watched, and
// what it learned about the region.
type drill struct {
	cfg     Config
	api     *caller
	runID   string
	streams *watchers

	outMu sync.Mutex // Progress lines

	// stopConfirm bounds the wait for signs that a node whose stop answer
	// was lost did stop (stopConfirmTimeout; tests shorten it).
	stopConfirm time.Duration

	mu    sync.Mutex
	urls  map[string]string // node id -> API URL, as last discovered
	watch *watch            // the round being watched; nil between rounds
}

func newDrill(cfg Config) *drill {
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     30 * time.Second,
		}}
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	d := &drill{cfg: cfg, api: &caller{&api.Client{HTTP: hc, Token: cfg.Token}}, runID: hex.EncodeToString(b), urls: map[string]string{},
		stopConfirm: stopConfirmTimeout}
	d.streams = newWatchers(d.api, d.note)
	return d
}

func (d *drill) close() {
	d.streams.close()
	if d.cfg.HTTPClient == nil {
		d.api.c.HTTP.CloseIdleConnections()
	}
}

// say writes one progress line.
func (d *drill) say(format string, args ...any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintf(d.cfg.Progress, format+"\n", args...)
}

// prepare waits for a settled region, checks that every voter runs
// drills, and reads the timings in use.
func (d *drill) prepare(ctx context.Context) (api.DrillTimings, error) {
	t := api.DrillTimings{}
	switch d.cfg.Mode {
	case ModeIsolate:
		t.IsolateForMs = d.cfg.IsolateFor.Milliseconds()
		t.IsolatedBy = transportFaults
		if d.cfg.Isolator != nil {
			t.IsolatedBy = d.cfg.Isolator.Name()
		}
	case ModeStop:
		t.RestartAfterMs = d.cfg.RestartAfter.Milliseconds()
	}
	v, err := d.settle(ctx, "drill")
	if err != nil {
		return t, err
	}
	if len(v.voters) < 3 {
		return t, fmt.Errorf("a failover drill needs a region of at least 3 voters; %s has %d (try `outpost dev --nodes 3`)", v.region, len(v.voters))
	}
	var ids []string
	for _, n := range v.voters {
		var st api.DrillState
		if err := d.api.call(ctx, 5*time.Second, "GET", n.APIURL, "/api/v1/drills", nil, &st); err != nil {
			return t, fmt.Errorf("reading the drill settings of %s: %w", n.ID, err)
		}
		if !st.Enabled {
			return t, fmt.Errorf("drills are disabled on node %s; set `drills: {enabled: true}` in every node's config for the game day (outpost dev enables them)", n.ID)
		}
		cur := api.DrillTimings{Node: n.ID, HeartbeatTimeoutMs: st.HeartbeatTimeoutMs, ElectionTimeoutMs: st.ElectionTimeoutMs,
			IsolateForMs: t.IsolateForMs, IsolatedBy: t.IsolatedBy, RestartAfterMs: t.RestartAfterMs}
		if st.Lease != nil {
			cur.LeaseDurationMs, cur.LeaseDriftMarginMs = st.Lease.DurationMs, st.Lease.DriftMarginMs
		}
		if len(ids) == 0 {
			t = cur
		} else if cur.Node = t.Node; cur != t {
			d.say("drill: warning: node %s runs other timings (%s); the report shows %s's", n.ID, timingsLine(cur), t.Node)
		}
		ids = append(ids, n.ID)
	}
	d.say("drill: run %s: %d %s round(s) on region %s (nodes %s); leader %s, lease token %d",
		d.runID, d.cfg.Rounds, d.cfg.Mode, v.region, strings.Join(ids, ", "), v.leader, v.token)
	d.say("drill: timings: %s", timingsLine(t))
	if d.cfg.Mode == ModeIsolate {
		if need := time.Duration(t.ElectionTimeoutMs+t.HeartbeatTimeoutMs+t.LeaseDurationMs+t.LeaseDriftMarginMs) * time.Millisecond; d.cfg.IsolateFor <= need {
			d.say("drill: warning: isolating for %v may end before a new lease (election and lease wait take about %v); the stale checks then run after the heal", d.cfg.IsolateFor, need)
		}
	}
	return t, nil
}

func timingsLine(t api.DrillTimings) string {
	s := fmt.Sprintf("lease %dms (drift margin %dms), raft heartbeat timeout %dms, election timeout %dms",
		t.LeaseDurationMs, t.LeaseDriftMarginMs, t.HeartbeatTimeoutMs, t.ElectionTimeoutMs)
	if t.IsolateForMs > 0 {
		s += fmt.Sprintf(", isolate for %dms", t.IsolateForMs)
		if t.IsolatedBy != "" {
			s += " by " + t.IsolatedBy
		}
	}
	if t.RestartAfterMs > 0 {
		s += fmt.Sprintf(", restart after %dms", t.RestartAfterMs)
	}
	return s
}
