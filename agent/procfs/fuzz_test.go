package procfs

import (
	"bytes"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// maxErrLen bounds an error message: errors quote hostile input only in
// short excerpts.
const maxErrLen = 1024

// FuzzParseTCP checks that ParseTCP never panics, that what it accepts
// holds valid addresses of the file's family (IPv4-mapped ones unmapped),
// and that the sockets written back in the kernel's format parse to the
// same sockets.
//
//	go test -run '^$' -fuzz '^FuzzParseTCP$' -fuzztime 50000x ./agent/procfs/
func FuzzParseTCP(f *testing.F) {
	for _, s := range []string{
		tcpHeader + "\n" + lineListen4 + "\n" + lineEstab4 + "\n" + lineTimeWait4 + "\n",
		lineWildcard4, lineBigQueues4,
		lineEstab4[:60],
		strings.Replace(lineEstab4, "0100007F", "0100007G", 1),
	} {
		f.Add([]byte(s), false)
	}
	for _, s := range []string{
		tcp6Header + "\n" + lineListen6 + "\n" + lineEstab6 + "\n" + lineMapped6 + "\n",
		lineDoc6,
		lineEstab4,
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, v6 bool) {
		socks, err := ParseTCP(bytes.NewReader(data), v6)
		if err != nil {
			if socks != nil {
				t.Errorf("sockets %+v returned with error %v", socks, err)
			}
			if len(err.Error()) > maxErrLen {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if lines := bytes.Count(data, []byte("\n")) + 1; len(socks) > lines {
			t.Fatalf("%d sockets from %d lines", len(socks), lines)
		}
		var b strings.Builder
		b.WriteString(tcpHeader + "\n")
		for i, s := range socks {
			for _, a := range []struct {
				end  string
				addr netip.Addr
			}{{"local", s.Local.Addr()}, {"remote", s.Remote.Addr()}} {
				switch {
				case !a.addr.IsValid():
					t.Fatalf("socket %d: invalid %s address", i, a.end)
				case a.addr.Is4In6():
					t.Fatalf("socket %d: %s address %v left IPv4-mapped", i, a.end, a.addr)
				case !v6 && !a.addr.Is4():
					t.Fatalf("socket %d: %s address %v in a tcp (IPv4) file", i, a.end, a.addr)
				case a.addr.Zone() != "":
					t.Fatalf("socket %d: %s address %v has a zone", i, a.end, a.addr)
				}
			}
			b.WriteString(formatLine(i, s, v6) + "\n")
		}
		again, err := ParseTCP(strings.NewReader(b.String()), v6)
		if err != nil {
			t.Fatalf("re-parsing %q: %v", b.String(), err)
		}
		if !slices.Equal(again, socks) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, socks)
		}
	})
}

// FuzzParseCounters checks that ParseCounters never panics, that what it
// accepts has sensible table and field names, and that the tables written
// back in the kernel's format parse to the same tables.
//
//	go test -run '^$' -fuzz '^FuzzParseCounters$' -fuzztime 50000x ./agent/procfs/
func FuzzParseCounters(f *testing.F) {
	for _, s := range []string{
		snmpTCP + snmpUDP,
		netstatTCPExt,
		"Empty:\nEmpty:\n",
		"X: min max\nX: -9223372036854775808 9223372036854775807\n",
		"Tcp: a b c\nTcp: 1 2\n",
		"Tcp: a b\nTcp: 1 x\n",
		"Tcp: 1 200\nTcp: RtoAlgorithm RtoMin\n",
		snmpTCP + "Udp: a b\n",
		snmpTCP + snmpTCP,
		"Tcp: a a\nTcp: 1 2\n",
		"\r\n A:\tx  y\r\nA: +1 -0\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tables, err := ParseCounters(bytes.NewReader(data))
		if err != nil {
			if len(err.Error()) > maxErrLen {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
			return
		}
		var b strings.Builder
		for _, name := range slices.Sorted(maps.Keys(tables)) {
			if name == "" || strings.ContainsFunc(name, isSpace) {
				t.Fatalf("table name %q", name)
			}
			fields := slices.Sorted(maps.Keys(tables[name]))
			var values []string
			for _, f := range fields {
				if f == "" || strings.ContainsFunc(f, isSpace) || isNumber(f) {
					t.Fatalf("table %q: field name %q", name, f)
				}
				values = append(values, strconv.FormatInt(tables[name][f], 10))
			}
			b.WriteString(strings.Join(append([]string{name + ":"}, fields...), " ") + "\n")
			b.WriteString(strings.Join(append([]string{name + ":"}, values...), " ") + "\n")
		}
		again, err := ParseCounters(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("re-parsing %q: %v", b.String(), err)
		}
		if !maps.EqualFunc(again, tables, maps.Equal) {
			t.Fatalf("round trip:\n got %v\nwant %v", again, tables)
		}
	})
}

func isSpace(r rune) bool { return strings.TrimSpace(string(r)) == "" }
