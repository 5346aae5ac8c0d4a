import { api, APIError, chip, federationOn, fmtDuration, fmtTime, GlobalAgents, h, isRegionAdmin, myTenants, Peer, PeerStatus, show, statusKind, table, tpath } from "../lib";

// peerChip labels a remote row with its peer, and warns when that peer's
// answer was not a fresh, whole one (stale, timed out, malformed…).
export function peerChips(source: string, peers: PeerStatus[]): HTMLElement {
  const out = h("span", { class: "chips" });
  if (source === "local" || !source) {
    out.append(chip("local"));
    return out;
  }
  const name = source.replace(/^peer:/, "");
  out.append(chip(`peer ${name}`, "", `this row came from peer region ${name}`));
  const st = peers.find((p) => p.peer === name);
  if (st && st.status !== "ok") {
    out.append(" ", chip(`${st.status}, data ${fmtDuration(st.data_age_ms)} old`, "warn", st.error || ""));
  }
  return out;
}

export function peerTable(peers: PeerStatus[], complete: boolean): HTMLElement {
  return h("div", {},
    complete ? h("p", {}, chip("complete", "ok"), " every peer answered")
      : h("p", { class: "banner", role: "status" }, "Partial answer: some peers are missing or stale (below)."),
    table(["Peer", "Status", "Latency", "Data age", "Rows", "Error"], peers.map((p) => [p.peer, chip(p.status, statusKind(p.status)),
      `${p.latency_ms.toFixed(1)} ms`, fmtDuration(p.data_age_ms), String(p.rows), p.error || ""]), "Peers asked"));
}

export async function pageFederation(signal: AbortSignal) {
  const parts: globalThis.Node[] = [h("h1", {}, "Federation")];
  if (!federationOn()) {
    show(...parts, h("p", {}, "Federation is off on this node: it has no peers and answers no global view. ",
      "To federate regions, set federation.bind in each node's config (docs/config.md), then add peers on the Admin page."));
    return;
  }
  if (isRegionAdmin()) {
    const peers = await api<Peer[]>("GET", "/api/v1/peers", undefined, signal).catch((e) => { if (e instanceof APIError && e.status === 404) return [] as Peer[]; throw e; });
    parts.push(h("h2", {}, "Peers"), table(["Peer", "Address", "State", "RTT", "Last OK", "Data age", "Cert expires", "Links", "Last error"],
      peers.map((p) => [p.name, p.addr, chip(p.state.state, statusKind(p.state.state)), `${p.state.rtt_ms.toFixed(1)} ms`,
        p.state.last_ok ? fmtTime(p.state.last_ok) : "never", fmtDuration(p.state.data_age_ms),
        (p.state.cert_expires || p.ca_expires).slice(0, 10), String(p.links), p.state.last_error || ""]), "as this node sees them", { id: "peers-table" }));
  }
  for (const t of myTenants()) {
    try {
      const g = await api<GlobalAgents>("GET", tpath(t, "/global/agents"), undefined, signal);
      parts.push(h("h2", {}, `Global agents of tenant ${t}`), peerTable(g.peers, g.complete),
        table(["Source", "Region", "Host", "ID", "Mode", "Health"], g.agents.map((a) => [
          peerChips(a.source, g.peers), a.region, a.host, a.id, a.mode,
          chip(a.health || "unknown", statusKind(a.health || "unknown"))]), `${g.agents.length} agents`, { class: "global-agents" }));
    } catch (e) {
      if (e instanceof APIError && e.status === 404) continue; // federation off here
      throw e;
    }
  }
  show(...parts);
}
