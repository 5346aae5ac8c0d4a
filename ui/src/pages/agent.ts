// One agent: its record (mode and why, health, version, certificate,
// flags), the actions its caller's role allows, and over a chosen window
// its flows, connections, retransmits and RTT (eBPF) or the host's TCP
// counters (procfs: what that mode has), its top flows and its probes'
// results, refreshed every 15 s. Every chart says when its data is
// partial: this agent's own losses by stage, stretches it exported
// nothing, nodes that did not answer.
import "./agent.css";
import { Agent, api, APIError, button, can, chip, errorText, fmtTime, h, isRegionAdmin, myTenants, report, show, statusKind, table, tpath } from "../lib";
import { Chart, fmt, grid, Line, lines, lossText, num, present, promString, queryInstant, queryRange, refreshLoop, windowPicker } from "./chart";

// AgentRecord is the API's Agent with the fields lib's type leaves out.
export type AgentRecord = Agent & {
  enrolled?: string; last_seen?: string; source_addr?: string; capabilities?: string[]; connections?: number; revoked_at?: string;
  config?: { dispatch: string; token: number; status: string; error?: string; node: string; at: string };
};

async function loadAgent(tenant: string, id: string, signal: AbortSignal): Promise<AgentRecord | null> {
  // A region admin reads the region's list (no grant needed for the
  // registry); a tenant member reads the tenant's.
  const list = isRegionAdmin()
    ? (await api<AgentRecord[]>("GET", "/api/v1/agents", undefined, signal)).filter((a) => !a.tenant || a.tenant === tenant)
    : await api<AgentRecord[]>("GET", tpath(tenant, "/agents"), undefined, signal);
  const a = list.find((x) => x.id === id);
  return a ? { ...a, tenant: a.tenant || tenant } : null;
}

// actionPath: the region route for a region admin, the tenant's for its
// Admin, none otherwise (as on the agents page).
function actionPath(tenant: string, id: string, action: "revoke" | "clear-flags"): string | null {
  if (isRegionAdmin()) return `/api/v1/agents/${encodeURIComponent(id)}/${action}`;
  if (can(tenant, "admin")) return tpath(tenant, `/agents/${encodeURIComponent(id)}/${action}`);
  return null;
}

function modeText(a: AgentRecord, telemetryMode?: { mode: string; reason: string }): { mode: string; text: string; kind: "ok" | "warn" | "bad" | "" } {
  const mode = a.mode === "ebpf" || a.mode === "procfs" ? a.mode : telemetryMode?.mode || a.mode;
  const reason = a.mode === mode ? a.mode_reason || "" : telemetryMode?.reason || "";
  const stale = a.mode !== mode ? " (its last exported mode; it is not connected now)" : "";
  if (mode === "ebpf") {
    return reason ? { mode, text: `eBPF, ${reason}${stale}`, kind: "warn" } : { mode, text: `eBPF: every flow, bytes and RTT from the kernel${stale}`, kind: "ok" };
  }
  if (mode === "procfs") {
    const why = reason === "configured" ? "configured so" : reason ? `eBPF could not load: ${reason}` : "reason not reported";
    return { mode, text: `procfs (${why}): open connections and the host's TCP counters, no bytes or RTT per connection${stale}`, kind: "warn" };
  }
  return { mode: "unknown", text: `unknown: the agent reported no mode (${a.node ? "it runs without a data plane" : "it is not connected"}) and exported no telemetry in the last 6 h`, kind: "" };
}

function certChip(expires: string | undefined): HTMLElement | string {
  if (!expires) return "–";
  const days = (Date.parse(expires) - Date.now()) / 86400e3;
  const text = `${fmtTime(expires)} (${days < 0 ? "expired" : days < 2 ? `${Math.round(days * 24)} h left` : `${Math.floor(days)} days left`})`;
  // The agent renews its certificate when a third of its life is left
  // (agents.cert_lifetime, 24 h by default): under an hour left, it has
  // not managed to.
  return days < 0 ? chip(text, "bad", "expired: the agent cannot connect until it is enrolled again")
    : days < 1 / 24 ? chip(text, "warn", "the agent renews its certificate when a third of its life is left; this one has not been renewed") : text;
}

