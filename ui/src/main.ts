// Outpost's web UI: a small single-page app over the node's HTTP API,
// with the session cookie the login sets. Every state change goes through
// the same role-checked API routes the CLI uses; nothing is kept in
// local storage. The DOM is built with textContent only (no innerHTML of
// data), and the node serves this under a CSP without inline script.

type WhoAmI = { region: string; actor: string; user?: string; region_admin: boolean; tenants: Record<string, string> | null };
type RegionNode = { id: string; raft_state: string; suffrage: string; last_contact_ms: number; applied_index: number; agents: number; api_url: string; error?: string };
type Lease = { holder: string; token: number; expires_in_ms: number } | null;
type Region = { region: string; node: string; leader: string; nodes: RegionNode[]; lease: Lease };
type Agent = { id: string; tenant?: string; host: string; version: string; node: string; rtt_ms?: number; mode: string; mode_reason?: string; health?: string; cert_expires: string; flags?: string[] };
type PeerStatus = { peer: string; status: string; latency_ms: number; data_age_ms: number; rows: number; error?: string };
type GlobalAgent = Agent & { source: string; region: string };
type GlobalAgents = { complete: boolean; peers: PeerStatus[]; agents: GlobalAgent[] };
type Peer = { name: string; addr: string; ca_pin: string; ca_expires: string; links: number; state: { state: string; rtt_ms: number; last_ok?: string; last_error?: string; data_age_ms: number; cert_expires?: string; node: string } };

class APIError extends Error {
  constructor(public status: number, message: string, public hint?: string) { super(message); }
}

async function api<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const r = await fetch(path, {
    method, credentials: "same-origin", signal,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) {
    let msg = `HTTP ${r.status}`, hint: string | undefined;
    try { const e = JSON.parse(text); msg = e.error || msg; hint = e.hint; } catch { /* not JSON */ }
    throw new APIError(r.status, msg, hint);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

// h builds an element; children that are strings become text nodes.
function h(tag: string, attrs: Record<string, string> = {}, ...children: (Node_ | string | null | undefined)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}
type Node_ = globalThis.Node;

function chip(text: string, kind: "ok" | "warn" | "bad" | "" = ""): HTMLElement {
  return h("span", { class: `chip ${kind}` }, text);
}

function statusKind(s: string): "ok" | "warn" | "bad" {
  if (s === "ok" || s === "healthy" || s === "leader" || s === "follower") return "ok";
  if (s === "stale" || s === "unknown" || s === "candidate") return "warn";
  return "bad";
}

function table(headers: string[], rows: (Node_ | string)[][], caption: string): HTMLElement {
  return h("table", {},
    h("caption", { class: "muted", style: "text-align:left" }, caption),
    h("thead", {}, h("tr", {}, ...headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))));
}

const main = () => document.getElementById("main")!;
let who: WhoAmI | null = null;
let pageAbort: AbortController | null = null;

function show(...content: Node_[]) {
  main().replaceChildren(...content);
}

function showError(e: unknown) {
  if (e instanceof DOMException && e.name === "AbortError") return;
  if (e instanceof APIError && e.status === 401) { location.hash = "#/login"; return; }
  const msg = e instanceof APIError ? `${e.message}${e.hint ? ` (${e.hint})` : ""}` : String(e);
  main().append(h("p", { class: "error", role: "alert" }, msg));
}

async function loadWho(): Promise<WhoAmI | null> {
  try { who = await api<WhoAmI>("GET", "/api/v1/whoami"); } catch { who = null; }
  document.getElementById("nav")!.hidden = who === null;
  document.getElementById("logout")!.hidden = who === null;
  document.getElementById("who")!.textContent = who ? `${who.user || who.actor} · region ${who.region}${who.region_admin ? " · region admin" : ""}` : "";
  return who;
}

function pageLogin() {
  const err = h("p", { class: "error", role: "alert" });
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: "" }) as HTMLInputElement;
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: "" }) as HTMLInputElement;
  const form = h("form", { class: "login", "aria-labelledby": "login-title" },
    h("label", { for: "username" }, "User", user),
    h("label", { for: "password" }, "Password", pass),
    h("button", { type: "submit" }, "Log in"), err) as HTMLFormElement;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    try {
      await api("POST", "/api/v1/login", { username: user.value, password: pass.value });
      await loadWho();
      location.hash = "#/overview";
    } catch (e) {
      err.textContent = e instanceof APIError ? e.message : String(e);
    }
  });
  show(h("h1", { id: "login-title" }, "Log in to Outpost"), form);
  user.focus();
}

