import "./drills.css";
import { APIError, api, chip, fmtTime, follow, h, isRegionAdmin, main, show, statusKind, who } from "../lib";
import { DrillMode, DrillRun, DrillState, Entry, Event, RegionView, SavedDrill, StaleProbe, secs } from "./drillrun";

// pageDrills: run a failover drill on the node serving this page, watch
// its timeline live, and read past drills. The browser talks to this node
// only (the UI's CSP allows no other origin), and the drill routes act on
// the node that answers them, so every control here faults this node;
// another node is drilled from its own UI, linked from the nodes table.
// A finished run's report is kept in the region's key/value store under
// drill-reports/ (an audited write, like every drill action); the drill
// actions themselves, the CLI's included, are read from the audit log.

const reportPrefix = "drill-reports/";
const pastShown = 20;

type Audited = { seq: number; data: string };

const now = () => performance.now();
const sleep = (ms: number, signal: AbortSignal) => new Promise<void>((res) => {
  const t = setTimeout(res, ms);
  signal.addEventListener("abort", () => { clearTimeout(t); res(); }, { once: true });
});

// refusal shows an API refusal verbatim: the server's error, then its hint.
function refusal(e: unknown): HTMLElement {
  if (e instanceof APIError) {
    return h("div", { class: "drill-refusal", role: "alert" },
      h("p", { class: "error" }, `Refused (HTTP ${e.status}): ${e.message}`),
      e.hint ? h("p", {}, `Hint: ${e.hint}`) : null);
  }
  return h("div", { class: "drill-refusal", role: "alert" }, h("p", { class: "error" }, `Failed: ${e instanceof Error ? e.message : String(e)}`));
}

