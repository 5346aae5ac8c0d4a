// The service map's model: flow samples (the tenant's PromQL answer, or a
// federated one) turned into a graph of agent hosts and the addresses
// they talk to, a generated graph of any size for trying the map at
// scale, and the filters. Nothing here touches the DOM or cytoscape, so
// the page can recompute a filter over 10,000 edges in a few ms and hand
// the canvas only what changed.

export type NodeKind = "agent" | "address";

export type MapNode = {
  id: string; // tenant|region|a|agentID or tenant|region|x|address
  kind: NodeKind;
  label: string; // the host's name, or the address
  tenant: string;
  region: string;
  group: string; // the compound parent: tenant|region
  agent?: string; // the agent's ID (agent hosts)
  addrs: string[]; // the addresses this host reported as its own
  comms: Map<string, number>; // process name → bytes/s, for the details
  synthetic?: boolean;
};

export type MapEdge = {
  id: string;
  source: string;
  target: string;
  tenant: string;
  bytes: number; // bytes/s both ways
  retx: number; // segments retransmitted/s (both ends, where both are agents)
  fail: number; // failed connects/s
  conns: number; // new connections/s
  est: number; // open connections (procfs agents)
  rtt: number | null; // the worst smoothed RTT seen in the window, seconds
  ports: string[];
  comms: string[]; // "client chromium", "server nginx"
  reporters: string[]; // the agents whose flows made this edge
};

export type MapGroup = { id: string; tenant: string; region: string; label: string };

export type Graph = {
  nodes: MapNode[];
  edges: MapEdge[];
  groups: MapGroup[];
  // Traffic the agents' flow budget folded into "other" (no addresses),
  // and connections whose identity was lost: bytes/s, not drawn.
  folded: number;
  unknown: number;
  synthetic: boolean;
};

// A sample of the flow query: its labels (with "m" naming the measure)
// and value.
export type Sample = { labels: Record<string, string>; v: number };

export type TenantAnswer = { tenant: string; localRegion: string; samples: Sample[] };

// The one query the page asks per tenant: every measure of every flow
// over the window, each tagged with "m", so a federated query asks each
// peer once. An instant query; the window is the rate's.
export function flowQuery(window = "5m"): string {
  const by = "sum by (agent, host, local_addr, remote_addr, port, direction, comm)";
  const tag = (expr: string, m: string) => `label_replace(${expr}, "m", "${m}", "", "")`;
  return [
    // Sent and received apart: rate() over both names at once would give
    // two series with the same labels (the name dropped), which PromQL
    // refuses.
    tag(`${by} (rate(outpost_flow_sent_bytes_total[${window}])) > 0`, "sent"),
    tag(`${by} (rate(outpost_flow_received_bytes_total[${window}])) > 0`, "recv"),
    tag(`${by} (rate(outpost_flow_retransmits_total[${window}])) > 0`, "retx"),
    tag(`${by} (rate(outpost_flow_failed_connects_total[${window}])) > 0`, "fail"),
    tag(`${by} (rate(outpost_flow_connections_total[${window}])) > 0`, "conns"),
    tag(`${by} (outpost_flow_established) > 0`, "est"),
    tag(`max by (agent, host, local_addr, remote_addr, port, direction, comm) (max_over_time(outpost_flow_srtt_seconds[${window}]))`, "rtt"),
  ].join(" or ");
}

export function isLoopback(addr: string): boolean {
  return addr.startsWith("127.") || addr === "::1" || addr.startsWith("::ffff:127.");
}

const noAddr = (a: string | undefined) => !a || a === "other" || a === "unknown";

type PortAcc = { outB: number; inB: number; outR: number; inR: number; fail: number; outC: number; inC: number; outE: number; inE: number; rtt: number | null };
type EdgeAcc = { source: string; target: string; tenant: string; ports: Map<string, PortAcc>; comms: Set<string>; reporters: Set<string> };

