import { Agent, api, chip, every, follow, fmtTime, h, isRegionAdmin, myTenants, Region, roleIn, show, table, tpath, who } from "../lib";

// metricsText reads some counters from the node's /metrics (Prometheus
// text): name{labels} value, summed by the label named by.
async function metricsText(names: string[], signal: AbortSignal): Promise<Record<string, number>> {
  const r = await fetch("/metrics", { credentials: "same-origin", signal });
  const text = await r.text();
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    for (const n of names) {
      if (!line.startsWith(n + "{") && !line.startsWith(n + " ")) continue;
      const m = /^([^{ ]+)(\{([^}]*)\})? ([0-9.eE+-]+|NaN)$/.exec(line);
      if (!m) continue;
      const key = m[1] + (m[3] ? `{${m[3]}}` : "");
      out[key] = (out[key] || 0) + Number(m[4]);
    }
  }
  return out;
}

type Audited = { seq: number; data: string };

// auditLine turns an audit record into one line a person reads.
function auditLine(e: Audited): string[] {
  try {
    const rec = JSON.parse(atob(e.data));
    return [String(e.seq), fmtTime(rec.time || rec.at), rec.actor || "", rec.action || "", rec.entity || ""];
  } catch {
    return [String(e.seq), "", "", "(unreadable record)", ""];
  }
}

// pageOverview: the region at a glance, live. A region admin sees nodes,
// Raft, the lease, agents, the node's ingest and what it shed, and the
// newest audit records; a tenant member sees its tenants and their agents.
export async function pageOverview(signal: AbortSignal) {
  if (!isRegionAdmin()) {
    const tenants = myTenants();
    const body = h("div");
    const invites = h("div");
    show(h("h1", {}, "Overview"), invites, h("p", {}, `You are a member of ${tenants.length} tenant(s) in region ${who!.region}.`), body);
    // Invitations to tenants wait on the Admin page's first section.
    const pending = await api<{ tenant: string; role: string }[]>("GET", "/api/v1/invitations", undefined, signal).catch(() => []);
    if (pending.length) {
      invites.replaceChildren(h("p", { class: "banner", role: "status", id: "invitations" },
        `You are invited to ${pending.map((i) => `${i.tenant} (${i.role})`).join(", ")}: `, h("a", { href: "#/admin" }, "accept or decline")));
    }
    await every(signal, 5000, async () => {
      const rows: string[][] = [];
      for (const t of tenants) {
        const agents = await api<Agent[]>("GET", tpath(t, "/agents"), undefined, signal);
        const healthy = agents.filter((a) => a.health === "healthy" || a.health === "ok").length;
        rows.push([t, roleIn(t) || "break-glass (read-only)", String(agents.length), String(healthy)]);
      }
      body.replaceChildren(table(["Tenant", "Your role", "Agents", "Healthy"], rows, "Your tenants"));
    });
    return;
  }
  const cards = h("div", { class: "cards", "aria-live": "polite" });
  const nodes = h("div");
  const ingest = h("div");
  const audit = h("div");
  const updated = h("p", { class: "muted" });
  show(h("h1", {}, "Region overview"), cards, h("h2", {}, "Nodes"), nodes, h("h2", {}, "Ingest on this node"), ingest,
    h("h2", {}, "Recent audit records"), audit, updated);
  let last: { at: number; samples: number } | null = null;
  const refresh = await every(signal, 2000, async () => {
    const [reg, agents, m, page] = await Promise.all([
      api<Region>("GET", "/api/v1/region", undefined, signal),
      api<Agent[]>("GET", "/api/v1/agents", undefined, signal),
      metricsText(["outpost_telemetry_samples_total", "outpost_telemetry_samples_shed_total", "outpost_otlp_requests_total"], signal),
      api<{ size: number }>("GET", "/api/v1/audit?limit=1", undefined, signal)
        .then((p) => api<{ entries: Audited[] }>("GET", `/api/v1/audit?from=${Math.max(0, p.size - 8)}&limit=8`, undefined, signal)),
    ]);
    const up = reg.nodes.filter((n) => !n.error && n.raft_state !== "unreachable" && n.raft_state !== "shutdown").length;
    const byMode: Record<string, number> = {};
    const byHealth: Record<string, number> = {};
    for (const a of agents) {
      byMode[a.mode] = (byMode[a.mode] || 0) + 1;
      byHealth[a.health || "unknown"] = (byHealth[a.health || "unknown"] || 0) + 1;
    }
    const card = (label: string, value: string, id: string) =>
      h("div", { class: "card" }, h("div", { class: "value", id }, value), h("div", { class: "label" }, label));
    const parts = (o: Record<string, number>) => Object.entries(o).map(([k, n]) => `${n} ${k}`).join(", ");
    cards.replaceChildren(
      card("region", reg.region, "stat-region"),
      card("nodes up", `${up} / ${reg.nodes.length}`, "stat-nodes"),
      card("Raft leader", reg.leader || "none (election)", "stat-leader"),
      card("lease holder · fencing token", reg.lease && reg.lease.holder ? `${reg.lease.holder} · ${reg.lease.token}` : "none", "stat-lease"),
      card(`agents${agents.length ? ` (${parts(byMode)}; ${parts(byHealth)})` : ""}`, String(agents.length), "stat-agents"));
    nodes.replaceChildren(table(["Node", "Raft state", "Suffrage", "Last contact", "Applied", "Agents", "Status"],
      reg.nodes.map((n) => [n.id, n.raft_state, n.suffrage, n.raft_state === "leader" ? "(leader)" : `${n.last_contact_ms} ms`,
        String(n.applied_index), String(n.agents), n.error ? chip(n.error.slice(0, 80), "bad") : chip("up", "ok")]), `answered by ${reg.node}`));
    const now = Date.now();
    const samples = m["outpost_telemetry_samples_total"] || 0;
    const rate = last && now > last.at ? (samples - last.samples) / ((now - last.at) / 1000) : null;
    last = { at: now, samples };
    const shed = Object.entries(m).filter(([k]) => k.startsWith("outpost_telemetry_samples_shed_total"));
    const refused = Object.entries(m).filter(([k]) => k.startsWith("outpost_otlp_requests_total") && !k.includes('code="200"'));
    ingest.replaceChildren(table(["Stage", "Value"], [
      ["samples stored", `${samples} (${rate === null ? "measuring…" : `${rate.toFixed(1)}/s`})`],
      ...shed.map(([k, v]) => [`shed: ${/reason="([^"]*)"/.exec(k)?.[1] || k}`, v > 0 ? chip(String(v), "warn") : "0"]),
      ...refused.map(([k, v]) => [`exports refused: HTTP ${/code="([^"]*)"/.exec(k)?.[1] || k}`, v > 0 ? chip(String(v), "warn") : "0"]),
    ], "from this node's /metrics; agents' own losses by stage are on each agent's page", { id: "ingest" }));
    audit.replaceChildren(table(["Seq", "Time", "Actor", "Action", "Entity"], page.entries.slice().reverse().map(auditLine), "newest first; the Audit page verifies them", { id: "recent-audit" }));
    updated.textContent = `Updated ${new Date().toLocaleTimeString()} (live: the node's event stream and a 2 s refresh)`;
  });
  void follow(signal, () => void refresh());
}
