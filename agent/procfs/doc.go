// Package procfs reads the kernel's TCP view from procfs: the socket tables
// in /proc/net/tcp and /proc/net/tcp6 and the host-wide counters in
// /proc/net/snmp ("Tcp") and /proc/net/netstat ("TcpExt"). It is the
// agent's fallback when its eBPF programs cannot load (old kernel, no BTF,
// no CAP_BPF). These files carry no per-connection byte counts and no RTT:
// only each socket's addresses, state, queues, owner and inode, and
// counters summed over the whole network namespace. Flows aggregates the
// sockets into the flow keys the agent exports.
//
// The files are treated as hostile input, since a container may bind-mount
// anything over them: parsers return an error naming the line and never
// panic, Read refuses anything but a regular file (a FIFO would block it)
// and caps how much it reads per file and per line (ErrTooLarge).
//
// /proc/net is /proc/self/net, the network namespace of the calling
// process; pass root "/proc/<pid>" to Read for another process's namespace
// (for example "/proc/1" for the host's when running with the host's PID
// namespace).
//
// It uses the standard library only, so the agent may import it without
// growing its dependencies.
package procfs
