package lease

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// fakeClock is a Clock the test advances by hand.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
		} else {
			kept = append(kept, t)
		}
	}
	c.timers = kept
}

// fakeRaft commits every Apply into a real bbolt store through the lease
// FSM's handlers: a single-node log without elections, so a unit test
// controls leadership, and can make Apply hang (no quorum). Two knobs
// make it as untidy as a real leader:
//   - lag holds entries other nodes committed that this node's FSM has
//     not applied yet (a new leader's FSM can trail its log). Barrier
//     applies them; so does Apply, before its own entry, as Raft applies
//     in log order. Reads of the store do not see them.
//   - latency is how long a commit takes: Apply advances clock by it
//     before it returns, so the reply comes later than the proposal.
type fakeRaft struct {
	id      string
	store   *storage.Store
	fsm     *FSM
	clock   *fakeClock
	latency time.Duration
	mu      sync.Mutex
	leader  bool
	index   uint64
	lag     [][]byte
	// block, when set, makes Apply wait for it to close (or ctx) and then
	// fail, as a leader cut off from its quorum does.
	block chan struct{}
}

func (f *fakeRaft) NodeID() string { return f.id }
func (f *fakeRaft) IsLeader() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

func (f *fakeRaft) setLeader(v bool) {
	f.mu.Lock()
	f.leader = v
	f.mu.Unlock()
}

// Barrier applies every committed entry, as a leader's barrier does.
func (f *fakeRaft) Barrier(time.Duration) error { return f.catchUp() }

// catchUp applies the lagging entries in log order.
func (f *fakeRaft) catchUp() error {
	f.mu.Lock()
	lag := f.lag
	f.lag = nil
	f.mu.Unlock()
	for _, cmd := range lag {
		if _, err := commit(f.store, f.fsm, &f.mu, &f.index, cmd); err != nil {
			return err
		}
	}
	return nil
}

// commitElsewhere records an entry that another node committed and this
// node's FSM has not applied yet.
func (f *fakeRaft) commitElsewhere(t *testing.T, o Op) {
	t.Helper()
	cmd, err := o.Encode()
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.lag = append(f.lag, cmd)
	f.mu.Unlock()
}

func (f *fakeRaft) Apply(ctx context.Context, cmd []byte) (raft.Result, error) {
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return raft.Result{}, errors.New("no quorum")
	}
	if err := f.catchUp(); err != nil {
		return raft.Result{}, err
	}
	res, err := commit(f.store, f.fsm, &f.mu, &f.index, cmd)
	if f.latency > 0 {
		f.clock.Advance(f.latency)
	}
	return res, err
}

// commit applies one entry as the real FSM would: in one transaction,
// with OnCommit callbacks after it.
func commit(store *storage.Store, fsm *FSM, mu *sync.Mutex, index *uint64, cmd []byte) (raft.Result, error) {
	mu.Lock()
	*index++
	idx := *index
	mu.Unlock()
	h := fsm.Handlers()[raft.CommandType(cmd[0])]
	var res raft.Result
	err := store.Update(func(tx *storage.Tx) error {
		v, err := h(tx, idx, cmd[1:])
		res = raft.Result{Index: idx, Value: v, Err: err}
		return tx.SetLastApplied(idx)
	})
	return res, err
}

