package procfs

import (
	"maps"
	"net/netip"
	"testing"
)

func TestFlows(t *testing.T) {
	ip := netip.MustParseAddr
	sock := func(local, remote string, state uint8) Socket {
		return Socket{Local: ap(local), Remote: ap(remote), State: state}
	}
	tests := []struct {
		name    string
		sockets []Socket
		want    map[FlowKey]int
	}{
		{"loopback pair: one out, one in", []Socket{
			sock("127.0.0.1:8080", "0.0.0.0:0", StateListen),
			sock("127.0.0.1:40000", "127.0.0.1:8080", StateEstablished),
			sock("127.0.0.1:8080", "127.0.0.1:40000", StateEstablished),
		}, map[FlowKey]int{
			{ip("127.0.0.1"), ip("127.0.0.1"), 8080, DirectionOut}: 1,
			{ip("127.0.0.1"), ip("127.0.0.1"), 8080, DirectionIn}:  1,
		}},
		{"client ports aggregate", []Socket{
			sock("10.0.0.1:40000", "10.0.0.2:443", StateEstablished),
			sock("10.0.0.1:40001", "10.0.0.2:443", StateEstablished),
			sock("10.0.0.1:40002", "10.0.0.2:443", StateTimeWait),
			sock("10.0.0.1:40003", "10.0.0.2:80", StateSynSent),
		}, map[FlowKey]int{
			{ip("10.0.0.1"), ip("10.0.0.2"), 443, DirectionOut}: 2,
			{ip("10.0.0.1"), ip("10.0.0.2"), 80, DirectionOut}:  0,
		}},
		{"wildcard listener makes peers inbound", []Socket{
			sock("0.0.0.0:22", "0.0.0.0:0", StateListen),
			sock("10.0.0.1:22", "192.0.2.7:51000", StateEstablished),
			sock("10.0.0.1:22", "192.0.2.7:51001", StateEstablished),
			sock("10.0.0.1:22", "192.0.2.8:51000", StateFinWait2),
		}, map[FlowKey]int{
			{ip("10.0.0.1"), ip("192.0.2.7"), 22, DirectionIn}: 2,
			{ip("10.0.0.1"), ip("192.0.2.8"), 22, DirectionIn}: 0,
		}},
		{"dual-stack listener takes unmapped IPv4 peers", []Socket{
			sock("[::]:443", "[::]:0", StateListen),
			sock("10.0.0.1:443", "192.0.2.7:51000", StateEstablished),
			sock("[2001:db8::1]:443", "[2001:db8::2]:51000", StateEstablished),
		}, map[FlowKey]int{
			{ip("10.0.0.1"), ip("192.0.2.7"), 443, DirectionIn}:      1,
			{ip("2001:db8::1"), ip("2001:db8::2"), 443, DirectionIn}: 1,
		}},
		{"listener on another address leaves the port outbound", []Socket{
			sock("127.0.0.1:40000", "0.0.0.0:0", StateListen),
			sock("10.0.0.1:40000", "10.0.0.2:5432", StateEstablished),
		}, map[FlowKey]int{
			{ip("10.0.0.1"), ip("10.0.0.2"), 5432, DirectionOut}: 1,
		}},
		{"no listener means outbound", []Socket{
			sock("10.0.0.1:8080", "10.0.0.2:40000", StateEstablished),
		}, map[FlowKey]int{
			{ip("10.0.0.1"), ip("10.0.0.2"), 40000, DirectionOut}: 1,
		}},
		{"skips listeners, unspecified and invalid remotes", []Socket{
			sock("0.0.0.0:22", "0.0.0.0:0", StateListen),
			sock("10.0.0.1:5000", "0.0.0.0:0", StateClose),
			sock("[::1]:5001", "[::]:0", StateClose),
			{Local: ap("10.0.0.1:5002"), State: StateEstablished},
			{Remote: ap("10.0.0.2:5002"), State: StateEstablished},
		}, map[FlowKey]int{}},
		{"none", nil, map[FlowKey]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Flows(tt.sockets); !maps.Equal(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}
