package drill

import (
	"fmt"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// watch is what one round looks for in the event streams: the fault is on
// node h, which held the lease with token t.
type watch struct {
	h string
	t uint64
	// injected is when the fault was sent (zero before); t0 is the fault's
	// time the round measures from.
	injected, t0 time.Time

	// First sightings on a survivor's stream (nil until seen).
	leader, lease, dispatch *seen
	// newLease holds the nodes whose stream delivered the new lease in
	// log order: a dispatch under token <= t delivered after it is a
	// stale dispatch the FSM accepted.
	newLease map[string]bool
	stale    map[string]string // dispatch id -> node that delivered it
	// disturbed says why the region moved before the fault.
	disturbed string
	recent    []string // the last events seen, for error messages
}

// seen is the first sighting of something.
type seen struct {
	at    time.Time
	node  string // the stream that carried it
	who   string // leader, holder or issuer
	token uint64
}

func newWatch(h string, t uint64) *watch {
	return &watch{h: h, t: t, newLease: map[string]bool{}, stale: map[string]string{}}
}

const maxRecent = 8

// note is the sink of every stream: it records s in the round being
// watched.
func (d *drill) note(s sighting) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.watch != nil {
		d.watch.record(s)
	}
}

func (w *watch) record(s sighting) {
	e := s.ev
	survivor := s.node != w.h
	// Dispatches under the old token are the drill's own load before the
	// fault; they would crowd out what an error message needs.
	if e.Kind != "dispatch" || (e.Dispatch != nil && (e.Dispatch.Token > w.t || w.newLease[s.node])) {
		w.recent = append(w.recent, w.describe(s))
		if len(w.recent) > maxRecent {
			w.recent = w.recent[1:]
		}
	}
	first := func(p **seen, who string, token uint64) {
		if *p != nil || !survivor {
			return
		}
		if w.injected.IsZero() {
			if w.disturbed == "" {
				w.disturbed = fmt.Sprintf("%s reported %s %s before the fault", s.node, e.Kind, who)
			}
			return
		}
		*p = &seen{at: s.at, node: s.node, who: who, token: token}
	}
	switch e.Kind {
	case "leader":
		if e.Leader != "" && e.Leader != w.h {
			first(&w.leader, e.Leader, 0)
		}
	case "lease":
		if l := e.Lease; l != nil && l.Token > w.t && l.Holder != "" {
			if !s.initial {
				w.newLease[s.node] = true
			}
			first(&w.lease, l.Holder, l.Token)
		}
	case "dispatch":
		dd := e.Dispatch
		if dd == nil {
			return
		}
		if dd.Token <= w.t && w.newLease[s.node] {
			w.stale[dd.ID] = s.node
		}
		if dd.Token > w.t {
			first(&w.dispatch, dd.Node, dd.Token)
		}
	}
}

// fill writes the round's first sightings into res. A stream that
// reconnected may have missed an event; the next one implies it and
// times it (a dispatch under token N means lease N was acquired, by the
// leader of the time).
func (w *watch) fill(res *api.DrillRound) {
	leader, lease, dispatch := w.leader, w.lease, w.dispatch
	if lease == nil && dispatch != nil {
		lease = &seen{at: dispatch.at, who: dispatch.who, token: dispatch.token}
	}
	if leader == nil && lease != nil {
		leader = &seen{at: lease.at, who: lease.who}
	}
	if leader != nil {
		res.NewLeader, res.LeaderElectedMs = leader.who, ms(w.t0, leader.at)
	}
	if lease != nil {
		res.NewHolder, res.NewToken, res.LeaseAcquiredMs = lease.who, lease.token, ms(w.t0, lease.at)
	}
	if dispatch != nil {
		res.FirstDispatchMs = ms(w.t0, dispatch.at)
	}
}

// describe is one line about a sighting, timed from the fault.
func (w *watch) describe(s sighting) string {
	when := "before the fault"
	if !w.t0.IsZero() {
		when = fmt.Sprintf("%+dms", s.at.Sub(w.t0).Milliseconds())
	}
	e := s.ev
	var what string
	switch e.Kind {
	case "leader":
		what = "leader " + orNone(e.Leader)
	case "lease":
		if e.Lease != nil {
			what = fmt.Sprintf("lease holder %s token %d", orNone(e.Lease.Holder), e.Lease.Token)
		}
	case "dispatch":
		if e.Dispatch != nil {
			what = fmt.Sprintf("dispatch %s token %d from %s", e.Dispatch.ID, e.Dispatch.Token, e.Dispatch.Node)
		}
	case "fenced":
		what = "fenced: " + e.Reason
	default:
		what = e.Kind
	}
	return fmt.Sprintf("%s %s (%s)", s.node, what, when)
}

// lastSeen summarizes the recent events for an error message.
func (w *watch) lastSeen() string {
	if len(w.recent) == 0 {
		return "no events from any node"
	}
	return strings.Join(w.recent, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// ms is the time from t0 to at in milliseconds (0 for a sighting between
// sending the fault and t0: a stop drill times from the node's answer).
func ms(t0, at time.Time) int64 {
	return max(0, at.Sub(t0).Milliseconds())
}

// arm starts watching a round; disarm stops.
func (d *drill) arm(w *watch) {
	d.mu.Lock()
	d.watch = w
	d.mu.Unlock()
}

func (d *drill) disarm() {
	d.mu.Lock()
	d.watch = nil
	d.mu.Unlock()
}

// observe runs fn on the watched round under the lock.
func (d *drill) observe(fn func(w *watch)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.watch != nil {
		fn(d.watch)
	}
}
