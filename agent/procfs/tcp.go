package procfs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Kernel TCP state numbers (include/net/tcp_states.h), as in Socket.State.
const (
	StateEstablished uint8 = 1
	StateSynSent     uint8 = 2
	StateSynRecv     uint8 = 3
	StateFinWait1    uint8 = 4
	StateFinWait2    uint8 = 5
	StateTimeWait    uint8 = 6
	StateClose       uint8 = 7
	StateCloseWait   uint8 = 8
	StateLastAck     uint8 = 9
	StateListen      uint8 = 10
	StateClosing     uint8 = 11
	StateNewSynRecv  uint8 = 12
)

// maxTCPLine caps one line of /proc/net/tcp{,6}. The kernel writes about
// 150 bytes (tcp) or 180 (tcp6); the slack admits fields a later kernel
// may append.
const maxTCPLine = 4 << 10

// Socket is one line of /proc/net/tcp or /proc/net/tcp6.
type Socket struct {
	// Local and Remote are the socket's ends. IPv4-mapped IPv6 addresses
	// (a dual-stack listener's IPv4 peers, in tcp6) are unmapped to IPv4.
	// Remote is unspecified (0.0.0.0:0 or [::]:0) for a listener.
	Local, Remote netip.AddrPort
	// State is the kernel TCP state number (StateEstablished …
	// StateNewSynRecv).
	State uint8
	// TxQueue and RxQueue are bytes not yet acknowledged by the peer and
	// not yet read by the application; for a listener RxQueue is the
	// accept backlog.
	TxQueue, RxQueue uint32
	// UID owns the socket, in the reader's user namespace.
	UID uint32
	// Inode is the socket's inode number (0 for TIME_WAIT and request
	// sockets); /proc/<pid>/fd links name it "socket:[inode]".
	Inode uint64
}

// ParseTCP parses the contents of /proc/net/tcp, or of /proc/net/tcp6 when
// v6 is set. The header line is skipped; blank lines are ignored; any other
// line that is not in the kernel's format is an error naming the line.
// Lines are limited to 4 KiB; ParseTCP reads r to its end, so a caller
// reading an untrusted file caps it (Read does).
//
// Addresses are hex dumps of the kernel's 32-bit words in host byte order:
// one word for IPv4, four for IPv6. They are decoded with the host's byte
// order, which is right because the reader and the kernel share a host.
func ParseTCP(r io.Reader, v6 bool) ([]Socket, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, maxTCPLine), maxTCPLine)
	var socks []Socket
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		first, _ := nextField(line)
		if len(first) == 0 || (n == 1 && string(first) == "sl") {
			continue
		}
		s, err := parseSocket(line, v6)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		socks = append(socks, s)
	}
	if err := sc.Err(); err != nil {
		return nil, scanError(n, maxTCPLine, err)
	}
	return socks, nil
}

// scanError describes a bufio.Scanner failure after line n.
func scanError(n, maxLine int, err error) error {
	if errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("line %d: longer than %d bytes", n+1, maxLine)
	}
	return fmt.Errorf("after line %d: %w", n, err)
}

