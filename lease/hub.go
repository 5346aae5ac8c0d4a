package lease

import (
	"sync"
	"time"
)

// Event kinds.
const (
	EventLeader   = "leader"   // the Raft leader changed (Leader, "" while electing)
	EventLease    = "lease"    // a lease acquisition or release committed (Lease)
	EventDispatch = "dispatch" // a committed dispatch was delivered by this node (Dispatch)
	EventFenced   = "fenced"   // this node stopped dispatching (Reason)
	EventLagged   = "lagged"   // the subscriber fell behind and was dropped
)

// Event is one thing a node saw happen, in the order it saw it. Until
// agents exist, dispatch events are the node's delivery stream.
type Event struct {
	Kind     string    `json:"kind"`
	At       time.Time `json:"at"`
	Node     string    `json:"node"`
	Leader   string    `json:"leader,omitempty"`
	Lease    *State    `json:"lease,omitempty"`
	Dispatch *Dispatch `json:"dispatch,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// Hub fans a node's events out to its subscribers. A subscriber that
// falls more than its buffer behind is dropped rather than allowed to
// stall the FSM: its channel closes and Lagged reports true, so a watcher
// knows it missed events and resumes from the stored log.
type Hub struct {
	mu   sync.Mutex
	subs map[*Sub]struct{}
	now  func() time.Time
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[*Sub]struct{}{}, now: time.Now} }

// Sub is one subscription.
type Sub struct {
	C      <-chan Event
	ch     chan Event
	hub    *Hub
	lagged bool
	closed bool
}

// Subscribe returns a subscription buffering up to buf events. Close it.
func (h *Hub) Subscribe(buf int) *Sub {
	ch := make(chan Event, buf)
	s := &Sub{C: ch, ch: ch, hub: h}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Publish stamps e with the time and sends it to every subscriber; it
// never blocks.
func (h *Hub) Publish(e Event) {
	if h == nil {
		return
	}
	if e.At.IsZero() {
		e.At = h.now()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- e:
		default:
			s.lagged, s.closed = true, true
			close(s.ch)
			delete(h.subs, s)
		}
	}
}

// Lagged reports whether the hub dropped this subscriber for falling
// behind (valid once C is closed).
func (s *Sub) Lagged() bool {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.lagged
}

// Close ends the subscription.
func (s *Sub) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
		delete(s.hub.subs, s)
	}
}
