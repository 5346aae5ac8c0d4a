package procfs

import "net/netip"

// Directions of a FlowKey.
const (
	DirectionIn  = "in"  // the local end is the server: a peer connected to us
	DirectionOut = "out" // the local end is the client: we connected out
)

// FlowKey identifies the connections between two hosts to one server port
// in one direction; client ports, which change per connection, are left
// out so that the number of keys stays bounded.
type FlowKey struct {
	Local, Remote netip.Addr
	// Port is the server's port: the local port for DirectionIn, the
	// remote port for DirectionOut.
	Port      uint16
	Direction string // DirectionIn or DirectionOut
}

// Flows aggregates sockets, normally one Snapshot's, into flows: the value
// is how many of the flow's sockets are ESTABLISHED. A flow whose sockets
// are all in other states (SYN_SENT, TIME_WAIT, …) is present with 0, so a
// short connection that closed between two reads still shows.
//
// A socket is inbound when its local port is one a LISTEN socket in
// sockets listens on, at the wildcard address or at the socket's own local
// address; otherwise it is outbound. LISTEN sockets and sockets with an
// unspecified or invalid remote address (unconnected, closed) are skipped.
func Flows(sockets []Socket) map[FlowKey]int {
	listening := map[uint16][]netip.Addr{} // port → listening addresses
	for _, s := range sockets {
		if s.State == StateListen {
			listening[s.Local.Port()] = append(listening[s.Local.Port()], s.Local.Addr())
		}
	}
	flows := map[FlowKey]int{}
	for _, s := range sockets {
		if s.State == StateListen || !s.Local.Addr().IsValid() ||
			!s.Remote.Addr().IsValid() || s.Remote.Addr().IsUnspecified() {
			continue
		}
		k := FlowKey{Local: s.Local.Addr(), Remote: s.Remote.Addr(), Port: s.Remote.Port(), Direction: DirectionOut}
		if listensOn(listening[s.Local.Port()], s.Local.Addr()) {
			k.Port, k.Direction = s.Local.Port(), DirectionIn
		}
		n := flows[k]
		if s.State == StateEstablished {
			n++
		}
		flows[k] = n
	}
	return flows
}

// listensOn reports whether one of the listening addresses accepts
// connections to local.
func listensOn(listening []netip.Addr, local netip.Addr) bool {
	for _, a := range listening {
		if a.IsUnspecified() || a == local {
			return true
		}
	}
	return false
}
