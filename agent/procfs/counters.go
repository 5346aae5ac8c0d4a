package procfs

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxCountersLine caps one line of /proc/net/snmp or /proc/net/netstat.
// The longest, TcpExt's header, is about 3 KiB on a 6.x kernel.
const maxCountersLine = 64 << 10

// ParseCounters parses the format /proc/net/snmp and /proc/net/netstat
// share: per table, a header line naming the fields and a values line,
// both prefixed with the table name and a colon:
//
//	Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens …
//	Tcp: 1 200 120000 -1 50961 …
//
// It returns table → field → value, table names without the colon. Values
// are signed (Tcp MaxConn is -1). A header without its values line, a
// values line without a header, a count mismatch, a value that is not a
// 64-bit integer, a numeric field name and a repeated table or field are
// errors naming the line. Blank lines are ignored; lines are limited to
// 64 KiB, and ParseCounters reads r to its end, so a caller reading an
// untrusted file caps it (Read does).
func ParseCounters(r io.Reader) (map[string]map[string]int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4<<10), maxCountersLine)
	tables := map[string]map[string]int64{}
	seen := map[string]int{} // table → line of its header
	var (
		name   string   // table whose header awaits its values line
		fields []string // that header's field names
		at     int      // that header's line; 0 when none awaits
	)
	n := 0
	for sc.Scan() {
		n++
		words := strings.Fields(sc.Text())
		if len(words) == 0 {
			continue
		}
		table, ok := strings.CutSuffix(words[0], ":")
		if !ok || table == "" {
			return nil, fmt.Errorf("line %d: starts with %s, want a table name and a colon", n, excerpt(words[0]))
		}
		if at == 0 {
			if err := checkHeader(table, words[1:], seen); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			name, fields, at = table, words[1:], n
			seen[table] = n
			continue
		}
		if table != name {
			return nil, fmt.Errorf("line %d: table %s follows the header of table %s on line %d, want its values line", n, excerpt(table), excerpt(name), at)
		}
		values := words[1:]
		if len(values) != len(fields) {
			return nil, fmt.Errorf("line %d: table %s has %d values for the %d fields named on line %d", n, excerpt(table), len(values), len(fields), at)
		}
		t := make(map[string]int64, len(fields))
		for i, f := range fields {
			v, err := strconv.ParseInt(values[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s %s: %s is not a 64-bit integer", n, excerpt(table), excerpt(f), excerpt(values[i]))
			}
			t[f] = v
		}
		tables[table] = t
		at = 0
	}
	if err := sc.Err(); err != nil {
		return nil, scanError(n, maxCountersLine, err)
	}
	if at != 0 {
		return nil, fmt.Errorf("line %d: table %s has a header but no values line", at, excerpt(name))
	}
	return tables, nil
}

// checkHeader vets a header line of table naming fields.
func checkHeader(table string, fields []string, seen map[string]int) error {
	if len(fields) > 0 && isNumber(fields[0]) {
		return fmt.Errorf("table %s: values line without a header line", excerpt(table))
	}
	if first, dup := seen[table]; dup {
		return fmt.Errorf("table %s repeats the one on line %d", excerpt(table), first)
	}
	names := make(map[string]struct{}, len(fields))
	for _, f := range fields {
		if isNumber(f) {
			return fmt.Errorf("table %s: field name %s is a number", excerpt(table), excerpt(f))
		}
		if _, dup := names[f]; dup {
			return fmt.Errorf("table %s: field %s named twice", excerpt(table), excerpt(f))
		}
		names[f] = struct{}{}
	}
	return nil
}

// isNumber reports whether s is an optionally signed decimal number.
func isNumber(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	return isDigits([]byte(s))
}
