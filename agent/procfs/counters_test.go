package procfs

import (
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Captured from a Linux 6.x host's /proc/net/snmp (Tcp and Udp) and
// /proc/net/netstat (a TcpExt prefix).
const (
	snmpTCP = "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n" +
		"Tcp: 1 200 120000 -1 50961 43753 7129 35393 0 1605470 1596517 1186 0 40978 0\n"
	snmpUDP = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 17956 960 0 18919 0 0 0 0 0\n"
	netstatTCPExt = "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts ListenOverflows ListenDrops TCPTimeouts\n" +
		"TcpExt: 0 0 0 12 3 3 411\n"
)

func TestParseCounters(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]map[string]int64
	}{
		{"snmp", snmpTCP + snmpUDP, map[string]map[string]int64{
			"Tcp": {"RtoAlgorithm": 1, "RtoMin": 200, "RtoMax": 120000, "MaxConn": -1, "ActiveOpens": 50961,
				"PassiveOpens": 43753, "AttemptFails": 7129, "EstabResets": 35393, "CurrEstab": 0, "InSegs": 1605470,
				"OutSegs": 1596517, "RetransSegs": 1186, "InErrs": 0, "OutRsts": 40978, "InCsumErrors": 0},
			"Udp": {"InDatagrams": 17956, "NoPorts": 960, "InErrors": 0, "OutDatagrams": 18919, "RcvbufErrors": 0,
				"SndbufErrors": 0, "InCsumErrors": 0, "IgnoredMulti": 0, "MemErrors": 0},
		}},
		{"netstat", netstatTCPExt, map[string]map[string]int64{
			"TcpExt": {"SyncookiesSent": 0, "SyncookiesRecv": 0, "SyncookiesFailed": 0, "EmbryonicRsts": 12,
				"ListenOverflows": 3, "ListenDrops": 3, "TCPTimeouts": 411},
		}},
		{"extremes", "X: min max\nX: -9223372036854775808 9223372036854775807\n", map[string]map[string]int64{
			"X": {"min": -9223372036854775808, "max": 9223372036854775807},
		}},
		{"table without fields", "Empty:\nEmpty:\n", map[string]map[string]int64{"Empty": {}}},
		{"blank lines, CRLF and runs of spaces", "\n\nA:  x   y\r\n\nA: 1  2\r\n\n", map[string]map[string]int64{
			"A": {"x": 1, "y": 2},
		}},
		{"empty", "", map[string]map[string]int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCounters(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.EqualFunc(got, tt.want, maps.Equal) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestParseCountersErrors(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"fewer values", "Tcp: a b c\nTcp: 1 2\n", `line 2: table "Tcp" has 2 values for the 3 fields named on line 1`},
		{"more values", "Tcp: a\nTcp: 1 2\n", `line 2: table "Tcp" has 2 values for the 1 fields`},
		{"non-numeric value", "Tcp: a b\nTcp: 1 x\n", `line 2: "Tcp" "b": "x" is not a 64-bit integer`},
		{"hex value", "Tcp: a\nTcp: 0x10\n", `"0x10" is not a 64-bit integer`},
		{"overflowing value", "Tcp: a\nTcp: 9223372036854775808\n", `"9223372036854775808" is not a 64-bit integer`},
		{"values without header", snmpTCP + "Udp: 1 2 3\n", `line 3: table "Udp": values line without a header line`},
		{"values first", "Tcp: 1 200\nTcp: RtoAlgorithm RtoMin\n", `line 1: table "Tcp": values line without a header line`},
		{"header without values", snmpTCP + "Udp: a b\n", `line 3: table "Udp" has a header but no values line`},
		{"header then other table", "Tcp: a b\nUdp: a b\nUdp: 1 2\n", `line 2: table "Udp" follows the header of table "Tcp" on line 1, want its values line`},
		{"duplicate table", snmpTCP + snmpUDP + snmpTCP, `line 5: table "Tcp" repeats the one on line 1`},
		{"duplicate field", "Tcp: a b a\nTcp: 1 2 3\n", `line 1: table "Tcp": field "a" named twice`},
		{"numeric field name", "Tcp: a 7\nTcp: 1 2\n", `line 1: table "Tcp": field name "7" is a number`},
		{"no colon", "Tcp RtoAlgorithm\nTcp 1\n", `line 1: starts with "Tcp", want a table name and a colon`},
		{"colon only", ": a\n: 1\n", `line 1: starts with ":"`},
		{"overlong line", "Tcp: " + strings.Repeat("a", maxCountersLine) + "\n", "line 1: longer than 65536 bytes"},
		{"long name quoted short", "Tcp: " + strings.Repeat("b", 100) + "\nTcp: x\n", `"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"…`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCounters(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("no error; got %v", got)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestParseCountersLive parses this host's own counters files.
func TestParseCountersLive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("needs Linux procfs; this is %s", runtime.GOOS)
	}
	for _, tt := range []struct {
		file, table string
		fields      []string
	}{
		{"/proc/net/snmp", "Tcp", []string{"ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets", "CurrEstab",
			"InSegs", "OutSegs", "RetransSegs", "InErrs", "OutRsts", "MaxConn"}},
		{"/proc/net/netstat", "TcpExt", []string{"ListenDrops", "TCPTimeouts"}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tables, err := ParseCounters(f)
			if err != nil {
				t.Fatal(err)
			}
			table, ok := tables[tt.table]
			if !ok {
				t.Fatalf("no %s table; tables: %v", tt.table, slices.Collect(maps.Keys(tables)))
			}
			for _, field := range tt.fields {
				if _, ok := table[field]; !ok {
					t.Errorf("%s has no %s", tt.table, field)
				}
			}
			if tt.table == "Tcp" && table["MaxConn"] != -1 {
				t.Errorf("Tcp MaxConn = %d, want -1 (Linux has no limit)", table["MaxConn"])
			}
		})
	}
}
