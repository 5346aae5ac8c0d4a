package procfs

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// Real headers and lines, captured on a little-endian (amd64) Linux 6.x
// host after opening loopback listeners and connections with known ports:
// 127.0.0.1:50305 listening, 127.0.0.1:42434 connected to it; [::]:45281
// listening dual-stack, [::1]:45794 and 127.0.0.1:47280 connected to it.
const (
	tcpHeader  = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     "
	tcp6Header = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"

	lineListen4    = "   1: 0100007F:C481 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 436366 1 00000000254cd04e 100 0 0 10 0                    "
	lineEstab4     = "   4: 0100007F:A5C2 0100007F:C481 01 00000000:00000000 00:00000000 00000000     0        0 436367 2 00000000ec972ef6 20 0 0 10 -1                    "
	lineTimeWait4  = "   4: 0100007F:A5C2 0100007F:C481 06 00000000:00000000 03:00001612 00000000     0        0 0 3 000000005a1dfea4                                      "
	lineWildcard4  = "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 191 1 0000000084625758 100 0 0 10 0                       "
	lineListen6    = "   0: 00000000000000000000000000000000:B0E1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 436369 1 00000000a85c4717 100 0 0 10 0"
	lineEstab6     = "   1: 00000000000000000000000001000000:B2E2 00000000000000000000000001000000:B0E1 01 00000000:00000000 00:00000000 00000000     0        0 436370 2 000000002f26b50d 20 0 0 10 -1"
	lineMapped6    = "   3: 0000000000000000FFFF00000100007F:B0E1 0000000000000000FFFF00000100007F:B8B0 01 00000000:00000000 00:00000000 00000000     0        0 436373 1 00000000e339d1ac 20 0 0 10 -1"
	lineDoc6       = "   2: B80D01200000000067452301EFCDAB89:0050 B80D0120000000000000000002000000:D431 01 0000002A:00000010 02:000000C8 00000000  1000        0 99 1 0000000000000000 20 4 30 10 -1"
	lineBigQueues4 = "  17: 0F02000A:01BB 5DB8D822:C350 08 FFFFFFFF:0001F400 01:00000014 00000003 4294967295        0 18446744073709551615 1 0000000000000000 20 4 30 10 -1"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// littleEndian reports whether the captured lines, dumped by a
// little-endian kernel, decode as written on this host.
func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

func TestParseTCP(t *testing.T) {
	if !littleEndian() {
		t.Skip("the captured lines were dumped by a little-endian kernel; this host is big-endian")
	}
	tests := []struct {
		name string
		v6   bool
		in   string
		want []Socket
	}{
		{"v4 listener", false, tcpHeader + "\n" + lineListen4 + "\n",
			[]Socket{{Local: ap("127.0.0.1:50305"), Remote: ap("0.0.0.0:0"), State: StateListen, Inode: 436366}}},
		{"v4 established", false, tcpHeader + "\n" + lineEstab4 + "\n",
			[]Socket{{Local: ap("127.0.0.1:42434"), Remote: ap("127.0.0.1:50305"), State: StateEstablished, Inode: 436367}}},
		{"v4 time-wait has fewer fields", false, lineTimeWait4,
			[]Socket{{Local: ap("127.0.0.1:42434"), Remote: ap("127.0.0.1:50305"), State: StateTimeWait}}},
		{"v4 wildcard", false, lineWildcard4,
			[]Socket{{Local: ap("0.0.0.0:2024"), Remote: ap("0.0.0.0:0"), State: StateListen, Inode: 191}}},
		{"v4 maximal queues uid inode", false, lineBigQueues4,
			[]Socket{{Local: ap("10.0.2.15:443"), Remote: ap("34.216.184.93:50000"), State: StateCloseWait,
				TxQueue: 0xFFFFFFFF, RxQueue: 128000, UID: 4294967295, Inode: 18446744073709551615}}},
		{"v6 listener", true, tcp6Header + "\n" + lineListen6 + "\n",
			[]Socket{{Local: ap("[::]:45281"), Remote: ap("[::]:0"), State: StateListen, Inode: 436369}}},
		{"v6 loopback", true, lineEstab6,
			[]Socket{{Local: ap("[::1]:45794"), Remote: ap("[::1]:45281"), State: StateEstablished, Inode: 436370}}},
		{"v6 IPv4-mapped is unmapped", true, lineMapped6,
			[]Socket{{Local: ap("127.0.0.1:45281"), Remote: ap("127.0.0.1:47280"), State: StateEstablished, Inode: 436373}}},
		{"v6 word order", true, lineDoc6,
			[]Socket{{Local: ap("[2001:db8::123:4567:89ab:cdef]:80"), Remote: ap("[2001:db8::2]:54321"), State: StateEstablished,
				TxQueue: 42, RxQueue: 16, UID: 1000, Inode: 99}}},
		{"header only", false, tcpHeader + "\n", nil},
		{"empty", false, "", nil},
		{"blank lines and CRLF", false, "\n" + lineEstab4 + "\r\n\n   \n" + lineWildcard4,
			[]Socket{
				{Local: ap("127.0.0.1:42434"), Remote: ap("127.0.0.1:50305"), State: StateEstablished, Inode: 436367},
				{Local: ap("0.0.0.0:2024"), Remote: ap("0.0.0.0:0"), State: StateListen, Inode: 191},
			}},
		{"lower-case hex", false, strings.ToLower(lineEstab4),
			[]Socket{{Local: ap("127.0.0.1:42434"), Remote: ap("127.0.0.1:50305"), State: StateEstablished, Inode: 436367}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTCP(strings.NewReader(tt.in), tt.v6)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseTCPMalformed(t *testing.T) {
	replace := func(line, old, new string) string {
		t.Helper()
		if !strings.Contains(line, old) {
			t.Fatalf("%q not in %q", old, line)
		}
		return strings.Replace(line, old, new, 1)
	}
	tests := []struct {
		name    string
		v6      bool
		in      string
		wantErr string
	}{
		{"short", false, "   0: 0100007F:C481 00000000:0000 0A", "line 1: 4 fields, want at least 10"},
		{"truncated mid-field", false, lineEstab4[:60], "line 1: 6 fields, want at least 10"},
		{"slot not a number", false, replace(lineEstab4, "4:", "x:"), `slot "x:"`},
		{"slot without colon", false, replace(lineEstab4, "4:", "4"), `slot "4"`},
		{"bad hex address", false, replace(lineEstab4, "0100007F:A5C2", "0100007G:A5C2"), `local address "0100007G:A5C2": address is not hex`},
		{"bad hex port", false, replace(lineEstab4, "0100007F:C481", "0100007F:C48Z"), `remote address "0100007F:C48Z": port is not hex`},
		{"short address", false, replace(lineEstab4, "0100007F:A5C2", "100007F:A5C2"), "want 8 hex digits"},
		{"long port", false, replace(lineEstab4, "0100007F:A5C2", "0100007F:0A5C2"), "want 8 hex digits"},
		{"no port", false, replace(lineEstab4, "0100007F:A5C2", "0100007FA5C2"), "want 8 hex digits"},
		{"signed address", false, replace(lineEstab4, "0100007F:A5C2", "+100007F:A5C2"), "address is not hex"},
		{"v6 line in v4 file", false, lineEstab6, "want 8 hex digits"},
		{"v4 line in v6 file", true, lineEstab4, "want 32 hex digits"},
		{"state too wide", false, replace(lineEstab4, " 01 ", " 001 "), `state "001"`},
		{"state not hex", false, replace(lineEstab4, " 01 ", " 0x "), `state "0x"`},
		{"queues without colon", false, replace(lineEstab4, "00000000:00000000", "0000000000000000"), "want tx:rx"},
		{"queue too wide", false, replace(lineEstab4, "00000000:00000000", "00000000:100000000"), "want two 1-8 digit hex numbers"},
		{"queue empty", false, replace(lineEstab4, "00000000:00000000", "00000000:"), "want two 1-8 digit hex numbers"},
		{"uid negative", false, replace(lineEstab4, "     0        0 436367", "    -1        0 436367"), `uid "-1"`},
		{"uid overflow", false, replace(lineEstab4, "     0        0 436367", " 4294967296        0 436367"), `uid "4294967296"`},
		{"inode overflow", false, replace(lineEstab4, " 436367 ", " 18446744073709551616 "), `inode "18446744073709551616"`},
		{"inode hex", false, replace(lineEstab4, " 436367 ", " 6A7CF "), `inode "6A7CF"`},
		{"tab separated", false, strings.ReplaceAll(lineEstab4, " ", "\t"), "fields"},
		{"NUL in field", false, replace(lineEstab4, "0100007F:A5C2", "0100\x0007F:A5C2"), "address is not hex"},
		{"names the line", false, tcpHeader + "\n" + lineEstab4 + "\n" + lineEstab4[:30] + "\n", "line 3: "},
		{"header not first", false, lineEstab4 + "\n" + tcpHeader, `line 2: slot "sl"`},
		{"overlong line", false, lineEstab4 + "\n" + lineEstab4 + strings.Repeat(" ", maxTCPLine), "line 2: longer than 4096 bytes"},
		{"long field quoted short", false, replace(lineEstab4, "0100007F:A5C2", strings.Repeat("F", 1000)), `"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"…`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTCP(strings.NewReader(tt.in), tt.v6)
			if err == nil {
				t.Fatalf("no error; got %+v", got)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("got sockets %+v with the error", got)
			}
		})
	}
}

func TestParseTCPReaderError(t *testing.T) {
	r := iotest.TimeoutReader(strings.NewReader(tcpHeader + "\n" + lineEstab4 + "\n"))
	_, err := ParseTCP(iotest.OneByteReader(r), false)
	if err == nil || !strings.Contains(err.Error(), "after line") {
		t.Fatalf("got %v, want the reader's error after the lines read", err)
	}
}

// formatLine writes s as the kernel would in /proc/net/tcp (v6 false) or
// /proc/net/tcp6, in this host's byte order.
func formatLine(sl int, s Socket, v6 bool) string {
	addr := func(a netip.AddrPort) string {
		var b strings.Builder
		if v6 {
			ip := a.Addr().As16()
			for i := range 4 {
				fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(ip[4*i:]))
			}
		} else {
			ip := a.Addr().As4()
			fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(ip[:]))
		}
		fmt.Fprintf(&b, ":%04X", a.Port())
		return b.String()
	}
	return fmt.Sprintf("%4d: %s %s %02X %08X:%08X 00:00000000 00000000 %5d        0 %d 1 0000000000000000 20 4 30 10 -1",
		sl, addr(s.Local), addr(s.Remote), s.State, s.TxQueue, s.RxQueue, s.UID, s.Inode)
}

func TestFormatLineMatchesKernel(t *testing.T) {
	if !littleEndian() {
		t.Skip("the captured lines were dumped by a little-endian kernel; this host is big-endian")
	}
	for _, tt := range []struct {
		line string
		v6   bool
	}{{lineEstab4, false}, {lineEstab6, true}, {lineMapped6, true}, {lineDoc6, true}} {
		socks, err := ParseTCP(strings.NewReader(tt.line), tt.v6)
		if err != nil {
			t.Fatal(err)
		}
		// Compare up to the inode: the rest is kernel state formatLine
		// does not model.
		want := strings.Fields(tt.line)[1:5]
		got := strings.Fields(formatLine(0, socks[0], tt.v6))[1:5]
		if !slices.Equal(got, want) {
			t.Errorf("formatLine: %q, kernel: %q", got, want)
		}
	}
}

// benchLines returns a tcp (v6 false) or tcp6 file of n sockets.
func benchLines(n int, v6 bool) string {
	var b strings.Builder
	b.WriteString(tcpHeader + "\n")
	for i := range n {
		s := Socket{
			Local:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 443),
			Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), uint16(32768+i)),
			State:  StateEstablished, UID: 1000, Inode: uint64(100000 + i),
		}
		if v6 {
			s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}), 443)
			s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 15: byte(i)}), uint16(32768+i))
		}
		b.WriteString(formatLine(i, s, v6) + "\n")
	}
	return b.String()
}

// BenchmarkParseTCP parses 10,000-socket tables, reporting ns/socket:
//
//	go test -run '^$' -bench ParseTCP -benchmem ./agent/procfs/
func BenchmarkParseTCP(b *testing.B) {
	const n = 10_000
	for _, v6 := range []bool{false, true} {
		name := "tcp"
		if v6 {
			name = "tcp6"
		}
		b.Run(name, func(b *testing.B) {
			text := benchLines(n, v6)
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				socks, err := ParseTCP(strings.NewReader(text), v6)
				if err != nil || len(socks) != n {
					b.Fatalf("got %d sockets, %v", len(socks), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/socket")
		})
	}
}
