package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

type servedNode struct {
	id, config, dataDir, api string
	p                        *proc
}

type servedRegion struct {
	dir, bin  string
	tokenFile string
	nodes     []*servedNode
}

// servedPlan says where a region of `outpost serve` nodes listens.
type servedPlan struct {
	region string
	n      int
	// addr is node i's (1-based) listening host and its API, Raft, gossip
	// and agent ports.
	addr  func(i int) (host string, api, raft, gossip, agents int)
	extra string // YAML added to every node's config
}

// writeServedRegion makes what a region of `outpost serve` nodes shares,
// with the binaries as an operator would (`outpost keys generate`, `ca
// create`, `keygen`), and writes each node's config, listing every node's
// gossip address as a seed. The one builder of the e2e regions: on
// loopback (newServedRegion) or in network namespaces (newNSRegion).
func writeServedRegion(t *testing.T, plan servedPlan) *servedRegion {
	t.Helper()
	bin := binaries(t)
	dir := t.TempDir()
	sr := &servedRegion{dir: dir, bin: bin, tokenFile: filepath.Join(dir, "admin.token")}
	code, mk := run(t, 30*time.Second, bin+"/outpost", "keys", "generate")
	if code != 0 {
		t.Fatalf("keys generate: %d", code)
	}
	if err := os.WriteFile(dir+"/master.key", []byte(mk), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := run(t, 30*time.Second, bin+"/outpost", "ca", "create", "--region", plan.region, "--out", dir+"/ca", "--master-key-file", dir+"/master.key"); code != 0 {
		t.Fatalf("ca create: %d %s", code, out)
	}
	if code, out := run(t, 30*time.Second, bin+"/outpost", "keygen", "--out", dir+"/gossip.key", "--master-key-file", dir+"/master.key"); code != 0 {
		t.Fatalf("keygen: %d %s", code, out)
	}
	var seeds []string
	for i := 1; i <= plan.n; i++ {
		host, _, _, gossip, _ := plan.addr(i)
		seeds = append(seeds, fmt.Sprintf("%s:%d", host, gossip))
	}
	for i := 1; i <= plan.n; i++ {
		id := fmt.Sprintf("n%d", i)
		host, apiPort, raftPort, gossipPort, agentPort := plan.addr(i)
		nd := &servedNode{id: id, dataDir: filepath.Join(dir, id), config: filepath.Join(dir, id+".yaml"), api: fmt.Sprintf("http://%s:%d", host, apiPort)}
		cfg := fmt.Sprintf(`region: %[1]s
node_id: %[2]s
data_dir: %[3]s
bootstrap_expect: %[4]d
admin_token_file: %[5]s
http:
  bind: %[6]s:%[7]d
raft:
  bind: %[6]s:%[8]d
  server_stabilization: 1s
agents:
  bind: %[6]s:%[9]d
gossip:
  bind: %[6]s:%[10]d
  seeds: [%[11]s]
  key_file: %[12]s/gossip.key
tls:
  ca_cert: %[12]s/ca/ca.crt
  ca_key: %[12]s/ca/ca.key
keys:
  master_key_file: %[12]s/master.key
log:
  level: info
%[13]s`, plan.region, id, nd.dataDir, plan.n, sr.tokenFile, host, apiPort, raftPort, agentPort, gossipPort, strings.Join(seeds, ", "), dir, plan.extra)
		if err := os.WriteFile(nd.config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		sr.nodes = append(sr.nodes, nd)
	}
	return sr
}

// newServedRegion writes configs for n `outpost serve` nodes on loopback,
// each on ports of its own that stay across restarts.
func newServedRegion(t *testing.T, n int) *servedRegion {
	t.Helper()
	ports := freePorts(t, 4*n)
	return writeServedRegion(t, servedPlan{region: "e2e", n: n, addr: func(i int) (string, int, int, int, int) {
		return "127.0.0.1", ports[4*(i-1)], ports[4*(i-1)+1], ports[4*(i-1)+2], ports[4*(i-1)+3]
	}})
}

func (sr *servedRegion) start(t *testing.T, nd *servedNode) {
	t.Helper()
	nd.p = start(t, sr.bin+"/outpost", "serve", "--config", nd.config)
}

func (sr *servedRegion) leader(t *testing.T, c *apiClient) *servedNode {
	t.Helper()
	var leader *servedNode
	waitFor(t, 30*time.Second, "a leader", func() bool {
		for _, nd := range sr.nodes {
			if nd.p == nil {
				continue
			}
			r, err := c.region(t, nd.api)
			if err != nil {
				continue
			}
			for _, cand := range sr.nodes {
				if cand.id == r.Leader && cand.p != nil {
					leader = cand
					return true
				}
			}
		}
		return false
	})
	return leader
}

// Killing the leader with SIGKILL while clients write through every node
// loses no write the API acknowledged, and the killed node rejoins with
// the same state.
func TestSIGKILLLeaderLosesNoAcknowledgedWrite(t *testing.T) {
	sr := newServedRegion(t, 3)
	for _, nd := range sr.nodes {
		sr.start(t, nd)
	}
	waitFor(t, 60*time.Second, "the admin token", func() bool { _, err := os.Stat(sr.tokenFile); return err == nil })
	c := &apiClient{token: readToken(t, sr.tokenFile), http: &http.Client{Timeout: 15 * time.Second}}
	leader := sr.leader(t, c)

	var mu sync.Mutex
	acked := map[string]string{}
	var attempts, failures atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				nd := sr.nodes[(w+i)%len(sr.nodes)]
				key, val := fmt.Sprintf("w%d-%05d", w, i), fmt.Sprintf("value-%d-%d", w, i)
				attempts.Add(1)
				code, _, err := c.do(ctx, "PUT", nd.api+"/api/v1/kv/"+key, []byte(val))
				if err != nil || code != 200 {
					failures.Add(1)
					continue
				}
				mu.Lock()
				acked[key] = val
				mu.Unlock()
			}
		}()
	}
	time.Sleep(2 * time.Second)
	t.Logf("SIGKILL leader %s after %d writes", leader.id, attempts.Load())
	leader.p.signal(syscall.SIGKILL)
	leader.p.wait(t, 10*time.Second)
	leader.p = nil
	time.Sleep(3 * time.Second)
	sr.start(t, leader)
	time.Sleep(2 * time.Second)
	stop()
	wg.Wait()
	t.Logf("%d writes attempted, %d acknowledged, %d refused or failed (expected during the election)", attempts.Load(), len(acked), failures.Load())
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged; the region did not keep taking writes", len(acked))
	}

	// Every acknowledged write must be readable, linearizably, from every
	// node, including the one that was killed.
	for _, nd := range sr.nodes {
		waitFor(t, 30*time.Second, nd.id+" to answer consistent reads", func() bool {
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			code, _, err := c.do(rctx, "GET", nd.api+"/api/v1/kv?consistent=true&prefix=none", nil)
			return err == nil && code == 200
		})
		lost := 0
		for k, v := range acked {
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			code, body, err := c.do(rctx, "GET", nd.api+"/api/v1/kv/"+k+"?consistent=true", nil)
			cancel()
			if err != nil || code != 200 || string(body) != v {
				lost++
				if lost <= 5 {
					t.Errorf("node %s: acknowledged key %s: HTTP %d %q err %v", nd.id, k, code, body, err)
				}
			}
		}
		if lost > 0 {
			t.Fatalf("node %s lost %d of %d acknowledged writes", nd.id, lost, len(acked))
		}
	}

	// SIGTERM: a graceful stop of every node, exit status 0.
	for _, nd := range sr.nodes {
		nd.p.signal(syscall.SIGTERM)
	}
	for _, nd := range sr.nodes {
		if code := nd.p.wait(t, 40*time.Second); code != 0 {
			t.Errorf("node %s exited %d after SIGTERM", nd.id, code)
		}
		if !strings.Contains(nd.p.out.String(), "node stopped") {
			t.Errorf("node %s did not log a clean stop", nd.id)
		}
	}
}

