package node_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/agent"
	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/internal/otlptest"
	"github.com/outpost-mesh/outpost/internal/testcluster"
	"github.com/outpost-mesh/outpost/internal/testcluster/nodes"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/pki"
)

// wire records every federation request and answer of every node.
type wire struct {
	mu   sync.Mutex
	seen [][]byte
}

func (w *wire) tap(r *http.Request, status int, body []byte) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %d\n", r.Method, r.URL.String(), status)
	_ = r.Header.Write(&b)
	b.Write(body)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, b.Bytes())
}

// scan fails t for every recorded message containing one of secrets.
func (w *wire) scan(t *testing.T, secrets []string) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.seen {
		for _, s := range secrets {
			if bytes.Contains(m, []byte(s)) {
				t.Errorf("federation traffic carries %q:\n%s", s, m)
			}
		}
	}
	return len(w.seen)
}

type fedRegion struct {
	name  string
	ca    *pki.CA
	nodes []*testNode
}

func startFedRegion(t *testing.T, name string, n int, w *wire) *fedRegion {
	t.Helper()
	ca, err := pki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	shared := nodes.StartRegion(t, nodes.RegionConfig{Nodes: n,
		Options: node.Options{Keys: mustKeys(t, newMasterKey(t), nil), CA: ca, FederationTap: w.tap},
		Configure: func(_ int, cfg *node.Config) {
			cfg.Region = name
			cfg.Federation.Bind = "127.0.0.1:0"
			cfg.Federation.Timeout = time.Second
			cfg.Federation.PollInterval = time.Second
			cfg.Federation.AuditInterval = time.Second
		}})
	r := &fedRegion{name: name, ca: ca}
	for _, s := range shared {
		r.nodes = append(r.nodes, fromShared(s))
	}
	return r
}

func (r *fedRegion) addPeer(t *testing.T, p *fedRegion, secret string) {
	t.Helper()
	body, _ := json.Marshal(api.PeerCreate{Name: p.name, Addr: p.nodes[0].n.FederationAddr(), CAPEM: string(p.ca.CertPEM()), Secret: secret})
	r.nodes[0].must(t, 201, "POST", "/api/v1/peers", r.nodes[0].token, string(body))
}

// tenant creates tenant name with an admin and returns its id and the
// admin's credentials.
func (r *fedRegion) tenant(t *testing.T, name, admin string) (id, cred string) {
	t.Helper()
	tn := r.nodes[0]
	pw := tn.newUser(t, admin)
	var ten api.Tenant
	_ = json.Unmarshal([]byte(tn.must(t, 201, "POST", "/api/v1/tenants", tn.token, fmt.Sprintf(`{"name":%q,"admin":%q}`, name, admin))), &ten)
	return ten.ID, tn.login(t, admin, pw)
}

