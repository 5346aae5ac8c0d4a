package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Field is one field of a tracepoint's record: its offset and size.
type Field struct{ Offset, Size int }

// ParseFormat reads a tracepoint's format file (tracefs
// events/GROUP/NAME/format): "field:TYPE NAME; offset:N; size:N; …" per
// field. It never panics on any input; lines it does not understand are
// skipped, and a file with no field is an error.
func ParseFormat(r io.Reader) (map[string]Field, error) {
	fields := map[string]Field{}
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "field:") {
			continue
		}
		var name string
		f := Field{Offset: -1, Size: -1}
		for part := range strings.SplitSeq(line, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), ":")
			if !ok {
				continue
			}
			switch k {
			case "field":
				decl := strings.TrimSpace(v)
				if i := strings.IndexByte(decl, '['); i >= 0 {
					decl = decl[:i]
				}
				if i := strings.LastIndexAny(decl, " *"); i >= 0 {
					name = decl[i+1:]
				} else {
					name = decl
				}
			case "offset":
				f.Offset, _ = strconv.Atoi(v)
			case "size":
				f.Size, _ = strconv.Atoi(v)
			}
		}
		if name != "" && f.Offset >= 0 && f.Size > 0 {
			fields[name] = f
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(fields) == 0 {
		return nil, errors.New("no fields in the tracepoint format")
	}
	return fields, nil
}

// expected are the fields each program reads, at the offsets flow.bpf.c's
// argument structs put them.
var expected = map[string]map[string]Field{
	"sock/inet_sock_set_state": {"skaddr": {8, 8}, "oldstate": {16, 4}, "newstate": {20, 4}, "sport": {24, 2}, "dport": {26, 2},
		"family": {28, 2}, "protocol": {30, 2}, "saddr": {32, 4}, "daddr": {36, 4}, "saddr_v6": {40, 16}, "daddr_v6": {56, 16}},
	"sock/sock_send_length":  {"sk": {8, 8}, "protocol": {18, 2}, "ret": {20, 4}, "flags": {24, 4}},
	"sock/sock_recv_length":  {"sk": {8, 8}, "protocol": {18, 2}, "ret": {20, 4}, "flags": {24, 4}},
	"tcp/tcp_retransmit_skb": {"skaddr": {16, 8}},
	"tcp/tcp_probe": {"saddr": {8, 28}, "daddr": {36, 28}, "sport": {64, 2}, "dport": {66, 2}, "family": {68, 2},
		"snd_cwnd": {88, 4}, "srtt": {100, 4}, "skaddr": {128, 8}},
}

// tracefsRoots are where tracefs is found.
var tracefsRoots = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// checkLayout compares a tracepoint's format with what the program reads.
// A kernel whose record lacks a field or puts it elsewhere would have the
// program read the wrong bytes: such a tracepoint is not attached.
// Without tracefs no tracepoint can be attached at all (its id is read
// there), which is said as such.
func checkLayout(group, name string) error {
	want := expected[group+"/"+name]
	for _, root := range tracefsRoots {
		f, err := os.Open(filepath.Join(root, "events", group, name, "format"))
		if errors.Is(err, os.ErrNotExist) {
			if _, rerr := os.Stat(filepath.Join(root, "events")); rerr == nil {
				return fmt.Errorf("%w: this kernel has no tracepoint %s:%s", ErrTracepoint, group, name)
			}
			continue
		}
		if err != nil {
			continue
		}
		got, err := ParseFormat(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%w: %s:%s: %v", ErrTracepoint, group, name, err)
		}
		for field, w := range want {
			g, ok := got[field]
			switch {
			case !ok:
				return fmt.Errorf("%w: %s:%s has no field %s on this kernel", ErrTracepoint, group, name, field)
			case g != w:
				return fmt.Errorf("%w: %s:%s field %s at offset %d size %d, the program reads offset %d size %d", ErrTracepoint, group, name, field, g.Offset, g.Size, w.Offset, w.Size)
			}
		}
		return nil
	}
	return fmt.Errorf("%w: tracefs is not mounted (mount -t tracefs tracefs /sys/kernel/tracing, or add it to the agent's unit)", ErrTracepoint)
}

// ErrTracepoint is wrapped when a tracepoint is missing on this kernel,
// or its record's layout is not the one the program reads.
var ErrTracepoint = errors.New("tracepoint unusable")
