import { Agent, api, button, can, chip, fmtTime, h, isRegionAdmin, myTenants, show, statusKind, table, tpath } from "../lib";

async function agentRows(signal: AbortSignal): Promise<Agent[]> {
  if (isRegionAdmin()) return api<Agent[]>("GET", "/api/v1/agents", undefined, signal);
  const all: Agent[] = [];
  for (const t of myTenants()) {
    for (const a of await api<Agent[]>("GET", tpath(t, "/agents"), undefined, signal)) all.push({ ...a, tenant: a.tenant || t });
  }
  return all;
}

// actionPath is where an agent action goes for this caller: the region
// route for a region admin, the tenant's for its Admin; null when the
// role allows neither (no button is drawn).
function actionPath(a: Agent, action: "revoke" | "clear-flags"): string | null {
  if (isRegionAdmin()) return `/api/v1/agents/${encodeURIComponent(a.id)}/${action}`;
  if (a.tenant && can(a.tenant, "admin")) return tpath(a.tenant, `/agents/${encodeURIComponent(a.id)}/${action}`);
  return null;
}

export async function pageAgents(signal: AbortSignal) {
  const search = h("input", { id: "agent-search", type: "search", placeholder: "host, id, mode…" }) as HTMLInputElement;
  const body = h("div");
  show(h("h1", {}, "Agents"), h("label", { for: "agent-search" }, "Search", search), body);
  let rows = await agentRows(signal);
  let sortKey: keyof Agent = "host";
  const reload = async () => { rows = await agentRows(signal); render(); };
  const render = () => {
    const q = search.value.toLowerCase();
    const list = rows.filter((a) => [a.host, a.id, a.mode, a.node, a.tenant || "", a.health || ""].some((x) => (x || "").toLowerCase().includes(q)))
      .sort((a, b) => String(a[sortKey] ?? "").localeCompare(String(b[sortKey] ?? "")));
    const sortButton = (label: string, key: keyof Agent) => {
      const b = h("button", { type: "button", "aria-pressed": String(sortKey === key) }, label);
      b.addEventListener("click", () => { sortKey = key; render(); });
      return b;
    };
    const t = table(["Host", "ID", "Tenant", "Node", "RTT", "Mode", "Health", "Cert expires", "Flags", "Actions"],
      list.map((a) => {
        const revoke = actionPath(a, "revoke");
        const clear = actionPath(a, "clear-flags");
        const acts = h("span", { class: "actions" },
          revoke && !a.revoked ? button("Revoke", async () => {
            if (!confirm(`Revoke agent ${a.host} (${a.id})? It is disconnected and cannot reconnect with its certificate.`)) return;
            await api("POST", revoke); await reload();
          }, { "aria-label": `Revoke ${a.host}` }) : null,
          clear && (a.flags || []).length ? button("Clear flags", async () => { await api("POST", clear); await reload(); }, { "aria-label": `Clear flags of ${a.host}` }) : null);
        const link = a.tenant ? h("a", { href: `#/agents/${encodeURIComponent(a.tenant)}/${encodeURIComponent(a.id)}` }, a.host) : a.host;
        return [link, a.id, a.tenant || "", a.node || "–", a.rtt_ms === undefined ? "–" : `${a.rtt_ms.toFixed(1)} ms`,
          a.mode_reason ? `${a.mode} (${a.mode_reason})` : a.mode, chip(a.revoked ? "revoked" : a.health || "unknown", a.revoked ? "bad" : statusKind(a.health || "unknown")),
          fmtTime(a.cert_expires), (a.flags || []).join(", "), acts];
      }), `${list.length} of ${rows.length} agents`, { id: "agents-table" });
    const sorts = h("p", {}, "Sort by: ", sortButton("host", "host"), " ", sortButton("mode", "mode"), " ", sortButton("node", "node"), " ", sortButton("health", "health"));
    body.replaceChildren(sorts, t);
  };
  search.addEventListener("input", render);
  render();
}
