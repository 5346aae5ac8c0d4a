package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/outpost-mesh/outpost/bench/internal/writeload"
	"github.com/outpost-mesh/outpost/internal/freeport"
	"github.com/outpost-mesh/outpost/node/pki"
)

// etcdOptions configures the etcd cluster the benchmark compares against.
type etcdOptions struct {
	Bin       string        // path of the etcd binary
	Heartbeat time.Duration // --heartbeat-interval; etcd's default is 100ms
	Election  time.Duration // --election-timeout; etcd's default is 1000ms
	PeerTLS   bool          // mutual TLS between members, like Outpost's Raft traffic
}

// etcdCluster is n etcd members on loopback, each its own process with its
// own data dir, at etcd's default durability (WAL fsync on every commit).
type etcdCluster struct {
	opts    etcdOptions
	dir     string
	members []*etcdMember
	initial string // --initial-cluster value
}

type etcdMember struct {
	name      string
	dataDir   string
	clientURL string
	peerURL   string
	cmd       *exec.Cmd // nil while killed
	exited    chan struct{}
}

// etcdVersion returns the first line of `etcd --version`.
func etcdVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(line, "etcd Version:")), nil
}

// startEtcd starts n members under dir and waits until they have a leader.
func startEtcd(ctx context.Context, dir string, n int, opts etcdOptions) (_ *etcdCluster, err error) {
	c := &etcdCluster{opts: opts, dir: dir}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	ports, err := freeport.Ports("127.0.0.1", 2*n)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if opts.PeerTLS {
		scheme = "https"
		if err := writePeerCerts(dir, n); err != nil {
			return nil, err
		}
	}
	var initial []string
	for i := range n {
		m := &etcdMember{
			name:      fmt.Sprintf("e%d", i+1),
			dataDir:   filepath.Join(dir, fmt.Sprintf("e%d", i+1)),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peerURL:   fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i+1]),
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	c.initial = strings.Join(initial, ",")
	for _, m := range c.members {
		if err := c.start(m); err != nil {
			return nil, err
		}
	}
	if _, _, err := c.leader(ctx, c.members, 0, 30*time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

// start launches m; a member whose data dir exists rejoins with it (etcd
// then ignores the --initial-cluster flags).
func (c *etcdCluster) start(m *etcdMember) error {
	args := []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", c.initial,
		"--initial-cluster-token", "outpost-bench",
		"--initial-cluster-state", "new",
		"--heartbeat-interval", fmt.Sprint(c.opts.Heartbeat.Milliseconds()),
		"--election-timeout", fmt.Sprint(c.opts.Election.Milliseconds()),
		"--logger", "zap",
	}
	if c.opts.PeerTLS {
		certs := filepath.Join(c.dir, "certs")
		args = append(args,
			"--peer-cert-file", filepath.Join(certs, m.name+".crt"),
			"--peer-key-file", filepath.Join(certs, m.name+".key"),
			"--peer-trusted-ca-file", filepath.Join(certs, "ca.crt"),
			"--peer-client-cert-auth")
	}
	log, err := os.OpenFile(filepath.Join(c.dir, m.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.opts.Bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start etcd member %s: %w", m.name, err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(m.exited)
	}()
	return nil
}

// kill sends SIGKILL to m and waits for it to exit.
func (c *etcdCluster) kill(m *etcdMember) {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

// Close stops every member (SIGKILL: the data dirs are thrown away).
func (c *etcdCluster) Close() {
	for _, m := range c.members {
		c.kill(m)
	}
}

// client returns a client for the given members' client URLs. It logs
// nothing: failed attempts during failover are expected.
func etcdClient(members ...*etcdMember) (*clientv3.Client, error) {
	var eps []string
	for _, m := range members {
		eps = append(eps, m.clientURL)
	}
	return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// etcdClients opens n independent clients (each its own gRPC connection)
// to m, so many writers are not funnelled through one HTTP/2 connection.
func etcdClients(n int, m *etcdMember) ([]*clientv3.Client, error) {
	var out []*clientv3.Client
	for range n {
		cli, err := etcdClient(m)
		if err != nil {
			for _, c := range out {
				c.Close()
			}
			return nil, err
		}
		out = append(out, cli)
	}
	return out, nil
}

// leader polls the given members until one of them reports a leader other
// than notID (0: any leader) that is a live member, and returns it with
// its member id.
func (c *etcdCluster) leader(ctx context.Context, among []*etcdMember, notID uint64, timeout time.Duration) (*etcdMember, uint64, error) {
	live := c.live()
	cli, err := etcdClient(live...)
	if err != nil {
		return nil, 0, err
	}
	defer cli.Close()
	deadline := time.Now().Add(timeout)
	for {
		ids := map[uint64]*etcdMember{}
		var lead uint64
		for _, m := range live {
			id, l, err := memberStatus(ctx, cli, m)
			if err != nil {
				continue
			}
			ids[id] = m
			if slices.Contains(among, m) && l != 0 && l != notID {
				lead = l
			}
		}
		if m, ok := ids[lead]; ok {
			return m, lead, nil
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("etcd: no leader after %v (member logs are in %s)", timeout, c.dir)
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// memberStatus returns m's member id and the leader it believes in.
func memberStatus(ctx context.Context, cli *clientv3.Client, m *etcdMember) (id, leader uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	st, err := cli.Status(ctx, m.clientURL)
	if err != nil {
		return 0, 0, err
	}
	return st.Header.MemberId, st.Leader, nil
}

// settle waits for a leader, writes through it, and waits until every live
// member has applied that write.
func (c *etcdCluster) settle(ctx context.Context, timeout time.Duration) (*etcdMember, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	live := c.live()
	ld, _, err := c.leader(ctx, live, 0, timeout)
	if err != nil {
		return nil, err
	}
	cli, err := etcdClient(live...)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	put, err := cli.Put(ctx, "bench/settle", time.Now().String())
	if err != nil {
		return nil, fmt.Errorf("etcd: settle write: %w", err)
	}
	for {
		behind := 0
		for _, m := range live {
			sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
			st, err := cli.Status(sctx, m.clientURL)
			scancel()
			if err != nil || st.Header.Revision < put.Header.Revision {
				behind++
			}
		}
		if behind == 0 {
			return ld, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("etcd: members did not catch up to revision %d: %w", put.Header.Revision, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (c *etcdCluster) live() []*etcdMember {
	var out []*etcdMember
	for _, m := range c.members {
		if m.cmd != nil {
			out = append(out, m)
		}
	}
	return out
}

// writePeerCerts writes a CA and one peer certificate per member (valid
// for 127.0.0.1, server and client usage) under dir/certs.
func writePeerCerts(dir string, n int) error {
	certs := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return err
	}
	ca, err := pki.NewCA("etcd-bench")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(certs, "ca.crt"), ca.CertPEM(), 0o600); err != nil {
		return err
	}
	for i := range n {
		name := fmt.Sprintf("e%d", i+1)
		cert, err := ca.IssueNode("etcd-bench", name, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
		if err != nil {
			return err
		}
		key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		if err != nil {
			return err
		}
		err = errors.Join(
			os.WriteFile(filepath.Join(certs, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600),
			os.WriteFile(filepath.Join(certs, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600))
		if err != nil {
			return err
		}
	}
	return nil
}

// etcdRoundTrip is the p50 of a serializable Get on the leader: the client
// and gRPC cost every etcd write in the table includes and Outpost's
// in-process Apply does not.
func etcdRoundTrip(ctx context.Context, c *etcdCluster) (time.Duration, error) {
	ld, err := c.settle(ctx, 30*time.Second)
	if err != nil {
		return 0, err
	}
	cli, err := etcdClient(ld)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	var ds []time.Duration
	for range 2000 {
		t := time.Now()
		if _, err := cli.Get(ctx, "bench/settle", clientv3.WithSerializable()); err != nil {
			return 0, fmt.Errorf("etcd: serializable get: %w", err)
		}
		ds = append(ds, time.Since(t))
	}
	return writeload.Percentile(ds, 0.5), nil
}

// pids are the member processes running now.
func (c *etcdCluster) pids() []int {
	var cmds []*exec.Cmd
	for _, m := range c.members {
		cmds = append(cmds, m.cmd)
	}
	return runningPIDs(cmds)
}