// follow reads the node's event stream (NDJSON) and calls onEvent for
// each line until signal aborts; it reconnects after a pause.
async function follow(signal: AbortSignal, onEvent: () => void) {
  while (!signal.aborted) {
    try {
      const r = await fetch("/api/v1/events", { credentials: "same-origin", signal });
      if (!r.ok || !r.body) throw new Error(`events: HTTP ${r.status}`);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) { buf = buf.slice(i + 1); onEvent(); }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
}

async function pageOverview(signal: AbortSignal) {
  if (!who!.region_admin) {
    const tenants = Object.entries(who!.tenants || {});
    show(h("h1", {}, "Overview"),
      h("p", {}, `You are a member of ${tenants.length} tenant(s) in region ${who!.region}.`),
      table(["Tenant", "Your role"], tenants.map(([t, r]) => [t, r]), "Your tenants"));
    return;
  }
  const cards = h("div", { class: "cards", "aria-live": "polite" });
  const nodes = h("div");
  const updated = h("p", { class: "muted" });
  show(h("h1", {}, "Region overview"), cards, h("h2", {}, "Nodes"), nodes, updated);
  let busy = false;
  const refresh = async () => {
    if (busy || signal.aborted) return;
    busy = true;
    try {
      const [reg, agents] = await Promise.all([
        api<Region>("GET", "/api/v1/region", undefined, signal),
        api<Agent[]>("GET", "/api/v1/agents", undefined, signal),
      ]);
      const up = reg.nodes.filter((n) => !n.error && n.raft_state !== "unreachable" && n.raft_state !== "shutdown").length;
      const byMode: Record<string, number> = {};
      for (const a of agents) byMode[a.mode] = (byMode[a.mode] || 0) + 1;
      const card = (label: string, value: string, id: string) =>
        h("div", { class: "card" }, h("div", { class: "value", id }, value), h("div", { class: "label" }, label));
      cards.replaceChildren(
        card("region", reg.region, "stat-region"),
        card("nodes up", `${up} / ${reg.nodes.length}`, "stat-nodes"),
        card("Raft leader", reg.leader || "none (election)", "stat-leader"),
        card("lease holder · token", reg.lease && reg.lease.holder ? `${reg.lease.holder} · ${reg.lease.token}` : "none", "stat-lease"),
        card("agents", `${agents.length}` + (Object.keys(byMode).length ? ` (${Object.entries(byMode).map(([m, n]) => `${n} ${m}`).join(", ")})` : ""), "stat-agents"));
      nodes.replaceChildren(table(["Node", "Raft state", "Suffrage", "Last contact", "Applied", "Agents", "Status"],
        reg.nodes.map((n) => [n.id, n.raft_state, n.suffrage, n.raft_state === "leader" ? "(leader)" : `${n.last_contact_ms} ms`,
          String(n.applied_index), String(n.agents), n.error ? chip(n.error.slice(0, 80), "bad") : chip("up", "ok")]), `answered by ${reg.node}`));
      updated.textContent = `Updated ${new Date().toLocaleTimeString()} (live: the node's event stream and a 2 s refresh)`;
    } catch (e) {
      showError(e);
    } finally {
      busy = false;
    }
  };
  await refresh();
  const timer = setInterval(refresh, 2000);
  signal.addEventListener("abort", () => clearInterval(timer));
  void follow(signal, refresh);
}

async function agentRows(signal: AbortSignal): Promise<Agent[]> {
  if (who!.region_admin) return api<Agent[]>("GET", "/api/v1/agents", undefined, signal);
  const all: Agent[] = [];
  for (const t of Object.keys(who!.tenants || {})) {
    for (const a of await api<Agent[]>("GET", `/api/v1/tenants/${encodeURIComponent(t)}/agents`, undefined, signal)) all.push({ ...a, tenant: a.tenant || t });
  }
  return all;
}

async function pageAgents(signal: AbortSignal) {
  const search = h("input", { id: "agent-search", type: "search", placeholder: "host, id, mode…" }) as HTMLInputElement;
  const body = h("div");
  show(h("h1", {}, "Agents"), h("label", { for: "agent-search" }, "Search", search), body);
  const rows = await agentRows(signal);
  let sortKey: keyof Agent = "host";
  const render = () => {
    const q = search.value.toLowerCase();
    const list = rows.filter((a) => [a.host, a.id, a.mode, a.node, a.tenant || "", a.health || ""].some((x) => x.toLowerCase().includes(q)))
      .sort((a, b) => String(a[sortKey] ?? "").localeCompare(String(b[sortKey] ?? "")));
    const sortButton = (label: string, key: keyof Agent) => {
      const b = h("button", { type: "button", "aria-label": `Sort by ${label}` }, label);
      b.addEventListener("click", () => { sortKey = key; render(); });
      return b;
    };
    const t = table(["Host", "ID", "Tenant", "Node", "RTT", "Mode", "Health", "Cert expires", "Flags"],
      list.map((a) => [a.host, a.id, a.tenant || "", a.node || "–", a.rtt_ms === undefined ? "–" : `${a.rtt_ms.toFixed(1)} ms`,
        a.mode_reason ? `${a.mode} (${a.mode_reason})` : a.mode, chip(a.health || "unknown", statusKind(a.health || "unknown")),
        a.cert_expires.slice(0, 19).replace("T", " "), (a.flags || []).join(", ")]), `${list.length} of ${rows.length} agents`);
    const sorts = h("p", {}, "Sort: ", sortButton("host", "host"), " ", sortButton("mode", "mode"), " ", sortButton("node", "node"));
    body.replaceChildren(sorts, t);
  };
  search.addEventListener("input", render);
  render();
}

function peerTable(peers: PeerStatus[], complete: boolean): HTMLElement {
  return h("div", {},
    complete ? h("p", {}, chip("complete", "ok"), " every peer answered")
      : h("p", { class: "banner", role: "status" }, "Partial answer: some peers are missing or stale (below)."),
    table(["Peer", "Status", "Latency", "Data age", "Rows", "Error"], peers.map((p) => [p.peer, chip(p.status, statusKind(p.status)),
      `${p.latency_ms.toFixed(1)} ms`, `${p.data_age_ms} ms`, String(p.rows), p.error || ""]), "Peers asked"));
}

async function pageFederation(signal: AbortSignal) {
  const parts: Node_[] = [h("h1", {}, "Federation")];
  if (who!.region_admin) {
    const peers = await api<Peer[]>("GET", "/api/v1/peers", undefined, signal).catch((e) => { if (e instanceof APIError && e.status === 404) return [] as Peer[]; throw e; });
    parts.push(h("h2", {}, "Peers"), table(["Peer", "Address", "State", "RTT", "Last OK", "Data age", "Cert expires", "Links", "Last error"],
      peers.map((p) => [p.name, p.addr, chip(p.state.state, statusKind(p.state.state)), `${p.state.rtt_ms.toFixed(1)} ms`,
        p.state.last_ok ? p.state.last_ok.slice(0, 19).replace("T", " ") : "never", `${p.state.data_age_ms} ms`,
        (p.state.cert_expires || p.ca_expires).slice(0, 10), String(p.links), p.state.last_error || ""]), "as this node sees them"));
  }
  for (const t of Object.keys(who!.tenants || {})) {
    try {
      const g = await api<GlobalAgents>("GET", `/api/v1/tenants/${encodeURIComponent(t)}/global/agents`, undefined, signal);
      parts.push(h("h2", {}, `Global agents of tenant ${t}`), peerTable(g.peers, g.complete),
        table(["Source", "Region", "Host", "ID", "Mode", "Health"], g.agents.map((a) => [
          a.source === "local" ? chip("local") : chip(a.source.replace("peer:", "from peer:"), "ok"), a.region, a.host, a.id, a.mode,
          chip(a.health || "unknown", statusKind(a.health || "unknown"))]), `${g.agents.length} agents`));
    } catch (e) {
      if (e instanceof APIError && e.status === 404) continue; // federation off here
      throw e;
    }
  }
  show(...parts);
}

const pages: Record<string, (s: AbortSignal) => Promise<void>> = {
  "#/overview": pageOverview, "#/agents": pageAgents, "#/federation": pageFederation,
};

async function route() {
  pageAbort?.abort();
  pageAbort = new AbortController();
  const hash = location.hash || "#/overview";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === hash) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (hash === "#/login") { pageLogin(); return; }
  if (!who && !(await loadWho())) { location.hash = "#/login"; return; }
  const page = pages[hash];
  if (!page) { show(h("h1", {}, "Not found"), h("p", {}, "No such page.")); return; }
  try { await page(pageAbort.signal); } catch (e) { showError(e); }
}

document.getElementById("logout")!.addEventListener("click", async () => {
  try { await api("POST", "/api/v1/logout"); } catch { /* logged out anyway */ }
  who = null;
  await loadWho();
  location.hash = "#/login";
});
window.addEventListener("hashchange", () => void route());
void route();