// parseSocket parses one data line:
//
//	sl local rem st tx:rx tr:when retrnsmt uid timeout inode [more…]
//
// TIME_WAIT and request sockets end after inode with two fields, full
// sockets with several more; neither tail is read.
func parseSocket(line []byte, v6 bool) (Socket, error) {
	var f [10][]byte
	rest := line
	for i := range f {
		f[i], rest = nextField(rest)
		if len(f[i]) == 0 {
			return Socket{}, fmt.Errorf("%d fields, want at least %d", i, len(f))
		}
	}
	var s Socket
	if sl, ok := bytes.CutSuffix(f[0], []byte(":")); !ok || !isDigits(sl) {
		return s, fmt.Errorf("slot %s: want a number and a colon", excerpt(f[0]))
	}
	var err error
	if s.Local, err = parseAddrPort(f[1], v6); err != nil {
		return s, fmt.Errorf("local address %s: %w", excerpt(f[1]), err)
	}
	if s.Remote, err = parseAddrPort(f[2], v6); err != nil {
		return s, fmt.Errorf("remote address %s: %w", excerpt(f[2]), err)
	}
	st, ok := parseHex(f[3], 2)
	if !ok {
		return s, fmt.Errorf("state %s: want 1-2 hex digits", excerpt(f[3]))
	}
	s.State = uint8(st)
	tx, rx, ok := bytes.Cut(f[4], []byte(":"))
	if !ok {
		return s, fmt.Errorf("queues %s: want tx:rx", excerpt(f[4]))
	}
	txq, okTx := parseHex(tx, 8)
	rxq, okRx := parseHex(rx, 8)
	if !okTx || !okRx {
		return s, fmt.Errorf("queues %s: want two 1-8 digit hex numbers", excerpt(f[4]))
	}
	s.TxQueue, s.RxQueue = uint32(txq), uint32(rxq)
	uid, ok := parseDec(f[7], 32)
	if !ok {
		return s, fmt.Errorf("uid %s: want a 32-bit decimal number", excerpt(f[7]))
	}
	s.UID = uint32(uid)
	if s.Inode, ok = parseDec(f[9], 64); !ok {
		return s, fmt.Errorf("inode %s: want a 64-bit decimal number", excerpt(f[9]))
	}
	return s, nil
}

// parseAddrPort parses "ADDR:PORT": ADDR is 8 hex digits (one host-order
// 32-bit word) or, for v6, 32 (four such words); PORT is 4 hex digits in
// network order, as the kernel prints it.
func parseAddrPort(b []byte, v6 bool) (netip.AddrPort, error) {
	a, p, ok := bytes.Cut(b, []byte(":"))
	words := 1
	if v6 {
		words = 4
	}
	if !ok || len(a) != 8*words || len(p) != 4 {
		return netip.AddrPort{}, fmt.Errorf("want %d hex digits, a colon and 4 hex digits", 8*words)
	}
	port, ok := parseHex(p, 4)
	if !ok {
		return netip.AddrPort{}, errors.New("port is not hex")
	}
	var ip [16]byte
	for i := range words {
		w, ok := parseHex(a[8*i:8*i+8], 8)
		if !ok {
			return netip.AddrPort{}, errors.New("address is not hex")
		}
		binary.NativeEndian.PutUint32(ip[4*i:], uint32(w))
	}
	addr := netip.AddrFrom4([4]byte(ip[:4]))
	if v6 {
		addr = netip.AddrFrom16(ip).Unmap()
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// nextField returns the first space-separated field of b and what follows
// it. The kernel separates with spaces only; a tab is part of a field and
// so fails to parse.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && b[i] == ' ' {
		i++
	}
	j := i
	for j < len(b) && b[j] != ' ' {
		j++
	}
	return b[i:j], b[j:]
}

// parseHex parses 1 to maxDigits hex digits (maxDigits ≤ 16), either case.
func parseHex(b []byte, maxDigits int) (uint64, bool) {
	if len(b) == 0 || len(b) > maxDigits {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// parseDec parses an unsigned decimal number that fits in bits bits.
func parseDec(b []byte, bits uint) (uint64, bool) {
	if !isDigits(b) || len(b) > 20 {
		return 0, false
	}
	limit := uint64(1)<<bits - 1
	if bits >= 64 {
		limit = ^uint64(0)
	}
	var v uint64
	for _, c := range b {
		d := uint64(c - '0')
		if v > (limit-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// excerpt quotes at most 40 bytes of untrusted text for an error message.
func excerpt[T ~string | ~[]byte](b T) string {
	const n = 40
	if len(b) > n {
		return fmt.Sprintf("%q…", b[:n])
	}
	return fmt.Sprintf("%q", b)
}
