// Package freeport picks loopback ports for test and benchmark clusters
// whose configs must name their ports before the processes start.
//
// A port the kernel handed out for 127.0.0.1:0 and that was closed again
// is free only until the kernel hands it out again: to another
// process's listener on :0 or to an outgoing connection's source port. A
// 3-node region whose third node bound its agent port on :0 took the
// raft port chosen for the first node that way, and CI failed on
// "address already in use". So the ports come from below the kernel's
// ephemeral range, which it never hands out by itself, chosen at random
// and checked free for both TCP and UDP (gossip uses both).
package freeport

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const (
	lowest       = 10000
	defaultFloor = 32768 // Linux's default ip_local_port_range start
)

var (
	mu    sync.Mutex
	taken = map[int]bool{} // handed out by this process already
)

// ephemeralStart is where the kernel's ephemeral port range begins.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultFloor
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return defaultFloor
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= lowest+1000 {
		return defaultFloor
	}
	return n
}

// Ports returns n distinct ports on host (an IP address such as
// 127.0.0.1) that are free now for TCP and UDP, from below the ephemeral
// range. Another process choosing the same way may still pick one before
// it is bound; the range is large enough that it is rare.
func Ports(host string, n int) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	top := ephemeralStart()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000*n {
			return nil, errors.New("freeport: no free port found below the ephemeral range")
		}
		p := lowest + rand.IntN(top-lowest)
		if taken[p] || !free(host, p) {
			continue
		}
		taken[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// Addrs is Ports as host:port strings.
func Addrs(host string, n int) ([]string, error) {
	ps, err := Ports(host, n)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = net.JoinHostPort(host, strconv.Itoa(p))
	}
	return out, nil
}

func free(host string, p int) bool {
	addr := net.JoinHostPort(host, strconv.Itoa(p))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}
