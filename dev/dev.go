// Package dev runs `outpost dev`: a complete region of 1, 3 or 5
// nodes in one process on loopback, each node with its own data dir and
// real ports, sharing one generated CA and gossip key, so an operator can
// watch a region (and a failover) on a laptop.
//
// It is dev mode's home, not one node's wiring: cmd/outpost starts it,
// and it starts nodes through package node like any other caller.
package dev

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/node/keys"
	"github.com/outpost-mesh/outpost/node/pki"
)

// Options configure a dev region; zero values take the defaults.
type Options struct {
	HTTP    string // first node's API address; default 127.0.0.1:7070, later nodes take the next ports
	DataDir string // default a new temp dir, removed on exit unless Keep
	Keep    bool
	Nodes   int // 1, 3 or 5; default 1
	// Regions is how many federated regions StartFederation starts; Start
	// starts one.
	Regions int
	// Name is the region's name (default "dev"); Federation, when set,
	// gives every node a federation endpoint on loopback.
	Name       string
	Federation bool
	Agents     int // in-process agents, enrolled in tenant "dev"; default 0
	// AgentsBind is where the nodes' agent ports listen and what agents
	// are told to dial: HOST, or HOST:PORT with node i on PORT+i-1.
	// Default 127.0.0.1 on free ports, which only this machine reaches;
	// an address another host (or a network namespace) reaches lets an
	// outpost-agent there enroll. Raft, gossip and the API stay as they are.
	AgentsBind string
	// Telemetry, when set, turns on the first agent's data plane: it
	// observes this machine (eBPF as root, else procfs, saying why), and
	// exports to the node it is attached to. The others stay control-
	// plane clients: one observer per host.
	Telemetry *agent.TelemetryConfig
	Out       io.Writer
	Logger    *slog.Logger
	// LogLevel, when set, sends the nodes' logs at that level (debug,
	// info, warn, error) to outpost.log in the data dir; Logger then gets
	// only the warnings and errors of Outpost's own components, not the
	// Raft and gossip chatter between nodes (see logs.go).
	LogLevel string

	// NodeConfig, when set, adjusts each node's config before it starts
	// (tests: an OIDC provider), with the region's key protector for
	// sealing a secret file.
	NodeConfig func(cfg *node.Config, kp *keys.Protector) error

	// beforeSetup, in tests, runs once the nodes are up, before the
	// setup writes (the dev tenant, its agents).
	beforeSetup func(*Region)
}

// Region is a running dev region.
type Region struct {
	opts    Options
	region  string
	dataDir string
	tempDir bool
	ca      *pki.CA
	key     []byte
	keys    *keys.Protector
	ports   map[string]nodePorts

	mu    sync.Mutex
	nodes map[string]*node.Node
	ids   []string
	// stopping holds a channel per node being stopped, closed once its
	// ports are free; StartNode waits for it.
	stopping map[string]chan struct{}

	logFile *os.File
	envFile string // EnvFile, once written

	agents     []*agent.Agent
	stopAgents context.CancelFunc
	agentsDone sync.WaitGroup
}

type nodePorts struct {
	HTTP       string `json:"http"`
	Raft       string `json:"raft"`
	Gossip     string `json:"gossip"`
	Agents     string `json:"agents,omitempty"`
	Federation string `json:"federation,omitempty"`
}

