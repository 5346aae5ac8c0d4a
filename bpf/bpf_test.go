package bpf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

func TestManifestMatchesEmbeddedObject(t *testing.T) {
	if err := Verify(ObjectName, _FlowBytes); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrityMismatchRefusesLoad: one flipped byte in the object, or an
// object the manifest does not list, is refused before anything reaches
// the kernel, and the error names the object.
func TestIntegrityMismatchRefusesLoad(t *testing.T) {
	bad := bytes.Clone(_FlowBytes)
	bad[len(bad)/2] ^= 0x01
	_, err := Load(Options{object: bad})
	if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), ObjectName) {
		t.Fatalf("Load of an altered object: %v, want ErrIntegrity naming %s", err, ObjectName)
	}
	if !strings.HasPrefix(Reason(err), "integrity") {
		t.Fatalf("Reason = %q", Reason(err))
	}
	if err := Verify("other.o", _FlowBytes); !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), "other.o") {
		t.Fatalf("an unlisted object: %v", err)
	}
	for _, m := range []string{"nothex  flow_bpfel.o", "00  flow_bpfel.o", fmt.Sprintf("%x", sha256.Sum256(nil))} {
		if err := verify(m, ObjectName, _FlowBytes); !errors.Is(err, ErrIntegrity) {
			t.Errorf("manifest %q: %v, want ErrIntegrity", m, err)
		}
	}
}

// TestObjectsReproducible rebuilds the object from src/ with the pinned
// toolchain and compares it with the manifest, so the committed object
// is the one the sources make.
func TestObjectsReproducible(t *testing.T) {
	out, err := exec.Command("clang", "--version").Output()
	if err != nil {
		t.Skipf("clang is not installed (apt-get install clang llvm libbpf-dev): %v", err)
	}
	if !regexp.MustCompile(`clang version 14\.`).Match(out) {
		t.Skipf("objects are pinned to Debian 12's clang 14; this is %s", bytes.SplitN(out, []byte("\n"), 2)[0])
	}
	if _, err := os.Stat("/usr/include/bpf/bpf_helpers.h"); err != nil {
		t.Skipf("libbpf-dev is not installed: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "run", "github.com/cilium/ebpf/cmd/bpf2go", "-output-dir", dir, "-target", "bpfel", "-go-package", "bpf",
		"-type", "event", "-type", "conn_key", "-type", "conn_stats", "-type", "conn_info", "flow", "src/flow.bpf.c", "--",
		"-I/usr/include/x86_64-linux-gnu", "-O2", "-g", "-Wall", "-Werror")
	cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, ObjectName))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ObjectName, b); err != nil {
		t.Fatalf("the sources build another object than the committed one (run `make generate` and commit): %v", err)
	}
	gen, _ := os.ReadFile(filepath.Join(dir, "flow_bpfel.go"))
	committed, _ := os.ReadFile("flow_bpfel.go")
	if !bytes.Equal(gen, committed) {
		t.Fatal("flow_bpfel.go differs from what bpf2go generates: run `make generate` and commit")
	}
}

// TestShippedObjectsObserveOnly: every object this package ships passes
// the observe-only gate, and the gate refuses each kind of program, map
// and helper that could act on traffic.
func TestShippedObjectsObserveOnly(t *testing.T) {
	spec, err := loadFlow()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckObserveOnly(spec); err != nil {
		t.Fatal(err)
	}
	for name, p := range spec.Programs {
		if p.Type != ebpf.TracePoint {
			t.Errorf("program %s is %s", name, p.Type)
		}
	}
	ok := func() asm.Instructions {
		return asm.Instructions{asm.FnKtimeGetNs.Call(), asm.Mov.Imm(asm.R0, 0), asm.Return()}
	}
	for _, tc := range []struct {
		name string
		spec *ebpf.CollectionSpec
		want string
	}{
		{"xdp", progSpec(ebpf.XDP, ok()), "type XDP"},
		{"tc", progSpec(ebpf.SchedCLS, ok()), "type SchedCLS"},
		{"tc action", progSpec(ebpf.SchedACT, ok()), "type SchedACT"},
		{"cgroup_skb", progSpec(ebpf.CGroupSKB, ok()), "type CGroupSKB"},
		{"sk_msg", progSpec(ebpf.SkMsg, ok()), "type SkMsg"},
		{"sk_skb", progSpec(ebpf.SkSKB, ok()), "type SkSKB"},
		{"lsm", progSpec(ebpf.LSM, ok()), "type LSM"},
		{"kprobe", progSpec(ebpf.Kprobe, ok()), "type Kprobe"},
		{"writable raw tracepoint", progSpec(ebpf.RawTracepointWritable, ok()), "type RawTracepointWritable"},
		{"fmod_ret tracing", progSpec(ebpf.Tracing, ok()), "type Tracing"},
		{"write user memory", progSpec(ebpf.TracePoint, asm.Instructions{asm.FnProbeWriteUser.Call(), asm.Return()}), "FnProbeWriteUser"},
		{"send signal", progSpec(ebpf.TracePoint, asm.Instructions{asm.FnSendSignal.Call(), asm.Return()}), "FnSendSignal"},
		{"override return", progSpec(ebpf.TracePoint, asm.Instructions{asm.FnOverrideReturn.Call(), asm.Return()}), "FnOverrideReturn"},
		{"redirect", progSpec(ebpf.TracePoint, asm.Instructions{asm.FnRedirect.Call(), asm.Return()}), "FnRedirect"},
		{"sockmap", mapSpec(ebpf.SockMap), "SockMap"},
		{"devmap", mapSpec(ebpf.DevMap), "DevMap"},
		{"xskmap", mapSpec(ebpf.XSKMap), "XSKMap"},
	} {
		err := CheckObserveOnly(tc.spec)
		if !errors.Is(err, ErrNotObserveOnly) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrNotObserveOnly naming %s", tc.name, err, tc.want)
		}
	}
	if err := CheckObserveOnly(progSpec(ebpf.TracePoint, ok())); err != nil {
		t.Errorf("a plain tracepoint program refused: %v", err)
	}
}

