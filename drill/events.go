package drill

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// sighting is one event as the drill received it from a node's stream.
type sighting struct {
	node string // whose stream carried it
	ev   api.Event
	at   time.Time // when the drill read it, on the drill's monotonic clock
	// initial marks the leader and lease events that open a stream: the
	// state at connection time, not a change in the node's log order.
	initial bool
}

const (
	// streamIdle ends a stream that sent nothing, not even its 5s
	// heartbeat, for this long: the node hangs or the connection is gone.
	streamIdle = 15 * time.Second
	// streamKinds are the events the drill reads (heartbeats always come).
	streamKinds = "leader,lease,dispatch,fenced"
)

// watchers keeps one event stream open per node for the whole drill,
// reconnecting when a stream ends (a stopped node comes back).
type watchers struct {
	api  *caller
	sink func(sighting)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	ws map[string]*watcher
}

type watcher struct {
	node, url string
	cancel    context.CancelFunc
	// live: the current connection delivered its opening events, so
	// nothing the node sees from now on is missed.
	live    atomic.Bool
	lastErr atomic.Value // string
	// ends counts the connections that ended: a stop drill's sign that
	// the node went away even when its answer was lost.
	ends atomic.Int64
}

func newWatchers(a *caller, sink func(sighting)) *watchers {
	ctx, cancel := context.WithCancel(context.Background())
	return &watchers{api: a, sink: sink, ctx: ctx, cancel: cancel, ws: map[string]*watcher{}}
}

// ensure streams node's events from url, replacing a stream to another
// URL.
func (w *watchers) ensure(node, url string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.ws[node]; ok {
		if old.url == url {
			return
		}
		old.cancel()
	}
	ctx, cancel := context.WithCancel(w.ctx)
	wt := &watcher{node: node, url: url, cancel: cancel}
	w.ws[node] = wt
	w.wg.Add(1)
	go w.run(ctx, wt)
}

// live reports whether node's stream is open and caught up, and if not,
// why.
func (w *watchers) live(node string) (bool, string) {
	w.mu.Lock()
	wt, ok := w.ws[node]
	w.mu.Unlock()
	if !ok {
		return false, "not watched yet"
	}
	if wt.live.Load() {
		return true, ""
	}
	why, _ := wt.lastErr.Load().(string)
	if why == "" {
		why = "connecting"
	}
	return false, why
}

// ends is how many live connections of node's stream ended so far.
func (w *watchers) ends(node string) int64 {
	w.mu.Lock()
	wt, ok := w.ws[node]
	w.mu.Unlock()
	if !ok {
		return 0
	}
	return wt.ends.Load()
}

// close ends every stream and waits for them.
func (w *watchers) close() {
	w.cancel()
	w.wg.Wait()
}

func (w *watchers) run(ctx context.Context, wt *watcher) {
	defer w.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		wasLive, err := w.stream(ctx, wt)
		wt.live.Store(false)
		if wasLive {
			wt.ends.Add(1)
		}
		if ctx.Err() != nil {
			return
		}
		wt.lastErr.Store(err.Error())
		if wasLive {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

var errLagged = errors.New("the stream fell behind and the node ended it")

// stream reads one connection's events until it ends.
func (w *watchers) stream(ctx context.Context, wt *watcher) (wasLive bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(streamIdle, cancel)
	defer idle.Stop()
	body, err := w.api.stream(ctx, wt.url, "/api/v1/events?kinds="+streamKinds)
	if err != nil {
		return false, err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	n := 0
	for sc.Scan() {
		at := time.Now()
		idle.Reset(streamIdle)
		var ev api.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return wasLive, fmt.Errorf("bad event from %s: %w", wt.node, err)
		}
		switch ev.Kind {
		case "heartbeat":
			continue
		case "lagged":
			return wasLive, errLagged
		}
		n++
		w.sink(sighting{node: wt.node, ev: ev, at: at, initial: n <= 2})
		if n == 2 {
			wasLive = true
			wt.live.Store(true)
		}
	}
	if err := sc.Err(); err != nil {
		return wasLive, err
	}
	return wasLive, errors.New("the node closed the stream")
}