// The charts for each mode: their queries (sel is the agent's label
// matcher, r the rate range in seconds) and how to read them.
type ChartSpec = {
  id: string; title: string; unit: "bytes/s" | "/s" | "ms" | "count"; describe: string;
  query: (sel: string, r: number) => string;
  // zero: a missing sample while the agent exported is 0 (no traffic),
  // not a gap; RTT has no value without connections.
  zero: boolean; scale?: number;
};

const named = (series: string, q: string) => `label_replace(${q}, "series", ${promString(series)}, "", "")`;
const either = (...qs: string[]) => qs.join(" or ");

const ebpfCharts: ChartSpec[] = [
  { id: "chart-bytes", title: "Bytes per second", unit: "bytes/s", zero: true, describe: "sent and received, all flows",
    query: (s, r) => either(named("sent", `sum(rate(outpost_flow_sent_bytes_total{${s}}[${r}s]))`), named("received", `sum(rate(outpost_flow_received_bytes_total{${s}}[${r}s]))`)) },
  { id: "chart-conns", title: "Connections per second", unit: "/s", zero: true, describe: "established, failed connects and closed",
    query: (s, r) => either(named("established", `sum(rate(outpost_flow_connections_total{${s}}[${r}s]))`),
      named("failed", `sum(rate(outpost_flow_failed_connects_total{${s}}[${r}s]))`), named("closed", `sum(rate(outpost_flow_closed_total{${s}}[${r}s]))`)) },
  { id: "chart-retransmits", title: "Retransmits per second", unit: "/s", zero: true, describe: "segments retransmitted (tcp_retransmit_skb)",
    query: (s, r) => named("retransmits", `sum(rate(outpost_flow_retransmits_total{${s}}[${r}s]))`) },
  { id: "chart-rtt", title: "Round-trip time", unit: "ms", zero: false, scale: 1000, describe: "smoothed RTT of live connections: mean and 90th percentile",
    query: (s, r) => either(named("mean", `sum(rate(outpost_flow_rtt_seconds_sum{${s}}[${r}s])) / sum(rate(outpost_flow_rtt_seconds_count{${s}}[${r}s]))`),
      named("p90", `histogram_quantile(0.9, sum by (le) (rate(outpost_flow_rtt_seconds_bucket{${s}}[${r}s])))`)) },
];

const procfsCharts: ChartSpec[] = [
  { id: "chart-established", title: "Open connections", unit: "count", zero: true, describe: "ESTABLISHED at each poll (/proc/net/tcp)",
    query: (s) => named("established", `sum(outpost_flow_established{${s}})`) },
  { id: "chart-opens", title: "Connections opened per second", unit: "/s", zero: true, describe: "the host's active and passive opens",
    query: (s, r) => either(named("active", `sum(rate(outpost_host_tcp_active_opens_total{${s}}[${r}s]))`), named("passive", `sum(rate(outpost_host_tcp_passive_opens_total{${s}}[${r}s]))`)) },
  { id: "chart-retransmits", title: "Retransmits per second", unit: "/s", zero: true, describe: "the host's retransmitted segments and timeouts",
    query: (s, r) => either(named("retransmitted segments", `sum(rate(outpost_host_tcp_retrans_segs_total{${s}}[${r}s]))`), named("timeouts", `sum(rate(outpost_host_tcp_timeouts_total{${s}}[${r}s]))`)) },
  { id: "chart-failures", title: "Failures per second", unit: "/s", zero: true, describe: "the host's failed connection attempts and resets",
    query: (s, r) => either(named("attempt fails", `sum(rate(outpost_host_tcp_attempt_fails_total{${s}}[${r}s]))`), named("resets", `sum(rate(outpost_host_tcp_estab_resets_total{${s}}[${r}s]))`)) },
];

