package agentlink

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"

	pb "github.com/open-telemetry/opamp-go/protobufs"

	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/lease"
	"github.com/outpost-mesh/outpost/node/agents"
	"github.com/outpost-mesh/outpost/storage"
)

// keepPerScope is how many recent config dispatches a node keeps in
// memory per scope (region-wide, each tenant) to pick an agent's config
// from. An agent's config is the newest one that selects it.
const keepPerScope = 64

// pushWorkers bounds concurrent pushes of one dispatch.
const pushWorkers = 64

// target is a committed config dispatch ready to push.
type target struct {
	lease.Dispatch
	sel  agents.Selector
	body []byte // the DispatchFile body
	hash []byte // SHA-256 of body: the OpAMP config hash
}

// agentDispatchID is the id an agent knows dispatch d by. Dispatch ids are unique
// only within their scope, and an agent receives both its tenant's
// dispatches and the region-wide ones: a region-wide id gets the prefix
// "region:" (':' is never part of an id), so the agent's applied-once
// check by id cannot take one scope's dispatch for the other's.
func agentDispatchID(d lease.Dispatch) string {
	if d.Tenant == "" {
		return "region:" + d.ID
	}
	return d.ID
}

func newTarget(d lease.Dispatch) *target {
	sel, err := agents.ParseSelector(d.Selector)
	if err != nil {
		sel, _ = agents.ParseSelector("none") // a bad selector selects no agent
	}
	body, _ := json.Marshal(agentwire.Dispatch{ID: agentDispatchID(d), Kind: d.Kind, Token: d.Token, Index: d.Index, Node: d.Node,
		Issued: d.Issued, Payload: d.Payload})
	sum := sha256.Sum256(body)
	return &target{Dispatch: d, sel: sel, body: body, hash: sum[:]}
}

func (t *target) remoteConfig() *pb.AgentRemoteConfig {
	return &pb.AgentRemoteConfig{ConfigHash: t.hash, Config: &pb.AgentConfigMap{ConfigMap: map[string]*pb.AgentConfigFile{
		agentwire.DispatchFile: {Body: t.body, ContentType: "application/json"},
	}}}
}

// desired is the node's memory of recent config dispatches, per scope
// ("" region-wide, else a tenant id), newest first, loaded from the state
// file on first use and kept current from committed dispatches.
type desired struct {
	store  *storage.Store
	mu     sync.Mutex
	scopes map[string][]*target
}

func newDesired(store *storage.Store) *desired {
	return &desired{store: store, scopes: map[string][]*target{}}
}

// scope returns the scope's list, loading it if needed. Called with mu held.
func (d *desired) scope(tenant string) []*target {
	if ts, ok := d.scopes[tenant]; ok {
		return ts
	}
	var ts []*target
	_ = d.store.View(func(tx *storage.Tx) error {
		for _, disp := range lease.LatestOf(tx, tenant, 4*keepPerScope) {
			if disp.Kind == agentwire.DispatchKind {
				ts = append(ts, newTarget(disp))
				if len(ts) == keepPerScope {
					break
				}
			}
		}
		return nil
	})
	d.scopes[tenant] = ts
	return ts
}

// add records a committed dispatch; it reports false for one that is not
// agent config or was known already.
func (d *desired) add(disp lease.Dispatch) (*target, bool) {
	if disp.Kind != agentwire.DispatchKind {
		return nil, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ts := d.scope(disp.Tenant)
	for _, t := range ts {
		if t.Index == disp.Index {
			return nil, false
		}
	}
	t := newTarget(disp)
	ts = append([]*target{t}, ts...)
	// Newest first by index (the hub delivers in log order; a scope just
	// loaded may already hold it).
	for i := 1; i < len(ts) && ts[i-1].Index < ts[i].Index; i++ {
		ts[i-1], ts[i] = ts[i], ts[i-1]
	}
	if len(ts) > keepPerScope {
		ts = ts[:keepPerScope]
	}
	d.scopes[disp.Tenant] = ts
	return t, true
}

// reset forgets everything (after missing committed dispatches).
func (d *desired) reset() {
	d.mu.Lock()
	d.scopes = map[string][]*target{}
	d.mu.Unlock()
}

// latest returns the newest config dispatch of the tenant's or the
// region's scope that selects an agent with attrs.
func (d *desired) latest(tenant string, attrs map[string]string) (*target, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var best *target
	for _, scope := range []string{"", tenant} {
		for _, t := range d.scope(scope) {
			if t.sel.Matches(attrs) {
				if best == nil || t.Index > best.Index {
					best = t
				}
				break
			}
		}
	}
	return best, best != nil
}

// byHash finds the dispatch a config hash belongs to, in the tenant's or
// the region's scope.
func (d *desired) byHash(hash []byte, tenant string) (*target, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, scope := range []string{"", tenant} {
		for _, t := range d.scope(scope) {
			if bytes.Equal(t.hash, hash) {
				return t, true
			}
		}
	}
	return nil, false
}

// deliverLoop pushes each committed config dispatch to the live agents it
// selects. A lagging subscription (missed events) resubscribes and
// re-evaluates every link from the state file.
func (s *Server) deliverLoop(sub *lease.Sub) {
	for {
		select {
		case <-s.ctx.Done():
			sub.Close()
			return
		case ev, ok := <-sub.C:
			if !ok {
				s.logger.Warn("the agent port fell behind committed dispatches; re-reading them")
				sub = s.cfg.Hub.Subscribe(4096)
				s.desired.reset()
				s.fanOut(s.snapshot())
				continue
			}
			if ev.Kind != lease.EventDispatch || ev.Dispatch == nil {
				continue
			}
			t, ok := s.desired.add(*ev.Dispatch)
			if !ok {
				continue
			}
			start := time.Now()
			var in []*link
			for _, l := range s.snapshot() {
				if t.Tenant == "" || t.Tenant == l.agent.Tenant {
					in = append(in, l)
				}
			}
			n := s.fanOut(in)
			s.m.fanOut.Observe(time.Since(start).Seconds())
			s.logger.Debug("pushed a dispatch", "id", t.ID, "token", t.Token, "agents", n, "took", time.Since(start))
		}
	}
}

// fanOut pushes pending config to links, pushWorkers at a time, and
// returns how many pushes went out.
func (s *Server) fanOut(links []*link) int {
	var pushed int64
	var mu sync.Mutex
	work := make(chan *link)
	var wg sync.WaitGroup
	for range min(pushWorkers, len(links)) {
		wg.Go(func() {
			for l := range work {
				if l.push() {
					mu.Lock()
					pushed++
					mu.Unlock()
				}
			}
		})
	}
	for _, l := range links {
		work <- l
	}
	close(work)
	wg.Wait()
	return int(pushed)
}
