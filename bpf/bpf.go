// Package bpf is the agent's eBPF data plane: the C sources of its
// observe-only tracepoint programs (src/flow.bpf.c), the objects and Go
// bindings bpf2go generated from them (committed; `make generate`
// rebuilds them), the SHA-256 manifest of those objects (embedded and
// checked before any load), the observe-only gate, the loader, and the
// readers of the kernel's maps and ring buffer.
//
// The programs keep per-connection counters in a per-CPU hash that the
// agent reads periodically, and send only events (established, closed,
// failed connect) through the ring buffer. Every loss is counted by
// stage: a full ring buffer, a full connection table, a full counter
// table. Nothing here can drop, redirect or rewrite traffic:
// CheckObserveOnly refuses any object that could.
package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// ObjectName is the name of the flow object in the manifest.
const ObjectName = "flow_bpfel.o"

// Options tune a load.
type Options struct {
	// MaxConns bounds the kernel's connection and counter tables
	// (default 65536). A connection that finds them full is counted in
	// the "conns_full" or "stats_full" loss stage.
	MaxConns uint32
	// RingBytes is the ring buffer's size: a power of two, at least a
	// page (default 256 KiB). A full ring is the "ringbuf" loss stage.
	RingBytes uint32
	// object replaces the embedded object (tests of the integrity check).
	object []byte
}

// Loss stages, the index of each in the kernel's losses array.
var LossStages = []string{"ringbuf", "conns_full", "stats_full"}

// Event kinds.
const (
	EventEstablished = 1
	EventClosed      = 2
	EventFailed      = 3
)

// Directions.
const (
	DirUnknown = 0 // established before the programs were attached (adopted)
	DirOut     = 1 // this host connected
	DirIn      = 2 // this host accepted
)

// Key names one connection: the kernel's socket address and when the
// socket was first seen (an address reused later is another connection).
type Key struct{ Sk, Gen uint64 }

// Conn is what the kernel knows of a connection.
type Conn struct {
	Key           Key
	Local, Remote netip.AddrPort
	Dir           uint8
	State         uint8
	PID           uint32
	Cgroup        uint64
	Comm          string
	EstablishedNs uint64
}

// Stats are a connection's counters, summed over CPUs.
type Stats struct {
	BytesSent, BytesRecv, Retransmits uint64
	SrttSumUs, SrttSamples            uint64
	SrttLastUs, CwndLast              uint32
	SrttAtNs                          uint64
}

// Event is one ring buffer record.
type Event struct {
	Type      uint32
	AtNs      uint64
	ConnectNs uint64
	Conn      Conn
}

// Flow is the loaded and attached flow observer.
type Flow struct {
	objs  flowObjects
	links []link.Link
	ring  *ringbuf.Reader
	// missing names the optional tracepoints not attached, with why.
	missing []string
}

// Missing names the optional tracepoints this kernel could not give the
// observer (each with the reason): the counts they feed are absent
// (sock_send_length/sock_recv_length: bytes; tcp_retransmit_skb:
// retransmits; tcp_probe: RTT and cwnd).
func (f *Flow) Missing() []string { return f.missing }

