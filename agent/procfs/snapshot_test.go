package procfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeRoot writes files (name under net/ → contents) into a temporary
// procfs root for Read.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(root, "net", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// goodFiles returns a well-formed set of the four files.
func goodFiles() map[string]string {
	return map[string]string{
		"tcp":     tcpHeader + "\n" + lineListen4 + "\n" + lineEstab4 + "\n",
		"tcp6":    tcp6Header + "\n" + lineEstab6 + "\n",
		"snmp":    snmpUDP + snmpTCP,
		"netstat": netstatTCPExt,
	}
}

func TestReadFakeRoot(t *testing.T) {
	if !littleEndian() {
		t.Skip("the captured lines were dumped by a little-endian kernel; this host is big-endian")
	}
	before := time.Now()
	snap, err := Read(fakeRoot(t, goodFiles()))
	if err != nil {
		t.Fatal(err)
	}
	if snap.At.Before(before) || snap.At.After(time.Now()) {
		t.Errorf("At = %v, not during the read", snap.At)
	}
	wantLocal := []string{"127.0.0.1:50305", "127.0.0.1:42434", "[::1]:45794"}
	if len(snap.Sockets) != len(wantLocal) {
		t.Fatalf("got %d sockets, want %d: %+v", len(snap.Sockets), len(wantLocal), snap.Sockets)
	}
	for i, w := range wantLocal {
		if got := snap.Sockets[i].Local.String(); got != w {
			t.Errorf("socket %d: local %s, want %s (tcp first, then tcp6)", i, got, w)
		}
	}
	if snap.TCP["ActiveOpens"] != 50961 || snap.TCP["MaxConn"] != -1 {
		t.Errorf("TCP = %v", snap.TCP)
	}
	if snap.TCPExt["TCPTimeouts"] != 411 {
		t.Errorf("TCPExt = %v", snap.TCPExt)
	}
}

func TestReadWithoutTCP6(t *testing.T) {
	files := goodFiles()
	delete(files, "tcp6")
	snap, err := Read(fakeRoot(t, files))
	if err != nil {
		t.Fatalf("missing tcp6 (IPv6 disabled) must not fail: %v", err)
	}
	if len(snap.Sockets) != 2 {
		t.Errorf("got %d sockets, want tcp's 2", len(snap.Sockets))
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(files map[string]string)
		wantErr string
		wantIs  error
	}{
		{"missing tcp", func(f map[string]string) { delete(f, "tcp") }, "net/tcp", fs.ErrNotExist},
		{"missing snmp", func(f map[string]string) { delete(f, "snmp") }, "net/snmp", fs.ErrNotExist},
		{"missing netstat", func(f map[string]string) { delete(f, "netstat") }, "net/netstat", fs.ErrNotExist},
		{"bad tcp line", func(f map[string]string) { f["tcp"] += "garbage\n" }, "net/tcp: line 4: 1 fields", nil},
		{"bad tcp6 line", func(f map[string]string) { f["tcp6"] += lineEstab4 + "\n" }, "net/tcp6: line 3: local address", nil},
		{"snmp without Tcp", func(f map[string]string) { f["snmp"] = snmpUDP }, "net/snmp: no Tcp table", nil},
		{"netstat without TcpExt", func(f map[string]string) { f["netstat"] = snmpUDP }, "net/netstat: no TcpExt table", nil},
		{"bad snmp", func(f map[string]string) { f["snmp"] = snmpTCP + "Udp: a\n" }, "net/snmp: line 3", nil},
		{"overlong counters line", func(f map[string]string) {
			f["netstat"] = "TcpExt: " + strings.Repeat("x ", maxCountersLine) + "\n"
		}, "net/netstat: line 1: longer than", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := goodFiles()
			tt.edit(files)
			_, err := Read(fakeRoot(t, files))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
		})
	}
}

func TestReadRefusesDirectory(t *testing.T) {
	files := goodFiles()
	delete(files, "tcp")
	root := fakeRoot(t, files)
	if err := os.Mkdir(filepath.Join(root, "net", "tcp"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Read(root)
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("got %v, want a not-a-regular-file error", err)
	}
}

func TestParseFileCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	const limit = 100
	for _, tt := range []struct {
		size    int
		tooLarg bool
	}{{0, false}, {limit - 1, false}, {limit, false}, {limit + 1, true}, {10 * limit, true}} {
		if err := os.WriteFile(path, []byte(strings.Repeat("x", tt.size)), 0o644); err != nil {
			t.Fatal(err)
		}
		var got int
		err := parseFile(path, limit, func(r io.Reader) error {
			b, err := io.ReadAll(r)
			got = len(b)
			return err
		})
		if tt.tooLarg {
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), path) {
				t.Errorf("%d bytes: got %v, want ErrTooLarge naming the file", tt.size, err)
			}
			continue
		}
		if err != nil || got != tt.size {
			t.Errorf("%d bytes: read %d, %v", tt.size, got, err)
		}
	}
}