// enroll enrolls an agent of tenant and returns its state dir.
func (r *fedRegion) enroll(t *testing.T, cred, tenant, host string) string {
	t.Helper()
	bt := newToken(t, r.nodes[0], cred, tenant)
	dir := t.TempDir()
	if _, err := agent.New(t.Context(), agent.Config{Servers: bt.Servers, Token: bt.Token, StateDir: dir, CAPin: bt.CAPin, Host: host}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func statusOf(g api.Global) map[string]string {
	out := map[string]string{}
	for _, p := range g.Peers {
		out[p.Peer] = p.Status
	}
	return out
}

// TestFederationGlobalViews runs three regions of real nodes on loopback
// federated over real QUIC: a three-node region asks a one-node peer
// (linked, both factors right) and another (its secret wrong) for global
// views; every byte of federation traffic is scanned for the tenants' ids
// and names; then the second peer goes down and the views still answer
// within the per-peer deadline, saying which peer is missing.
func TestFederationGlobalViews(t *testing.T) {
	w := &wire{}
	us := startFedRegion(t, "us-east", 3, w)
	eu := startFedRegion(t, "eu-west", 1, w)
	ap := startFedRegion(t, "ap-south", 1, w)
	secret, wrong := strings.Repeat("s3cr3t-", 6), strings.Repeat("wrong-", 7)
	us.addPeer(t, eu, secret)
	eu.addPeer(t, us, secret)
	us.addPeer(t, ap, secret)
	ap.addPeer(t, us, wrong)

	acmeID, alice := us.tenant(t, "acme", "alice")
	globexID, gina := us.tenant(t, "globex", "gina")
	emeaID, erin := eu.tenant(t, "emea-team", "erin")
	apacID, arun := ap.tenant(t, "apac", "arun")
	var l1, l2 api.Link
	_ = json.Unmarshal([]byte(us.nodes[0].must(t, 201, "POST", "/api/v1/tenants/acme/links", alice, `{"peer":"eu-west"}`)), &l1)
	_ = json.Unmarshal([]byte(us.nodes[0].must(t, 201, "POST", "/api/v1/tenants/acme/links", alice, `{"peer":"ap-south"}`)), &l2)
	eu.nodes[0].must(t, 201, "POST", "/api/v1/tenants/emea-team/links", erin, fmt.Sprintf(`{"peer":"us-east","link_id":%q}`, l1.ID))
	ap.nodes[0].must(t, 201, "POST", "/api/v1/tenants/apac/links", arun, fmt.Sprintf(`{"peer":"us-east","link_id":%q}`, l2.ID))
	// The same link id again for the same peer is refused.
	eu.nodes[0].must(t, 409, "POST", "/api/v1/tenants/emea-team/links", erin, fmt.Sprintf(`{"peer":"us-east","link_id":%q}`, l1.ID))
	// Another tenant of the region neither lists nor removes acme's links.
	if got := us.nodes[0].must(t, 200, "GET", "/api/v1/tenants/globex/links", gina, ""); strings.TrimSpace(got) != "[]" {
		t.Errorf("globex lists links: %s", got)
	}
	us.nodes[0].must(t, 404, "DELETE", "/api/v1/tenants/globex/links/eu-west/"+l1.ID, gina, "")
	us.enroll(t, alice, "acme", "web-us-1")
	euAgent := eu.enroll(t, erin, "emea-team", "web-eu-1")
	eu.enroll(t, erin, "emea-team", "web-eu-2")
	// A sample of emea-team in eu-west's store: its series carries the
	// tenant label there, which must not cross.
	if err := otlptest.Exporter(t, eu.nodes[0].n.AgentURL(), euAgent).Export(t.Context(), rtt(time.Now().Add(-10*time.Second), 0.042)); err != nil {
		t.Fatal(err)
	}

	var ga api.GlobalAgents
	testcluster.WaitFor(t, 20*time.Second, "a global agents view with eu-west's agents", func() bool {
		// Any node of the region answers, followers too.
		_ = json.Unmarshal([]byte(us.nodes[2].must(t, 200, "GET", "/api/v1/tenants/acme/global/agents", alice, "")), &ga)
		return len(ga.Agents) == 3
	})
	bySource := map[string][]string{}
	for _, a := range ga.Agents {
		bySource[a.Source] = append(bySource[a.Source], a.Host)
	}
	if len(bySource["local"]) != 1 || len(bySource["peer:eu-west"]) != 2 {
		t.Errorf("rows by source %v", bySource)
	}
	st := statusOf(ga.Global)
	if st["eu-west"] != "ok" || st["ap-south"] != "refused" || ga.Complete {
		t.Errorf("peer statuses %+v complete %v: want eu-west ok, ap-south refused (wrong secret), incomplete", ga.Peers, ga.Complete)
	}

	var gh api.GlobalHealth
	_ = json.Unmarshal([]byte(us.nodes[0].must(t, 200, "GET", "/api/v1/global/health", us.nodes[0].token, "")), &gh)
	if len(gh.Regions) != 2 || gh.Regions[0].Source != "local" || gh.Regions[1].Region != "eu-west" || len(gh.Regions[0].Nodes) != 3 {
		t.Errorf("global health %+v", gh)
	}

	var gq api.GlobalQuery
	_ = json.Unmarshal([]byte(us.nodes[0].must(t, 200, "GET", "/api/v1/tenants/acme/global/query?query="+url.QueryEscape("vector(1)"), alice, "")), &gq)
	peersSeen := map[string]int{}
	for _, s := range gq.Samples {
		peersSeen[s.Labels["outpost_peer"]]++
	}
	if peersSeen[""] != 1 || peersSeen["eu-west"] != 1 || len(gq.Samples) != 2 {
		t.Errorf("global query samples %+v", gq.Samples)
	}
	_ = json.Unmarshal([]byte(us.nodes[0].must(t, 200, "GET", "/api/v1/tenants/acme/global/query?query="+url.QueryEscape("tcp_rtt_seconds"), alice, "")), &gq)
	if len(gq.Samples) != 1 || gq.Samples[0].Labels["outpost_peer"] != "eu-west" || gq.Samples[0].V != "0.042" || gq.Samples[0].Labels["host"] != "web-eu-1" {
		t.Errorf("global query of eu-west's series: %+v", gq)
	}
	if _, has := gq.Samples[0].Labels["tenant"]; len(gq.Samples) == 1 && has {
		t.Errorf("the tenant label crossed: %v", gq.Samples[0].Labels)
	}

	// A link id is the calling peer's alone: eu-west configures the id
	// us-east shares with ap-south, and us-east does not answer it.
	eu.nodes[0].must(t, 201, "POST", "/api/v1/tenants/emea-team/links", erin, fmt.Sprintf(`{"peer":"us-east","link_id":%q}`, l2.ID))
	var ge api.GlobalAgents
	_ = json.Unmarshal([]byte(eu.nodes[0].must(t, 200, "GET", "/api/v1/tenants/emea-team/global/agents", erin, "")), &ge)
	fromUS, sts := 0, []string{}
	for _, a := range ge.Agents {
		if a.Source == "peer:us-east" {
			fromUS++
		}
	}
	for _, p := range ge.Peers {
		sts = append(sts, p.Status+" "+p.Error)
	}
	if fromUS != 1 || len(ge.Peers) != 2 || !strings.Contains(strings.Join(sts, "|"), "unknown_link") {
		t.Errorf("eu-west using ap-south's link id: %d rows from us-east, statuses %q", fromUS, sts)
	}
	// A tenant without links sees only its own region, complete.
	var gb api.GlobalAgents
	_ = json.Unmarshal([]byte(us.nodes[0].must(t, 200, "GET", "/api/v1/tenants/globex/global/agents", gina, "")), &gb)
	if len(gb.Peers) != 0 || !gb.Complete {
		t.Errorf("unlinked tenant: %+v", gb)
	}

	// Each side refused the other's signatures (its secret differs) and
	// audited it; the calls are audited aggregated, not one per call: a
	// burst of 20 global health reads (each calls eu-west) is a record or
	// two, not 20.
	for range 20 {
		us.nodes[0].must(t, 200, "GET", "/api/v1/global/health", us.nodes[0].token, "")
	}
	testcluster.WaitFor(t, 10*time.Second, "both sides' audit of the refused calls and of the calls made", func() bool {
		u, a := auditByEntity(t, us.nodes[0]), auditByEntity(t, ap.nodes[0])
		return u["federation.refused peer/ap-south"] > 0 && a["federation.refused peer/us-east"] > 0 && u["federation.calls peer/eu-west"] > 0
	})
	// Aggregated: each node writes at most one record per peer and
	// interval (1s here), however long a busy machine makes the test, and
	// each record counts the calls of its interval. A record's time is
	// when it was written, which can lag its flush by a few seconds under
	// load: N flushes a second apart span at least N-1-lag seconds.
	recs := auditRecords(t, us.nodes[0], "federation.calls", "peer/eu-west")
	first, last, per, calls := map[string]time.Time{}, map[string]time.Time{}, map[string]int{}, 0
	for _, r := range recs {
		var d struct{ Counts map[string]int }
		_ = json.Unmarshal(r.Detail, &d)
		for _, n := range d.Counts {
			calls += n
		}
		if _, ok := first[r.Node]; !ok {
			first[r.Node] = r.Time
		}
		last[r.Node] = r.Time
		per[r.Node]++
	}
	for n, c := range per {
		if span := last[n].Sub(first[n]); c > int(span/time.Second)+4 {
			t.Errorf("%d federation.calls records for eu-west from %s within %v: not aggregated per interval", c, n, span)
		}
	}
	if calls < len(recs) {
		t.Errorf("%d federation.calls records for eu-west count %d calls", len(recs), calls)
	}

	// peers list: states as this node sees them.
	var peers []api.Peer
	_ = json.Unmarshal([]byte(us.nodes[0].must(t, 200, "GET", "/api/v1/peers", us.nodes[0].token, "")), &peers)
	states := map[string]api.Peer{}
	for _, p := range peers {
		states[p.Name] = p
	}
	if e := states["eu-west"]; e.State.State != "ok" || e.State.LastOK.IsZero() || e.State.CertExpires.IsZero() || e.Links != 1 || e.CAPin == "" {
		t.Errorf("eu-west in peers list: %+v", e)
	}

	// The peer goes down: the view still answers, within the deadline,
	// and says which peer is missing.
	eu.nodes[0].n.Kill()
	start := time.Now()
	_ = json.Unmarshal([]byte(us.nodes[1].must(t, 200, "GET", "/api/v1/tenants/acme/global/agents", alice, "")), &ga)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("global view with a peer down took %v (per-peer timeout 1s)", took)
	}
	if st := statusOf(ga.Global); st["eu-west"] == "ok" || st["eu-west"] == "" || ga.Complete || len(ga.Agents) != 1 {
		t.Errorf("with eu-west down: peers %+v, %d rows", ga.Peers, len(ga.Agents))
	}
	testcluster.WaitFor(t, 10*time.Second, "peers list to stop calling eu-west ok", func() bool {
		_ = json.Unmarshal([]byte(us.nodes[0].must(t, 200, "GET", "/api/v1/peers", us.nodes[0].token, "")), &peers)
		for _, p := range peers {
			if p.Name == "eu-west" {
				return p.State.State != "ok" && p.State.LastError != ""
			}
		}
		return false
	})

	// Removing the peer removes its links.
	us.nodes[0].must(t, 200, "DELETE", "/api/v1/peers/eu-west", us.nodes[0].token, "")
	var links []api.Link
	_ = json.Unmarshal([]byte(us.nodes[0].must(t, 200, "GET", "/api/v1/tenants/acme/links", alice, "")), &links)
	if len(links) != 1 || links[0].Peer != "ap-south" {
		t.Errorf("links after removing eu-west: %+v", links)
	}
	// A peer added again under the same name starts without links: a link
	// is live only with the peer record it was made against.
	us.addPeer(t, eu, secret)
	_ = json.Unmarshal([]byte(us.nodes[0].must(t, 200, "GET", "/api/v1/tenants/acme/links", alice, "")), &links)
	if len(links) != 1 || links[0].Peer != "ap-south" {
		t.Errorf("links after adding eu-west again: %+v", links)
	}

	n := w.scan(t, []string{acmeID, globexID, emeaID, apacID, "acme", "globex", "emea-team", "apac"})
	if n < 10 {
		t.Errorf("only %d federation messages recorded: the tap is not seeing the traffic", n)
	}
}

// auditByEntity counts tn's audit records by "action entity".
// auditPage is the node's newest 1,000 audit records, oldest first.
func auditPage(t *testing.T, tn *testNode) []audit.Record {
	t.Helper()
	var page struct {
		Entries []struct {
			Data []byte `json:"data"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/audit?limit=1000", tn.token, "")), &page); err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, e := range page.Entries {
		var r audit.Record
		if json.Unmarshal(e.Data, &r) == nil {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b audit.Record) int { return a.Time.Compare(b.Time) })
	return out
}

// auditRecords is the node's audit records of one action and entity,
// oldest first.
func auditRecords(t *testing.T, tn *testNode, action, entity string) []audit.Record {
	t.Helper()
	var out []audit.Record
	for _, r := range auditPage(t, tn) {
		if r.Action == action && r.Entity == entity {
			out = append(out, r)
		}
	}
	return out
}

// auditByEntity counts the node's audit records by "action entity".
func auditByEntity(t *testing.T, tn *testNode) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range auditPage(t, tn) {
		out[r.Action+" "+r.Entity]++
	}
	return out
}
