// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// Outpost's flow observer. Observe-only: every program here is a
// tracepoint program that reads the tracepoint's arguments and writes
// only to this object's own maps (bpf/gate.go refuses any other program
// type or a helper that can change the system, before load).
//
// Per connection (keyed by the kernel's socket address and the time it
// was first seen, so a reused address is a new connection) the kernel
// keeps counters in a per-CPU hash that userspace reads periodically;
// the ring buffer carries only events (established, closed, failed
// connect). Every loss is counted in `losses` by stage.
//
// Tracepoint argument layouts follow the format files under
// /sys/kernel/tracing/events/{sock,tcp}/*/format as of Linux 6.x;
// bpf/format.go compares them with the running kernel's before each
// attach, and a tracepoint whose layout differs (or that is missing:
// sock_*_length came in 6.3) is not attached, said by the agent.

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define MSG_PEEK 2
#define MSG_ERRQUEUE 0x2000
#define E2BIG 7

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7

#define DIR_UNKNOWN 0 // adopted: established before the agent started
#define DIR_OUT 1
#define DIR_IN 2

#define EV_ESTABLISHED 1
#define EV_CLOSED 2
#define EV_FAILED 3

// Loss stages (index into losses).
#define LOSS_RINGBUF 0
#define LOSS_CONNS_FULL 1
#define LOSS_STATS_FULL 2
#define LOSS_MAX 3

// Event counters (index into seen).
#define SEEN_STATE 0
#define SEEN_SEND 1
#define SEEN_RECV 2
#define SEEN_RETRANSMIT 3
#define SEEN_PROBE 4
#define SEEN_UNTRACKED 5
#define SEEN_MAX 6

struct conn_info {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 dir;
	__u8 state;
	__u32 pid;
	__u32 _pad;
	__u64 cgroup;
	__u64 gen; // ktime when first seen
	__u64 established_ns;
	char comm[16];
};

struct conn_key {
	__u64 sk;
	__u64 gen;
};

struct conn_stats {
	__u64 bytes_sent;
	__u64 bytes_recv;
	__u64 retransmits;
	__u64 srtt_sum_us;
	__u64 srtt_samples;
	__u64 srtt_at_ns;
	__u32 srtt_last_us;
	__u32 cwnd_last;
};

struct event {
	__u32 type;
	__u32 _pad;
	__u64 sk;
	__u64 at_ns;
	__u64 connect_ns;
	struct conn_info info;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_info);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct conn_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOSS_MAX);
	__type(key, __u32);
	__type(value, __u64);
} losses SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SEEN_MAX);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

// Name the event and key types in BTF so bpf2go generates Go types for
// them (the idiom from cilium/ebpf's examples; not a map, not loaded).
const struct event *unused_event __attribute__((unused));
const struct conn_key *unused_key __attribute__((unused));