// Load verifies the embedded object against the manifest, checks that it
// is observe-only, loads it and attaches its programs to their
// tracepoints. Its errors say what failed; Reason turns them into the
// sentence an agent reports when it falls back to procfs.
func Load(o Options) (*Flow, error) {
	object := _FlowBytes
	if o.object != nil {
		object = o.object
	}
	if err := Verify(ObjectName, object); err != nil {
		return nil, err
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(strings.NewReader(string(object)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ObjectName, err)
	}
	if err := CheckObserveOnly(spec); err != nil {
		return nil, err
	}
	if o.MaxConns == 0 {
		o.MaxConns = 65536
	}
	if o.RingBytes == 0 {
		o.RingBytes = 256 << 10
	}
	spec.Maps["conns"].MaxEntries = o.MaxConns
	spec.Maps["stats"].MaxEntries = o.MaxConns
	spec.Maps["events"].MaxEntries = o.RingBytes
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%w: raise the memlock limit: %v", ErrNoPrivilege, err)
	}
	f := &Flow{}
	if err := spec.LoadAndAssign(&f.objs, nil); err != nil {
		return nil, classify(err)
	}
	// inet_sock_set_state is required: without it there are no
	// connections. The others are optional: a kernel without one (the
	// sock_*_length tracepoints came in 6.3, tcp_probe's skaddr later)
	// loses what it feeds, and the agent says so.
	for _, tp := range []struct {
		group, name string
		prog        *ebpf.Program
		required    bool
	}{
		{"sock", "inet_sock_set_state", f.objs.OnState, true},
		{"sock", "sock_send_length", f.objs.OnSend, false},
		{"sock", "sock_recv_length", f.objs.OnRecv, false},
		{"tcp", "tcp_retransmit_skb", f.objs.OnRetransmit, false},
		{"tcp", "tcp_probe", f.objs.OnProbe, false},
	} {
		err := checkLayout(tp.group, tp.name)
		var l link.Link
		if err == nil {
			if l, err = link.Tracepoint(tp.group, tp.name, tp.prog, nil); err != nil {
				err = attachError(tp.group, tp.name, err)
			}
		}
		if err != nil {
			if tp.required {
				f.Close()
				return nil, err
			}
			f.missing = append(f.missing, err.Error())
			continue
		}
		f.links = append(f.links, l)
	}
	if f.ring, err = ringbuf.NewReader(f.objs.Events); err != nil {
		f.Close()
		return nil, fmt.Errorf("open the ring buffer: %w", err)
	}
	return f, nil
}

// ErrNoPrivilege is wrapped when the kernel refused for lack of
// privilege (CAP_BPF and CAP_PERFMON, or root, are needed).
var ErrNoPrivilege = errors.New("no privilege to load eBPF (needs CAP_BPF and CAP_PERFMON, or root)")

// ErrVerifier is wrapped when the kernel's verifier refused a program.
var ErrVerifier = errors.New("the kernel's verifier refused a program")

func classify(err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		return fmt.Errorf("%w: %v", ErrVerifier, err)
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%w: %v", ErrNoPrivilege, err)
	}
	return err
}

// attachError says why a tracepoint attach failed. The kernel answers
// EACCES when a program reads past the tracepoint's record (an older
// layout), which is not a matter of privilege: the program loaded.
func attachError(group, name string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: this kernel has no tracepoint %s:%s", ErrTracepoint, group, name)
	}
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w: the kernel refused to attach to %s:%s (its record is shorter than the program reads: an older kernel): %v", ErrTracepoint, group, name, err)
	}
	return fmt.Errorf("attach to tracepoint %s:%s: %w", group, name, classify(err))
}

// Reason is the short reason an agent reports for running without eBPF.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrIntegrity):
		return "integrity: " + err.Error()
	case errors.Is(err, ErrNotObserveOnly):
		return "observe-only gate: " + err.Error()
	case errors.Is(err, ErrNoPrivilege):
		return "no privilege: run as root or grant CAP_BPF and CAP_PERFMON"
	case errors.Is(err, ErrVerifier):
		return "verifier refused: " + firstLine(err.Error())
	case errors.Is(err, ErrTracepoint):
		return firstLine(err.Error())
	}
	return firstLine(err.Error())
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// StopEvents closes the ring buffer: a ReadEvent blocked in it returns.
// Close it before Close, and wait for the reader, so nothing reads the
// maps while they are freed.
func (f *Flow) StopEvents() error {
	if f.ring == nil {
		return nil
	}
	return f.ring.Close()
}

