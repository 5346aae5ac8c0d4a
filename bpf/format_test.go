package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestThisKernelsLayouts: every tracepoint the programs read has, on this
// kernel, the fields at the offsets the programs read them.
func TestThisKernelsLayouts(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/tracing/events/sock"); err != nil {
		t.Skipf("tracefs is not mounted at /sys/kernel/tracing (mount -t tracefs tracefs /sys/kernel/tracing): %v", err)
	}
	for tp := range expected {
		group, name, _ := strings.Cut(tp, "/")
		if err := checkLayout(group, name); err != nil {
			t.Errorf("%s: %v", tp, err)
		}
	}
}

// TestOtherLayoutNotAttached: a kernel whose tcp_probe has no skaddr (as
// before 6.x), or puts srtt elsewhere, or lacks sock_send_length, is told
// apart before attaching, with the field named.
func TestOtherLayoutNotAttached(t *testing.T) {
	root := t.TempDir()
	old := tracefsRoots
	tracefsRoots = []string{root}
	t.Cleanup(func() { tracefsRoots = old })
	write := func(tp, format string) {
		dir := filepath.Join(root, "events", tp)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "format"), []byte(format), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	format := func(change func(name string, f *Field) bool) string {
		var b strings.Builder
		for name, f := range expected["tcp/tcp_probe"] {
			if change(name, &f) {
				fmt.Fprintf(&b, "\tfield:__u32 %s;\toffset:%d;\tsize:%d;\tsigned:0;\n", name, f.Offset, f.Size)
			}
		}
		return b.String()
	}
	write("tcp/tcp_probe", format(func(name string, _ *Field) bool { return name != "skaddr" }))
	if err := checkLayout("tcp", "tcp_probe"); !errors.Is(err, ErrTracepoint) || !strings.Contains(err.Error(), "skaddr") {
		t.Fatalf("tcp_probe without skaddr: %v", err)
	}
	write("tcp/tcp_probe", format(func(name string, f *Field) bool {
		if name == "srtt" {
			f.Offset = 96
		}
		return true
	}))
	if err := checkLayout("tcp", "tcp_probe"); !errors.Is(err, ErrTracepoint) || !strings.Contains(err.Error(), "srtt at offset 96") {
		t.Fatalf("srtt moved: %v", err)
	}
	if err := checkLayout("sock", "sock_send_length"); !errors.Is(err, ErrTracepoint) || !strings.Contains(err.Error(), "no tracepoint") {
		t.Fatalf("a missing tracepoint: %v", err)
	}
	if !strings.Contains(Reason(attachError("sock", "x", os.ErrPermission)), "no privilege") {
		t.Fatal("EPERM on attach is a privilege problem")
	}
}

func TestParseFormat(t *testing.T) {
	got, err := ParseFormat(strings.NewReader(`name: x
	field:__u8 saddr[28];	offset:8;	size:28;	signed:0;
	field:const void * skaddr;	offset:128;	size:8;	signed:0;
	field:int newstate;	offset:20;	size:4;	signed:1;
print fmt: "..."`))
	if err != nil {
		t.Fatal(err)
	}
	if got["saddr"] != (Field{8, 28}) || got["skaddr"] != (Field{128, 8}) || got["newstate"] != (Field{20, 4}) {
		t.Fatalf("%+v", got)
	}
	if _, err := ParseFormat(strings.NewReader("nonsense")); err == nil {
		t.Fatal("a file without fields accepted")
	}
}

func FuzzParseFormat(f *testing.F) {
	f.Add("\tfield:const void * skaddr;\toffset:128;\tsize:8;\tsigned:0;\n")
	f.Add("field:;offset:;size:\n")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseFormat(strings.NewReader(s))
		if err != nil {
			return
		}
		for name, fl := range got {
			if name == "" || fl.Offset < 0 || fl.Size <= 0 {
				t.Fatalf("accepted %q %+v", name, fl)
			}
		}
	})
}