// Bad starts end at once with exit status 1 and a message that says what
// is wrong and what to do; none of them damages the data dir. A damaged
// state file is the exception: it is rebuilt, and the node says so.
func TestServeRefusesBadStarts(t *testing.T) {
	sr := newServedRegion(t, 1)
	nd := sr.nodes[0]
	good, err := os.ReadFile(nd.config)
	if err != nil {
		t.Fatal(err)
	}
	variant := func(name string, edit func(string) string) string {
		p := filepath.Join(sr.dir, name+".yaml")
		if err := os.WriteFile(p, []byte(edit(string(good))), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	expectFail := func(t *testing.T, cfg string, want ...string) {
		t.Helper()
		code, out := run(t, 30*time.Second, sr.bin+"/outpost", "serve", "--config", cfg)
		if code != 1 {
			t.Fatalf("exit %d, want 1; output:\n%s", code, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Fatalf("output lacks %q:\n%s", w, out)
			}
		}
	}

	t.Run("unknown field names field and line", func(t *testing.T) {
		expectFail(t, variant("typo", func(s string) string { return strings.Replace(s, "bootstrap_expect", "bootstrap_expct", 1) }),
			"line 4", "bootstrap_expct")
	})
	t.Run("missing --config is a usage error", func(t *testing.T) {
		if code, _ := run(t, 30*time.Second, sr.bin+"/outpost", "serve"); code != 2 {
			t.Fatalf("exit %d, want 2", code)
		}
	})
	t.Run("missing gossip key", func(t *testing.T) {
		expectFail(t, variant("nokey", func(s string) string { return strings.Replace(s, "gossip.key", "missing.key", 1) }), "gossip.key_file")
	})
	t.Run("unreadable API certificate", func(t *testing.T) {
		expectFail(t, variant("badcert", func(s string) string {
			return strings.Replace(s, "http:\n", "http:\n  cert_file: /nonexistent/api.crt\n  key_file: /nonexistent/api.key\n", 1)
		}), "http.cert_file")
	})
	t.Run("port in use", func(t *testing.T) {
		l, err := net.Listen("tcp", strings.TrimPrefix(nd.api, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		expectFail(t, nd.config, "address already in use", "http.bind")
	})

	// Start the node for real, then try to start it again.
	sr.start(t, nd)
	waitFor(t, 60*time.Second, "the admin token", func() bool { _, err := os.Stat(sr.tokenFile); return err == nil })
	t.Run("data dir held by another process", func(t *testing.T) {
		expectFail(t, nd.config, "in use by another process")
	})
	nd.p.signal(syscall.SIGTERM)
	if code := nd.p.wait(t, 40*time.Second); code != 0 {
		t.Fatalf("SIGTERM exit %d", code)
	}
	t.Run("data dir of another node", func(t *testing.T) {
		expectFail(t, variant("othernode", func(s string) string { return strings.Replace(s, "node_id: n1", "node_id: n9", 1) }),
			"belongs to another node", `"n1"`)
	})
	t.Run("data dir of another region", func(t *testing.T) {
		expectFail(t, variant("otherregion", func(s string) string { return strings.Replace(s, "region: e2e", "region: other", 1) }),
			"belongs to another region")
	})
	// A damaged state file is not refused since issue 20: the node moves
	// it aside, says so, and rebuilds it from its snapshot and Raft log
	// (the durable record), then serves.
	t.Run("corrupt state file is rebuilt", func(t *testing.T) {
		state := filepath.Join(nd.dataDir, "state.db")
		if err := os.WriteFile(state, []byte(strings.Repeat("not a bbolt file ", 2000)), 0o600); err != nil {
			t.Fatal(err)
		}
		sr.start(t, nd)
		c := &apiClient{token: readToken(t, sr.tokenFile), http: &http.Client{Timeout: 5 * time.Second}}
		waitFor(t, 30*time.Second, "the rebuilt node to lead, its admin token known again", func() bool {
			r, err := c.region(t, nd.api)
			return err == nil && r.Leader == "n1"
		})
		if !strings.Contains(nd.p.out.String(), "state file was damaged: moved it aside and rebuilding it") {
			t.Errorf("the node did not say it rebuilt the state file:\n%s", nd.p.out.String())
		}
		if _, err := os.Stat(state + ".damaged"); err != nil {
			t.Errorf("the damaged file was not kept aside: %v", err)
		}
		nd.p.signal(syscall.SIGTERM)
		if code := nd.p.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("the rebuilt node exited %d on SIGTERM", code)
		}
		nd.p = nil
	})
	t.Run("intact after all that", func(t *testing.T) {
		sr.start(t, nd)
		c := &apiClient{token: readToken(t, sr.tokenFile), http: &http.Client{Timeout: 5 * time.Second}}
		waitFor(t, 30*time.Second, "the restarted node to lead", func() bool {
			r, err := c.region(t, nd.api)
			return err == nil && r.Leader == "n1"
		})
	})
}

// servedAdmin starts a one-node served region and returns it, its node
// and a region admin's client (idempotent retries: the node may still be
// electing itself).
func servedAdmin(t *testing.T) (*servedRegion, *servedNode, *api.Client) {
	t.Helper()
	sr := newServedRegion(t, 1)
	nd := sr.nodes[0]
	sr.start(t, nd)
	waitFor(t, 60*time.Second, "the admin token", func() bool { _, err := os.Stat(sr.tokenFile); return err == nil })
	admin := api.NewClient(nd.api, readToken(t, sr.tokenFile))
	admin.Retry = api.Retry{For: 30 * time.Second, Pause: 200 * time.Millisecond, Idempotent: true}
	return sr, nd, admin
}
