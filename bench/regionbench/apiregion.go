package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/bench/internal/writeload"
	"github.com/outpost-mesh/outpost/internal/freeport"
)

// apiRegion is a region of real `outpost serve` processes, the daemon with
// its whole FSM (every write audited in the same entry, tenancy, the
// dispatch lease and its fencing), written to through its HTTP API with
// the admin token, as users write: the path the API table measures.
type apiRegion struct {
	bin, dir string
	token    string
	nodes    []*apiNode
	http     *http.Client
}

type apiNode struct {
	id, api, config string
	cmd             *exec.Cmd
	exited          chan struct{}
}

// findOutpost returns the outpost binary to run: bin if set, else
// bin/outpost under the working directory (make build), else outpost on
// PATH.
func findOutpost(bin string) (string, error) {
	if bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("no outpost binary at %s", bin)
		}
		return bin, nil
	}
	if p, err := filepath.Abs("bin/outpost"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("outpost"); err == nil {
		return p, nil
	}
	return "", errors.New("no outpost binary in bin/ or on PATH (make build)")
}

// startAPIRegion sets up a region as an operator would (keys generate, ca
// create, keygen), starts n `outpost serve` nodes on loopback and waits
// for the admin token and a leader. With profileDir, each node writes a
// CPU profile there (api-nN.cpu.pprof) until it stops.
func startAPIRegion(ctx context.Context, bin, dir string, n int, gogc, profileDir string) (_ *apiRegion, err error) {
	a := &apiRegion{bin: bin, dir: dir, http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if profileDir != "" {
		if err := os.MkdirAll(profileDir, 0o700); err != nil {
			return nil, err
		}
	}
	run := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, bin, args...).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return "", fmt.Errorf("outpost %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
			}
			return "", fmt.Errorf("outpost %s: %w", strings.Join(args, " "), err)
		}
		return string(out), nil
	}
	mk, err := run("keys", "generate")
	if err != nil {
		return nil, err
	}
	masterKey := filepath.Join(dir, "master.key")
	if err := os.WriteFile(masterKey, []byte(mk), 0o600); err != nil {
		return nil, err
	}
	if _, err := run("ca", "create", "--region", regionName, "--out", filepath.Join(dir, "ca"), "--master-key-file", masterKey); err != nil {
		return nil, err
	}
	if _, err := run("keygen", "--out", filepath.Join(dir, "gossip.key"), "--master-key-file", masterKey); err != nil {
		return nil, err
	}
	ports, err := freeport.Ports("127.0.0.1", 4*n)
	if err != nil {
		return nil, err
	}
	var seeds []string
	for i := range n {
		seeds = append(seeds, fmt.Sprintf("127.0.0.1:%d", ports[4*i+2]))
	}
	tokenFile := filepath.Join(dir, "admin.token")
	for i := range n {
		nd := &apiNode{id: fmt.Sprintf("n%d", i+1), api: fmt.Sprintf("http://127.0.0.1:%d", ports[4*i]), config: filepath.Join(dir, fmt.Sprintf("n%d.yaml", i+1))}
		cfg := fmt.Sprintf(`region: %[1]s
node_id: %[2]s
data_dir: %[3]s
bootstrap_expect: %[4]d
admin_token_file: %[5]s
http:
  bind: 127.0.0.1:%[6]d
raft:
  bind: 127.0.0.1:%[7]d
gossip:
  bind: 127.0.0.1:%[8]d
  seeds: [%[9]s]
  key_file: %[10]s/gossip.key
agents:
  bind: 127.0.0.1:%[11]d
tls:
  ca_cert: %[10]s/ca/ca.crt
  ca_key: %[10]s/ca/ca.key
keys:
  master_key_file: %[12]s
log:
  level: warn
`, regionName, nd.id, filepath.Join(dir, nd.id), n, tokenFile, ports[4*i], ports[4*i+1], ports[4*i+2], strings.Join(seeds, ", "), dir, ports[4*i+3], masterKey)
		if err := os.WriteFile(nd.config, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		a.nodes = append(a.nodes, nd)
	}
	for _, nd := range a.nodes {
		logf, err := os.Create(filepath.Join(dir, nd.id+".log"))
		if err != nil {
			return nil, err
		}
		nd.cmd = exec.Command(bin, "serve", "--config", nd.config)
		nd.cmd.Stdout, nd.cmd.Stderr = logf, logf
		nd.cmd.SysProcAttr = childProcAttr()
		nd.cmd.Env = os.Environ()
		if gogc != "" {
			nd.cmd.Env = append(nd.cmd.Env, "GOGC="+gogc)
		}
		if profileDir != "" {
			nd.cmd.Env = append(nd.cmd.Env, "OUTPOST_CPU_PROFILE="+filepath.Join(profileDir, "api-"+nd.id+".cpu.pprof"))
		}
		if err := nd.cmd.Start(); err != nil {
			logf.Close()
			return nil, err
		}
		nd.exited = make(chan struct{})
		go func() {
			_ = nd.cmd.Wait()
			logf.Close()
			close(nd.exited)
		}()
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if b, err := os.ReadFile(tokenFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			a.token = string(bytes.TrimSpace(b))
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no admin token in %s after 90s (node logs in %s)", tokenFile, dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, err = a.leader(ctx, 60*time.Second)
	return a, err
}

// leader waits for a node to name a leader that answers, and returns it.
func (a *apiRegion) leader(ctx context.Context, timeout time.Duration) (*apiNode, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, nd := range a.nodes {
			cl := api.NewClient(nd.api, a.token)
			cl.HTTP = a.http
			var r api.Region
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := cl.Do(rctx, "GET", "/api/v1/region", nil, &r)
			cancel()
			if err != nil {
				continue
			}
			for _, l := range a.nodes {
				if l.id == r.Leader {
					return l, nil
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("no leader after %v (node logs in %s)", timeout, a.dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// load runs a closed-loop write load through the leader's API: each write
// a PUT /api/v1/kv/KEY, acknowledged by HTTP 200.
func (a *apiRegion) load(ctx context.Context, cfg config, n int, run string) (writeload.Result, error) {
	ld, err := a.leader(ctx, 30*time.Second)
	if err != nil {
		return writeload.Result{}, err
	}
	value := writeload.Value()
	return writeload.Run(ctx, writeload.Options{Writers: n, Warmup: cfg.warmup, Measure: cfg.duration},
		func(ctx context.Context, w, seq int) error {
			req, err := http.NewRequestWithContext(ctx, "PUT", ld.api+"/api/v1/kv/"+string(writeload.Key(run, w, seq)), bytes.NewReader(value))
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+a.token)
			resp, err := a.http.Do(req)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
			}
			return nil
		}), nil
}

// Close stops every node (SIGTERM, then SIGKILL after 10s).
func (a *apiRegion) Close() {
	for _, nd := range a.nodes {
		if nd.cmd != nil && nd.cmd.Process != nil {
			_ = nd.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, nd := range a.nodes {
		if nd.exited == nil {
			continue
		}
		select {
		case <-nd.exited:
		case <-time.After(10 * time.Second):
			_ = nd.cmd.Process.Kill()
			<-nd.exited
		}
	}
}

// pids are the `outpost serve` processes.
func (a *apiRegion) pids() []int {
	var cmds []*exec.Cmd
	for _, nd := range a.nodes {
		cmds = append(cmds, nd.cmd)
	}
	return runningPIDs(cmds)
}
