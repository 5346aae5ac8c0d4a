package raft

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// NodeMeta is what a node advertises about itself by gossip. It must
// encode within memberlist.MetaMaxSize (512 bytes).
type NodeMeta struct {
	Region        string `json:"r"`
	RaftAddr      string `json:"ra"`
	APIURL        string `json:"api,omitempty"`
	AgentURL      string `json:"ag,omitempty"`
	FederationURL string `json:"fed,omitempty"`
	Agents        int    `json:"n,omitempty"`
	// InRegion is set once the node belongs to a Raft configuration, so a
	// fresh node does not try to bootstrap beside an existing region.
	InRegion bool `json:"in,omitempty"`
	// Leaving is announced just before a graceful leave: memberlist's
	// leave event does not say whether a node left or failed.
	Leaving bool `json:"lv,omitempty"`
}

// MemberStatus is a node's gossip status.
type MemberStatus string

const (
	MemberAlive  MemberStatus = "alive"
	MemberFailed MemberStatus = "failed"
	MemberLeft   MemberStatus = "left"
)

// Member is one node as gossip sees it.
type Member struct {
	ID         string
	GossipAddr string
	Status     MemberStatus
	Since      time.Time // when Status last changed
	Meta       NodeMeta
	MetaErr    string // set when the node's metadata could not be decoded
}

// members tracks every node gossip has told us of, including failed and
// departed ones (memberlist.Members lists only live nodes), so autopilot
// can tell a dead server from one it has not heard of yet.
type members struct {
	mu      sync.Mutex
	self    string
	byID    map[string]*Member
	changed chan struct{} // signalled (non-blocking) on every event
	now     func() time.Time
}

var _ memberlist.EventDelegate = (*members)(nil)

func newMembers(self string) *members {
	return &members{self: self, byID: map[string]*Member{}, changed: make(chan struct{}, 1), now: time.Now}
}

func (m *members) update(n *memberlist.Node, status MemberStatus) {
	var meta NodeMeta
	var metaErr string
	if err := json.Unmarshal(n.Meta, &meta); err != nil {
		metaErr = err.Error()
	}
	m.mu.Lock()
	cur, ok := m.byID[n.Name]
	if !ok || cur.Status != status {
		cur = &Member{ID: n.Name, Status: status, Since: m.now()}
		m.byID[n.Name] = cur
	}
	cur.GossipAddr = n.Address()
	cur.Meta, cur.MetaErr = meta, metaErr
	m.mu.Unlock()
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

func (m *members) NotifyJoin(n *memberlist.Node)   { m.update(n, MemberAlive) }
func (m *members) NotifyUpdate(n *memberlist.Node) { m.update(n, MemberAlive) }
func (m *members) NotifyLeave(n *memberlist.Node) {
	m.mu.Lock()
	cur, ok := m.byID[n.Name]
	leaving := ok && cur.Meta.Leaving
	m.mu.Unlock()
	if leaving || n.State == memberlist.StateLeft {
		m.update(n, MemberLeft)
		return
	}
	m.update(n, MemberFailed)
}

// list returns a copy of all known members, sorted by id.
func (m *members) list() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.byID))
	for _, v := range m.byID {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// metaDelegate serves this node's metadata to memberlist.
type metaDelegate struct {
	mu   sync.Mutex
	meta NodeMeta
}

var _ memberlist.Delegate = (*metaDelegate)(nil)

func (d *metaDelegate) set(fn func(*NodeMeta)) {
	d.mu.Lock()
	fn(&d.meta)
	d.mu.Unlock()
}

func (d *metaDelegate) get() NodeMeta {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta
}

func (d *metaDelegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(d.get())
	if len(b) > limit {
		// Drop the optional URLs rather than panic inside memberlist; the
		// Raft address and region are what discovery needs.
		m := d.get()
		b, _ = json.Marshal(NodeMeta{Region: m.Region, RaftAddr: m.RaftAddr, InRegion: m.InRegion})
	}
	return b
}

func (d *metaDelegate) NotifyMsg([]byte)                           {}
func (d *metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *metaDelegate) LocalState(join bool) []byte                { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, join bool)     {}
