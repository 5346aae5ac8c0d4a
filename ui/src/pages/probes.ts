// Probes: the probe sets a tenant dispatched to a selector of its agents
// (config dispatches, fenced: each carries the lease's fencing token and
// the node that issued it), a form for an operator to define one
// (validated here as the node validates it, and the node's own refusal
// shown as it said it), and the results over time as charts.
import "./probes.css";
import { Agent, api, APIError, can, chip, fmtTime, h, myTenants, report, show, table, tpath } from "../lib";
import { Chart, fmt, grid, lines, queryInstant, queryRange, refreshLoop, windowPicker } from "./chart";

export type Probe = { kind: string; target: string; interval?: string };
type Dispatch = {
  id: string; tenant?: string; selector: string; kind: string; payload?: { probes?: Probe[]; export_interval?: string; sample_rate?: number; probe_allow?: string[] };
  payload_bytes: number; token: number; node: string; issued: string; index: number;
};
type AgentRecord = Agent & { config?: { dispatch: string; token: number; status: string; error?: string } };

// The node's checks, mirrored (agents.ParseSelector,
// agentwire.Probe.Validate): the same rules and the same words, so what
// is refused here is what the node would refuse. The SSRF guard depends
// on the tenant's settings and on what names resolve to: the node and
// the agent apply it, and their answer is shown as it comes.
const selectorKeys = new Set(["agent", "host", "os", "arch", "mode", "version"]);

const goQuote = (s: string) => JSON.stringify(s);

export function validateSelector(s: string): string | null {
  if (["", "*", "all", "none"].includes(s.trim())) return null;
  for (const term of s.split(",")) {
    const t = term.trim();
    const i = t.indexOf("=");
    const k = i < 0 ? t : t.slice(0, i), v = i < 0 ? "" : t.slice(i + 1);
    if (i < 0 || v === "" || !selectorKeys.has(k)) {
      return `selector term ${goQuote(term)}: use key=value with key one of agent, host, os, arch, mode, version (or "all" for every agent, "none" for none)`;
    }
  }
  return null;
}