const flowKey = ["local_addr", "remote_addr", "port", "direction", "comm"];
const byFlow = `sum by (${flowKey.join(", ")})`;

export async function pageAgent(signal: AbortSignal, params: Record<string, string>) {
  const tenant = params.tenant, id = params.id;
  const title = h("h1", {}, `Agent ${id}`);
  const facts = h("div", { class: "agent-facts" }, "Loading…");
  const actions = h("div", { class: "actions agent-actions" });
  const telemetry = h("section", { class: "agent-telemetry", "aria-label": "Telemetry" });
  show(h("p", { class: "muted" }, h("a", { href: "#/agents" }, "Agents"), ` › tenant ${tenant}`), title, facts, actions, telemetry);

  let rec = await loadAgent(tenant, id, signal);
  if (!rec) {
    facts.replaceChildren(h("p", { class: "error", role: "alert" }, `No agent ${id} in tenant ${tenant} that you can see.`),
      h("p", {}, "It may have been removed, or belong to another tenant: ", h("a", { href: "#/agents" }, "pick one from the agents list"), "."));
    return;
  }
  const canRead = myTenants().includes(tenant);

  // The telemetry's own record of the mode, for an agent not connected now.
  let telemetryMode: { mode: string; reason: string } | undefined;
  if (canRead && rec.mode !== "ebpf" && rec.mode !== "procfs") {
    try {
      const a = await queryInstant(tenant, `max by (mode, reason) (last_over_time(outpost_agent_mode{agent=${promString(id)}}[6h]))`, signal);
      const m = a.data?.result?.[0]?.metric;
      if (m?.mode) telemetryMode = { mode: m.mode, reason: m.reason || "" };
    } catch { /* said below with the charts */ }
  }

  const drawRecord = (a: AgentRecord) => {
    title.textContent = `Agent ${a.host}`;
    const mt = modeText(a, telemetryMode);
    const health = a.revoked ? "revoked" : a.health || "unknown";
    const row = (k: string, ...v: (Node | string)[]) => h("div", {}, h("dt", {}, k), h("dd", {}, ...v));
    facts.replaceChildren(h("dl", { class: "facts", id: "agent-facts" },
      row("Host", a.host), row("ID", a.id), row("Tenant", tenant),
      row("Node", a.node || "not attached", a.rtt_ms !== undefined ? ` (RTT ${a.rtt_ms.toFixed(1)} ms${a.source_addr ? `, from ${a.source_addr}` : ""})` : ""),
      row("Mode", ...(mt.kind ? [chip(mt.mode, mt.kind), " "] : []), mt.text),
      row("Health", chip(health, a.revoked ? "bad" : statusKind(health))),
      row("Version", a.version || "–"),
      row("Certificate expires", certChip(a.cert_expires)),
      row("Last seen", fmtTime(a.last_seen)),
      row("Flags", (a.flags || []).length ? h("span", {}, ...(a.flags || []).map((f) => chip(f, "warn"))) : "none"),
      row("Config", a.config ? `${a.config.dispatch}: ${a.config.status}${a.config.error ? ` (${a.config.error})` : ""}, fencing token ${a.config.token}, ${fmtTime(a.config.at)}` : "no dispatch applied")));
    const revoke = actionPath(tenant, a.id, "revoke");
    const clear = actionPath(tenant, a.id, "clear-flags");
    actions.replaceChildren(...[
      revoke && !a.revoked ? button("Revoke", async () => {
        if (!confirm(`Revoke agent ${a.host} (${a.id})? It is disconnected and cannot reconnect with its certificate.`)) return;
        await api("POST", revoke);
        await reload();
      }, { id: "agent-revoke", "aria-label": `Revoke ${a.host}` }) : null,
      clear && (a.flags || []).length ? button("Clear flags", async () => { await api("POST", clear); await reload(); },
        { id: "agent-clear-flags", "aria-label": `Clear flags of ${a.host}` }) : null].filter((x): x is HTMLElement => x !== null));
  };
  const reload = async () => {
    const a = await loadAgent(tenant, id, signal);
    if (a) { rec = a; drawRecord(a); }
  };
  drawRecord(rec);

  if (!canRead) {
    // A region admin runs the registry, not the tenant's data.
    telemetry.replaceChildren(h("h2", {}, "Telemetry"),
      h("div", { class: "banner", id: "agent-needs-grant", role: "note" },
        h("p", {}, `Tenant ${tenant}'s flows, RTT and probe results are its own data: as a region admin you read them only with a break-glass grant, which you do not hold now.`),
        h("p", {}, "To read them, ask for a grant (on the ", h("a", { href: "#/admin" }, "Admin page"),
          `, or outpostctl breakglass request ${tenant} --reason TEXT --duration 1h); the tenant's Admin approves it, and every read under it is recorded in the provider audit stream.`)));
    return;
  }

  // The charts, by the mode the agent observes in.
  let seconds = 900;
  const sel = `agent=${promString(id)}`;
  // One refresh at a time; a window picked meanwhile is drawn right after.
  let running = false, again = false;
  const run = async () => {
    if (running) { again = true; return; }
    running = true;
    try {
      do { again = false; await refreshShown(); } while (again && !signal.aborted);
    } finally { running = false; }
  };
  const picker = windowPicker(seconds, (s) => { seconds = s; void run(); });
  const chartBox = h("div", { class: "charts" });
  const modeNote = h("p", { class: "muted", id: "agent-mode-note" });
  const flowsBox = h("div", {}, "Loading…");
  const probeBox = h("div", { class: "charts" });
  const probeTable = h("div");
  const updated = h("p", { class: "muted", "aria-live": "polite" });
  const liveNote = h("p", { class: "live-note" });
  const errBox = h("div");
  telemetry.replaceChildren(h("h2", {}, "Traffic"), picker, modeNote, errBox, chartBox, h("h2", {}, "Top flows"), flowsBox,
    h("h2", {}, "Probe results"), probeBox, probeTable, updated, liveNote);

  let drawnMode = "";
  let charts: [ChartSpec, Chart][] = [];
  let chartsAbort: AbortController | null = null;
  const probeSuccess = new Chart({ id: "chart-probe-success", title: "Probe success", unit: "ratio", signal, height: 160, describe: "1 when the last run of each probe succeeded" });
  const probeDuration = new Chart({ id: "chart-probe-duration", title: "Probe duration", unit: "ms", signal, height: 160, describe: "how long the last run of each probe took" });
  probeBox.append(probeSuccess.el, probeDuration.el);

  const drawCharts = (mode: string) => {
    if (mode === drawnMode) return;
    drawnMode = mode;
    chartsAbort?.abort();
    chartsAbort = new AbortController();
    signal.addEventListener("abort", () => chartsAbort?.abort());
    const specs = mode === "procfs" ? procfsCharts : ebpfCharts;
    charts = specs.map((s) => [s, new Chart({ id: s.id, title: s.title, unit: s.unit, describe: s.describe, signal: chartsAbort!.signal })]);
    chartBox.replaceChildren(...charts.map(([, c]) => c.el));
    modeNote.textContent = mode === "procfs"
      ? `This agent observes through procfs (${rec!.mode_reason || telemetryMode?.reason || "reason not reported"}): /proc/net/tcp and /proc/net/snmp have open connections and the host's TCP counters, but no bytes or RTT per connection, so those charts are not drawn. They need eBPF.`
      : mode === "ebpf" && (rec!.mode_reason || "").startsWith("partial")
        ? `eBPF with parts missing (${rec!.mode_reason}): what those tracepoints give is missing from the charts.`
        : "Flows seen by eBPF: rates over a minute of each flow's counters. A flow's first export counts from its second sample on.";
  };

  const refresh = async () => {
    const g = grid(seconds);
    const r = g.rate;
    await reload();
    const a = rec!;
    const mode = modeText(a, telemetryMode).mode;
    drawCharts(mode === "procfs" ? "procfs" : "ebpf");
    const specs = charts;
    const lossWin = `${g.seconds}s`;
    const [live, lossRange, lossTotals, top, psucc, pdur, prefused, ...answers] = await Promise.all([
      queryRange(tenant, `sum(rate(outpost_agent_cpu_seconds_total{${sel}}[${r}s]))`, g, signal),
      queryRange(tenant, `sum(increase(outpost_agent_losses_total{${sel}}[${r}s]))`, g, signal),
      queryInstant(tenant, either(`label_replace(sum by (stage) (increase(outpost_agent_losses_total{${sel}}[${lossWin}])), "what", "events", "", "")`,
        `label_replace(sum by (reason) (increase(outpost_agent_export_dropped_batches_total{${sel}}[${lossWin}])), "what", "batches", "", "")`), signal, g.end),
      queryInstant(tenant, drawnMode === "procfs"
        ? `topk(20, ${byFlow} (max_over_time(outpost_flow_established{${sel}}[${lossWin}])))`
        : either(named("sent", `topk(30, ${byFlow} (max_over_time(outpost_flow_sent_bytes_total{${sel}}[${lossWin}])))`),
          named("received", `topk(30, ${byFlow} (max_over_time(outpost_flow_received_bytes_total{${sel}}[${lossWin}])))`),
          named("connections", `topk(30, ${byFlow} (max_over_time(outpost_flow_connections_total{${sel}}[${lossWin}])))`)), signal, g.end),
      queryRange(tenant, `max by (kind, target) (outpost_probe_success{${sel}})`, g, signal),
      queryRange(tenant, `max by (kind, target) (outpost_probe_duration_seconds{${sel}})`, g, signal),
      queryInstant(tenant, `max by (kind, target, rule) (outpost_probe_refused{${sel}})`, signal, g.end),
      ...specs.map(([s]) => queryRange(tenant, s.query(sel, r), g, signal)),
    ]);
    errBox.replaceChildren();

    // Partial: what this agent lost in the window, and where.
    const pres = present(g, live);
    const totals = { events: {} as Record<string, number>, export_batches: {} as Record<string, number> };
    for (const s of lossTotals.data?.result || []) {
      const v = num(s.value?.[1] || "") || 0;
      if (s.metric.what === "events") totals.events[s.metric.stage || "?"] = v; else totals.export_batches[s.metric.reason || "?"] = v;
    }
    const lossAt: number[] = [];
    const lr = lines(g, lossRange, () => "")[0]?.values || [];
    lr.forEach((v, i) => { if (v !== null && v >= 0.5 && (i === 0 || (lr[i - 1] ?? 0) + 0.5 <= v)) lossAt.push(g.xs[i]); });
    const lostText = lossText(totals, "This agent");
    const losses = { text: lostText ? `${lostText}${lossAt.length ? " Red marks: where the losses happened." : ""}` : "", at: lostText ? lossAt : [] };
    const enrolled = a.enrolled ? Date.parse(a.enrolled) / 1000 : g.start;
    const expectFrom = enrolled + r + 2 * g.step + 15;
    const gapWhy = `the agent exported nothing then (not connected, stopped, or its exports were lost before they were stored)${a.health === "disconnected" || a.revoked ? `; it is ${a.revoked ? "revoked" : "disconnected"} now` : ""}`;
    const empty = `No data in this window${g.end < expectFrom ? ": the agent enrolled moments ago, its first exports are on the way" : ""}.`;
    specs.forEach(([s, c], i) => {
      c.update(g, lines(g, answers[i], (m) => m.series || s.title, s.scale || 1),
        { answers: [answers[i]], present: pres, zeroWhenPresent: s.zero, expectFrom, losses, gapWhy, empty });
    });

    // Top flows.
    type Row = { key: string; m: Record<string, string>; sent: number; received: number; connections: number; established: number };
    const rows = new Map<string, Row>();
    for (const s of top.data?.result || []) {
      const key = flowKey.map((k) => s.metric[k] || "").join("|");
      const row = rows.get(key) || { key, m: s.metric, sent: 0, received: 0, connections: 0, established: 0 };
      const v = num(s.value?.[1] || "") || 0;
      if (drawnMode === "procfs") row.established = v;
      else if (s.metric.series === "sent") row.sent = v;
      else if (s.metric.series === "received") row.received = v;
      else row.connections = v;
      rows.set(key, row);
    }
    const flows = [...rows.values()].sort((x, y) => drawnMode === "procfs" ? y.established - x.established : (y.sent + y.received) - (x.sent + x.received)).slice(0, 20);
    const bytes = (v: number) => fmt("count", v) + "B";
    flowsBox.replaceChildren(flows.length
      ? table(drawnMode === "procfs" ? ["Remote address", "Port", "Direction", "Process", "Local address", "Open connections (most in window)"]
        : ["Remote address", "Port", "Direction", "Process", "Local address", "Sent", "Received", "Connections"],
        flows.map((f) => {
          const base = [f.m.remote_addr || "–", f.m.port || "–", f.m.direction || "–", f.m.comm || "–", f.m.local_addr || "–"];
          return drawnMode === "procfs" ? [...base, String(f.established)] : [...base, bytes(f.sent), bytes(f.received), String(f.connections)];
        }),
        drawnMode === "procfs" ? "Flows by open connections (procfs has no bytes per connection)"
          : "Flows by bytes: each flow's counters, since the agent first saw it, among flows exported in this window", { id: "agent-flows" })
      : h("p", { class: "muted", id: "agent-flows-empty" }, "No flows exported in this window."));

    // Probe results.
    const probeLabel = (m: Record<string, string>) => `${m.kind || "?"} ${m.target || "?"}`;
    const sl = lines(g, psucc, probeLabel), dl = lines(g, pdur, probeLabel, 1000);
    const noProbes = "No probe results for this agent in this window: an operator defines probes on the Probes page.";
    // Lost kernel events are flows' losses; a probe result is lost only
    // with an export batch.
    const probeLosses = { text: lossText({ events: {}, export_batches: totals.export_batches }, "This agent"), at: [] };
    probeSuccess.update(g, sl, { answers: [psucc], present: pres, expectFrom, losses: probeLosses, gapWhy, empty: noProbes });
    probeDuration.update(g, dl, { answers: [pdur], present: pres, expectFrom, losses: probeLosses, gapWhy, empty: noProbes });
    const refused = new Map((prefused.data?.result || []).map((s) => [probeLabel(s.metric), s.metric.rule || ""]));
    const last = (l: Line | undefined) => { if (!l) return null; for (let i = l.values.length - 1; i >= 0; i--) if (l.values[i] !== null) return l.values[i]; return null; };
    probeTable.replaceChildren(sl.length ? table(["Probe", "Last result", "Duration", "Refused by the SSRF guard"], sl.map((l) => {
      const ok = last(l);
      return [l.label, ok === null ? "–" : ok >= 1 ? chip("ok", "ok") : chip("failed", "bad"), fmt("ms", last(dl.find((d) => d.label === l.label))), refused.get(l.label) || "–"];
    }), "Latest result of each probe on this agent", { id: "agent-probes" }) : "");
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
  };

  const refreshShown = async () => {
    try { await refresh(); } catch (e) {
      if (signal.aborted) return;
      errBox.replaceChildren();
      if (e instanceof APIError && e.status === 403) {
        errBox.append(h("p", { class: "error", role: "alert" }, `The telemetry is not readable: ${errorText(e)}`));
        return;
      }
      report(e, errBox);
    }
  };
  await refreshLoop(signal, tenant, run, liveNote);
}