struct inet_sock_set_state_args {
	__u64 _common;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

struct tcp_retransmit_skb_args {
	__u64 _common;
	const void *skbaddr;
	const void *skaddr;
	int state;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
	int err;
};

struct tcp_probe_args {
	__u64 _common;
	__u8 saddr[28];
	__u8 daddr[28];
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 _pad0;
	__u32 mark;
	__u16 data_len;
	__u16 _pad1;
	__u32 snd_nxt;
	__u32 snd_una;
	__u32 snd_cwnd;
	__u32 ssthresh;
	__u32 snd_wnd;
	__u32 srtt;
	__u32 rcv_wnd;
	__u32 _pad2;
	__u64 sock_cookie;
	const void *skbaddr;
	const void *skaddr;
};

struct sock_length_args {
	__u64 _common;
	void *sk;
	__u16 family;
	__u16 protocol;
	int ret;
	int flags;
};

static __always_inline void count(void *map, __u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(map, &idx);
	if (v)
		(*v)++;
}

static __always_inline void fill_tuple(struct conn_info *c, struct inet_sock_set_state_args *a)
{
	c->family = a->family;
	c->sport = a->sport;
	c->dport = a->dport;
	if (a->family == AF_INET) {
		__builtin_memset(c->saddr, 0, 16);
		__builtin_memset(c->daddr, 0, 16);
		__builtin_memcpy(c->saddr, a->saddr, 4);
		__builtin_memcpy(c->daddr, a->daddr, 4);
	} else {
		__builtin_memcpy(c->saddr, a->saddr_v6, 16);
		__builtin_memcpy(c->daddr, a->daddr_v6, 16);
	}
}

static __always_inline void owner(struct conn_info *c)
{
	c->pid = bpf_get_current_pid_tgid() >> 32;
	c->cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(c->comm, sizeof(c->comm));
}

// wakeup is the submit flag: no wakeup of the reader (it looks every
// 250 ms) until a quarter of the ring is used, so a busy host costs the
// agent one wakeup per batch of events, not one per event.
static __always_inline __u64 wakeup(void)
{
	__u64 used = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 size = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
	return used > size / 4 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void emit(__u32 type, __u64 sk, __u64 now, __u64 connect_ns, struct conn_info *c)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(&losses, LOSS_RINGBUF);
		return;
	}
	e->type = type;
	e->_pad = 0;
	e->sk = sk;
	e->at_ns = now;
	e->connect_ns = connect_ns;
	__builtin_memcpy(&e->info, c, sizeof(*c));
	bpf_ringbuf_submit(e, wakeup());
}

SEC("tracepoint/sock/inet_sock_set_state")
int on_state(struct inet_sock_set_state_args *a)
{
	if (a->protocol != IPPROTO_TCP || (a->family != AF_INET && a->family != AF_INET6))
		return 0;
	count(&seen, SEEN_STATE);
	__u64 sk = (__u64)a->skaddr;
	__u64 now = bpf_ktime_get_ns();
	struct conn_info *c;

	switch (a->newstate) {
	case TCP_SYN_SENT: {
		// connect(2): the caller is the process that owns the socket.
		struct conn_info n = {};
		fill_tuple(&n, a);
		n.dir = DIR_OUT;
		n.state = TCP_SYN_SENT;
		n.gen = now;
		owner(&n);
		if (bpf_map_update_elem(&conns, &sk, &n, BPF_ANY))
			count(&losses, LOSS_CONNS_FULL);
		return 0;
	}
	case TCP_ESTABLISHED: {
		__u64 connect_ns = 0;
		c = bpf_map_lookup_elem(&conns, &sk);
		if (c && c->state == TCP_SYN_SENT) {
			connect_ns = now - c->gen;
			fill_tuple(c, a); // the source port is bound after SYN_SENT
			c->state = TCP_ESTABLISHED;
			c->established_ns = now;
			emit(EV_ESTABLISHED, sk, now, connect_ns, c);
			return 0;
		}
		// A passive open (SYN_RECV -> ESTABLISHED) runs in softirq:
		// the owning process is learnt at the socket's first read or
		// write.
		struct conn_info n = {};
		fill_tuple(&n, a);
		n.dir = a->oldstate == TCP_SYN_RECV ? DIR_IN : DIR_OUT;
		n.state = TCP_ESTABLISHED;
		n.gen = now;
		n.established_ns = now;
		if (bpf_map_update_elem(&conns, &sk, &n, BPF_ANY)) {
			count(&losses, LOSS_CONNS_FULL);
			return 0;
		}
		emit(EV_ESTABLISHED, sk, now, 0, &n);
		return 0;
	}
	case TCP_CLOSE:
		c = bpf_map_lookup_elem(&conns, &sk);
		if (!c)
			return 0;
		emit(c->state == TCP_SYN_SENT ? EV_FAILED : EV_CLOSED, sk, now, 0, c);
		bpf_map_delete_elem(&conns, &sk);
		return 0;
	}
	return 0;
}

