package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
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
	"github.com/outpost-mesh/outpost/internal/testfault"
)

// crashMode is where a round of TestCrashConsistency kills its node, and
// what it does to the node's state file before the restart.
type crashMode struct {
	name string
	// waitFor, if set, is a log line the kill waits for (a snapshot or a
	// compaction under way); otherwise the kill lands at a random moment
	// of the write load, when applied batches are not yet synced.
	waitFor string
	// damage changes the stopped node's data dir.
	damage func(t *testing.T, r *rand.Rand, dataDir string, stale string)
	// rebuilds: the node must log that it rebuilt its state file.
	rebuilds bool
	// rollsBack: damage puts back the node's state file of an earlier
	// kill (a file behind its log, replayed from its own index).
	rollsBack bool
}

var crashModes = []crashMode{
	{name: "between log fsync and state sync"},
	{name: "during a snapshot", waitFor: "starting snapshot"},
	{name: "during log compaction", waitFor: "compacting logs"},
	{name: "power loss tears the state file", rebuilds: true, damage: func(t *testing.T, r *rand.Rand, dir, _ string) {
		// The marker names the boot the unsynced commits were made in;
		// a power loss means another boot, and pages never written.
		writeFile(t, filepath.Join(dir, "state.db.unsynced"), "boot_id=an-earlier-boot\n")
		testfault.Tear(t, r, filepath.Join(dir, "state.db"))
	}},
	{name: "state file truncated", rebuilds: true, damage: func(t *testing.T, r *rand.Rand, dir, _ string) {
		// Below the pages in use: bbolt grows the file ahead of them,
		// and cutting off only that slack is no damage.
		p := filepath.Join(dir, "state.db")
		if err := os.Truncate(p, testfault.InUse(t, p)*int64(1+r.IntN(7))/8); err != nil {
			t.Fatal(err)
		}
	}},
	{name: "state file meta pages corrupted", rebuilds: true, damage: func(t *testing.T, r *rand.Rand, dir, _ string) {
		testfault.Scribble(t, r, filepath.Join(dir, "state.db"), 0, 8192)
	}},
	{name: "state file rolled back to an older copy", rollsBack: true, damage: func(t *testing.T, _ *rand.Rand, dir, stale string) {
		if stale == "" {
			return
		}
		testfault.Copy(t, stale, filepath.Join(dir, "state.db"), true)
	}},
}

