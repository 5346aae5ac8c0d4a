package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/drill"
	"github.com/outpost-mesh/outpost/internal/netlab"
)

// nsRegion is a region of `outpost serve` processes, each in a network
// namespace of its own (netlab host i runs node n<i> on 10.77.0.i).
type nsRegion struct {
	lab   *netlab.Lab
	nodes []*servedNode
	token string
	hc    *http.Client
}

// newNSRegion starts n nodes in namespaces on a bridge. The test talks to
// them from the bridge namespace, which every host reaches whatever the
// drop rules between hosts.
func newNSRegion(t *testing.T, n int) *nsRegion {
	t.Helper()
	if err := netlab.Available(); err != nil {
		t.Skipf("network-namespace isolation needs root, ip and nft: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lab, err := netlab.New(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after every process is killed.
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("removing the namespaces: %v", err)
		}
	})
	sr := writeServedRegion(t, servedPlan{region: "netns", n: n, extra: "drills:\n  enabled: true\n",
		addr: func(i int) (string, int, int, int, int) { return netlab.Addr(i), 7070, 7001, 7002, 7443 }})
	tokenFile := sr.tokenFile
	r := &nsRegion{lab: lab, hc: &http.Client{Transport: &http.Transport{DialContext: lab.Dial}}}
	for i, nd := range sr.nodes {
		nd.p = start(t, "ip", "netns", "exec", lab.Namespace(i+1), sr.bin+"/outpost", "serve", "--config", nd.config)
		r.nodes = append(r.nodes, nd)
	}
	waitFor(t, 60*time.Second, "the admin token", func() bool {
		b, err := os.ReadFile(tokenFile)
		r.token = strings.TrimSpace(string(b))
		return err == nil && r.token != ""
	})
	c := &apiClient{token: r.token, http: r.hc}
	waitFor(t, 60*time.Second, "a lease holder known to every node", func() bool {
		for _, nd := range r.nodes {
			reg, err := c.region(t, nd.api)
			if err != nil || reg.Lease == nil || reg.Lease.Holder == "" || len(reg.Nodes) != n {
				return false
			}
		}
		return true
	})
	return r
}

// nftIsolator cuts a node off with netlab's nftables drop rules in its
// namespace: the kernel drops every packet between it and its peers
// (Raft, gossip, forwarding) while the bridge still reaches its API.
type nftIsolator struct {
	lab *netlab.Lab
	t   *testing.T
}

func (n nftIsolator) host(node string) (int, error) {
	var i int
	if _, err := fmt.Sscanf(node, "n%d", &i); err != nil {
		return 0, fmt.Errorf("node %q is not one of this lab's n<i>", node)
	}
	return i, nil
}

func (n nftIsolator) Isolate(ctx context.Context, node string) error {
	i, err := n.host(node)
	if err != nil {
		return err
	}
	if err := n.lab.Isolate(ctx, i); err != nil {
		return err
	}
	rules, err := n.lab.Rules(ctx, i)
	n.t.Logf("nftables in %s's namespace now:\n%s", node, rules)
	return err
}

func (n nftIsolator) Heal(ctx context.Context, node string) error {
	i, err := n.host(node)
	if err != nil {
		return err
	}
	return n.lab.Heal(ctx, i)
}

func (nftIsolator) Name() string { return "nftables drop rules in its network namespace" }

// TestIsolateDrillWithNftablesInNamespaces is the isolate drill with a
// real partition: three `outpost serve` processes, each in its own
// network namespace, and the lease holder cut off from its peers by
// nftables drop rules in its namespace, not by Outpost's own fault
// injection. The drill's report must show a new holder under a new
// token, every stale dispatch the deposed holder attempted refused and
// none accepted, and no acknowledged write lost.
func TestIsolateDrillWithNftablesInNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes in network namespaces; skipped with -short")
	}
	r := newNSRegion(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := drill.Run(ctx, drill.Config{
		Addr: r.nodes[0].api, Token: r.token, Mode: drill.ModeIsolate, Rounds: 2,
		IsolateFor: 8 * time.Second, Isolator: nftIsolator{lab: r.lab, t: t},
		HTTPClient: r.hc, Progress: tlog{t},
	})
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	if rep.Timings.IsolatedBy != (nftIsolator{}).Name() {
		t.Errorf("report says the holder was isolated by %q, want the nftables isolator", rep.Timings.IsolatedBy)
	}
	if len(rep.PerRound) != 2 {
		t.Fatalf("report has %d rounds, want 2", len(rep.PerRound))
	}
	for _, rd := range rep.PerRound {
		if rd.NewHolder == "" || rd.NewHolder == rd.Node || rd.NewToken <= rd.Token {
			t.Errorf("round %d: holder %s (token %d) → %s (token %d); want another node under a higher token", rd.Round, rd.Node, rd.Token, rd.NewHolder, rd.NewToken)
		}
		if rd.StaleAttempted == 0 || rd.StaleRefused == 0 {
			t.Errorf("round %d: %d stale dispatches attempted, %d refused; the deposed holder's token was not exercised", rd.Round, rd.StaleAttempted, rd.StaleRefused)
		}
	}
	if rep.StaleAccepted != 0 {
		t.Errorf("%d stale dispatches accepted (ids %v)", rep.StaleAccepted, rep.PerRound)
	}
	if rep.AckedWrites == 0 || rep.AckedWritesLost != 0 {
		t.Errorf("%d writes acknowledged, %d lost; want some, none lost", rep.AckedWrites, rep.AckedWritesLost)
	}
	t.Logf("isolate by nftables: first fenced dispatch p50 %dms, max %dms; stale %d attempted, %d refused, 0 accepted; %d writes, 0 lost",
		rep.FirstDispatchMs.P50, rep.FirstDispatchMs.Max, rep.StaleAttempted, rep.StaleRefused, rep.AckedWrites)
}

// tlog sends each progress line to t.Log.
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