// buildGraph turns the answers into the graph. An agent host is a node;
// a remote address is resolved to the agent that reports it as its own
// local_addr (in the same region first, else the only one in the tenant;
// a loopback address only ever to the host itself), else it is a node of
// its own in the region of the host that saw it. A connection between two
// agents is reported by both ends (one "out", one "in"): its bytes count
// once (the larger report), its retransmits from both ends (each end
// counts its own).
export function buildGraph(answers: TenantAnswer[], multiTenant: boolean): Graph {
  const nodes = new Map<string, MapNode>();
  const groups = new Map<string, MapGroup>();
  const owners = new Map<string, Set<string>>(); // tenant|region|addr → agent node ids
  const tenantOwners = new Map<string, Set<string>>(); // tenant|addr → agent node ids
  let folded = 0, unknown = 0;
  const groupOf = (tenant: string, region: string) => {
    const id = `${tenant}|${region}`;
    if (!groups.has(id)) groups.set(id, { id, tenant, region, label: multiTenant ? `${region} · tenant ${tenant}` : region });
    return id;
  };
  const add = (m: Map<string, Set<string>>, k: string, v: string) => {
    let s = m.get(k);
    if (!s) m.set(k, (s = new Set()));
    s.add(v);
  };
  // Pass 1: the agents and the addresses they own.
  const rows: { s: Sample; tenant: string; region: string; self: string }[] = [];
  for (const a of answers) {
    for (const s of a.samples) {
      const l = s.labels;
      if (!l.agent || !Number.isFinite(s.v)) continue;
      const region = l.outpost_peer || a.localRegion;
      const self = `${a.tenant}|${region}|a|${l.agent}`;
      let n = nodes.get(self);
      if (!n) {
        n = { id: self, kind: "agent", label: l.host || l.agent, tenant: a.tenant, region, group: groupOf(a.tenant, region), agent: l.agent, addrs: [], comms: new Map() };
        nodes.set(self, n);
      }
      if (!noAddr(l.local_addr) && !isLoopback(l.local_addr)) {
        if (!n.addrs.includes(l.local_addr)) n.addrs.push(l.local_addr);
        add(owners, `${a.tenant}|${region}|${l.local_addr}`, self);
        add(tenantOwners, `${a.tenant}|${l.local_addr}`, self);
      }
      rows.push({ s, tenant: a.tenant, region, self });
    }
  }
  const first = (s: Set<string>) => [...s].sort()[0];
  const resolve = (tenant: string, region: string, self: string, addr: string): string => {
    if (isLoopback(addr)) return self;
    const here = owners.get(`${tenant}|${region}|${addr}`);
    if (here) return first(here);
    const anywhere = tenantOwners.get(`${tenant}|${addr}`);
    if (anywhere && anywhere.size === 1) return first(anywhere);
    return `${tenant}|${region}|x|${addr}`;
  };
  // Pass 2: the edges, client → server.
  const edges = new Map<string, EdgeAcc>();
  for (const { s, tenant, region, self } of rows) {
    const l = s.labels;
    const m = l.m === "sent" || l.m === "recv" ? "bytes" : l.m;
    if (l.direction !== "out" && l.direction !== "in") {
      if (m === "bytes") { if (l.direction === "other") folded += s.v; else unknown += s.v; }
      continue;
    }
    if (noAddr(l.remote_addr)) continue;
    const peer = resolve(tenant, region, self, l.remote_addr);
    const out = l.direction === "out";
    const [src, dst] = out ? [self, peer] : [peer, self];
    const key = `${src}>${dst}`;
    let e = edges.get(key);
    if (!e) edges.set(key, (e = { source: src, target: dst, tenant, ports: new Map(), comms: new Set(), reporters: new Set() }));
    const port = l.port || "?";
    let p = e.ports.get(port);
    if (!p) e.ports.set(port, (p = { outB: 0, inB: 0, outR: 0, inR: 0, fail: 0, outC: 0, inC: 0, outE: 0, inE: 0, rtt: null }));
    switch (m) {
      case "bytes": if (out) p.outB += s.v; else p.inB += s.v; break;
      case "retx": if (out) p.outR += s.v; else p.inR += s.v; break;
      case "fail": p.fail += s.v; break;
      case "conns": if (out) p.outC += s.v; else p.inC += s.v; break;
      case "est": if (out) p.outE += s.v; else p.inE += s.v; break;
      case "rtt": p.rtt = Math.max(p.rtt ?? 0, s.v); break;
      default: continue;
    }
    if (l.comm && m !== "rtt") e.comms.add(`${out ? "client" : "server"} ${l.comm}`);
    e.reporters.add(l.agent);
    if (m === "bytes" && l.comm) {
      const n = nodes.get(self)!;
      n.comms.set(l.comm, (n.comms.get(l.comm) || 0) + s.v);
    }
  }
  const out: MapEdge[] = [];
  for (const [id, e] of edges) {
    let bytes = 0, retx = 0, fail = 0, conns = 0, est = 0;
    let rtt: number | null = null;
    const ports: [string, number][] = [];
    for (const [port, p] of e.ports) {
      const b = Math.max(p.outB, p.inB);
      bytes += b; retx += p.outR + p.inR; fail += p.fail; conns += Math.max(p.outC, p.inC); est += Math.max(p.outE, p.inE);
      if (p.rtt !== null) rtt = Math.max(rtt ?? 0, p.rtt);
      ports.push([port, b]);
    }
    // An edge is activity in the window: an RTT gauge alone (a kept, idle
    // flow) draws nothing.
    if (bytes <= 0 && retx <= 0 && fail <= 0 && conns <= 0 && est <= 0) continue;
    for (const end of [e.source, e.target]) {
      if (nodes.has(end)) continue;
      const [tenant, region, , addr] = end.split("|");
      nodes.set(end, { id: end, kind: "address", label: addr, tenant, region, group: groupOf(tenant, region), addrs: [addr], comms: new Map() });
    }
    ports.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    out.push({ id, source: e.source, target: e.target, tenant: e.tenant, bytes, retx, fail, conns, est, rtt,
      ports: ports.map((p) => p[0]), comms: [...e.comms].sort(), reporters: [...e.reporters].sort() });
  }
  return { nodes: [...nodes.values()], edges: out, groups: [...groups.values()], folded, unknown, synthetic: false };
}