// TestCrashConsistency kills nodes of a three-node region of `outpost
// serve` processes with SIGKILL while clients write through every node:
// at random moments, as a snapshot starts and as the log is compacted,
// and, in some rounds, then tears, truncates, corrupts or rolls back the
// killed node's state file (a power loss, damage). After every restart
// each write the API acknowledged must be readable on every node, and all
// nodes must hold the same keys and the same audit root. Every mode runs
// once here; OUTPOST_TEST_LONG=1 runs 200 rounds, OUTPOST_CRASH_ROUNDS=N
// N (and OUTPOST_CRASH_SEED a given sequence of kills).
func TestCrashConsistency(t *testing.T) {
	rounds := len(crashModes)
	if os.Getenv("OUTPOST_TEST_LONG") != "" {
		rounds = 200
	}
	if s := os.Getenv("OUTPOST_CRASH_ROUNDS"); s != "" {
		fmt.Sscan(s, &rounds)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (OUTPOST_CRASH_SEED reruns it)", seed)
	if s := os.Getenv("OUTPOST_CRASH_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	rnd := rand.New(rand.NewPCG(seed, 1))

	sr := newServedRegion(t, 3)
	// Snapshots and compactions every few hundred entries, so that kills
	// land in them; a state sync interval that leaves applied batches
	// unsynced for most of each kill's moment.
	for _, nd := range sr.nodes {
		b, err := os.ReadFile(nd.config)
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.Replace(string(b), "raft:\n", "raft:\n  snapshot_interval: 100ms\n  snapshot_threshold: 200\n  trailing_logs: 64\n  fsm_sync_interval: 300ms\n", 1)
		writeFile(t, nd.config, cfg)
	}
	watched := map[string]*lineWatch{}
	startNode := func(nd *servedNode) {
		w := &lineWatch{}
		watched[nd.id] = w
		nd.p = startTee(t, sr.bin+"/outpost", w, "serve", "--config", nd.config)
	}
	for _, nd := range sr.nodes {
		startNode(nd)
	}
	waitFor(t, 60*time.Second, "the admin token", func() bool { _, err := os.Stat(sr.tokenFile); return err == nil })
	c := &apiClient{token: readToken(t, sr.tokenFile), http: &http.Client{Timeout: 5 * time.Second}}
	sr.leader(t, c)

	// Writers: each round's keys under r<round>-w<writer>-, at most 900
	// per writer and round so that one list answer (1000 keys) holds them.
	var (
		gate    sync.RWMutex // held by the checker to pause the writers
		round   atomic.Int64
		ackMu   sync.Mutex
		acked   = map[string]string{}
		written atomic.Int64
	)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	const writers = 4
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts := map[int64]int{}
			for i := 0; ctx.Err() == nil; i++ {
				gate.RLock()
				r := round.Load()
				if counts[r] >= 900 {
					gate.RUnlock()
					time.Sleep(20 * time.Millisecond)
					continue
				}
				counts[r]++
				nd := sr.nodes[(w+i)%len(sr.nodes)]
				key := fmt.Sprintf("r%04d-w%d-%05d", r, w, i)
				val := "v-" + key
				code, _, err := c.do(ctx, "PUT", nd.api+"/api/v1/kv/"+key, []byte(val))
				if err == nil && code == 200 {
					ackMu.Lock()
					acked[key] = val
					ackMu.Unlock()
				}
				written.Add(1)
				gate.RUnlock()
			}
		}()
	}

	stale := map[string]string{} // per node, an older copy of its state file
	for rd := 0; rd < rounds; rd++ {
		mode := crashModes[rd%len(crashModes)]
		leader := sr.leader(t, c)
		victim := leader
		if rd%2 == 1 {
			var followers []*servedNode
			for _, nd := range sr.nodes {
				if nd != leader {
					followers = append(followers, nd)
				}
			}
			victim = followers[rnd.IntN(len(followers))]
		}
		if mode.rollsBack && stale[victim.id] == "" {
			for _, nd := range sr.nodes {
				if stale[nd.id] != "" {
					victim = nd
				}
			}
		}
		w := watched[victim.id]
		mark := w.mark()
		if mode.waitFor != "" {
			if !w.waitSince(mark, mode.waitFor, 15*time.Second) {
				t.Fatalf("round %d: %s never logged %q under load", rd, victim.id, mode.waitFor)
			}
		} else {
			time.Sleep(time.Duration(200+rnd.IntN(1300)) * time.Millisecond)
		}
		victim.p.signal(syscall.SIGKILL)
		victim.p.wait(t, 10*time.Second)
		victim.p = nil
		// The file as the killed process left it (whole: the page cache
		// kept its commits), for a later rollback of this node.
		old := stale[victim.id]
		stale[victim.id] = filepath.Join(t.TempDir(), "stale.db")
		testfault.Copy(t, filepath.Join(victim.dataDir, "state.db"), stale[victim.id], true)
		if mode.damage != nil {
			mode.damage(t, rnd, victim.dataDir, old)
		}
		t.Logf("round %d: SIGKILL %s (%s), %s; %d writes so far", rd, victim.id, map[bool]string{true: "leader", false: "follower"}[victim == leader], mode.name, written.Load())
		startNode(victim)
		if mode.rebuilds {
			if !watched[victim.id].waitSince(0, "state file was damaged", 30*time.Second) {
				t.Fatalf("round %d: %s did not say it rebuilt its damaged state file", rd, victim.id)
			}
		}
		// Let the restarted node take writes for a moment, then pause
		// the writers and check.
		time.Sleep(300 * time.Millisecond)
		gate.Lock()
		ackMu.Lock()
		snapshot := make(map[string]string, len(acked))
		for k, v := range acked {
			snapshot[k] = v
		}
		ackMu.Unlock()
		checkConverged(t, c, sr, rd, snapshot, rd == rounds-1)
		round.Add(1)
		gate.Unlock()
	}
	stop()
	wg.Wait()
	ackMu.Lock()
	defer ackMu.Unlock()
	t.Logf("%d rounds, %d writes attempted, %d acknowledged", rounds, written.Load(), len(acked))
	if len(acked) < 20*rounds {
		t.Fatalf("only %d writes acknowledged in %d rounds: the region did not keep taking writes", len(acked), rounds)
	}
}