// Start brings up the dev region and returns once it has a leader and an
// admin token. Progress goes to opts.Out.
func Start(ctx context.Context, opts Options) (_ *Region, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 1
	}
	if opts.Regions == 0 {
		opts.Regions = 1
	}
	if opts.HTTP == "" {
		opts.HTTP = "127.0.0.1:7070"
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	switch opts.Nodes {
	case 1, 3, 5:
	default:
		return nil, fmt.Errorf("--nodes %d: a region has 1, 3 or 5 nodes", opts.Nodes)
	}
	if opts.Regions != 1 {
		return nil, fmt.Errorf("--regions %d: Start starts one region; StartFederation starts several", opts.Regions)
	}
	d := &Region{opts: opts, region: cmp.Or(opts.Name, "dev"), nodes: map[string]*node.Node{}, ports: map[string]nodePorts{}, stopping: map[string]chan struct{}{}}
	if opts.DataDir == "" {
		if d.dataDir, err = os.MkdirTemp("", "outpost-dev-"); err != nil {
			return nil, err
		}
		d.tempDir = true
	} else {
		d.dataDir = opts.DataDir
		if err := os.MkdirAll(d.dataDir, 0o700); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			d.Stop(context.Background())
		}
	}()
	if err := d.openLog(); err != nil {
		return nil, fmt.Errorf("the dev log file: %w", err)
	}
	if err := d.loadSecrets(); err != nil {
		return nil, err
	}
	d.say("outpost dev: starting region %q with %d node(s) in %s", d.region, opts.Nodes, d.dataDir)
	start := time.Now()
	for i := 1; i <= opts.Nodes; i++ {
		id := fmt.Sprintf("n%d", i)
		d.ids = append(d.ids, id)
		if err := d.StartNode(id); err != nil {
			return nil, err
		}
	}
	leader, err := d.waitLeader(ctx, 30*time.Second)
	if err != nil {
		return nil, err
	}
	d.say("  leader elected: %s (%.1fs after start)", leader, time.Since(start).Seconds())
	tokenFile := d.TokenFile()
	for _, f := range []string{tokenFile, d.PasswordFile()} {
		if err := waitFile(ctx, f, 30*time.Second); err != nil {
			return nil, fmt.Errorf("waiting for the admin credentials: %w", err)
		}
	}
	if err := d.waitTokenAccepted(ctx, 15*time.Second); err != nil {
		return nil, err
	}
	d.say("  region admin token written to %s", tokenFile)
	if err := d.writeEnv(); err != nil {
		return nil, err
	}
	if opts.beforeSetup != nil {
		opts.beforeSetup(d)
	}
	if opts.Agents > 0 {
		if err := d.startAgents(ctx, opts.Agents); err != nil {
			return nil, fmt.Errorf("starting the dev agents: %w", err)
		}
	}
	return d, nil
}

