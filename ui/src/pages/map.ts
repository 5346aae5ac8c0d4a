// pageMap: the service map. Who talks to whom over the last five
// minutes, from the agents' flows: a node per agent host and per address
// no agent owns, grouped by region (with federation on, the linked peer
// regions' flows too), edges client → server coloured by retransmits and
// RTT. Filters (errors only, top talkers, a name) apply in place; the
// placement stays put as the graph grows (maplayout.ts). Everything the
// canvas shows is also text: the details panel beside it and the table of
// edges beneath. `#/map?synthetic=N,E` draws a generated graph of that
// size instead, to try the map at scale without a fleet.
//
// The section#map element says what is drawn, for people's tools and the
// browser tests: data-state (loading, ready, empty, error), data-nodes,
// data-edges, data-groups, data-visible-edges, data-render-ms (graph built
// to first frame drawn), data-synthetic.
import "./map.css";
import { api, APIError, chip, errorText, every, federationOn, h, myTenants, PeerStatus, show, table, tpath, who } from "../lib";
import { peerTable } from "./federation";
import {
  buildGraph, filtering, flowQuery, fmtBytes, fmtRate, fmtRTT, Filter, Graph, heat, Index, indexGraph, MapEdge, MapNode,
  parseSynthetic, Sample, slowRTT, synthetic, TenantAnswer, visibleEdges,
} from "./mapgraph";
import { Placement } from "./maplayout";
import { MapView, Selected } from "./mapview";

// The placement is the map's memory: kept for as long as the UI is
// loaded, one for the fleet's data and one for synthetic graphs.
const placements = { live: new Placement(), synthetic: new Placement() };

const window5m = "5m";
const refreshMs = 30000;
const tableRows = 50;

type Losses = { from: string; to: string; events: Record<string, number> | null; export_batches: Record<string, number> | null; complete: boolean };
type NodeStatus = { node: string; status: string; latency_ms: number; series: number; error?: string };
type PromAnswer = {
  status: string; data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
  warnings?: string[]; nodes?: NodeStatus[]; losses?: Losses;
};
type GlobalAnswer = { complete: boolean; peers: PeerStatus[]; result_type: string; samples: { labels: Record<string, string>; t: number; v: string }[]; warnings?: string[] };

// Answered is how one tenant's query went: whether it is whole, and if
// not, why.
type Answered = { tenant: string; complete: boolean | null; peers?: PeerStatus[]; losses?: Losses; nodes?: NodeStatus[]; warnings: string[]; error?: string };

async function askTenant(t: string, signal: AbortSignal): Promise<[TenantAnswer | null, Answered]> {
  const q = encodeURIComponent(flowQuery(window5m));
  const localRegion = who?.region || "local";
  if (federationOn()) {
    try {
      const g = await api<GlobalAnswer>("GET", tpath(t, `/global/query?query=${q}`), undefined, signal);
      const samples: Sample[] = g.samples.map((s) => ({ labels: s.labels, v: parseFloat(s.v) }));
      return [{ tenant: t, localRegion, samples }, { tenant: t, complete: g.complete, peers: g.peers, warnings: g.warnings || [] }];
    } catch (e) {
      if (!(e instanceof APIError && e.status === 404)) throw e;
      // Federation is off where this was answered: this region alone.
    }
  }
  const p = await api<PromAnswer>("GET", tpath(t, `/prometheus/api/v1/query?query=${q}`), undefined, signal);
  const samples: Sample[] = (p.data?.result || []).map((r) => ({ labels: r.metric, v: parseFloat(r.value[1]) }));
  const nodesOK = (p.nodes || []).every((n) => n.status === "ok");
  const complete = p.losses ? p.losses.complete && nodesOK : nodesOK ? null : false;
  return [{ tenant: t, localRegion, samples }, { tenant: t, complete, losses: p.losses, nodes: p.nodes, warnings: p.warnings || [] }];
}