// confirmDialog asks before a drill, in a modal dialog (Escape cancels;
// Cancel has the focus).
function confirmDialog(title: string, text: string, yes: string): Promise<boolean> {
  const yesB = h("button", { type: "button", id: "confirm-yes", class: "drill-danger" }, yes);
  const noB = h("button", { type: "button", id: "confirm-no" }, "Cancel");
  const d = h("dialog", { class: "drill-confirm", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
    h("h2", { id: "confirm-title" }, title), h("p", { id: "confirm-text" }, text), h("div", { class: "actions" }, yesB, noB)) as HTMLDialogElement;
  main().append(d);
  return new Promise((res) => {
    yesB.addEventListener("click", () => d.close("yes"));
    noB.addEventListener("click", () => d.close("no"));
    d.addEventListener("close", () => { res(d.returnValue === "yes"); d.remove(); }, { once: true });
    d.showModal();
    noB.focus();
  });
}

function timelineList(entries: Entry[], id?: string): HTMLElement {
  return h("ol", { class: "drill-timeline", ...(id ? { id } : {}) },
    ...entries.map((e) => h("li", { "data-kind": e.kind, class: `drill-${e.kind}` },
      h("span", { class: "drill-t" }, `+${secs(e.t)}`), h("span", {}, e.text))));
}

const ms = (v: number | undefined) => (v === undefined ? "–" : secs(v));

// summary is the measured part of a report, as a description list.
function summary(r: SavedDrill): HTMLElement {
  const row = (term: string, value: string | Node, id?: string) => [h("dt", {}, term), h("dd", id ? { id } : {}, value)];
  const outcomeKind = r.outcome === "recovered" ? "ok" : r.outcome === "running" ? "" : "bad";
  const staleOK = r.stale ? (r.stale.outcome === "refused" ? "ok" : r.stale.outcome === "accepted" ? "bad" : "warn") : "";
  return h("dl", { class: "drill-summary" },
    ...row("Outcome", chip(r.outcome, outcomeKind), "drill-outcome"),
    ...row("Fault", `${r.mode} ${r.node}${r.duration_ms ? ` for ${secs(r.duration_ms)}` : ""}${r.restart_after_ms !== undefined ? `, restart after ${secs(r.restart_after_ms)}` : ""}, by ${r.actor} at ${fmtTime(r.started)} UTC`),
    ...row("Fencing token", h("span", {}, h("span", { id: "drill-start-token" }, String(r.start.token)), " → ",
      h("span", { id: "drill-new-token" }, r.new_token === undefined ? "–" : String(r.new_token)),
      r.new_holder ? ` (lease now held by ${r.new_holder})` : "")),
    ...row("New leader", r.new_leader ? `${r.new_leader} at +${ms(r.leader_elected_ms)}` : "–"),
    ...row(`Without a leader (as ${r.node} saw it)`, ms(r.no_leader_ms)),
    ...row(`Without a lease holder (as ${r.node} saw it)`, r.no_lease_ms === undefined ? (r.lease_acquired_ms === undefined ? "–" : `new lease at +${ms(r.lease_acquired_ms)}`) : `${ms(r.no_lease_ms)} (new lease at +${ms(r.lease_acquired_ms)})`),
    ...row("Healed", ms(r.healed_ms)),
    ...row("Region healthy again", ms(r.recovered_ms), "drill-recovered"),
    ...row("Stale dispatch", r.stale ? chip(`${r.stale.outcome} (token ${r.stale.token})`, staleOK as "ok" | "bad" | "warn") : "not sent"));
}

export async function pageDrills(signal: AbortSignal) {
  if (!isRegionAdmin()) {
    show(h("h1", {}, "Drills"), h("p", {}, "Failover drills need a region admin: they cut a node off, move Raft leadership and stop nodes. Ask a region admin of your region to run one."));
    return;
  }
  const region = h("div", { id: "drill-region", class: "cards" });
  const self = h("p", { id: "drill-self" });
  const disabled = h("p", { id: "drill-disabled", class: "banner" });
  disabled.hidden = true;
  const nodesBox = h("div", { id: "drill-nodes" });
  const pollNote = h("p", { class: "muted", id: "drill-poll" });

  // The controls, drawn once (redrawing would take the focus away).
  const isolateIn = h("input", { id: "isolate-seconds", type: "number", min: "1", step: "1", value: "5", inputmode: "numeric" }) as HTMLInputElement;
  const stopIn = h("input", { id: "stop-seconds", type: "number", min: "0", step: "1", value: "2", inputmode: "numeric" }) as HTMLInputElement;
  const isolateB = h("button", { type: "button", id: "drill-isolate", class: "drill-danger" }, "Isolate this node…") as HTMLButtonElement;
  const transferB = h("button", { type: "button", id: "drill-transfer", class: "drill-danger" }, "Transfer leadership…") as HTMLButtonElement;
  const stopB = h("button", { type: "button", id: "drill-stop", class: "drill-danger" }, "Stop this node…") as HTMLButtonElement;
  const healB = h("button", { type: "button", id: "drill-heal" }, "Heal this node now") as HTMLButtonElement;
  const staleB = h("button", { type: "button", id: "drill-stale" }, "Send a stale dispatch…") as HTMLButtonElement;
  const transferWhy = h("p", { class: "muted", id: "drill-transfer-why" });
  const result = h("div", { id: "drill-result", "aria-live": "polite" });
  const controls = h("div", { class: "drill-controls" },
    h("fieldset", {}, h("legend", {}, "Isolate"),
      h("label", { for: "isolate-seconds" }, "Cut off for (seconds)", isolateIn), isolateB,
      h("p", { class: "muted" }, "Cuts this node off from its peers on the Raft port, both ways (its API stays up), and heals it by itself after that. If it leads or holds the lease, the others elect a leader and take the lease over under a higher fencing token.")),
    h("fieldset", {}, h("legend", {}, "Transfer"), transferB, transferWhy,
      h("p", { class: "muted" }, "The planned handoff: this node releases the dispatch lease and hands Raft leadership to another node.")),
    h("fieldset", {}, h("legend", {}, "Stop"),
      h("label", { for: "stop-seconds" }, "Restart after (seconds)", stopIn), stopB,
      h("p", { class: "muted" }, "Kills this node as a crash would. This page loses its node until it is back: outpost dev restarts it after the delay; under outpost serve its supervisor must.")),
    h("fieldset", {}, h("legend", {}, "Recover and check"), healB, staleB,
      h("p", { class: "muted" }, "Heal lifts a cut at once. A stale dispatch proposes a dispatch under the last token this node held: once another node holds the lease, the fence must refuse it.")));

  const liveBox = h("div", { id: "drill-live" }, h("p", { class: "muted" }, "No drill run from this page yet. The timeline of the next one shows here, live."));
  const pastBox = h("div", { id: "drill-past" });
  const pastView = h("div", { id: "drill-report-view" });
  const auditBox = h("div", { id: "drill-audit-box" });

  show(h("h1", {}, "Drills"),
    h("p", {}, "A failover drill faults a node and measures how the region recovers: a new Raft leader, the dispatch lease under a higher fencing token, the deposed node fenced. Run drills on a game day, not in the middle of an incident; every drill is recorded in the audit log. For drills measured from every node at once, with load, use outpostctl drill failover."),
    disabled,
    h("h2", {}, "Region"), region, self, nodesBox, pollNote,
    h("h2", { id: "drill-run-h" }, "Run a drill on this node"), controls, result,
    h("h2", { id: "drill-timeline-h" }, "Timeline"), liveBox,
    h("h2", {}, "Past drills"), pastBox, pastView,
    h("h3", {}, "Drill actions in the audit log"), auditBox);

  let reg: RegionView | null = null;
  let ds: DrillState | null = null;
  let lastErr = "";
  let run = null as DrillRun | null;
  let t0 = 0;
  signal.addEventListener("abort", () => {
    if (!run || run.done) return;
    // Left mid-drill: keep what was measured (best effort, the page is
    // gone), so the drill still shows among the past ones.
    run.abandon(now() - t0);
    const key = reportPrefix + run.r.id;
    void api("PUT", `/api/v1/kv/${key.split("/").map(encodeURIComponent).join("/")}`, run.r).catch(() => undefined);
  });

  const nodeID = () => ds?.node || reg?.node || "this node";

  // drawRegion updates the region's state in place.
  let nodesSig = "";
  const cells = new Map<string, HTMLElement[]>();
  const drawRegion = () => {
    if (!reg || !ds) return;
    const me = ds.node;
    const lease = reg.lease && reg.lease.holder ? reg.lease : null;
    const card = (label: string, value: string, id: string) =>
      h("div", { class: "card" }, h("div", { class: "value", id }, value), h("div", { class: "label" }, label));
    const cut = ds.isolated || (ds.blocked || []).length > 0;
    region.replaceChildren(
      card("Raft leader", reg.leader || "none (election)", "drill-leader"),
      card("lease holder · fencing token", lease ? `${lease.holder} · ${lease.token}` : `none · ${reg.lease?.token ?? 0}`, "drill-lease"),
      card("this node", me, "drill-node"),
      card("drill state of this node", cut ? `cut off${ds.heals_in_ms ? `, heals in ${secs(ds.heals_in_ms)}` : ""}` : "not cut off", "drill-cut"));
    const roles = [reg.leader === me ? "the Raft leader" : "a follower", lease?.holder === me ? "holds the dispatch lease" : "does not hold the lease"];
    self.textContent = `This page is served by node ${me}, in region ${reg.region}: it is ${roles.join(" and ")}. Drills here act on ${me}.`;
    self.dataset.leader = String(reg.leader === me);
    self.dataset.holder = String(lease?.holder === me);
    disabled.hidden = ds.enabled;
    disabled.textContent = ds.enabled ? "" : `Drills are disabled on ${me} (drills.enabled is off in its config): it refuses them, and says why.`;
    const sig = reg.nodes.map((n) => `${n.id} ${n.api_url}`).join("|");
    if (sig !== nodesSig) {
      nodesSig = sig;
      cells.clear();
      const rows = reg.nodes.map((n) => {
        const c = [h("td", {}), h("td", {}), h("td", {}), h("td", {})];
        cells.set(n.id, c);
        const safe = /^https?:\/\//.test(n.api_url);
        const drill = n.id === me ? h("span", {}, "this page") : safe ? h("a", { href: `${n.api_url.replace(/\/$/, "")}/#/drills` }, `open ${n.id}'s Drills page`) : "–";
        return h("tr", { "data-node": n.id }, h("th", { scope: "row" }, n.id), ...c, h("td", {}, drill));
      });
      nodesBox.replaceChildren(h("table", { id: "drill-nodes-table" },
        h("caption", {}, `Nodes as ${me} sees them (a node cut off sees its peers as unreachable)`),
        h("thead", {}, h("tr", {}, ...["Node", "Raft state", "Suffrage", "Applied index", "Status", "Drill it"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, ...rows)));
    }
    for (const n of reg.nodes) {
      const c = cells.get(n.id);
      if (!c) continue;
      c[0].replaceChildren(chip(n.raft_state, statusKind(n.raft_state)));
      c[1].textContent = n.suffrage;
      c[2].textContent = String(n.applied_index);
      c[3].replaceChildren(n.error ? chip(n.error.slice(0, 80), "bad", n.error) : chip("up", "ok"));
    }
    const busy = run !== null && !run.done;
    isolateB.disabled = busy || cut;
    stopB.disabled = busy;
    transferB.disabled = busy || reg.leader !== me;
    transferWhy.textContent = reg.leader === me ? "" : `Only the Raft leader can hand leadership over; ${reg.leader ? `open ${reg.leader}'s Drills page` : "wait for a leader"}.`;
    healB.disabled = !cut;
    staleB.disabled = busy;
    isolateB.textContent = `Isolate ${me}…`;
    stopB.textContent = `Stop ${me}…`;
    healB.textContent = `Heal ${me} now`;
  };

  // drawRun redraws the live timeline.
  const drawRun = () => {
    if (!run) return;
    const r = run.r;
    liveBox.replaceChildren(
      h("p", { id: "drill-run-status", "data-outcome": r.outcome, "aria-live": "polite" },
        r.outcome === "running" ? `Running: ${r.mode} ${r.node}, +${secs(now() - t0)} — keep this page open until the region is healthy again.` : `Drill ${r.id}: ${r.outcome}.`),
      summary(r),
      h("p", { class: "muted" }, `Times run from the moment the fault was sent, as ${r.node} (this page's node) saw them through its event stream and a poll about once a second.` +
        (r.mode === "isolate" ? ` While cut off, ${r.node} learns of the new leader and lease only after the heal; outpostctl drill failover --mode isolate measures them from the survivors.` : "")),
      timelineList(r.timeline, "drill-timeline"));
  };

  // poll reads the region and this node's drill state.
  const poll = async () => {
    try {
      [reg, ds] = await Promise.all([
        api<RegionView>("GET", "/api/v1/region", undefined, signal),
        api<DrillState>("GET", "/api/v1/drills", undefined, signal),
      ]);
      lastErr = "";
      pollNote.textContent = `Updated ${new Date().toLocaleTimeString()} (live: ${nodeID()}'s event stream and a poll every second).`;
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof APIError && e.status === 401) { location.hash = "#/login"; return; }
      lastErr = e instanceof Error ? e.message : String(e);
      pollNote.textContent = `${nodeID()} did not answer at ${new Date().toLocaleTimeString()}: ${lastErr}`;
    }
    drawRegion();
    if (run && !run.done) {
      const ended = lastErr ? run.poll(now() - t0, null, null, lastErr) : run.poll(now() - t0, reg, ds, "");
      if (ended) void finish();
      drawRun();
    }
  };

  // finish checks the fence (when this node held the lease and another
  // holds it now), then keeps the report.
  const finish = async () => {
    const r = run!;
    drawRun();
    if (r.r.outcome === "recovered" && r.hitHolder() && r.r.new_holder && r.r.new_holder !== r.r.node) {
      try {
        const p = await api<StaleProbe>("POST", "/api/v1/drills/stale", undefined, signal);
        r.stale(now() - t0, p, reg?.lease?.holder || "");
      } catch (e) {
        r.add(now() - t0, "stale-untested", `stale dispatch not sent: ${e instanceof APIError ? `${e.message}${e.hint ? ` (${e.hint})` : ""}` : String(e)}`);
      }
    }
    drawRun();
    await save(r.r);
    await Promise.all([loadPast(), loadAudit()]);
  };

  const save = async (rep: SavedDrill) => {
    const key = reportPrefix + rep.id;
    try {
      await api("PUT", `/api/v1/kv/${key.split("/").map(encodeURIComponent).join("/")}`, rep, signal);
      result.replaceChildren(h("p", {}, `Report saved as ${key} in the region's key/value store.`), downloadLink(rep));
    } catch (e) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, `The report could not be saved: ${e instanceof Error ? e.message : String(e)}. Download it instead:`), downloadLink(rep));
    }
  };

  let blobURL = "";
  signal.addEventListener("abort", () => { if (blobURL) URL.revokeObjectURL(blobURL); });
  const downloadLink = (rep: SavedDrill) => {
    if (blobURL) URL.revokeObjectURL(blobURL);
    blobURL = URL.createObjectURL(new Blob([JSON.stringify(rep, null, 2) + "\n"], { type: "application/json" }));
    return h("p", {}, h("a", { href: blobURL, download: `drill-${rep.id}.json` }, `Download drill-${rep.id}.json`));
  };

  // begin runs one drill: confirm, snapshot, send the fault, then the poll
  // and the event stream carry the timeline.
  const begin = async (mode: DrillMode, title: string, text: string, yes: string, send: () => Promise<unknown>, params: { duration_ms?: number; restart_after_ms?: number }) => {
    if (!(await confirmDialog(title, text, yes))) return;
    result.replaceChildren();
    await poll();
    if (!reg || !ds) { result.replaceChildren(refusal(new Error(`${nodeID()} does not answer; try again`))); return; }
    run = new DrillRun(mode, ds.node, who?.user || who?.actor || "?", reg, params);
    t0 = now();
    run.start(`drill started: ${mode} ${ds.node}${params.duration_ms ? ` for ${secs(params.duration_ms)}` : ""}${params.restart_after_ms !== undefined ? `, restart after ${secs(params.restart_after_ms)}` : ""}`);
    drawRun();
    drawRegion();
    try {
      await send();
      run.add(now() - t0, "sent", `${ds.node} accepted the ${mode} drill`);
    } catch (e) {
      result.replaceChildren(refusal(e));
      run.refused(e instanceof APIError ? `refused: ${e.message}${e.hint ? ` (hint: ${e.hint})` : ""}` : `failed: ${String(e)}`);
    }
    drawRun();
    drawRegion();
  };

  const seconds = (input: HTMLInputElement, label: string): number | null => {
    const v = Number(input.value);
    if (!input.value || !Number.isFinite(v) || v < 0) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, `${label}: enter a number of seconds.`));
      input.focus();
      return null;
    }
    return Math.round(v * 1000);
  };

  isolateB.addEventListener("click", () => {
    const d = seconds(isolateIn, "Cut off for");
    if (d === null) return;
    const me = nodeID();
    void begin("isolate", `Isolate ${me} for ${secs(d)}?`,
      `${me} is cut off from every peer on the Raft port for ${secs(d)}, then heals by itself.${self.dataset.holder === "true" ? ` It holds the dispatch lease: the others elect a leader and take the lease over, and ${me} must fence itself.` : ""} This page stays connected to ${me}, which sees the others only after the heal.`,
      `Isolate ${me}`, () => api("POST", "/api/v1/drills/isolate", { duration_ms: d }, signal), { duration_ms: d });
  });
  transferB.addEventListener("click", () => {
    const me = nodeID();
    void begin("transfer", `Transfer leadership away from ${me}?`,
      `${me} releases the dispatch lease and hands Raft leadership to another node, which acquires the lease under a higher fencing token.`,
      "Transfer leadership", () => api("POST", "/api/v1/drills/transfer", undefined, signal), {});
  });
  stopB.addEventListener("click", () => {
    const d = seconds(stopIn, "Restart after");
    if (d === null) return;
    const me = nodeID();
    void begin("stop", `Stop ${me}?`,
      `${me} is killed as a crash would kill it, and restarts after ${secs(d)} where something restarts it (outpost dev does; under outpost serve its supervisor must). This page is served by ${me}: it shows the node down until then.`,
      `Stop ${me}`, () => api("POST", "/api/v1/drills/stop", { restart_after_ms: d }, signal), { restart_after_ms: d });
  });
  healB.addEventListener("click", async () => {
    healB.disabled = true;
    try {
      await api("POST", "/api/v1/drills/heal", undefined, signal);
      if (run && !run.done) run.healSent(now() - t0);
      result.replaceChildren(h("p", {}, `${nodeID()} healed.`));
    } catch (e) { result.replaceChildren(refusal(e)); }
    await poll();
  });
  staleB.addEventListener("click", async () => {
    const me = nodeID();
    if (!(await confirmDialog(`Send a stale dispatch from ${me}?`,
      `${me} proposes a dispatch under the last fencing token it held, bypassing its own fence. If another node holds the lease under a higher token, the region must refuse it; if ${me} holds the lease, it commits (a probe dispatch, kind drill.probe).`, "Send it"))) return;
    try {
      const p = await api<StaleProbe>("POST", "/api/v1/drills/stale", undefined, signal);
      const holder = reg?.lease?.holder || "";
      const kind = p.outcome === "refused" ? "ok" : p.outcome === "accepted" && holder !== me ? "bad" : "warn";
      result.replaceChildren(h("p", { id: "drill-stale-result" }, `Stale dispatch ${p.id} under token ${p.token}: `, chip(p.outcome, kind), p.error ? ` ${p.error}` : ""));
      if (run && !run.done) { run.stale(now() - t0, p, holder); drawRun(); }
    } catch (e) { result.replaceChildren(refusal(e)); }
  });

  // Past drills: the reports kept by this page, newest first.
  let pastKeys = "";
  const loadPast = async () => {
    try {
      const keys = (await api<{ key: string }[]>("GET", `/api/v1/kv?prefix=${encodeURIComponent(reportPrefix)}`, undefined, signal))
        .map((k) => k.key).sort().reverse().slice(0, pastShown);
      const sig = keys.join("|");
      if (sig === pastKeys) return;
      pastKeys = sig;
      const reps: SavedDrill[] = [];
      for (const k of keys) {
        try {
          reps.push(await api<SavedDrill>("GET", `/api/v1/kv/${k.split("/").map(encodeURIComponent).join("/")}`, undefined, signal));
        } catch (e) { if (signal.aborted) return; /* deleted meanwhile */ }
      }
      drawPast(reps.filter((r) => r && r.version === 1 && Array.isArray(r.timeline)));
    } catch (e) {
      if (signal.aborted) return;
      pastBox.replaceChildren(h("p", { class: "error" }, `Could not read the past drills: ${e instanceof Error ? e.message : String(e)}`));
    }
  };
  const drawPast = (reps: SavedDrill[]) => {
    if (!reps.length) {
      pastBox.replaceChildren(h("p", { class: "muted" }, "No drill reports kept yet: a drill run from this page keeps its report when it ends."));
      return;
    }
    const rows = reps.map((r) => {
      const b = h("button", { type: "button", "aria-expanded": "false", "aria-controls": "drill-report-view", "aria-label": `Show the report of ${r.id}` }, "Show");
      b.addEventListener("click", () => {
        const open = b.getAttribute("aria-expanded") === "true";
        for (const o of pastBox.querySelectorAll("button[aria-expanded]")) o.setAttribute("aria-expanded", "false");
        if (open) { pastView.replaceChildren(); return; }
        b.setAttribute("aria-expanded", "true");
        pastView.replaceChildren(h("h3", {}, `Drill ${r.id}`), summary(r), timelineList(r.timeline), downloadLink(r));
      });
      const kind = r.outcome === "recovered" ? "ok" : "bad";
      return h("tr", { "data-id": r.id },
        h("td", {}, h("time", { datetime: r.started }, fmtTime(r.started))), h("td", {}, `${r.mode} ${r.node}${r.duration_ms ? ` (${secs(r.duration_ms)})` : ""}`),
        h("td", {}, r.actor), h("td", {}, r.new_leader || "–"), h("td", {}, `${r.start.token} → ${r.new_token ?? "–"}`),
        h("td", {}, ms(r.no_leader_ms)), h("td", {}, ms(r.no_lease_ms)), h("td", {}, ms(r.recovered_ms)),
        h("td", {}, chip(r.outcome, kind)), h("td", {}, b));
    });
    pastBox.replaceChildren(h("table", { id: "drill-reports" },
      h("caption", {}, `The last ${reps.length} drill report(s) kept by this page (key/value store, ${reportPrefix}), newest first`),
      h("thead", {}, h("tr", {}, ...["Started (UTC)", "Fault", "By", "New leader", "Fencing token", "No leader", "No lease holder", "Healthy after", "Outcome", "Report"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, ...rows)));
  };

  // The drill actions in the audit log (the CLI's too), newest first.
  const loadAudit = async () => {
    try {
      const head = await api<{ size: number }>("GET", "/api/v1/audit?limit=1", undefined, signal);
      const from = Math.max(0, head.size - 1000);
      const page = await api<{ entries: Audited[] }>("GET", `/api/v1/audit?from=${from}&size=${head.size}&limit=1000`, undefined, signal);
      const recs = page.entries.map((e) => { try { return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(e.data), (c) => c.charCodeAt(0)))); } catch { return null; } })
        .filter((r) => r && typeof r.action === "string" && r.action.startsWith("drill.")).reverse().slice(0, 50);
      auditBox.replaceChildren(recs.length
        ? h("table", { id: "drill-audit" }, h("caption", {}, `Drill actions among the last ${page.entries.length} audit records, newest first (the Audit page verifies them)`),
          h("thead", {}, h("tr", {}, ...["Seq", "Time (UTC)", "Actor", "Action", "Node", "Detail"].map((x) => h("th", { scope: "col" }, x)))),
          h("tbody", {}, ...recs.map((r) => h("tr", {}, h("td", {}, String(r.seq)), h("td", {}, fmtTime(r.time)), h("td", {}, r.actor || ""),
            h("td", {}, r.action), h("td", {}, String(r.entity || "").replace(/^node\//, "")), h("td", {}, r.detail ? JSON.stringify(r.detail) : "")))))
        : h("p", { class: "muted" }, "No drill action among the recent audit records."));
    } catch (e) {
      if (signal.aborted) return;
      auditBox.replaceChildren(h("p", { class: "error" }, `Could not read the audit log: ${e instanceof Error ? e.message : String(e)}`));
    }
  };

  await poll();
  await Promise.all([loadPast(), loadAudit()]);
  void follow(signal, (line) => {
    let ev: Event;
    try { ev = JSON.parse(line); } catch { return; }
    if (ev.kind === "heartbeat" || !run || run.done) return;
    run.event(now() - t0, ev);
    drawRun();
  });
  void (async () => {
    let n = 0;
    while (!signal.aborted) {
      await sleep(1000, signal);
      if (signal.aborted) return;
      await poll();
      if (++n % 15 === 0 && (!run || run.done)) { await loadAudit(); await loadPast(); }
    }
  })();
}
