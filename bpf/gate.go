package bpf

import (
	"errors"
	"fmt"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// ErrNotObserveOnly is wrapped when an object holds a program, map or
// helper call that could drop, redirect or rewrite traffic or otherwise
// change the host. Outpost's agent observes; it never acts.
var ErrNotObserveOnly = errors.New("eBPF object is not observe-only")

// allowedPrograms are the program types an object may hold: tracepoints
// read a tracepoint's arguments and cannot change what they observe.
// Everything else is refused, in particular the types that act on
// traffic or decisions: XDP, SchedCLS/SchedACT (TC), CGroupSKB,
// CGroupSockAddr, SockOps, SkSKB, SkMsg, LSM, LWT*, SkLookup, Kprobe
// with override_return, fmod_ret tracing and writable raw tracepoints.
var allowedPrograms = map[ebpf.ProgramType]bool{
	ebpf.TracePoint: true,
}

// allowedMaps are the map types an object may create; socket, device and
// CPU redirect maps (sockmap, sockhash, devmap, cpumap, xskmap) are not
// among them.
var allowedMaps = map[ebpf.MapType]bool{
	ebpf.Hash: true, ebpf.PerCPUHash: true, ebpf.LRUHash: true, ebpf.LRUCPUHash: true,
	ebpf.Array: true, ebpf.PerCPUArray: true, ebpf.RingBuf: true,
}

// allowedHelpers are the helper functions a program may call: map access,
// time, the current task's identity and the ring buffer. Helpers that
// write user memory, send signals, override return values, redirect
// packets or call bpf(2) are not here.
var allowedHelpers = map[asm.BuiltinFunc]bool{
	asm.FnMapLookupElem: true, asm.FnMapUpdateElem: true, asm.FnMapDeleteElem: true,
	asm.FnKtimeGetNs: true, asm.FnGetCurrentPidTgid: true, asm.FnGetCurrentCgroupId: true,
	asm.FnGetCurrentComm: true, asm.FnGetSmpProcessorId: true,
	asm.FnRingbufReserve: true, asm.FnRingbufSubmit: true, asm.FnRingbufDiscard: true, asm.FnRingbufOutput: true,
	asm.FnRingbufQuery: true,
}

// CheckObserveOnly refuses a collection that holds anything but
// tracepoint programs over plain maps calling read-only helpers. It runs
// before every load and in TestShippedObjectsObserveOnly.
func CheckObserveOnly(spec *ebpf.CollectionSpec) error {
	var problems []string
	for name, p := range spec.Programs {
		if !allowedPrograms[p.Type] {
			problems = append(problems, fmt.Sprintf("program %s has type %s (only tracepoints are allowed)", name, p.Type))
		}
		for _, ins := range p.Instructions {
			switch {
			case ins.IsKfuncCall():
				problems = append(problems, fmt.Sprintf("program %s calls a kernel function (kfunc)", name))
			case ins.IsBuiltinCall():
				if fn := asm.BuiltinFunc(ins.Constant); !allowedHelpers[fn] {
					problems = append(problems, fmt.Sprintf("program %s calls helper %s", name, fn))
				}
			}
		}
	}
	for name, m := range spec.Maps {
		if !allowedMaps[m.Type] {
			problems = append(problems, fmt.Sprintf("map %s has type %s", name, m.Type))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	return fmt.Errorf("%w: %v", ErrNotObserveOnly, problems)
}