func progSpec(typ ebpf.ProgramType, ins asm.Instructions) *ebpf.CollectionSpec {
	return &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{"p": {Name: "p", Type: typ, Instructions: ins, License: "GPL"}}}
}

func mapSpec(typ ebpf.MapType) *ebpf.CollectionSpec {
	return &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{"m": {Name: "m", Type: typ, KeySize: 4, ValueSize: 4, MaxEntries: 1}}}
}

// loadOrSkip loads the real programs, skipping with the reason when this
// process cannot (CI runs as root on a BTF kernel, where this loads).
func loadOrSkip(t *testing.T) *Flow {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading eBPF needs root (or CAP_BPF and CAP_PERFMON); this test runs as root in CI")
	}
	f, err := Load(Options{})
	if err != nil {
		t.Fatalf("load as root: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	if m := f.Missing(); len(m) > 0 {
		t.Fatalf("tracepoints not attached on this kernel: %v", m)
	}
	return f
}

// TestLoadObservesLoopbackConnection loads the real programs and watches
// one loopback connection: established and closed events with both ends'
// addresses, the connect latency, and the exact bytes each way.
func TestLoadObservesLoopbackConnection(t *testing.T) {
	f := loadOrSkip(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const up, down = 70001, 3333
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		if _, err := io.CopyN(io.Discard, c, up); err != nil {
			served <- err
			return
		}
		_, err = c.Write(make([]byte, down))
		served <- err
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	if _, err := c.Write(make([]byte, up)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, c, down); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	var client Key
	found := false
	if err := f.Conns(func(cn Conn) {
		if cn.Local == local && cn.Dir == DirOut {
			client, found = cn.Key, true
			if cn.PID != uint32(os.Getpid()) || cn.Comm == "" {
				t.Errorf("client conn owner pid %d comm %q, want pid %d", cn.PID, cn.Comm, os.Getpid())
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("the client connection from %s is not in the kernel's table", local)
	}
	st, ok, err := f.StatsOf(client)
	if err != nil || !ok {
		t.Fatalf("stats of %v: %v %v", client, ok, err)
	}
	if st.BytesSent != up || st.BytesRecv != down {
		t.Fatalf("client sent %d received %d, want %d and %d", st.BytesSent, st.BytesRecv, up, down)
	}
	c.Close()
	deadline := time.After(10 * time.Second)
	got := map[uint32]bool{}
	evs := make(chan Event, 64)
	go func() {
		for {
			e, err := f.ReadEvent()
			if err != nil {
				close(evs)
				return
			}
			evs <- e
		}
	}()
	for !got[EventClosed] || !got[EventEstablished] {
		select {
		case e, ok := <-evs:
			if !ok {
				t.Fatal("ring buffer closed")
			}
			if e.Conn.Local == local || e.Conn.Remote == local {
				got[e.Type] = true
				if e.Type == EventEstablished && e.Conn.Dir == DirOut && e.ConnectNs == 0 {
					t.Error("established event of a connect without a connect latency")
				}
			}
		case <-deadline:
			t.Fatalf("events seen for %s: %v, want established and closed", local, got)
		}
	}
	losses, err := f.Losses()
	if err != nil {
		t.Fatal(err)
	}
	for _, stage := range LossStages {
		if _, ok := losses[stage]; !ok {
			t.Errorf("loss stage %s not read", stage)
		}
	}
}

func TestParseEvent(t *testing.T) {
	b := make([]byte, eventSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], EventClosed)
	le.PutUint64(b[8:], 0xffff0000deadbeef)
	le.PutUint64(b[16:], 42)
	c := b[32:]
	copy(c[0:], []byte{127, 0, 0, 1})
	copy(c[16:], []byte{10, 1, 2, 3})
	le.PutUint16(c[32:], 40000)
	le.PutUint16(c[34:], 443)
	le.PutUint16(c[36:], 2)
	c[38] = DirOut
	le.PutUint32(c[40:], 99)
	le.PutUint64(c[56:], 7)
	copy(c[72:], "cu\xffl")
	e, err := ParseEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != EventClosed || e.Conn.Key != (Key{Sk: 0xffff0000deadbeef, Gen: 7}) || e.Conn.Local.String() != "127.0.0.1:40000" ||
		e.Conn.Remote.String() != "10.1.2.3:443" || e.Conn.PID != 99 || e.Conn.Comm != "cu?l" || e.AtNs != 42 {
		t.Fatalf("parsed %+v", e)
	}
	for _, bad := range [][]byte{nil, b[:eventSize-1]} {
		if _, err := ParseEvent(bad); !errors.Is(err, ErrShortEvent) {
			t.Errorf("short record: %v", err)
		}
	}
	le.PutUint32(b[0:], 9)
	if _, err := ParseEvent(b); err == nil {
		t.Error("unknown type accepted")
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add(make([]byte, eventSize))
	seed := make([]byte, eventSize)
	seed[0] = EventEstablished
	seed[32+36] = 10
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEvent(b)
		if err != nil {
			return
		}
		if !e.Conn.Local.Addr().IsValid() || !e.Conn.Remote.Addr().IsValid() || len(e.Conn.Comm) > 16 {
			t.Fatalf("accepted an invalid event: %+v", e)
		}
	})
}