func newStore(t *testing.T) *storage.Store {
	t.Helper()
	s, err := storage.Open(filepath.Join(t.TempDir(), "state.db"), storage.Options{Region: "r"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func apply(t *testing.T, r *fakeRaft, cmd []byte, err error) raft.Result {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Apply(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestFSMRefusesStaleTokens(t *testing.T) {
	store := newStore(t)
	hub := NewHub()
	sub := hub.Subscribe(64)
	defer sub.Close()
	fsm := NewFSM("n1", hub, nil)
	r := &fakeRaft{id: "n1", store: store, fsm: fsm}
	op := func(kind OpKind, node string, token uint64) raft.Result {
		o := Op{Kind: kind, Node: node, Token: token}
		if kind == OpAcquire {
			o.DurationMs = 1000
		}
		cmd, err := o.Encode()
		return apply(t, r, cmd, err)
	}
	dispatch := func(id, node string, token uint64) raft.Result {
		cmd, err := Dispatch{ID: id, Kind: "config", Node: node, Token: token}.Encode()
		return apply(t, r, cmd, err)
	}

	if res := op(OpAcquire, "n1", 0); res.Err != nil {
		t.Fatalf("first acquisition: %v", res.Err)
	}
	if res := dispatch("d1", "n1", 1); res.Err != nil {
		t.Fatalf("dispatch with the current token: %v", res.Err)
	}
	if res := op(OpAcquire, "n2", 0); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("acquisition naming an old token: got %v, want ErrConflict", res.Err)
	}
	if res := op(OpAcquire, "n2", 1); res.Err != nil {
		t.Fatalf("n2 takes over: %v", res.Err)
	}
	cases := []struct {
		name string
		res  raft.Result
	}{
		{"old holder's dispatch with its old token", dispatch("d2", "n1", 1)},
		{"old holder's dispatch with the new token", dispatch("d3", "n1", 2)},
		{"new holder's dispatch with the old token", dispatch("d4", "n2", 1)},
		{"old holder's renewal", op(OpRenew, "n1", 1)},
		{"old holder's release", op(OpRelease, "n1", 1)},
	}
	for _, c := range cases {
		if !errors.Is(c.res.Err, ErrStaleToken) || !IsStale(c.res.Err) {
			t.Errorf("%s: got %v, want ErrStaleToken", c.name, c.res.Err)
		}
	}
	if res := dispatch("d5", "n2", 2); res.Err != nil {
		t.Fatalf("new holder's dispatch: %v", res.Err)
	}
	again := dispatch("d5", "n2", 2)
	if again.Err != nil || string(again.Value) == "" {
		t.Fatalf("retried dispatch: %v", again.Err)
	}
	if res := op(OpRelease, "n2", 2); res.Err != nil {
		t.Fatalf("release: %v", res.Err)
	}
	if res := dispatch("d6", "n2", 2); !errors.Is(res.Err, ErrStaleToken) {
		t.Fatalf("dispatch after release: got %v, want ErrStaleToken", res.Err)
	}

	var st State
	var refused uint64
	var listed []Dispatch
	_ = store.View(func(tx *storage.Tx) error {
		st, refused = ReadState(tx)
		listed = List(tx, storage.Tenant{}, 0, 100)
		return nil
	})
	if st.Token != 2 || st.Holder != "n2" || !st.Released {
		t.Errorf("final lease %+v, want n2 token 2 released", st)
	}
	if refused != 6 {
		t.Errorf("refused count %d, want 6", refused)
	}
	if len(listed) != 2 || listed[0].ID != "d1" || listed[1].ID != "d5" {
		t.Errorf("committed dispatches %+v, want d1 and d5 only", listed)
	}
	// The delivery stream: each committed dispatch once, in log order,
	// with the lease changes between them.
	var kinds []string
	for len(sub.C) > 0 {
		e := <-sub.C
		k := e.Kind
		if e.Dispatch != nil {
			k += ":" + e.Dispatch.ID
		}
		kinds = append(kinds, k)
	}
	want := []string{"lease", "dispatch:d1", "lease", "dispatch:d5", "lease"}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("events %v, want %v", kinds, want)
		}
	}
}

func TestTenantDispatchesStayInTheirTenant(t *testing.T) {
	store := newStore(t)
	fsm := NewFSM("n1", NewHub(), nil)
	r := &fakeRaft{id: "n1", store: store, fsm: fsm}
	cmd, err := Op{Kind: OpAcquire, Node: "n1", DurationMs: 1000}.Encode()
	apply(t, r, cmd, err)
	for _, tn := range []string{"acme", "globex"} {
		cmd, err := Dispatch{ID: "x-" + tn, Tenant: tn, Kind: "config", Node: "n1", Token: 1, Payload: []byte(`{"t":"` + tn + `"}`)}.Encode()
		if res := apply(t, r, cmd, err); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	acme, _ := storage.Scope("acme")
	_ = store.View(func(tx *storage.Tx) error {
		got := List(tx, acme, 0, 10)
		if len(got) != 1 || got[0].ID != "x-acme" {
			t.Errorf("acme sees %+v, want its own dispatch only", got)
		}
		if region := List(tx, storage.Tenant{}, 0, 10); len(region) != 0 {
			t.Errorf("region-wide list shows tenant dispatches: %+v", region)
		}
		return nil
	})
}

// TestDispatchIDsArePerTenant: a dispatch id is unique in its tenant (or
// region-wide), not across tenants. Two tenants and the region using the
// same id each commit their own dispatch and see only it; a retry in one
// scope is applied once and answered with that scope's original; and
// what one scope is told never depends on the ids another used.
func TestDispatchIDsArePerTenant(t *testing.T) {
	store := newStore(t)
	hub := NewHub()
	sub := hub.Subscribe(64)
	defer sub.Close()
	fsm := NewFSM("n1", hub, nil)
	r := &fakeRaft{id: "n1", store: store, fsm: fsm}
	cmd, err := Op{Kind: OpAcquire, Node: "n1", DurationMs: 1000}.Encode()
	apply(t, r, cmd, err)
	dispatch := func(tenant, id, payload string) raft.Result {
		t.Helper()
		cmd, err := Dispatch{ID: id, Tenant: tenant, Kind: "config", Node: "n1", Token: 1, Payload: []byte(payload)}.Encode()
		return apply(t, r, cmd, err)
	}
	committed := func(res raft.Result) Dispatch {
		t.Helper()
		var d Dispatch
		if res.Err != nil {
			t.Fatalf("dispatch refused: %v", res.Err)
		}
		if err := json.Unmarshal(res.Value, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}

	// globex's answer for "deploy-1", before and after acme used it:
	// the same outcome (a new dispatch of its own), whatever acme did.
	acme1 := committed(dispatch("acme", "deploy-1", `{"t":"acme"}`))
	globex1 := committed(dispatch("globex", "deploy-1", `{"t":"globex"}`))
	region1 := committed(dispatch("", "deploy-1", `{"t":"region"}`))
	if acme1.Index == globex1.Index || globex1.Tenant != "globex" || string(globex1.Payload) != `{"t":"globex"}` ||
		region1.Index == acme1.Index || region1.Tenant != "" {
		t.Fatalf("same id in three scopes: acme %+v, globex %+v, region %+v; want three dispatches of their own", acme1, globex1, region1)
	}

	// A retry in one tenant is applied once and answered with its own
	// original, not another tenant's.
	retry := committed(dispatch("globex", "deploy-1", `{"t":"globex"}`))
	if retry.Index != globex1.Index || retry.Tenant != "globex" {
		t.Fatalf("globex's retry answered %+v, want its original at index %d", retry, globex1.Index)
	}
	if again := committed(dispatch("acme", "deploy-1", `{"t":"acme"}`)); again.Index != acme1.Index {
		t.Fatalf("acme's retry answered index %d, want %d", again.Index, acme1.Index)
	}

	globex, _ := storage.Scope("globex")
	acme, _ := storage.Scope("acme")
	other, _ := storage.Scope("initech")
	_ = store.View(func(tx *storage.Tx) error {
		for name, c := range map[string]struct {
			h    storage.Tenant
			want Dispatch
		}{"acme": {acme, acme1}, "globex": {globex, globex1}, "region": {storage.Tenant{}, region1}} {
			got := List(tx, c.h, 0, 10)
			if len(got) != 1 || got[0].Index != c.want.Index || string(got[0].Payload) != string(c.want.Payload) {
				t.Errorf("%s lists %+v, want only its own deploy-1 at %d", name, got, c.want.Index)
			}
			if idx, ok := Lookup(tx, c.h, "deploy-1"); !ok || idx != c.want.Index {
				t.Errorf("%s looks deploy-1 up at %d (%v), want its own at %d", name, idx, ok, c.want.Index)
			}
		}
		// A tenant that never used the id is told just that.
		if idx, ok := Lookup(tx, other, "deploy-1"); ok {
			t.Errorf("initech finds deploy-1 at %d, an id only others used", idx)
		}
		return nil
	})
	delivered := 0
	for len(sub.C) > 0 {
		if e := <-sub.C; e.Kind == EventDispatch {
			delivered++
		}
	}
	if delivered != 3 {
		t.Errorf("%d dispatches delivered, want 3 (the retries are not new)", delivered)
	}
}

// TestDispatchIDsOfTheOlderLayout: before ids were scoped per tenant,
// every id sat in the region's index as "TENANT/" + index. A retry of
// such a tenant dispatch is still recognised in that tenant, and the
// region and other tenants do not see the id as theirs.
func TestDispatchIDsOfTheOlderLayout(t *testing.T) {
	store := newStore(t)
	fsm := NewFSM("n1", NewHub(), nil)
	r := &fakeRaft{id: "n1", store: store, fsm: fsm}
	cmd, err := Op{Kind: OpAcquire, Node: "n1", DurationMs: 1000}.Encode()
	apply(t, r, cmd, err)
	// Write what the older code wrote for acme's "old-1" at index 7.
	acme, _ := storage.Scope("acme")
	idx := binary.BigEndian.AppendUint64(nil, 7)
	old, _ := json.Marshal(Dispatch{ID: "old-1", Tenant: "acme", Kind: "config", Node: "n1", Token: 1, Index: 7})
	if err := store.Update(func(tx *storage.Tx) error {
		if err := tx.Put(BucketDispatchIDs, []byte("old-1"), append([]byte("acme/"), idx...)); err != nil {
			return err
		}
		return tx.Tenant(acme).Put(BucketDispatches, idx, old)
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tenant    string
		wantIndex uint64 // 0: a new dispatch
	}{{"acme", 7}, {"globex", 0}, {"", 0}} {
		cmd, err := Dispatch{ID: "old-1", Tenant: c.tenant, Kind: "config", Node: "n1", Token: 1}.Encode()
		res := apply(t, r, cmd, err)
		var d Dispatch
		if res.Err != nil || json.Unmarshal(res.Value, &d) != nil {
			t.Fatalf("tenant %q: %v", c.tenant, res.Err)
		}
		if c.wantIndex != 0 && d.Index != c.wantIndex {
			t.Errorf("tenant %q: retry of its older dispatch answered index %d, want %d", c.tenant, d.Index, c.wantIndex)
		}
		if c.wantIndex == 0 && (d.Index == 7 || d.Tenant != c.tenant) {
			t.Errorf("tenant %q: got %+v, want a new dispatch of its own", c.tenant, d)
		}
	}
}

func newManager(t *testing.T, id string, clock *fakeClock, hub *Hub) (*Manager, *fakeRaft) {
	t.Helper()
	store := newStore(t)
	fsm := NewFSM(id, hub, clock)
	r := &fakeRaft{id: id, store: store, fsm: fsm, clock: clock, leader: true}
	return NewManager(DefaultConfig(), r, store, fsm, Options{Clock: clock, Hub: hub}), r
}

// TestSelfFenceWhenRenewalCannotCommit: the holder stops dispatching the
// moment its lease runs out on its own clock, even while its renewal is
// still stuck in Raft.
func TestSelfFenceWhenRenewalCannotCommit(t *testing.T) {
	clock := newFakeClock()
	hub := NewHub()
	sub := hub.Subscribe(16)
	defer sub.Close()
	m, r := newManager(t, "n1", clock, hub)
	cfg := m.Config()
	ctx := context.Background()

	m.step(ctx)
	token, ok := m.Holding()
	if !ok || token != 1 {
		t.Fatalf("after the first step: holding=%v token=%d, want token 1", ok, token)
	}
	// The quorum goes away; the next renewal hangs.
	r.mu.Lock()
	r.block = make(chan struct{})
	r.mu.Unlock()
	clock.Advance(cfg.Duration / 3)
	renewed := make(chan time.Duration)
	go func() { renewed <- m.step(ctx) }()

	clock.Advance(cfg.Duration - cfg.DriftMargin - cfg.Duration/3 - time.Millisecond)
	if _, ok := m.Holding(); !ok {
		t.Fatal("fenced before lease.duration - lease.drift_margin had passed")
	}
	clock.Advance(time.Millisecond)
	if _, ok := m.Holding(); ok {
		t.Fatal("still holding at lease.duration - lease.drift_margin after the last renewal began")
	}
	if _, err := m.Dispatch(ctx, storage.Tenant{}, Dispatch{Kind: "config"}); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("dispatch after the lease ran out: got %v, want ErrNotHolder", err)
	}
	close(r.block) // the renewal fails
	<-renewed
	for fenced := false; !fenced; {
		select {
		case e := <-sub.C:
			fenced = e.Kind == EventFenced
		case <-time.After(5 * time.Second):
			t.Fatal("no fenced event")
		}
	}
	// Quorum back, still leader: the node re-acquires with a new token at
	// once (nobody else can have held it meanwhile).
	r.mu.Lock()
	r.block = nil
	r.mu.Unlock()
	m.step(ctx)
	if token, ok := m.Holding(); !ok || token != 2 {
		t.Fatalf("after recovery: holding=%v token=%d, want token 2", ok, token)
	}
}

// TestAcquireWaitsOutPreviousLease: a new leader acquires only once the
// previous holder's lease has run out, counted from when it applied the
// holder's last renewal, plus the drift margin.
func TestAcquireWaitsOutPreviousLease(t *testing.T) {
	clock := newFakeClock()
	m, r := newManager(t, "n2", clock, NewHub())
	cfg := m.Config()
	ctx := context.Background()
	// n1 held the lease and renewed it; n2 applied that now.
	for _, o := range []Op{{Kind: OpAcquire, Node: "n1", DurationMs: cfg.Duration.Milliseconds()}, {Kind: OpRenew, Node: "n1", Token: 1}} {
		cmd, err := o.Encode()
		apply(t, r, cmd, err)
	}
	clock.Advance(cfg.Duration / 2)
	if wait := m.step(ctx); wait != cfg.Duration/2+cfg.DriftMargin {
		t.Fatalf("wait %v, want %v", wait, cfg.Duration/2+cfg.DriftMargin)
	}
	clock.Advance(cfg.Duration/2 + cfg.DriftMargin - time.Millisecond)
	m.step(ctx)
	if _, ok := m.Holding(); ok {
		t.Fatal("acquired before the previous lease plus the drift margin ran out")
	}
	clock.Advance(time.Millisecond)
	m.step(ctx)
	if token, ok := m.Holding(); !ok || token != 2 {
		t.Fatalf("holding=%v token=%d, want token 2 once the old lease ran out", ok, token)
	}
}

// TestAcquireBarrierAppliesLaggingEntries: a new leader's FSM may not
// have applied entries the previous leader committed. The manager's
// barrier before acquiring must apply them, or it reads a stale lease:
// it misses the holder's latest renewal (and acquires while that holder
// still believes it holds the lease), or it names an older token (and
// its acquisition is refused).
func TestAcquireBarrierAppliesLaggingEntries(t *testing.T) {
	t.Run("latest renewal", func(t *testing.T) {
		clock := newFakeClock()
		m, r := newManager(t, "n2", clock, NewHub())
		cfg := m.Config()
		// n2 applied n1's acquisition long ago; n1's renewal a moment ago
		// is committed but not yet applied on n2.
		cmd, err := Op{Kind: OpAcquire, Node: "n1", DurationMs: cfg.Duration.Milliseconds()}.Encode()
		apply(t, r, cmd, err)
		clock.Advance(cfg.Duration)
		r.commitElsewhere(t, Op{Kind: OpRenew, Node: "n1", Token: 1})
		clock.Advance(cfg.DriftMargin + time.Millisecond)
		// The acquisition n2 applied is over; the renewal is not. n1 renewed
		// (at the latest) when it was committed: n2 must wait Duration +
		// DriftMargin from applying it.
		if wait := m.step(context.Background()); wait != cfg.Duration+cfg.DriftMargin {
			t.Errorf("wait %v, want %v counted from applying the renewal", wait, cfg.Duration+cfg.DriftMargin)
		}
		if token, ok := m.Holding(); ok {
			t.Fatalf("acquired token %d while the previous holder's latest renewal was still running", token)
		}
		if st := readLease(t, r); st.Holder != "n1" || st.Token != 1 || st.Renewals != 1 {
			t.Fatalf("lease %+v, want n1's token 1 with its renewal applied", st)
		}
	})
	t.Run("newer token", func(t *testing.T) {
		clock := newFakeClock()
		m, r := newManager(t, "n2", clock, NewHub())
		cfg := m.Config()
		cmd, err := Op{Kind: OpAcquire, Node: "n1", DurationMs: cfg.Duration.Milliseconds()}.Encode()
		apply(t, r, cmd, err)
		clock.Advance(2 * cfg.Duration)
		// Meanwhile n3 led and took the lease; n2 has not applied that.
		r.commitElsewhere(t, Op{Kind: OpAcquire, Node: "n3", Token: 1, DurationMs: cfg.Duration.Milliseconds()})
		if wait := m.step(context.Background()); wait != cfg.Duration+cfg.DriftMargin {
			t.Errorf("wait %v, want %v: n3's lease counts from when n2 applied it", wait, cfg.Duration+cfg.DriftMargin)
		}
		if token, ok := m.Holding(); ok {
			t.Fatalf("acquired token %d over n3's fresh lease", token)
		}
		clock.Advance(cfg.Duration + cfg.DriftMargin)
		m.step(context.Background())
		if token, ok := m.Holding(); !ok || token != 3 {
			t.Fatalf("holding=%v token=%d once n3's lease ran out, want token 3", ok, token)
		}
	})
}

func readLease(t *testing.T, r *fakeRaft) State {
	t.Helper()
	var st State
	if err := r.store.View(func(tx *storage.Tx) error {
		st, _ = ReadState(tx)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestValidUntilCountsFromProposal: a commit takes time, and the holder
// cannot know when during that time the others applied its entry (and
// began counting). Its lease must therefore run from when it proposed
// the acquisition or renewal, not from when the reply came back: with a
// slow commit it stops dispatching at proposal + Duration - DriftMargin.
func TestValidUntilCountsFromProposal(t *testing.T) {
	const latency = 300 * time.Millisecond
	// expectFence checks the holder dispatches until proposed + Duration -
	// DriftMargin and not from then on.
	expectFence := func(t *testing.T, m *Manager, clock *fakeClock, proposed time.Time) {
		t.Helper()
		cfg := m.Config()
		end := proposed.Add(cfg.Duration - cfg.DriftMargin)
		clock.Advance(end.Sub(clock.Now()) - time.Millisecond)
		if _, ok := m.Holding(); !ok {
			t.Fatal("fenced before proposal + lease.duration - lease.drift_margin")
		}
		clock.Advance(time.Millisecond)
		if token, ok := m.Holding(); ok {
			t.Fatalf("still holding token %d at proposal + lease.duration - lease.drift_margin (the commit took %v)", token, latency)
		}
		if _, err := m.Dispatch(context.Background(), storage.Tenant{}, Dispatch{Kind: "config"}); !errors.Is(err, ErrNotHolder) {
			t.Fatalf("dispatch after the lease ran out: got %v, want ErrNotHolder", err)
		}
	}
	t.Run("acquisition", func(t *testing.T) {
		clock := newFakeClock()
		m, r := newManager(t, "n1", clock, NewHub())
		r.latency = latency
		proposed := clock.Now()
		m.step(context.Background())
		if clock.Now().Sub(proposed) != latency {
			t.Fatalf("the fake commit took %v, want %v", clock.Now().Sub(proposed), latency)
		}
		if token, ok := m.Holding(); !ok || token != 1 {
			t.Fatalf("holding=%v token=%d after acquiring, want token 1", ok, token)
		}
		expectFence(t, m, clock, proposed)
	})
	t.Run("renewal", func(t *testing.T) {
		clock := newFakeClock()
		m, r := newManager(t, "n1", clock, NewHub())
		ctx := context.Background()
		m.step(ctx)
		r.latency = latency
		clock.Advance(m.Config().Duration / 3) // the renewal is due
		proposed := clock.Now()
		m.step(ctx)
		if st := readLease(t, r); st.Renewals != 1 {
			t.Fatalf("lease %+v, want one renewal", st)
		}
		expectFence(t, m, clock, proposed)
	})
}

// TestHoldingFalseTheMomentLeadershipIsLost: Holding asks Raft itself,
// so a deposed leader stops dispatching (and fences) before the
// manager's next step, which may be Duration/3 away.
func TestHoldingFalseTheMomentLeadershipIsLost(t *testing.T) {
	clock := newFakeClock()
	hub := NewHub()
	sub := hub.Subscribe(16)
	defer sub.Close()
	m, r := newManager(t, "n1", clock, hub)
	m.step(context.Background())
	if _, ok := m.Holding(); !ok {
		t.Fatal("did not acquire")
	}
	r.setLeader(false)
	// No step runs from here on.
	if token, ok := m.Holding(); ok {
		t.Fatalf("Holding() = token %d after Raft reported the node no longer leads", token)
	}
	if _, err := m.Dispatch(context.Background(), storage.Tenant{}, Dispatch{Kind: "config"}); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("dispatch after losing leadership: got %v, want ErrNotHolder", err)
	}
	// Self-fenced: regaining leadership does not bring the old lease
	// back; the manager must acquire again.
	r.setLeader(true)
	if token, ok := m.Holding(); ok {
		t.Fatalf("Holding() = token %d after leadership came back, without a new acquisition", token)
	}
	for fenced := false; !fenced; {
		select {
		case e := <-sub.C:
			fenced = e.Kind == EventFenced
		default:
			t.Fatal("no fenced event")
		}
	}
}

// TestReleasedLeaseNeedsNoWait: a lease released for a handoff is taken
// at once by the next leader.
func TestReleasedLeaseNeedsNoWait(t *testing.T) {
	clock := newFakeClock()
	m, r := newManager(t, "n2", clock, NewHub())
	for _, o := range []Op{{Kind: OpAcquire, Node: "n1", DurationMs: 1000}, {Kind: OpRelease, Node: "n1", Token: 1}} {
		cmd, err := o.Encode()
		apply(t, r, cmd, err)
	}
	m.step(context.Background())
	if token, ok := m.Holding(); !ok || token != 2 {
		t.Fatalf("holding=%v token=%d, want token 2 at once", ok, token)
	}
}

// TestNotLeaderFences: losing Raft leadership stops dispatching at once.
func TestNotLeaderFences(t *testing.T) {
	clock := newFakeClock()
	m, r := newManager(t, "n1", clock, NewHub())
	m.step(context.Background())
	if _, ok := m.Holding(); !ok {
		t.Fatal("did not acquire")
	}
	r.setLeader(false)
	m.step(context.Background())
	if _, ok := m.Holding(); ok {
		t.Fatal("still holding after losing leadership")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", DefaultConfig(), true},
		{"too short", Config{Duration: 100 * time.Millisecond, DriftMargin: 10 * time.Millisecond}, false},
		{"margin a third", Config{Duration: 900 * time.Millisecond, DriftMargin: 300 * time.Millisecond}, false},
		{"no margin", Config{Duration: time.Second}, false},
		{"long", Config{Duration: time.Hour, DriftMargin: time.Second}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.cfg.Validate(); (err == nil) != c.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, c.ok)
			}
		})
	}
}