static __always_inline struct conn_stats *stats_of(__u64 sk, __u32 seen_idx)
{
	struct conn_info *c = bpf_map_lookup_elem(&conns, &sk);
	if (!c) {
		count(&seen, SEEN_UNTRACKED);
		return 0;
	}
	count(&seen, seen_idx);
	struct conn_key k = {.sk = sk, .gen = c->gen};
	struct conn_stats *s = bpf_map_lookup_elem(&stats, &k);
	if (s)
		return s;
	struct conn_stats zero = {};
	if (bpf_map_update_elem(&stats, &k, &zero, BPF_NOEXIST) && !bpf_map_lookup_elem(&stats, &k)) {
		count(&losses, LOSS_STATS_FULL);
		return 0;
	}
	return bpf_map_lookup_elem(&stats, &k);
}

static __always_inline void learn_owner(__u64 sk)
{
	struct conn_info *c = bpf_map_lookup_elem(&conns, &sk);
	if (c && c->pid == 0)
		owner(c);
}

SEC("tracepoint/sock/sock_send_length")
int on_send(struct sock_length_args *a)
{
	if (a->protocol != IPPROTO_TCP || a->ret <= 0)
		return 0;
	__u64 sk = (__u64)a->sk;
	learn_owner(sk);
	struct conn_stats *s = stats_of(sk, SEEN_SEND);
	if (s)
		s->bytes_sent += a->ret;
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int on_recv(struct sock_length_args *a)
{
	if (a->protocol != IPPROTO_TCP || a->ret <= 0 || (a->flags & (MSG_PEEK | MSG_ERRQUEUE)))
		return 0;
	__u64 sk = (__u64)a->sk;
	learn_owner(sk);
	struct conn_stats *s = stats_of(sk, SEEN_RECV);
	if (s)
		s->bytes_recv += a->ret;
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int on_retransmit(struct tcp_retransmit_skb_args *a)
{
	struct conn_stats *s = stats_of((__u64)a->skaddr, SEEN_RETRANSMIT);
	if (s)
		s->retransmits++;
	return 0;
}

// adopt records a connection established before the programs were
// attached, from the first segment it receives: tcp_probe carries its
// addresses (as sockaddr_in or sockaddr_in6). Its direction is unknown
// here; userspace infers it.
static __always_inline void adopt(struct tcp_probe_args *a, __u64 sk)
{
	if (a->family != AF_INET && a->family != AF_INET6)
		return;
	struct conn_info n = {};
	n.family = a->family;
	n.sport = a->sport;
	n.dport = a->dport;
	if (a->family == AF_INET) {
		__builtin_memcpy(n.saddr, a->saddr + 4, 4);
		__builtin_memcpy(n.daddr, a->daddr + 4, 4);
	} else {
		__builtin_memcpy(n.saddr, a->saddr + 8, 16);
		__builtin_memcpy(n.daddr, a->daddr + 8, 16);
	}
	n.dir = DIR_UNKNOWN;
	n.state = TCP_ESTABLISHED;
	n.gen = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&conns, &sk, &n, BPF_NOEXIST) == -E2BIG)
		count(&losses, LOSS_CONNS_FULL);
}

SEC("tracepoint/tcp/tcp_probe")
int on_probe(struct tcp_probe_args *a)
{
	__u64 sk = (__u64)a->skaddr;
	if (!bpf_map_lookup_elem(&conns, &sk))
		adopt(a, sk);
	if (a->srtt == 0)
		return 0;
	struct conn_stats *s = stats_of(sk, SEEN_PROBE);
	if (!s)
		return 0;
	s->srtt_sum_us += a->srtt;
	s->srtt_samples++;
	s->srtt_last_us = a->srtt;
	s->cwnd_last = a->snd_cwnd;
	s->srtt_at_ns = bpf_ktime_get_ns();
	return 0;
}