const nonzero = (m: Record<string, number> | null | undefined) =>
  Object.entries(m || {}).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${Math.round(v)}`).join(", ");

// answerNotes says, per tenant, whether the map is the whole picture.
function answerNotes(as: Answered[], multi: boolean): HTMLElement {
  const out = h("div", { id: "map-answer" });
  for (const a of as) {
    const whose = multi ? `tenant ${a.tenant}: ` : "";
    if (a.error) { out.append(h("p", { class: "error", role: "alert" }, `Could not ask for ${multi ? `tenant ${a.tenant}'s` : "the"} flows: ${a.error}`)); continue; }
    if (a.complete === true) {
      out.append(h("p", { class: "muted" }, chip("complete", "ok"), ` ${whose}every node${a.peers?.length ? " and peer" : ""} answered and the agents lost nothing in the window.`));
    } else {
      const why: string[] = [];
      if (a.losses && !a.losses.complete) {
        const ev = nonzero(a.losses.events), ex = nonzero(a.losses.export_batches);
        why.push(`the agents lost data in the window${ev ? ` (events: ${ev})` : ""}${ex ? ` (export batches: ${ex})` : ""}, so some flows are missing or undercounted`);
      }
      for (const n of a.nodes || []) if (n.status !== "ok") why.push(`node ${n.node} did not answer (${n.status}${n.error ? `: ${n.error}` : ""}): the flows of agents attached to it are missing`);
      for (const p of a.peers || []) if (p.status !== "ok") why.push(`peer region ${p.peer} is ${p.status}${p.error ? ` (${p.error})` : ""}: its flows are ${p.status === "stale" ? "old" : "missing"}`);
      if (a.complete === null) why.push("the answer did not say whether the agents lost data");
      // A peer that answered whole rows of an incomplete answer (its
      // agents lost data): the answer's warnings say so, by peer.
      if (why.length === 0) why.push(...a.warnings.slice(0, 3));
      if (why.length === 0) why.push("the server did not say why");
      out.append(h("div", { class: "banner map-partial", role: "status" },
        h("strong", {}, a.complete === null ? `${whose}Possibly partial map: ` : `${whose}Partial map: `), why.join("; ") + "."));
    }
    if (a.peers && a.peers.length > 0) out.append(h("details", { class: "map-peers" }, h("summary", {}, `Peer regions asked${multi ? ` for tenant ${a.tenant}` : ""}`), peerTable(a.peers, a.peers.every((p) => p.status === "ok"))));
    if (a.warnings.length > 0) out.append(h("details", {}, h("summary", {}, `Warnings (${a.warnings.length})`), h("ul", {}, ...a.warnings.map((w) => h("li", {}, w)))));
  }
  return out;
}

function option(value: string, label: string): HTMLElement {
  return h("option", { value }, label);
}

function legendItem(sw: string, text: string): HTMLElement {
  return h("li", {}, h("span", { class: `sw ${sw}`, "aria-hidden": "true" }), text);
}

export async function pageMap(signal: AbortSignal) {
  const syn = parseSynthetic(location.hash);
  const placement = syn ? placements.synthetic : placements.live;
  const tenants = myTenants();
  const multi = tenants.length > 1;

  // The page's parts.
  const root = h("section", { id: "map", "data-state": "loading", "data-synthetic": syn ? "true" : "false", "aria-labelledby": "map-h" });
  const status = h("p", { id: "map-status", role: "status", "aria-live": "polite" }, "Loading…");
  const answer = h("div", { id: "map-answer" });
  const errors = h("input", { type: "checkbox", id: "map-errors" }) as HTMLInputElement;
  const top = h("select", { id: "map-top" },
    option("0", "All edges"), ...[10, 25, 50, 100, 250, 500, 1000].map((n) => option(String(n), `Top ${n} by bytes`))) as HTMLSelectElement;
  const text = h("input", { type: "search", id: "map-text", autocomplete: "off", spellcheck: "false" }) as HTMLInputElement;
  const sort = h("select", { id: "map-sort" }, option("bytes", "bytes/s"), option("retx", "retransmits/s"), option("fail", "failed connects/s"), option("rtt", "RTT")) as HTMLSelectElement;
  const showAll = h("button", { type: "button", id: "map-show-all" }, "Show all");
  const fitB = h("button", { type: "button", id: "map-fit", "aria-label": "Fit the map to the window" }, "Fit");
  const zoomIn = h("button", { type: "button", id: "map-zoom-in", "aria-label": "Zoom in" }, "+");
  const zoomOut = h("button", { type: "button", id: "map-zoom-out", "aria-label": "Zoom out" }, "−");
  const canvas = h("div", { id: "map-canvas", class: "map-canvas", role: "application", tabindex: "0", "aria-label": "Service map", "aria-describedby": "map-help" });
  const empty = h("p", { id: "map-empty", class: "map-empty" });
  empty.hidden = true;
  const detailsBody = h("div", { id: "map-details-body", "aria-live": "polite" }, h("p", { class: "muted" }, "Click a node or an edge, or pick an edge in the table below, for its details."));
  const details = h("aside", { id: "map-details", class: "map-details", "aria-labelledby": "map-details-h", "data-selected": "" },
    h("h2", { id: "map-details-h" }, "Details"), detailsBody);
  const tableBox = h("div", { id: "map-table" });

  const controls = h("div", { class: "map-controls", role: "group", "aria-label": "Filters and view" },
    h("label", { class: "check" }, errors, "Errors only"),
    h("label", {}, "Top talkers", top),
    h("label", {}, "Host, address or agent ID", text),
    showAll,
    h("span", { class: "map-zoom" }, zoomIn, zoomOut, fitB),
  );
  const legend = h("ul", { class: "map-legend", "aria-label": "Legend" },
    legendItem("sw-host", "agent host"),
    legendItem("sw-addr", "address no agent owns"),
    legendItem("sw-edge", "edge, client → server: thicker for more bytes/s (1 px at 100 B/s, 7 px at 100 MB/s)"),
    legendItem("sw-slow", `slow: RTT ≥ ${slowRTT * 1000} ms`),
    legendItem("sw-bad", "retransmits or failed connects"),
    legendItem("sw-ring", "a node's ring: its worst edge"),
  );
  const synBanner = h("p", { class: "banner", id: "map-synthetic", role: "note" }, "Synthetic graph: generating…");
  root.append(
    h("h1", { id: "map-h" }, "Service map"),
    h("p", { class: "muted" }, syn
      ? "A generated graph, to try the map at scale."
      : `Who talks to whom over the last 5 minutes, from the agents' flows (refreshed every ${refreshMs / 1000} s). Agents in procfs mode report open connections only: no bytes, retransmits or RTT.`),
    ...(syn ? [synBanner] : []),
    answer, controls,
    h("div", { class: "map-layout" }, h("div", { class: "map-stage" }, canvas, empty), details),
    legend, status,
    h("p", { id: "map-help", class: "muted" }, "Click a node or edge for its details. With the map focused: arrow keys pan, + and − zoom, 0 fits the map, Esc clears the selection. The table below lists the edges drawn."),
    h("label", { class: "map-sort" }, "Sort the table by", sort),
    tableBox,
  );
  show(root);

  // State.
  let view: MapView | null = null;
  let g: Graph | null = null;
  let ix: Index | null = null;
  let vis: Uint8Array = new Uint8Array(0);
  let selected: Selected = null;
  const filter: Filter = { errorsOnly: false, top: 0, text: "" };
  const dark = matchMedia("(prefers-color-scheme: dark)");
  const onTheme = () => view?.restyle();
  dark.addEventListener("change", onTheme);
  signal.addEventListener("abort", () => {
    dark.removeEventListener("change", onTheme);
    view?.destroy();
    view = null;
  });

  const nodeOf = (id: string): MapNode | undefined => { const i = ix?.nodeIndex.get(id); return i === undefined ? undefined : g!.nodes[i]; };
  const edgeOf = (id: string): MapEdge | undefined => { const i = ix?.edgeIndex.get(id); return i === undefined ? undefined : g!.edges[i]; };

  const pick = (s: Selected, focus: boolean) => {
    selected = s;
    if (focus && s) view?.focus(s.id);
    if (!s) view?.unselect();
    drawDetails();
  };
  const nodeButton = (id: string) => {
    const n = nodeOf(id);
    return button2(n ? n.label : id, () => pick({ kind: "node", id }, true), { class: "linkish", "data-node": id });
  };

  function drawDetails() {
    details.dataset.selected = selected?.id || "";
    if (!selected || !g) {
      detailsBody.replaceChildren(h("p", { class: "muted" }, "Click a node or an edge, or pick an edge in the table below, for its details."));
      return;
    }
    if (selected.kind === "edge") {
      const e = edgeOf(selected.id);
      if (!e) { detailsBody.replaceChildren(h("p", { class: "muted" }, "That edge is gone from the latest answer.")); return; }
      const hv = heat(e);
      detailsBody.replaceChildren(
        h("h3", {}, `${nodeOf(e.source)?.label} → ${nodeOf(e.target)?.label}`),
        ...(hv ? [h("p", {}, chip(hv === "bad" ? "retransmits or failed connects" : `slow: RTT ≥ ${slowRTT * 1000} ms`, hv === "bad" ? "bad" : "warn"))] : []),
        dl([
          ["Client", nodeButton(e.source)], ["Server", nodeButton(e.target)],
          ["Bytes/s (both ways)", fmtBytes(e.bytes)], ["Retransmits/s", fmtRate(e.retx)], ["Failed connects/s", fmtRate(e.fail)],
          ["New connections/s", fmtRate(e.conns)], ...(e.est > 0 ? [["Open connections", String(Math.round(e.est))] as [string, string]] : []),
          ["RTT (worst smoothed)", fmtRTT(e.rtt)], ["Server ports", e.ports.slice(0, 12).join(", ") + (e.ports.length > 12 ? ` and ${e.ports.length - 12} more` : "")],
          ["Processes", e.comms.slice(0, 12).join(", ") || "–"], ["Reported by agents", e.reporters.join(", ")],
        ]));
      return;
    }
    const n = nodeOf(selected.id);
    if (!n) { detailsBody.replaceChildren(h("p", { class: "muted" }, "That node is gone from the latest answer.")); return; }
    const i = ix!.nodeIndex.get(n.id)!;
    let outB = 0, inB = 0, retx = 0, fail = 0, rtt: number | null = null, nOut = 0, nIn = 0;
    const peers: [string, number][] = [];
    g.edges.forEach((e, k) => {
      const isOut = ix!.src[k] === i, isIn = ix!.dst[k] === i;
      if (!isOut && !isIn) return;
      if (isOut) { outB += e.bytes; nOut++; }
      if (isIn) { inB += e.bytes; nIn++; }
      retx += e.retx; fail += e.fail;
      if (e.rtt !== null) rtt = Math.max(rtt ?? 0, e.rtt);
      peers.push([isOut ? e.target : e.source, e.bytes]);
    });
    peers.sort((a, b) => b[1] - a[1]);
    const comms = [...n.comms].sort((a, b) => b[1] - a[1]).slice(0, 8);
    const local = n.region === (who?.region || "local") || !federationOn();
    const agentLink = n.agent && !n.synthetic
      ? (local ? h("a", { href: `#/agents/${encodeURIComponent(n.tenant)}/${encodeURIComponent(n.agent)}`, id: "map-agent-link" }, `Agent ${n.agent}`)
        : `${n.agent} (in peer region ${n.region}: its page is on that region's UI)`)
      : n.agent ? `${n.agent} (synthetic)` : "none: no agent reports this address as its own";
    detailsBody.replaceChildren(
      h("h3", {}, n.label),
      h("p", { class: "muted" }, n.kind === "agent" ? "Agent host" : "Address outside the fleet (or on a host without an agent)"),
      dl([
        ["Region", n.region], ...(multi || n.synthetic ? [["Tenant", n.tenant] as [string, string]] : []), ["Agent", agentLink],
        ["Addresses", n.addrs.join(", ") || "–"],
        ["Edges", `${nOut} as client, ${nIn} as server`], ["Bytes/s out, in", `${fmtBytes(outB)}, ${fmtBytes(inB)}`],
        ["Retransmits/s", fmtRate(retx)], ["Failed connects/s", fmtRate(fail)], ["Worst RTT", fmtRTT(rtt)],
        ...(comms.length && !n.synthetic ? [["Processes (bytes/s)", comms.map(([c, b]) => `${c} ${fmtBytes(b)}`).join(", ")] as [string, string]] : []),
      ]),
      ...(peers.length ? [h("h4", {}, "Busiest peers"),
        h("ul", { class: "map-peers-list" }, ...peers.slice(0, 8).map(([id, b]) => h("li", {}, nodeButton(id), ` ${fmtBytes(b)}`)))] : []),
    );
  }

  function drawTable() {
    if (!g || !ix) return;
    const idx: number[] = [];
    const key = sort.value;
    if (key === "bytes") {
      for (let k = 0; k < ix.byBytes.length && idx.length < tableRows; k++) if (vis[ix.byBytes[k]]) idx.push(ix.byBytes[k]);
    } else {
      const val = (e: MapEdge) => key === "retx" ? e.retx : key === "fail" ? e.fail : e.rtt ?? -1;
      const all: number[] = [];
      for (let i = 0; i < vis.length; i++) if (vis[i]) all.push(i);
      all.sort((a, b) => val(g!.edges[b]) - val(g!.edges[a]) || g!.edges[b].bytes - g!.edges[a].bytes);
      idx.push(...all.slice(0, tableRows));
    }
    const shown = Number(root.dataset.visibleEdges || 0);
    const rows = idx.map((i) => {
      const e = g!.edges[i];
      const hv = heat(e);
      return [
        button2(`${nodeOf(e.source)?.label} → ${nodeOf(e.target)?.label}`, () => pick({ kind: "edge", id: e.id }, true), { class: "linkish", "data-edge": e.id }),
        fmtBytes(e.bytes), fmtRate(e.retx), fmtRate(e.fail), fmtRTT(e.rtt), e.ports.slice(0, 4).join(", "),
        hv ? chip(hv === "bad" ? "errors" : "slow", hv === "bad" ? "bad" : "warn") : "",
      ];
    });
    const byLabel = sort.selectedOptions[0]?.textContent || "bytes/s";
    tableBox.replaceChildren(table(["Edge (client → server)", "Bytes/s", "Retransmits/s", "Failed connects/s", "RTT", "Ports", "Hot spot"], rows,
      `${rows.length < shown ? `The ${rows.length} edges with the most ${byLabel}` : `All ${rows.length} edges`} of the ${shown} drawn (${g.edges.length} in all)`,
      { id: "map-edges" }));
  }

  function applyFilter() {
    if (!g || !ix) return;
    vis = visibleEdges(g, ix, filter);
    let n = 0;
    if (view) n = view.show(vis, filtering(filter));
    else for (const v of vis) n += v;
    root.dataset.visibleEdges = String(n);
    showAll.toggleAttribute("disabled", !filtering(filter));
    drawStatus();
    drawTable();
  }

  function drawStatus() {
    if (!g) return;
    const agents = g.nodes.filter((n) => n.kind === "agent").length;
    let bad = 0, slow = 0;
    for (const e of g.edges) { const x = heat(e); if (x === "bad") bad++; else if (x === "slow") slow++; }
    const regions = new Set(g.nodes.map((n) => n.group)).size;
    const parts = [
      `${plural(g.nodes.length, "node")} (${plural(agents, "agent host")}, ${plural(g.nodes.length - agents, "address", "addresses")}) in ${plural(regions, "region")}`,
      `${plural(g.edges.length, "edge")}, ${root.dataset.visibleEdges} drawn`,
      `${bad} with retransmits or failed connects, ${slow} slow`,
    ];
    if (g.folded > 0 || g.unknown > 0) parts.push(`not drawn: ${fmtBytes(g.folded)} the agents' flow budget folded into “other”${g.unknown > 0 ? `, ${fmtBytes(g.unknown)} of connections whose identity was lost` : ""}`);
    if (!g.synthetic) parts.push(`as of ${new Date().toLocaleTimeString()}`);
    status.textContent = parts.join(" · ") + ".";
    canvas.setAttribute("aria-label", `Service map: ${g.nodes.length} nodes, ${root.dataset.visibleEdges} of ${g.edges.length} edges drawn. The details panel and the table of edges give the same as text.`);
  }

  function draw(next: Graph, t0: number) {
    g = next;
    ix = indexGraph(g);
    const pos = placement.place(g.groups.map((x) => x.id), g.nodes);
    const centers = new Map(g.groups.map((x) => [x.id, placement.center(x.id)!]));
    root.dataset.nodes = String(g.nodes.length);
    root.dataset.edges = String(g.edges.length);
    root.dataset.groups = String(new Set(g.nodes.map((n) => n.group)).size);
    if (g.nodes.length === 0) {
      canvas.hidden = true;
      empty.hidden = false;
      empty.textContent = "No flows in the last 5 minutes. An agent's flows show here a minute or so after it starts observing (two exports); the Agents page says each agent's mode.";
      root.dataset.state = "empty";
      vis = new Uint8Array(0);
      root.dataset.visibleEdges = "0";
      drawStatus();
      drawTable();
      return;
    }
    const wasHidden = canvas.hidden;
    canvas.hidden = false;
    empty.hidden = true;
    const first = !view;
    if (view && wasHidden) view.resize();
    if (view) view.update(g, ix, pos, centers);
    else view = new MapView(canvas, g, ix, pos, centers, (s) => pick(s, false));
    if (first) {
      root.dataset.state = "loading";
      // cytoscape draws in its own animation-frame callback, queued when
      // it started: the next frame's callbacks run it, then this one.
      requestAnimationFrame(() => {
        root.dataset.renderMs = (performance.now() - t0).toFixed(0);
        root.dataset.state = "ready";
        // The filtered view's nodes, built while nothing else happens, so
        // the first filter costs only its edges.
        requestIdleCallback(() => { if (!signal.aborted) view?.prepare(); }, { timeout: 3000 });
      });
    } else root.dataset.state = "ready";
    applyFilter();
    if (selected && !(selected.kind === "node" ? nodeOf(selected.id) : edgeOf(selected.id))) selected = null;
    drawDetails();
  }

  // The controls.
  errors.addEventListener("change", () => { filter.errorsOnly = errors.checked; applyFilter(); });
  top.addEventListener("change", () => { filter.top = parseInt(top.value, 10) || 0; applyFilter(); });
  let debounce = 0;
  const textNow = () => { clearTimeout(debounce); if (filter.text !== text.value) { filter.text = text.value; applyFilter(); } };
  text.addEventListener("input", () => { clearTimeout(debounce); debounce = window.setTimeout(textNow, 200); });
  text.addEventListener("change", textNow);
  showAll.addEventListener("click", () => {
    errors.checked = false; top.value = "0"; text.value = "";
    Object.assign(filter, { errorsOnly: false, top: 0, text: "" });
    applyFilter();
  });
  sort.addEventListener("change", drawTable);
  fitB.addEventListener("click", () => view?.fit());
  zoomIn.addEventListener("click", () => view?.zoomBy(1.25));
  zoomOut.addEventListener("click", () => view?.zoomBy(0.8));

  if (syn) {
    // Let the heading and controls paint first.
    await new Promise((r) => requestAnimationFrame(r));
    if (signal.aborted) return;
    const t0 = performance.now();
    const sg = synthetic(syn[0], syn[1]);
    synBanner.textContent = `Synthetic graph: ${sg.nodes.length} generated nodes and ${sg.edges.length} edges in four made-up regions, not your fleet's data. Leave out “?synthetic=…” for the real map.`;
    draw(sg, t0);
    return;
  }
  if (tenants.length === 0) {
    root.dataset.state = "empty";
    status.textContent = "You are a member of no tenant, so there are no flows to draw. Region admins read no tenant's data; a tenant's admin can invite you. To try the map anyway, open it with ?synthetic=2000,10000.";
    canvas.hidden = true;
    controls.hidden = true;
    legend.hidden = true;
    return;
  }
  await every(signal, refreshMs, async () => {
    const t0 = performance.now();
    const results = await Promise.all(tenants.map((t) => askTenant(t, signal).catch((e): [null, Answered] => {
      if (e instanceof DOMException && e.name === "AbortError") throw e;
      if (e instanceof APIError && e.status === 401) throw e; // every() sends the page to the login
      return [null, { tenant: t, complete: false, warnings: [], error: errorText(e) }];
    })));
    if (signal.aborted) return;
    const answers = results.map((r) => r[0]).filter((a): a is TenantAnswer => a !== null);
    const notes = answerNotes(results.map((r) => r[1]), multi);
    document.getElementById("map-answer")?.replaceWith(notes);
    if (answers.length === 0) { root.dataset.state = "error"; status.textContent = "No tenant's flows could be read (above)."; return; }
    draw(buildGraph(answers, multi), t0);
  });
}

// plural says how many of a thing.
function plural(count: number, one: string, many = one + "s"): string {
  return `${count} ${count === 1 ? one : many}`;
}

// dl is a definition list of label → value.
function dl(rows: [string, globalThis.Node | string][]): HTMLElement {
  const out = h("dl", { class: "map-dl" });
  for (const [k, v] of rows) out.append(h("dt", {}, k), h("dd", {}, v));
  return out;
}

// button2 is a plain button running a synchronous action (lib's button
// is for async calls that can fail).
function button2(label: string, fn: () => void, attrs: Record<string, string> = {}): HTMLElement {
  const b = h("button", { type: "button", ...attrs }, label);
  b.addEventListener("click", fn);
  return b;
}
