package dataplane

import (
	"sync"

	"github.com/outpost-mesh/outpost/agent/procfs"
)

// procfsSource reads the kernel's TCP view from /proc when eBPF cannot
// load: open connections per flow (no bytes or RTT per connection exist
// there) and the host's TCP counters.
type procfsSource struct {
	root string
	mu   sync.Mutex
	host map[string]int64 // the last snmp Tcp and netstat TcpExt counters
}

// hostCounters are the snmp/netstat counters exported, by metric name.
var hostCounters = []struct{ table, field, name, desc string }{
	{"Tcp", "ActiveOpens", "outpost.host.tcp.active_opens", "TCP connections this host opened (connect), since boot."},
	{"Tcp", "PassiveOpens", "outpost.host.tcp.passive_opens", "TCP connections this host accepted, since boot."},
	{"Tcp", "AttemptFails", "outpost.host.tcp.attempt_fails", "TCP connection attempts that failed, since boot."},
	{"Tcp", "EstabResets", "outpost.host.tcp.estab_resets", "Established TCP connections reset, since boot."},
	{"Tcp", "RetransSegs", "outpost.host.tcp.retrans_segs", "TCP segments retransmitted, since boot."},
	{"Tcp", "OutSegs", "outpost.host.tcp.out_segs", "TCP segments sent, since boot."},
	{"Tcp", "InSegs", "outpost.host.tcp.in_segs", "TCP segments received, since boot."},
	{"TcpExt", "TCPTimeouts", "outpost.host.tcp.timeouts", "TCP retransmission timeouts, since boot."},
}

// apply applies one read of procfs to g.
func (p *procfsSource) apply(g *aggregator, snap procfs.Snapshot) {
	for k, n := range procfs.Flows(snap.Sockets) {
		g.at(FlowKey{Local: k.Local, Remote: k.Remote, Port: k.Port, Dir: k.Direction}).Established = int64(n)
	}
	host := map[string]int64{}
	for _, c := range hostCounters {
		t := snap.TCP
		if c.table == "TcpExt" {
			t = snap.TCPExt
		}
		if v, ok := t[c.field]; ok {
			host[c.name] = v
		}
	}
	p.mu.Lock()
	p.host = host
	p.mu.Unlock()
}

func (p *procfsSource) hostCounters() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.host
}