// goDuration parses Go's time.ParseDuration syntax into seconds (null if
// it does not parse).
export function goDuration(s: string): number | null {
  if (s === "0") return 0;
  const m = /^[-+]?((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$/.exec(s);
  if (!m) return null;
  const unit: Record<string, number> = { ns: 1e-9, us: 1e-6, "µs": 1e-6, "μs": 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
  let total = 0;
  for (const [, n, u] of s.matchAll(/(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) total += Number(n) * unit[u];
  return s.startsWith("-") ? -total : total;
}

const badHost = (s: string) => [...s].some((c) => c <= " " || c === "\x7f");

// splitHostPort is Go's net.SplitHostPort.
function splitHostPort(s: string): [string, string] | null {
  if (s.startsWith("[")) {
    const end = s.indexOf("]");
    if (end < 0 || s[end + 1] !== ":") return null;
    const host = s.slice(1, end), port = s.slice(end + 2);
    if (port.includes(":") || port.includes("[") || port.includes("]")) return null;
    return [host, port];
  }
  const i = s.lastIndexOf(":");
  if (i < 0) return null;
  const host = s.slice(0, i), port = s.slice(i + 1);
  if (host.includes(":") || host.includes("[") || host.includes("]") || port.includes("[") || port.includes("]")) return null;
  return [host, port];
}

export function validateProbe(p: Probe): string | null {
  if (p.interval) {
    const d = goDuration(p.interval);
    if (d === null || d < 1 || d > 3600) return `interval ${goQuote(p.interval)}: use a duration from 1s to 1h`;
  }
  if (p.target === "" || new TextEncoder().encode(p.target).length > 512) return "target: 1..512 characters";
  switch (p.kind) {
    case "tcp": {
      const hp = splitHostPort(p.target);
      if (!hp || hp[0] === "" || badHost(hp[0])) return `tcp target ${goQuote(p.target)}: use host:port`;
      return null;
    }
    case "http": {
      let ok = false;
      try {
        const u = new URL(p.target);
        ok = (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
      } catch { ok = false; }
      return ok ? null : `http target ${goQuote(p.target)}: use an http:// or https:// URL`;
    }
    case "dns": case "icmp":
      return /[/:]/.test(p.target) || badHost(p.target) ? `${p.kind} target ${goQuote(p.target)}: use a host name or address` : null;
    default:
      return `kind ${goQuote(p.kind)}: use tcp, http, dns or icmp`;
  }
}

async function listDispatches(tenant: string, signal: AbortSignal): Promise<Dispatch[]> {
  const out: Dispatch[] = [];
  let after = 0;
  for (let page = 0; page < 20; page++) {
    const got = await api<Dispatch[]>("GET", tpath(tenant, `/dispatches?after=${after}&limit=1000`), undefined, signal);
    out.push(...got);
    if (got.length < 1000) break;
    after = got[got.length - 1].index;
  }
  return out.filter((d) => d.kind === "config");
}

function probeText(p: Probe): string {
  return `${p.kind} ${p.target}${p.interval ? ` every ${p.interval}` : ""}`;
}

const kinds = ["tcp", "http", "dns", "icmp"];
const placeholders: Record<string, string> = { tcp: "db-1:5432", http: "https://web-1/health", dns: "example.com", icmp: "10.0.0.1" };

// probeForm is an operator's form: the selector and probe rows; submit
// dispatches them as one config.
function probeForm(tenant: string, signal: AbortSignal, dispatched: (d: Dispatch) => Promise<void>): HTMLElement {
  let rows = 0;
  const selector = h("input", { id: "probe-selector", name: "selector", type: "text", value: "all", autocomplete: "off", "aria-describedby": "probe-selector-help" }) as HTMLInputElement;
  const list = h("ol", { class: "probe-rows", id: "probe-rows" });
  const errors = h("div", { id: "probe-form-errors", role: "alert" });
  const status = h("p", { id: "probe-form-status", role: "status" });
  const addRow = (kind = "tcp", target = "", interval = "") => {
    const n = ++rows;
    const k = h("select", { id: `probe-kind-${n}`, name: "kind" }, ...kinds.map((x) => h("option", { value: x }, x))) as HTMLSelectElement;
    k.value = kind;
    const t = h("input", { id: `probe-target-${n}`, name: "target", type: "text", value: target, autocomplete: "off", placeholder: placeholders[kind] }) as HTMLInputElement;
    const iv = h("input", { id: `probe-interval-${n}`, name: "interval", type: "text", value: interval, autocomplete: "off", placeholder: "30s", size: "6" }) as HTMLInputElement;
    k.addEventListener("change", () => { t.placeholder = placeholders[k.value] || ""; });
    const li = h("li", { class: "probe-row" },
      h("label", { for: k.id }, "Kind", k),
      h("label", { for: t.id, class: "target" }, "Target", t),
      h("label", { for: iv.id }, "Interval", iv));
    const rm = h("button", { type: "button", class: "remove", "aria-label": `Remove probe ${n}` }, "Remove") as HTMLButtonElement;
    rm.addEventListener("click", () => { li.remove(); if (!list.children.length) addRow(); });
    li.append(rm);
    list.append(li);
    return t;
  };
  addRow();
  const add = h("button", { type: "button", id: "probe-add" }, "Add a probe");
  add.addEventListener("click", () => addRow().focus());
  const submit = h("button", { type: "submit", id: "probe-submit" }, "Dispatch probe set") as HTMLButtonElement;
  // An id for the dispatch, kept until it is known to have committed or
  // been refused, so a retry after a lost answer or a failover does not
  // dispatch twice.
  let pendingId: string | null = null;
  const form = h("form", { id: "probe-form", class: "probe-form", novalidate: "" },
    h("fieldset", {},
      h("legend", {}, `Define a probe set for tenant ${tenant}`),
      h("label", { for: selector.id }, "Agents (selector)", selector),
      h("p", { class: "muted help", id: "probe-selector-help" },
        "all (every agent of the tenant), none, or key=value terms joined by commas that must all hold; keys: agent, host, os, arch, mode, version (e.g. os=linux,mode=ebpf)."),
      list, h("p", { class: "actions" }, add),
      h("p", { class: "muted help" }, "The selected agents replace their probes with this set. Kinds: tcp host:port, http(s) URL, dns name, icmp host; interval 1s to 1h (30s when empty). The node checks every target against the SSRF guard and this tenant's allowed ranges."),
      errors, h("p", {}, submit), status)) as HTMLFormElement;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errors.replaceChildren();
    status.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) { el.removeAttribute("aria-invalid"); el.removeAttribute("aria-errormessage"); }
    const problems: [HTMLElement, string][] = [];
    const sel = selector.value;
    const selErr = validateSelector(sel);
    if (selErr) problems.push([selector, selErr]);
    const probes: Probe[] = [];
    list.querySelectorAll<HTMLLIElement>("li.probe-row").forEach((li, i) => {
      const [k, t, iv] = [li.querySelector("select")!, ...li.querySelectorAll("input")] as [HTMLSelectElement, HTMLInputElement, HTMLInputElement];
      const p: Probe = { kind: k.value, target: t.value.trim() };
      if (iv.value.trim()) p.interval = iv.value.trim();
      const err = validateProbe(p);
      if (err) problems.push([err.startsWith("interval") ? iv : err.startsWith("kind") ? k : t, `probes[${i}]: ${err}`]);
      probes.push(p);
    });
    if (problems.length) {
      errors.append(h("p", { class: "error", id: "probe-form-invalid" }, `Not dispatched: ${problems.length === 1 ? "a field needs" : `${problems.length} fields need`} fixing.`),
        h("ul", { class: "error" }, ...problems.map(([el, msg], i) => {
          el.setAttribute("aria-invalid", "true");
          el.setAttribute("aria-errormessage", `probe-err-${i}`);
          return h("li", { id: `probe-err-${i}` }, msg);
        })));
      problems[0][0].focus();
      return;
    }
    pendingId ||= `probes-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    submit.disabled = true;
    try {
      const d = await api<Dispatch>("POST", tpath(tenant, "/dispatches"), { id: pendingId, selector: sel, kind: "config", payload: { probes } }, signal);
      pendingId = null;
      status.textContent = `Dispatched ${d.id}: fencing token ${d.token}, issued by node ${d.node}, Raft index ${d.index}.`;
      await dispatched(d);
    } catch (e) {
      if (e instanceof DOMException && e.name === "AbortError") return;
      if (e instanceof APIError && e.status === 401) { report(e); return; }
      // The node's refusal, as it said it. A 400 committed nothing, so
      // the next try is a new dispatch; otherwise the same id is sent
      // again, which the node applies at most once.
      if (e instanceof APIError && e.status === 400) pendingId = null;
      errors.append(h("div", {}, h("p", { class: "error", id: "probe-form-server-error" }, e instanceof APIError ? e.message : String(e)),
        e instanceof APIError && e.hint ? h("p", { class: "hint", id: "probe-form-server-hint" }, `What to do: ${e.hint}`) : null,
        pendingId ? h("p", { class: "muted" }, `Sending again retries dispatch ${pendingId}: the node applies an id once.`) : null));
    } finally { submit.disabled = false; }
  });
  return form;
}

// pageProbes: for one of the caller's tenants (a picker when there are
// several), its probe sets, the results as charts and, for an operator,
// the form.
export async function pageProbes(signal: AbortSignal) {
  const tenants = myTenants();
  if (!tenants.length) {
    show(h("h1", {}, "Probes"), h("p", {}, "Probe sets belong to tenants, and you are a member of none here. A region admin reads a tenant's probes with a break-glass grant the tenant's Admin approves."));
    return;
  }
  const asked = new URLSearchParams(location.hash.split("?")[1] || "").get("tenant");
  const tenant = asked && tenants.includes(asked) ? asked : tenants[0];
  const picker = tenants.length > 1 ? (() => {
    const s = h("select", { id: "probe-tenant" }, ...tenants.map((t) => h("option", { value: t }, t))) as HTMLSelectElement;
    s.value = tenant;
    s.addEventListener("change", () => { location.hash = `#/probes?tenant=${encodeURIComponent(s.value)}`; });
    return h("label", { for: "probe-tenant", class: "tenant-picker" }, "Tenant", s);
  })() : null;

  const allowBox = h("p", { class: "muted", id: "probe-allow" });
  const setsBox = h("div", {}, "Loading…");
  const latestBox = h("div");
  const errBox = h("div");
  const updated = h("p", { class: "muted", "aria-live": "polite" });
  const liveNote = h("p", { class: "live-note" });
  let seconds = 900;
  const success = new Chart({ id: "chart-probes-success", title: "Probe success by target", unit: "ratio", signal, height: 180, describe: "share of the agents whose last run succeeded" });
  const duration = new Chart({ id: "chart-probes-duration", title: "Probe duration by target", unit: "ms", signal, height: 180, describe: "the slowest agent's last run" });
  let running = false, again = false;
  const run = async () => {
    if (running) { again = true; return; }
    running = true;
    try { do { again = false; await refresh(); } while (again && !signal.aborted); } finally { running = false; }
  };
  const form = can(tenant, "operator") ? probeForm(tenant, signal, async () => { await run(); }) : null;
  show(h("h1", {}, "Probes"), picker || h("p", { class: "muted" }, `Tenant ${tenant}.`),
    h("p", {}, "A probe set is a config dispatch: fenced by the dispatch lease (its fencing token and issuing node are below), delivered to the agents its selector picks, which run the probes and export their results."),
    allowBox, form || h("p", { class: "muted", id: "probe-no-form" }, "Defining probe sets needs the operator role in this tenant."),
    h("h2", {}, "Probe sets"), setsBox,
    h("h2", {}, "Results"), windowPicker(seconds, (s) => { seconds = s; void run(); }), errBox,
    h("div", { class: "charts" }, success.el, duration.el), latestBox, updated, liveNote);

  const refresh = async () => {
    try {
      const g = grid(seconds);
      const label = (m: Record<string, string>) => `${m.kind || "?"} ${m.target || "?"}`;
      const [sets, agents, settings, ps, pd, latest] = await Promise.all([
        listDispatches(tenant, signal),
        api<AgentRecord[]>("GET", tpath(tenant, "/agents"), undefined, signal),
        api<{ probe_allow?: string[] }>("GET", tpath(tenant, "/settings"), undefined, signal).catch(() => null),
        queryRange(tenant, "avg by (kind, target) (outpost_probe_success)", g, signal),
        queryRange(tenant, "max by (kind, target) (outpost_probe_duration_seconds)", g, signal),
        queryInstant(tenant, `label_replace(outpost_probe_success, "what", "success", "", "") or label_replace(outpost_probe_duration_seconds, "what", "duration", "", "") or label_replace(outpost_probe_refused, "what", "refused", "", "")`, signal, g.end),
      ]);
      errBox.replaceChildren();
      allowBox.textContent = settings
        ? settings.probe_allow?.length
          ? `This tenant's probes may reach ${settings.probe_allow.join(", ")} although the SSRF guard refuses such addresses (the tenant's probe_allow setting).`
          : "This tenant allows no guarded range: probes of loopback, link-local, cloud metadata, multicast and unspecified addresses are refused (a tenant Admin can allow a range in the tenant's settings)."
        : "";

      // The probe sets, newest first, with where each is applied now.
      const byDispatch = new Map<string, AgentRecord[]>();
      for (const a of agents) if (a.config?.dispatch) byDispatch.set(a.config.dispatch, [...(byDispatch.get(a.config.dispatch) || []), a]);
      const shown = sets.slice().sort((a, b) => b.index - a.index).slice(0, 50);
      setsBox.replaceChildren(shown.length ? table(["Dispatch", "Issued", "Selector", "Probes", "Issuing node", "Fencing token", "Raft index", "Current on"],
        shown.map((d) => {
          const probes = d.payload?.probes || [];
          const on = byDispatch.get(d.id) || [];
          return [d.id, fmtTime(d.issued), d.selector || "all", probes.length ? h("ul", { class: "plain" }, ...probes.map((p) => h("li", {}, probeText(p)))) : "no probes (clears them)",
            d.node, String(d.token), String(d.index),
            on.length ? h("span", {}, ...on.map((a) => chip(`${a.host}: ${a.config!.status}`, a.config!.status === "applied" ? "ok" : "bad", a.config!.error))) : "–"];
        }), `${sets.length} config dispatch(es) of tenant ${tenant}${sets.length > shown.length ? `, the newest ${shown.length} shown` : ""}`, { id: "probe-sets" })
        : h("p", { class: "muted", id: "probe-sets-empty" }, `Tenant ${tenant} has dispatched no probe set yet.`));

      // The results.
      const empty = "No probe results in this window.";
      success.update(g, lines(g, ps, label), { answers: [ps], empty, gapWhy: "no agent reported the probe then (not connected, its exports lost, or the probe not in its set)" });
      duration.update(g, lines(g, pd, label, 1000), { answers: [pd], empty, gapWhy: "no agent reported the probe then (not connected, its exports lost, or the probe not in its set)" });
      type Row = { agent: string; host: string; probe: string; success?: number; duration?: number; refused?: string };
      const rows = new Map<string, Row>();
      for (const s of latest.data?.result || []) {
        const key = `${s.metric.agent}|${label(s.metric)}`;
        const r = rows.get(key) || { agent: s.metric.agent || "", host: s.metric.host || s.metric.agent || "?", probe: label(s.metric) };
        const v = Number(s.value?.[1]);
        if (s.metric.what === "success") r.success = v; else if (s.metric.what === "duration") r.duration = v * 1000; else if (v > 0) r.refused = s.metric.rule || "refused";
        rows.set(key, r);
      }
      const list = [...rows.values()].sort((a, b) => a.probe.localeCompare(b.probe) || a.host.localeCompare(b.host));
      latestBox.replaceChildren(list.length ? table(["Probe", "Agent", "Last result", "Duration", "Refused by the SSRF guard"], list.map((r) => [
        r.probe, r.agent ? h("a", { href: `#/agents/${encodeURIComponent(tenant)}/${encodeURIComponent(r.agent)}` }, r.host) : r.host,
        r.success === undefined ? "–" : r.success >= 1 ? chip("ok", "ok") : chip("failed", "bad"), fmt("ms", r.duration), r.refused || "–",
      ]), "Each agent's latest result", { id: "probe-latest" }) : "");
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    } catch (e) {
      if (signal.aborted) return;
      errBox.replaceChildren();
      if (setsBox.textContent === "Loading…") setsBox.replaceChildren();
      report(e, errBox);
    }
  };
  await refreshLoop(signal, tenant, run, liveNote);
}