// checkConverged waits until every node has the same audit checkpoint
// (tree size and root) and the same keys, then checks that each
// acknowledged write is on every node: the last round's keys everywhere,
// every round's at the end (all) and on a spot check.
func checkConverged(t *testing.T, c *apiClient, sr *servedRegion, rd int, acked map[string]string, all bool) {
	t.Helper()
	var roots []string
	waitFor(t, 60*time.Second, fmt.Sprintf("round %d: every node to answer with the same audit root", rd), func() bool {
		roots = roots[:0]
		for _, nd := range sr.nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			code, body, err := c.do(ctx, "GET", nd.api+"/api/v1/audit/checkpoint", nil)
			cancel()
			if err != nil || code != 200 {
				return false
			}
			// origin, size, root hash; the signature differs per node.
			lines := strings.SplitN(string(body), "\n", 4)
			if len(lines) < 3 {
				return false
			}
			roots = append(roots, strings.Join(lines[:3], " "))
		}
		return roots[0] == roots[1] && roots[1] == roots[2]
	})
	prefixes := map[string]bool{}
	for k := range acked {
		p := k[:strings.LastIndexByte(k, '-')+1]
		if all || strings.HasPrefix(p, fmt.Sprintf("r%04d-", rd)) {
			prefixes[p] = true
		}
	}
	for p := range prefixes {
		var first []api.KVEntry
		for i, nd := range sr.nodes {
			keys := listKeys(t, c, nd.api, p)
			if i == 0 {
				first = keys
			} else if !equalKeys(keys, first) {
				t.Fatalf("round %d: %s has %d keys under %s, %s %d: the nodes diverged", rd, nd.id, len(keys), p, sr.nodes[0].id, len(first))
			}
			have := map[string]int{}
			for _, e := range keys {
				have[e.Key] = e.Size
			}
			for k, v := range acked {
				if strings.HasPrefix(k, p) {
					if n, ok := have[k]; !ok || n != len(v) {
						t.Fatalf("round %d: %s lost acknowledged write %s (present %v, %d bytes)", rd, nd.id, k, ok, n)
					}
				}
			}
		}
	}
	// Values, on a sample, read linearizably from every node.
	n := 0
	for k, v := range acked {
		if n++; n > 20 {
			break
		}
		for _, nd := range sr.nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			code, body, err := c.do(ctx, "GET", nd.api+"/api/v1/kv/"+k+"?consistent=true", nil)
			cancel()
			if err != nil || code != 200 || string(body) != v {
				t.Fatalf("round %d: %s: acknowledged key %s: HTTP %d %q %v", rd, nd.id, k, code, body, err)
			}
		}
	}
}

func listKeys(t *testing.T, c *apiClient, base, prefix string) []api.KVEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, body, err := c.do(ctx, "GET", base+"/api/v1/kv?consistent=true&prefix="+prefix, nil)
	if err != nil || code != 200 {
		t.Fatalf("list %s on %s: HTTP %d %s %v", prefix, base, code, body, err)
	}
	var out []api.KVEntry
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	if len(out) >= 1000 {
		t.Fatalf("list %s on %s: %d keys, more than one answer holds", prefix, base, len(out))
	}
	return out
}

func equalKeys(a, b []api.KVEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// lineWatch keeps a process's output lines so a test can wait for one.
type lineWatch struct {
	mu    sync.Mutex
	lines []string
	part  string
	wake  chan struct{}
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.part + string(p)
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			break
		}
		w.lines = append(w.lines, s[:i])
		s = s[i+1:]
	}
	w.part = s
	if w.wake != nil {
		close(w.wake)
		w.wake = nil
	}
	return len(p), nil
}

// mark is the number of lines seen so far.
func (w *lineWatch) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

// waitSince waits for a line after the first from lines containing s.
func (w *lineWatch) waitSince(from int, s string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		for _, l := range w.lines[min(from, len(w.lines)):] {
			if strings.Contains(l, s) {
				w.mu.Unlock()
				return true
			}
		}
		if w.wake == nil {
			w.wake = make(chan struct{})
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			return false
		}
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
