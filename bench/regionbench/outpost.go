package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/outpost-mesh/outpost/bench/internal/writeload"
	"github.com/outpost-mesh/outpost/internal/freeport"
	"github.com/outpost-mesh/outpost/node/pki"
)

// outpostRegion is a region of Outpost nodes on loopback, each its own
// process (this binary, run with nodeEnv set), as production runs them:
// mutual TLS between nodes, raft-wal and a bbolt state file per node, all
// fsynced, gossip discovery and bootstrap_expect, default tuning.
type outpostRegion struct {
	dir   string
	gogc  string // GOGC for the node processes; "" keeps the daemon's (internal/gcpolicy)
	nodes []*outpostNode
	http  *http.Client
}

type outpostNode struct {
	cfg     nodeConfig
	cfgPath string
	ctl     string // control API base URL
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startOutpost starts n node processes under dir and waits for a leader.
// gogc, if set, is the GOGC the node processes run with.
func startOutpost(ctx context.Context, dir string, n int, gogc string, bareFSM bool) (_ *outpostRegion, err error) {
	o := &outpostRegion{dir: dir, gogc: gogc, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	ca, err := pki.NewCA(regionName)
	if err != nil {
		return nil, err
	}
	caDir := filepath.Join(dir, "ca")
	if err := ca.Save(caDir); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	ports, err := freeport.Ports("127.0.0.1", 3*n)
	if err != nil {
		return nil, err
	}
	for i := range n {
		c := nodeConfig{
			ID: fmt.Sprintf("n%d", i+1), Dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			RaftAddr:    fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			GossipAddr:  fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
			ControlAddr: fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]),
			GossipKey:   hex.EncodeToString(key), CADir: caDir, Expect: n, BareFSM: bareFSM,
		}
		o.nodes = append(o.nodes, &outpostNode{cfg: c, ctl: "http://" + c.ControlAddr})
	}
	for _, nd := range o.nodes {
		for _, other := range o.nodes {
			if other != nd {
				nd.cfg.Seeds = append(nd.cfg.Seeds, other.cfg.GossipAddr)
			}
		}
		if err := o.start(ctx, nd); err != nil {
			return nil, err
		}
	}
	if _, err := o.leader(ctx, o.live(), 30*time.Second); err != nil {
		return nil, err
	}
	return o, nil
}

// start launches nd's process (on its existing data dir, if any) and
// waits until its control API answers.
func (o *outpostRegion) start(ctx context.Context, nd *outpostNode) error {
	if err := os.MkdirAll(nd.cfg.Dir, 0o700); err != nil {
		return err
	}
	nd.cfgPath = filepath.Join(o.dir, nd.cfg.ID+".json")
	b, _ := json.Marshal(nd.cfg)
	if err := os.WriteFile(nd.cfgPath, b, 0o600); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(o.dir, nd.cfg.ID+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childProcAttr()
	cmd.Env = append(os.Environ(), nodeEnv+"="+nd.cfgPath)
	if o.gogc != "" {
		cmd.Env = append(cmd.Env, "GOGC="+o.gogc)
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start node %s: %w", nd.cfg.ID, err)
	}
	nd.cmd, nd.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(nd.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := o.status(ctx, nd); err == nil {
			return nil
		}
		select {
		case <-nd.exited:
			return fmt.Errorf("node %s exited at start; see %s", nd.cfg.ID, filepath.Join(o.dir, nd.cfg.ID+".log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: control API not up after 30s", nd.cfg.ID)
		}
	}
}

// kill sends SIGKILL to nd's process and waits for it to exit: no
// leadership handoff, no gossip leave, exactly like the etcd side.
func (o *outpostRegion) kill(nd *outpostNode) {
	if nd.cmd == nil {
		return
	}
	_ = nd.cmd.Process.Kill()
	<-nd.exited
	nd.cmd = nil
}

func (o *outpostRegion) Close() {
	for _, nd := range o.nodes {
		o.kill(nd)
	}
}

func (o *outpostRegion) live() []*outpostNode {
	var out []*outpostNode
	for _, nd := range o.nodes {
		if nd.cmd != nil {
			out = append(out, nd)
		}
	}
	return out
}

func (o *outpostRegion) status(ctx context.Context, nd *outpostNode) (nodeStatus, error) {
	var st nodeStatus
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	err := o.call(ctx, http.MethodGet, nd.ctl+"/status", nil, &st)
	return st, err
}

// put writes one key through nd; the node retries internally within
// timeout, as raft.Region.Apply does for any caller.
func (o *outpostRegion) put(ctx context.Context, nd *outpostNode, key string, timeout time.Duration) (uint64, error) {
	var res struct {
		Index uint64 `json:"index"`
	}
	q := url.Values{"key": {key}, "timeout": {timeout.String()}}
	err := o.call(ctx, http.MethodPost, nd.ctl+"/put?"+q.Encode(), nil, &res)
	return res.Index, err
}

// load runs a closed-loop write load inside the leader's process.
func (o *outpostRegion) load(ctx context.Context, nd *outpostNode, lr loadRequest) (writeload.Result, error) {
	var res loadResult
	if err := o.call(ctx, http.MethodPost, nd.ctl+"/load", lr, &res); err != nil {
		return writeload.Result{}, err
	}
	return res.result(), nil
}

func (o *outpostRegion) call(ctx context.Context, method, u string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	resp, err := o.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// leader waits until one of among reports that it leads.
func (o *outpostRegion) leader(ctx context.Context, among []*outpostNode, timeout time.Duration) (*outpostNode, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, nd := range among {
			if st, err := o.status(ctx, nd); err == nil && st.Leader {
				return nd, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("outpost: no leader after %v (node logs are in %s)", timeout, o.dir)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// settle writes one entry through the leader and waits until every live
// node has applied it and names the same leader, so each measurement
// starts from a healthy, caught-up region.
func (o *outpostRegion) settle(ctx context.Context, timeout time.Duration) (*outpostNode, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ld, err := o.leader(ctx, o.live(), timeout)
	if err != nil {
		return nil, err
	}
	idx, err := o.put(ctx, ld, "bench/settle", 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("outpost: settle write: %w", err)
	}
	for {
		ok := true
		for _, nd := range o.live() {
			st, err := o.status(ctx, nd)
			if err != nil || st.Applied < idx || st.LeaderID != ld.cfg.ID {
				ok = false
			}
		}
		if ok {
			return ld, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("outpost: nodes did not catch up to index %d: %w", idx, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// errNoSurvivor means every node is down, which a failover round never
// causes on purpose.
var errNoSurvivor = errors.New("no live node left")

// pids are the node processes running now.
func (o *outpostRegion) pids() []int {
	var cmds []*exec.Cmd
	for _, nd := range o.nodes {
		cmds = append(cmds, nd.cmd)
	}
	return runningPIDs(cmds)
}

// runningPIDs are the process ids of the started commands among cmds.
func runningPIDs(cmds []*exec.Cmd) []int {
	var out []int
	for _, c := range cmds {
		if c != nil && c.Process != nil {
			out = append(out, c.Process.Pid)
		}
	}
	return out
}