// Close detaches the programs and frees the maps.
func (f *Flow) Close() error {
	var errs []error
	if f.ring != nil {
		errs = append(errs, f.ring.Close())
	}
	for _, l := range f.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, f.objs.Close())
	return errors.Join(errs...)
}

// EventLatency bounds how long an event waits in the ring buffer: the
// programs submit without waking the reader (a wakeup per event cost
// more than the event) until a quarter of the ring is used, and the
// reader looks at least this often.
const EventLatency = 250 * time.Millisecond

// ReadEvent blocks for the next ring buffer event; after Close it
// returns an error wrapping ringbuf.ErrClosed (see Closed).
func (f *Flow) ReadEvent() (Event, error) {
	for {
		f.ring.SetDeadline(time.Now().Add(EventLatency))
		rec, err := f.ring.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return Event{}, err
		}
		return ParseEvent(rec.RawSample)
	}
}

// Closed reports whether err says the ring buffer was closed.
func Closed(err error) bool { return errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) }

// Conns calls fn for every connection the kernel tracks.
func (f *Flow) Conns(fn func(Conn)) error {
	var sk uint64
	var info flowConnInfo
	it := f.objs.Conns.Iterate()
	for it.Next(&sk, &info) {
		fn(connOf(sk, info))
	}
	return it.Err()
}

// Stats calls fn for every connection's counters, summed over CPUs.
func (f *Flow) Stats(fn func(Key, Stats)) error {
	var k flowConnKey
	var per []flowConnStats
	it := f.objs.Stats.Iterate()
	for it.Next(&k, &per) {
		fn(Key{Sk: k.Sk, Gen: k.Gen}, sum(per))
	}
	return it.Err()
}

// StatsOf reads one connection's counters.
func (f *Flow) StatsOf(k Key) (Stats, bool, error) {
	var per []flowConnStats
	err := f.objs.Stats.Lookup(flowConnKey{Sk: k.Sk, Gen: k.Gen}, &per)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return Stats{}, false, nil
	}
	if err != nil {
		return Stats{}, false, err
	}
	return sum(per), true, nil
}