// waitTokenAccepted waits until every node accepts the region admin
// token: the file is written by whichever node led first, and another
// node accepts the token once it has applied the entry that stored it.
func (d *Region) waitTokenAccepted(ctx context.Context, timeout time.Duration) error {
	tok, err := os.ReadFile(d.TokenFile())
	if err != nil {
		return err
	}
	d.mu.Lock()
	var urls []string
	var nodes []*node.Node
	var applied uint64 // the highest applied index: the token's write is in it
	for _, id := range d.ids {
		if n := d.nodes[id]; n != nil {
			urls = append(urls, n.APIURL())
			nodes = append(nodes, n)
			applied = max(applied, n.Region().AppliedIndex())
		}
	}
	d.mu.Unlock()
	deadline := time.Now().Add(timeout)
	// Ask a node only once it has applied the token's write: a token it
	// does not know yet is a refusal it would log as a warning.
	for _, n := range nodes {
		for n.Region().AppliedIndex() < applied && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, u := range urls {
		for {
			c := api.NewClient(u, strings.TrimSpace(string(tok)))
			c.Timeout = 5 * time.Second
			err := c.Do(ctx, "GET", "/api/v1/whoami", nil, nil)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("the region admin token was not accepted at %s within %v: %v", u, timeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// DevTenant is the tenant dev agents enroll in; the admin account is its
// admin.
const DevTenant = "dev"

// devTenant makes sure the dev tenant, its admin account "dev" and a
// viewer token for queries exist, and returns a client logged in as its
// admin. Every step may be repeated (a restart with --data).
func (d *Region) devTenant(ctx context.Context) (*api.Client, error) {
	tok, err := os.ReadFile(d.TokenFile())
	if err != nil {
		return nil, err
	}
	s := setupClient(d.APIURL(), strings.TrimSpace(string(tok)), d.say)
	// Region admins cannot reach tenant data, so the dev tenant gets an
	// admin account of its own. Its password is chosen here and kept
	// beside the region admin's before the account is created, so every
	// step can be asked again: a repeat finds the account or tenant there
	// (409) and goes on.
	pwFile := d.DevPasswordFile()
	pw, err := os.ReadFile(pwFile)
	if errors.Is(err, os.ErrNotExist) {
		pw = []byte(auth.GeneratePassword() + "\n")
		err = os.WriteFile(pwFile, pw, 0o600)
	}
	if err != nil {
		return nil, err
	}
	password := strings.TrimSpace(string(pw))
	if err := create(ctx, s, "/api/v1/users", api.UserCreate{Name: DevTenant, Password: password}); err != nil {
		return nil, err
	}
	if err := create(ctx, s, "/api/v1/tenants", api.TenantCreate{Name: DevTenant, Admin: DevTenant}); err != nil {
		return nil, err
	}
	if err := s.Login(ctx, DevTenant, password); err != nil {
		return nil, fmt.Errorf("%w (the dev tenant's admin password is in %s; start with a new --data dir if it was changed)", gaveUp(ctx, err), pwFile)
	}
	// A viewer token of the dev tenant, for queries (a region admin
	// reads no tenant's data).
	if _, err := os.Stat(d.QueryTokenFile()); err != nil {
		var tok api.APIToken
		if err := s.Do(ctx, "POST", "/api/v1/tenants/"+DevTenant+"/tokens", api.TokenCreate{Name: "dev-query", Role: "viewer"}, &tok); err != nil {
			return nil, gaveUp(ctx, err)
		}
		if err := os.WriteFile(d.QueryTokenFile(), []byte(tok.Token+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// startAgents enrolls n in-process agents in tenant "dev" (once: their
// state stays in the data dir) and runs them.
func (d *Region) startAgents(ctx context.Context, n int) error {
	// The setup must finish even when a write lands on a leadership
	// change; it gives up after setupTimeout with what it last saw.
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	s, err := d.devTenant(ctx)
	if err != nil {
		return err
	}
	actx, stopAgents := context.WithCancel(context.Background())
	d.stopAgents = stopAgents
	for i := 1; i <= n; i++ {
		dir := filepath.Join(d.dataDir, "agents", fmt.Sprintf("agent-%d", i))
		cfg := agent.Config{StateDir: dir, CAPEM: d.ca.CertPEM(), Host: fmt.Sprintf("dev-agent-%d", i),
			Logger: d.opts.Logger.With("agent", i)}
		if i == 1 && d.opts.Telemetry != nil {
			tc := *d.opts.Telemetry
			cfg.Telemetry = &tc
		}
		if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
			var bt api.BootstrapToken
			if err := s.Do(ctx, "POST", "/api/v1/tenants/"+DevTenant+"/agent-tokens", api.BootstrapTokenCreate{TTL: "5m"}, &bt); err != nil {
				return gaveUp(ctx, err)
			}
			cfg.Token, cfg.Servers = bt.Token, bt.Servers
		}
		a, err := agent.New(ctx, cfg)
		if err != nil {
			return err
		}
		d.agents = append(d.agents, a)
		d.agentsDone.Add(1)
		go func() {
			defer d.agentsDone.Done()
			_ = a.Run(actx)
		}()
		st := a.Status()
		d.say("  agent %s (%s) enrolled in tenant %q; it attaches to the nearest node", st.AgentID, cfg.Host, DevTenant)
		if cfg.Telemetry != nil {
			d.sayMode(a, cfg.Host)
		}
	}
	return nil
}

// sayMode says how the observing agent sees this machine, once its data
// plane has started.
func (d *Region) sayMode(a *agent.Agent, host string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		h, ok := a.Telemetry()
		if !ok {
			continue
		}
		if h.Mode == "ebpf" {
			d.say("  %s observes this machine's TCP connections with eBPF", host)
		} else {
			d.say("  %s observes this machine through procfs (connection states only, no bytes or RTT): %s", host, h.Reason)
		}
		return
	}
}

// QueryTokenFile holds a viewer token of the dev tenant, for its query API.
func (d *Region) QueryTokenFile() string { return filepath.Join(d.dataDir, "dev-query.token") }

// DevPasswordFile holds the password of account "dev", the dev tenant's admin.
func (d *Region) DevPasswordFile() string { return filepath.Join(d.dataDir, "dev.password") }

// Agents are the dev region's in-process agents.
func (d *Region) Agents() []*agent.Agent { return d.agents }

// loadSecrets loads or creates the dev CA, gossip key and port map.
func (d *Region) loadSecrets() error {
	// The dev region's master key lives in its data dir (0600): fine for
	// a throwaway region, never for a real one (docs/config.md).
	mkFile := filepath.Join(d.dataDir, "master.key")
	if _, err := os.Stat(mkFile); err != nil {
		k, err := keys.GenerateKey()
		if err != nil {
			return err
		}
		if err := os.WriteFile(mkFile, []byte(k+"\n"), 0o600); err != nil {
			return err
		}
	}
	var err error
	if d.keys, err = keys.LoadMaster(keys.Source{File: mkFile}, keys.Source{}); err != nil {
		return fmt.Errorf("dev master key: %w", err)
	}
	caDir := filepath.Join(d.dataDir, "ca")
	if _, statErr := os.Stat(filepath.Join(caDir, "ca.crt")); statErr == nil {
		d.ca, err = pki.LoadWrappedCA(d.keys, filepath.Join(caDir, "ca.crt"), filepath.Join(caDir, "ca.key"))
	} else {
		if d.ca, err = pki.NewCA(d.region); err == nil {
			err = d.ca.SaveWrapped(d.keys, caDir)
		}
	}
	if err != nil {
		return fmt.Errorf("dev CA: %w", err)
	}
	keyFile := filepath.Join(d.dataDir, "gossip.key")
	if b, err := keys.ReadFile(d.keys, keyFile, node.PurposeGossipKey); err == nil {
		d.key, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("%s: %w", keyFile, err)
		}
	} else {
		d.key = make([]byte, 32)
		rand.Read(d.key)
		if err := keys.WriteFile(d.keys, keyFile, node.PurposeGossipKey, []byte(base64.StdEncoding.EncodeToString(d.key))); err != nil {
			return err
		}
	}
	if b, err := os.ReadFile(d.portsFile()); err == nil {
		if err := json.Unmarshal(b, &d.ports); err != nil {
			return fmt.Errorf("%s: %w", d.portsFile(), err)
		}
	}
	return nil
}

func (d *Region) portsFile() string { return filepath.Join(d.dataDir, "dev-ports.json") }

// PasswordFile is where the first region admin's password is written.
func (d *Region) PasswordFile() string { return filepath.Join(d.dataDir, "admin.password") }

// TokenFile is where the region admin token is written.
func (d *Region) TokenFile() string { return filepath.Join(d.dataDir, "admin.token") }

// Name is the region's name.
func (d *Region) Name() string { return d.region }

// FederationAddr is every node's federation endpoint, comma-separated,
// as a peer is configured with it ("" when off).
func (d *Region) FederationAddr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, id := range d.ids {
		if a := d.ports[id].Federation; a != "" {
			out = append(out, a)
		}
	}
	return strings.Join(out, ",")
}

// DataDir is the region's data directory.
func (d *Region) DataDir() string { return d.dataDir }

// APIURL is the first node's API.
func (d *Region) APIURL() string { return "http://" + d.ports["n1"].HTTP }

func (d *Region) say(format string, args ...any) { fmt.Fprintf(d.opts.Out, format+"\n", args...) }

// httpAddr is the API address of node i (1-based): the --http port plus i-1.
func (d *Region) httpAddr(i int) (string, error) {
	host, port, err := net.SplitHostPort(d.opts.HTTP)
	if err != nil {
		return "", fmt.Errorf("--http %q: %w", d.opts.HTTP, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("--http %q: bad port", d.opts.HTTP)
	}
	if p == 0 {
		return net.JoinHostPort(host, "0"), nil
	}
	return net.JoinHostPort(host, strconv.Itoa(p+i-1)), nil
}

// agentsHost is the host of --agents-bind: the address agents dial.
func (d *Region) agentsHost() string {
	if h, _, err := net.SplitHostPort(d.opts.AgentsBind); err == nil {
		return h
	}
	return cmp.Or(d.opts.AgentsBind, "127.0.0.1")
}

// agentsAddr is the agent port of node i (1-based): --agents-bind's port
// plus i-1, or a free port when it names none.
func (d *Region) agentsAddr(i int) (string, error) {
	host := d.agentsHost()
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return "", fmt.Errorf("--agents-bind %q: give an IP address of this machine that agents dial (e.g. 127.0.0.1 or a link's address), not a name or a wildcard", d.opts.AgentsBind)
	}
	_, port, err := net.SplitHostPort(d.opts.AgentsBind)
	if err != nil {
		return net.JoinHostPort(host, "0"), nil
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p+i-1 > 65535 {
		return "", fmt.Errorf("--agents-bind %q: bad port", d.opts.AgentsBind)
	}
	if p == 0 {
		return net.JoinHostPort(host, "0"), nil
	}
	return net.JoinHostPort(host, strconv.Itoa(p+i-1)), nil
}

// EnvFile is where the region's credentials are, for a shell to source:
// a name that depends only on the first node's API port, so two dev
// regions on one machine each have their own, and a script need not
// guess a temporary directory's name.
func (d *Region) EnvFile() string {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(d.APIURL(), "http://"))
	return filepath.Join(os.TempDir(), "outpost-dev-"+port+".env")
}

// writeEnv writes EnvFile (0600: it holds the admin token).
func (d *Region) writeEnv() error {
	tok, err := os.ReadFile(d.TokenFile())
	if err != nil {
		return err
	}
	body := fmt.Sprintf("# outpost dev region %q (data in %s), while it runs. In a shell: . %s\n"+
		"export OUTPOST_ADDR=%s\nexport OUTPOST_TOKEN=%s\nexport OUTPOST_DEV_DATA=%s\n",
		d.region, d.dataDir, d.EnvFile(), d.APIURL(), strings.TrimSpace(string(tok)), d.dataDir)
	tmp := d.EnvFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return fmt.Errorf("writing the region's environment file: %w", err)
	}
	if err := os.Rename(tmp, d.EnvFile()); err != nil {
		return fmt.Errorf("writing the region's environment file: %w", err)
	}
	d.envFile = d.EnvFile()
	return nil
}

// StartNode starts (or restarts, on its old ports and data) node id. A
// node still stopping is waited for (up to 30 s): its ports are not free
// before.
func (d *Region) StartNode(id string) error {
	d.mu.Lock()
	stopping := d.stopping[id]
	d.mu.Unlock()
	if stopping != nil {
		select {
		case <-stopping:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("node %s is still stopping after 30s; try again, or see %s", id, cmp.Or(d.logPath(), "the node's log"))
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, running := d.nodes[id]; running {
		return fmt.Errorf("node %s is already running", id)
	}
	i := indexOf(d.ids, id)
	if i < 0 {
		return fmt.Errorf("no node %q in this dev region (nodes: %s)", id, strings.Join(d.ids, ", "))
	}
	ports, known := d.ports[id]
	if !known {
		h, err := d.httpAddr(i + 1)
		if err != nil {
			return err
		}
		ports = nodePorts{HTTP: h, Raft: "127.0.0.1:0", Gossip: "127.0.0.1:0"}
	}
	agentsBind, err := d.agentsAddr(i + 1)
	if err != nil {
		return err
	}
	// The ports file's agent port is kept on a restart, unless
	// --agents-bind now names another host.
	if oldHost, _, _ := net.SplitHostPort(ports.Agents); ports.Agents == "" || oldHost != d.agentsHost() {
		ports.Agents = agentsBind
	}
	if d.opts.Federation && ports.Federation == "" {
		ports.Federation = "127.0.0.1:0"
	}
	var seeds []string
	for _, other := range d.ids {
		if p, ok := d.ports[other]; ok && other != id {
			seeds = append(seeds, p.Gossip)
		}
	}
	cfg := node.DefaultConfig()
	cfg.Region, cfg.NodeID = d.region, id
	cfg.DataDir = filepath.Join(d.dataDir, id)
	cfg.BootstrapExpect = d.opts.Nodes
	cfg.AdminTokenFile = d.TokenFile()
	cfg.HTTP.Bind = ports.HTTP
	cfg.Raft.Bind, cfg.Gossip.Bind = ports.Raft, ports.Gossip
	cfg.Agents.Bind, cfg.Agents.Advertise = ports.Agents, d.agentsHost()
	cfg.Gossip.Seeds = seeds
	if d.opts.Federation {
		cfg.Federation.Bind = ports.Federation
	}
	cfg.Raft.MinQuorum = d.opts.Nodes
	// A dev region is for trying things, failover drills included.
	cfg.Drills.Enabled = true
	if d.opts.Nodes == 1 {
		cfg.Raft.MinQuorum = 0
	}
	if d.opts.NodeConfig != nil {
		if err := d.opts.NodeConfig(&cfg, d.keys); err != nil {
			return fmt.Errorf("node %s config: %w", id, err)
		}
	}
	// A restarted node reuses its API port; on a busy loopback an outbound
	// connection may briefly hold it as its ephemeral source port, so
	// retry a port in use for a few seconds before giving up.
	var n *node.Node
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		n, err = node.Start(cfg, node.Options{Logger: d.opts.Logger, GossipKey: d.key, CA: d.ca, Dev: d, Keys: d.keys,
			StopDrill: func(restartAfter time.Duration) { d.crash(id, restartAfter) }})
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("start node %s: %w", id, err)
	}
	_, httpPort, _ := net.SplitHostPort(strings.TrimPrefix(n.APIURL(), "http://"))
	host, _, _ := net.SplitHostPort(ports.HTTP)
	d.ports[id] = nodePorts{HTTP: net.JoinHostPort(host, httpPort), Raft: n.Region().RaftAddr(), Gossip: n.Region().GossipAddr(),
		Agents: n.AgentAddr(), Federation: n.FederationAddr()}
	if b, err := json.MarshalIndent(d.ports, "", "  "); err == nil {
		_ = os.WriteFile(d.portsFile(), b, 0o600)
	}
	d.nodes[id] = n
	d.say("  node %s up: API %s", id, n.APIURL())
	return nil
}

// StopNode kills node id abruptly, as a crash would. It returns at once
// and stops the node in the background, so a request served by that very
// node still gets its answer.
func (d *Region) StopNode(id string) error {
	d.mu.Lock()
	n, ok := d.nodes[id]
	if !ok {
		d.mu.Unlock()
		return fmt.Errorf("node %q is not running (nodes: %s)", id, strings.Join(d.ids, ", "))
	}
	delete(d.nodes, id)
	done := make(chan struct{})
	d.stopping[id] = done
	d.mu.Unlock()
	go func() {
		time.Sleep(100 * time.Millisecond)
		n.Kill()
		d.mu.Lock()
		delete(d.stopping, id)
		d.mu.Unlock()
		close(done)
		if len(d.ids) == 1 {
			d.say("  node %s stopped (killed): it was the region's only node, so the region is down; Ctrl-C and run outpost dev again", id)
			return
		}
		d.say("  node %s stopped (killed; start it again with `outpostctl dev start %s`)", id, id)
	}()
	return nil
}

// crash kills node id now, as a stop drill asks, and starts it again on
// its data dir after restartAfter.
func (d *Region) crash(id string, restartAfter time.Duration) {
	d.mu.Lock()
	n, ok := d.nodes[id]
	delete(d.nodes, id)
	d.mu.Unlock()
	if !ok {
		return
	}
	n.Kill()
	d.say("  node %s stopped by a drill; restarting it in %v", id, restartAfter)
	time.Sleep(restartAfter)
	if err := d.StartNode(id); err != nil {
		d.say("  restarting node %s after the drill failed: %v (start it with `outpostctl dev start %s`)", id, err, id)
	}
}

// Node returns a running node by id.
func (d *Region) Node(id string) (*node.Node, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.nodes[id]
	return n, ok
}

func (d *Region) waitLeader(ctx context.Context, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		for id, n := range d.nodes {
			if n.Region().IsLeader() {
				d.mu.Unlock()
				return id, nil
			}
		}
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("no leader elected within %v; run with --log-level debug to see why", timeout)
}

// Stop shuts every node down gracefully and removes a temporary data dir
// unless Keep was set.
func (d *Region) Stop(ctx context.Context) error {
	if d.stopAgents != nil {
		d.stopAgents()
		d.agentsDone.Wait()
	}
	d.mu.Lock()
	nodes := d.nodes
	d.nodes = map[string]*node.Node{}
	d.mu.Unlock()
	// Followers first, the leader last: stopping the whole region should
	// not set off elections and leadership transfers on the way down.
	var errs []error
	ordered := make([]*node.Node, 0, len(nodes))
	var leader *node.Node
	for _, n := range nodes {
		if n.Region().IsLeader() {
			leader = n
			continue
		}
		ordered = append(ordered, n)
	}
	if leader != nil {
		ordered = append(ordered, leader)
	}
	for i, n := range ordered {
		if i == len(ordered)-1 {
			n.Kill() // the last node has no one to hand off to or leave
			continue
		}
		if err := n.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.ID(), err))
		}
	}
	if d.envFile != "" {
		_ = os.Remove(d.envFile) // the region it names is gone
	}
	if d.logFile != nil {
		errs = append(errs, d.logFile.Close())
	}
	if d.tempDir && !d.opts.Keep {
		errs = append(errs, os.RemoveAll(d.dataDir))
	} else if d.dataDir != "" {
		d.say("outpost dev: data kept in %s", d.dataDir)
	}
	return errors.Join(errs...)
}

func indexOf(ids []string, id string) int {
	for i, v := range ids {
		if v == id {
			return i
		}
	}
	return -1
}

func waitFile(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// setupTimeout bounds the dev setup's requests, retries included.
const setupTimeout = 90 * time.Second

// setupClient is the dev setup's API client for one node. It asks again
// what a leadership change or a busy node makes fail for a while: no
// answer, 503 (no leader, or a write whose outcome is unknown) and 429.
// Every request the setup makes is safe to repeat: creating what exists
// answers 409, which the setup accepts, and a login or a bootstrap token
// more is harmless.
func setupClient(url, token string, say func(format string, args ...any)) *api.Client {
	c := api.NewClient(url, token)
	c.Timeout = 15 * time.Second
	c.Retry = api.Retry{For: setupTimeout, Pause: 100 * time.Millisecond, MaxPause: 2 * time.Second, Idempotent: true}
	c.OnRetry = func(err error, _ time.Duration) { say("  the region is busy (%v); retrying", err) }
	return c
}

// create makes something the setup needs, accepting that it exists (an
// earlier attempt's answer was lost, or the data dir was used before).
func create(ctx context.Context, c *api.Client, path string, in any) error {
	if err := c.Do(ctx, "POST", path, in, nil); err != nil && api.StatusOf(err) != http.StatusConflict {
		return gaveUp(ctx, err)
	}
	return nil
}

// gaveUp says the setup gave up when its time ran out.
func gaveUp(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (gave up after %v; check the node logs, or start again)", err, setupTimeout)
	}
	return err
}