// hash32 is FNV-1a: the stable hash the placement and the generator use.
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// rng is mulberry32: a small seeded generator, so a synthetic graph is
// the same on every run.
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const synthRegions = ["eu-west", "us-east", "ap-south", "sa-east"];
const synthPorts = ["443", "80", "5432", "6379", "9092", "8080", "3306", "2379"];
const synthComms = ["nginx", "envoy", "java", "postgres", "redis-server", "python3", "node", "etcd"];

// The synthetic graph's limits: enough to find where a browser gives up,
// not so much that asking for it by mistake hangs the tab.
export const synthMaxNodes = 20000, synthMaxEdges = 100000;

// synthetic generates a graph of n nodes and e edges: four regions, one
// node in five an address outside the fleet (198.18.0.0/15, the range set
// aside for benchmarks), 85% of the traffic inside its region and skewed
// to a few hubs, about 4% of the edges retransmitting, 1% failing to
// connect, and cross-region RTTs of tens of ms. Node i is the same whatever n is (its id, name and region
// come from i alone), so a larger graph contains a smaller one.
export function synthetic(n: number, e: number): Graph {
  n = Math.max(2, Math.min(synthMaxNodes, Math.floor(n)));
  e = Math.max(0, Math.min(synthMaxEdges, Math.floor(e), n * (n - 1)));
  const tenant = "synthetic";
  const nodes: MapNode[] = [];
  const groups = synthRegions.map((r) => ({ id: `${tenant}|${r}`, tenant, region: r, label: `${r} (synthetic)` }));
  for (let i = 0; i < n; i++) {
    const region = synthRegions[hash32(`region ${i}`) % synthRegions.length];
    const num = String(i).padStart(4, "0");
    if (i % 5 === 4) {
      const addr = `198.${18 + ((i >> 16) & 1)}.${(i >> 8) & 255}.${i & 255}`;
      nodes.push({ id: `${tenant}|${region}|x|${addr}`, kind: "address", label: addr, tenant, region, group: `${tenant}|${region}`, addrs: [addr], comms: new Map(), synthetic: true });
    } else {
      const host = `${region}-host-${num}`;
      nodes.push({ id: `${tenant}|${region}|a|syn-${num}`, kind: "agent", label: host, tenant, region, group: `${tenant}|${region}`, agent: `syn-${num}`,
        addrs: [`10.${synthRegions.indexOf(region)}.${(i >> 8) & 255}.${i & 255}`], comms: new Map([[synthComms[i % synthComms.length], 0]]), synthetic: true });
    }
  }
  const agents = nodes.filter((x) => x.kind === "agent");
  const byRegion = new Map<string, MapNode[]>(synthRegions.map((r) => [r, nodes.filter((x) => x.region === r)]));
  const rand = rng(hash32(`synthetic ${n} ${e}`));
  const seen = new Set<string>();
  const edges: MapEdge[] = [];
  for (let tries = 0; edges.length < e && tries < e * 20; tries++) {
    const src = agents[Math.floor(rand() * agents.length)];
    // Most traffic stays in its region, and most of it goes to a few hubs
    // there: a power law over the node index.
    const pool = rand() < 0.85 ? byRegion.get(src.region)! : nodes;
    const dst = rand() < 0.6 ? pool[Math.floor(pool.length * rand() ** 3)] : pool[Math.floor(rand() * pool.length)];
    if (src === dst) continue;
    const id = `${src.id}>${dst.id}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const cross = src.region !== dst.region;
    const bytes = Math.round(10 ** (1 + 6 * rand() ** 2));
    const lossy = rand() < 0.04, failing = rand() < 0.01;
    const port = synthPorts[Math.floor(rand() ** 2 * synthPorts.length)];
    const comm = synthComms[Math.floor(rand() * synthComms.length)];
    src.comms.set(comm, (src.comms.get(comm) || 0) + bytes);
    edges.push({ id, source: src.id, target: dst.id, tenant, bytes,
      retx: lossy ? Math.round((0.01 + 5 * rand() ** 3) * 100) / 100 : 0,
      fail: failing ? Math.round((0.01 + rand()) * 100) / 100 : 0,
      conns: Math.round((0.05 + 20 * rand() ** 3) * 100) / 100, est: 0,
      rtt: cross ? 0.03 + 0.2 * rand() : 0.0002 + 0.004 * rand() ** 2,
      ports: [port], comms: [`client ${comm}`], reporters: [src.agent!] });
  }
  return { nodes, edges, groups, folded: 0, unknown: 0, synthetic: true };
}

// parseSynthetic reads "#/map?synthetic=N,E" (E defaults to 5N).
export function parseSynthetic(hash: string): [number, number] | null {
  const q = hash.split("?")[1];
  if (!q) return null;
  const v = new URLSearchParams(q).get("synthetic");
  if (v === null) return null;
  const [a, b] = v.split(",").map((x) => parseInt(x, 10));
  if (!Number.isFinite(a) || a < 2) return [2000, 10000];
  return [a, Number.isFinite(b) && b >= 0 ? b : a * 5];
}

// Hot spots: an edge is "bad" when it retransmits or fails to connect,
// "slow" when its RTT is at least slowRTT.
export const slowRTT = 0.05;
export type Heat = "" | "slow" | "bad";
export function heat(e: MapEdge): Heat {
  if (e.retx > 0 || e.fail > 0) return "bad";
  if (e.rtt !== null && e.rtt >= slowRTT) return "slow";
  return "";
}

export type Filter = { errorsOnly: boolean; top: number; text: string };
export const noFilter: Filter = { errorsOnly: false, top: 0, text: "" };
export const filtering = (f: Filter) => f.errorsOnly || f.top > 0 || f.text.trim() !== "";

// Index is what the filters need, computed once per graph: the edges by
// bytes, and each node's lowercased names.
export type Index = { byBytes: Uint32Array; nodeIndex: Map<string, number>; edgeIndex: Map<string, number>; search: string[]; src: Uint32Array; dst: Uint32Array };

export function indexGraph(g: Graph): Index {
  const nodeIndex = new Map<string, number>();
  g.nodes.forEach((n, i) => nodeIndex.set(n.id, i));
  const byBytes = new Uint32Array(g.edges.length);
  for (let i = 0; i < byBytes.length; i++) byBytes[i] = i;
  byBytes.sort((a, b) => g.edges[b].bytes - g.edges[a].bytes || (g.edges[a].id < g.edges[b].id ? -1 : 1));
  const src = new Uint32Array(g.edges.length), dst = new Uint32Array(g.edges.length);
  g.edges.forEach((e, i) => { src[i] = nodeIndex.get(e.source)!; dst[i] = nodeIndex.get(e.target)!; });
  const edgeIndex = new Map<string, number>();
  g.edges.forEach((e, i) => edgeIndex.set(e.id, i));
  const search = g.nodes.map((n) => [n.label, n.agent || "", n.region, ...n.addrs].join(" ").toLowerCase());
  return { byBytes, nodeIndex, edgeIndex, search, src, dst };
}

// visibleEdges applies a filter: 1 for each edge to draw. Errors only
// keeps edges that retransmit or fail to connect; the text keeps edges
// with an end whose name, agent ID, region or address contains it; top
// N keeps the N edges with the most bytes among those left.
export function visibleEdges(g: Graph, ix: Index, f: Filter): Uint8Array {
  const vis = new Uint8Array(g.edges.length);
  const text = f.text.trim().toLowerCase();
  let match: Uint8Array | null = null;
  if (text) {
    match = new Uint8Array(g.nodes.length);
    for (let i = 0; i < ix.search.length; i++) if (ix.search[i].includes(text)) match[i] = 1;
  }
  let kept = 0;
  for (let k = 0; k < ix.byBytes.length; k++) {
    const i = ix.byBytes[k];
    const e = g.edges[i];
    if (f.errorsOnly && !(e.retx > 0 || e.fail > 0)) continue;
    if (match && !match[ix.src[i]] && !match[ix.dst[i]]) continue;
    vis[i] = 1;
    if (f.top > 0 && ++kept >= f.top) break;
  }
  return vis;
}

// Formatting for the panel and the table.
export function fmtBytes(v: number): string {
  const units = ["B/s", "kB/s", "MB/s", "GB/s"];
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function fmtRate(v: number): string {
  if (v === 0) return "0";
  return v >= 10 ? `${Math.round(v)}/s` : v >= 0.01 ? `${v.toFixed(2)}/s` : `${Number(v.toPrecision(1))}/s`;
}

export function fmtRTT(s: number | null): string {
  if (s === null) return "–";
  const ms = s * 1000;
  return ms >= 100 ? `${Math.round(ms)} ms` : ms >= 1 ? `${ms.toFixed(1)} ms` : `${Math.round(ms * 1000)} µs`;
}