// Forget deletes a finished connection's counters.
func (f *Flow) Forget(k Key) error {
	err := f.objs.Stats.Delete(flowConnKey{Sk: k.Sk, Gen: k.Gen})
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// ForgetAll deletes finished connections' counters, in one batch where
// the kernel allows it.
func (f *Flow) ForgetAll(keys []Key) error {
	ks := make([]flowConnKey, len(keys))
	for i, k := range keys {
		ks[i] = flowConnKey{Sk: k.Sk, Gen: k.Gen}
	}
	if n, err := f.objs.Stats.BatchDelete(ks, nil); err == nil && n == len(ks) {
		return nil
	}
	// A key already gone stops a batch: delete one by one.
	var errs []error
	for _, k := range keys {
		if err := f.Forget(k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Losses are the kernel's losses by stage (LossStages), summed over CPUs,
// and "recursion": events the kernel skipped because another of the
// programs was running on that CPU (the programs' recursion misses).
func (f *Flow) Losses() (map[string]uint64, error) {
	out, err := perCPUCounters(f.objs.Losses, LossStages)
	if err != nil {
		return nil, err
	}
	var missed uint64
	for _, p := range []*ebpf.Program{f.objs.OnState, f.objs.OnSend, f.objs.OnRecv, f.objs.OnRetransmit, f.objs.OnProbe} {
		if st, err := p.Stats(); err == nil {
			missed += st.RecursionMisses
		}
	}
	out["recursion"] = missed
	return out, nil
}

// SeenKinds name the kernel's event counters.
var SeenKinds = []string{"state", "send", "recv", "retransmit", "tcp_probe", "untracked"}

// Seen are the events the programs handled, by kind (SeenKinds).
func (f *Flow) Seen() (map[string]uint64, error) {
	return perCPUCounters(f.objs.Seen, SeenKinds)
}

func perCPUCounters(m *ebpf.Map, names []string) (map[string]uint64, error) {
	out := make(map[string]uint64, len(names))
	for i, name := range names {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		var t uint64
		for _, v := range per {
			t += v
		}
		out[name] = t
	}
	return out, nil
}

func sum(per []flowConnStats) Stats {
	var s Stats
	for _, p := range per {
		s.BytesSent += p.BytesSent
		s.BytesRecv += p.BytesRecv
		s.Retransmits += p.Retransmits
		s.SrttSumUs += p.SrttSumUs
		s.SrttSamples += p.SrttSamples
		if p.SrttAtNs > s.SrttAtNs {
			s.SrttAtNs, s.SrttLastUs, s.CwndLast = p.SrttAtNs, p.SrttLastUs, p.CwndLast
		}
	}
	return s
}

func connOf(sk uint64, c flowConnInfo) Conn {
	// A thread name is whatever its process set (prctl PR_SET_NAME): any
	// bytes. Printable ASCII is kept, anything else becomes '?', so a
	// label is always valid UTF-8.
	comm := make([]byte, 0, len(c.Comm))
	for _, b := range c.Comm {
		if b == 0 {
			break
		}
		if b < 0x20 || b > 0x7e {
			b = '?'
		}
		comm = append(comm, byte(b))
	}
	return Conn{
		Key:   Key{Sk: sk, Gen: c.Gen},
		Local: netip.AddrPortFrom(addrOf(c.Family, c.Saddr), c.Sport), Remote: netip.AddrPortFrom(addrOf(c.Family, c.Daddr), c.Dport),
		Dir: c.Dir, State: c.State, PID: c.Pid, Cgroup: c.Cgroup, Comm: string(comm), EstablishedNs: c.EstablishedNs,
	}
}

func addrOf(family uint16, b [16]uint8) netip.Addr {
	if family == 2 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b).Unmap()
}

// eventSize is the size of struct event in flow.bpf.c.
const eventSize = 32 + connInfoSize

// connInfoSize is the size of struct conn_info.
const connInfoSize = 16 + 16 + 2 + 2 + 2 + 1 + 1 + 4 + 4 + 8 + 8 + 8 + 16

// ErrShortEvent is returned for a ring buffer record shorter than an event.
var ErrShortEvent = errors.New("ring buffer record shorter than an event")

// ParseEvent decodes a ring buffer record (struct event, little-endian).
// It never panics; a record of the wrong size or an unknown type is an
// error.
func ParseEvent(b []byte) (Event, error) {
	if len(b) < eventSize {
		return Event{}, fmt.Errorf("%w: %d bytes, want %d", ErrShortEvent, len(b), eventSize)
	}
	le := binary.LittleEndian
	e := Event{Type: le.Uint32(b[0:]), AtNs: le.Uint64(b[16:]), ConnectNs: le.Uint64(b[24:])}
	if e.Type < EventEstablished || e.Type > EventFailed {
		return Event{}, fmt.Errorf("ring buffer record of unknown type %d", e.Type)
	}
	sk := le.Uint64(b[8:])
	c := b[32:]
	var info flowConnInfo
	copy(info.Saddr[:], c[0:16])
	copy(info.Daddr[:], c[16:32])
	info.Sport, info.Dport, info.Family = le.Uint16(c[32:]), le.Uint16(c[34:]), le.Uint16(c[36:])
	info.Dir, info.State = c[38], c[39]
	info.Pid = le.Uint32(c[40:])
	info.Cgroup, info.Gen, info.EstablishedNs = le.Uint64(c[48:]), le.Uint64(c[56:]), le.Uint64(c[64:])
	for i := range info.Comm {
		info.Comm[i] = int8(c[72+i])
	}
	if info.Family != 2 && info.Family != 10 {
		return Event{}, fmt.Errorf("ring buffer record with address family %d", info.Family)
	}
	e.Conn = connOf(sk, info)
	return e, nil
}
