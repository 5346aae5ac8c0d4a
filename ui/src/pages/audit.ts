import "./audit.css";
import { APIError, api, can, chip, errorText, fmtTime, h, isRegionAdmin, myTenants, report, show, tpath, who } from "../lib";
import { b64decode, equalBytes, checkInclusion, leafHash, openCheckpoint, OpenedCheckpoint, TreeBuilder } from "./auditverify";

// pageAudit: browse, filter, verify and export an audit log. A region
// admin reads the region log and the provider stream; a tenant's Admin
// reads that tenant's records of both. Every record shown is checked
// against the signed checkpoint, as `outpostctl audit verify` does: up to
// fullCap records by rebuilding the whole Merkle tree, beyond that (and
// for a tenant, whose records are a subset of the tree) by each shown
// record's inclusion proof.

type Entry = { seq: number; data: string; leaf_hash: string };
type AuditPage = { entries: Entry[]; size: number };
type Val = { text?: string; base64?: string; sha256?: string };
type AuditRecord = {
  seq: number; raft_index?: number; time?: string; node?: string; actor?: string; tenant?: string;
  action?: string; entity?: string; before?: Val; after?: Val; detail?: unknown; outcome?: string;
};

// A stream the caller may read.
type Stream = { key: string; label: string; path: string; provider: boolean; tenant?: string };

// Row is one record as the node served it, with what this page found.
type Row = {
  seq: number; data: string; leaf: string;
  rec: AuditRecord | null; json: string; lower: string;
  // check: "" not checked yet, "busy", "ok" (in the signed tree), "bad"
  // (not), "unproven" (its leaf is right but the tree is not).
  check: "" | "busy" | "ok" | "bad" | "unproven"; why?: string;
};

// fullCap: up to this many records the browser rebuilds the whole tree.
const fullCap = 25000;
// window is how many records a bigger region log loads at a time.
const windowSize = 5000;
// tenantCap bounds one load of a tenant stream ("Load more" goes on).
const tenantCap = 20000;
// proofCap bounds one "check every loaded record" run of inclusion proofs.
const proofCap = 2000;
const pageLimit = 1000;

const decoder = new TextDecoder();
const num = (n: number) => n.toLocaleString("en-US");

function streams(): Stream[] {
  const out: Stream[] = [];
  if (isRegionAdmin()) {
    out.push({ key: "region", label: `Region log (region ${who!.region})`, path: "/api/v1/audit", provider: false });
    out.push({ key: "provider", label: "Provider stream (operators' reach into tenant data)", path: "/api/v1/audit/provider", provider: true });
  }
  for (const t of myTenants()) {
    if (!can(t, "admin")) continue;
    out.push({ key: `tenant:${t}`, label: `Tenant ${t}: its records`, path: tpath(t, "/audit"), provider: false, tenant: t });
    out.push({ key: `tenant-provider:${t}`, label: `Tenant ${t}: provider stream (operators in its data)`, path: tpath(t, "/audit/provider"), provider: true, tenant: t });
  }
  return out;
}

// getText GETs a text answer (a checkpoint, a key) the way api() does JSON.
async function getText(path: string, signal: AbortSignal): Promise<string> {
  const r = await fetch(path, { credentials: "same-origin", signal });
  const text = await r.text();
  if (!r.ok) {
    let msg = `HTTP ${r.status}`, hint: string | undefined;
    try { const e = JSON.parse(text); msg = e.error || msg; hint = e.hint; } catch { /* not JSON */ }
    throw new APIError(r.status, msg, hint);
  }
  return text;
}

// toRow decodes an entry; names maps tenant ids to names, which the
// text filter finds too.
function toRow(e: Entry, names: Map<string, string>): Row {
  let json = "", rec: AuditRecord | null = null;
  try {
    json = decoder.decode(b64decode(e.data));
    rec = JSON.parse(json) as AuditRecord;
    if (typeof rec !== "object" || rec === null) rec = null;
  } catch { rec = null; }
  const name = rec?.tenant ? names.get(rec.tenant) : undefined;
  return { seq: e.seq, data: e.data, leaf: e.leaf_hash, rec, json, lower: (json + (name ? ` ${name}` : "")).toLowerCase(), check: "" };
}

// when shows a record's time (UTC) on two lines, date then time.
function when(iso: string | undefined): HTMLElement | string {
  if (!iso) return "–";
  const [date, time] = fmtTime(iso).split(" ");
  return h("time", { datetime: iso, title: iso }, date, h("br"), time || "");
}

function shorten(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

function valText(v: Val | undefined): string {
  if (!v) return "∅";
  if (v.sha256 !== undefined) return `sha256 ${v.sha256.slice(0, 12)}… (redacted)`;
  if (v.text !== undefined) return `“${shorten(v.text, 80)}”`;
  if (v.base64 !== undefined) return `(${Math.floor((v.base64.length * 3) / 4)} bytes)`;
  return "∅";
}

// what sums a record up in one line: its outcome, detail and change.
function what(rec: AuditRecord): string {
  const parts: string[] = [];
  if (rec.outcome) parts.push(rec.outcome);
  if (rec.detail !== undefined && rec.detail !== null) parts.push(shorten(JSON.stringify(rec.detail), 140));
  if (rec.before || rec.after) parts.push(`${valText(rec.before)} → ${valText(rec.after)}`);
  return parts.join("; ");
}

function describe(r: Row): string {
  const rec = r.rec;
  if (!rec) return `record ${r.seq} (unreadable)`;
  return `record ${r.seq} (${rec.action || "?"} ${rec.entity || "?"} by ${rec.actor || "?"} at ${fmtTime(rec.time)})`;
}

export async function pageAudit(signal: AbortSignal) {
  const list = streams();
  if (list.length === 0) {
    show(h("h1", {}, "Audit"), h("p", {}, "The audit log is for region admins, and for a tenant's Admins (that tenant's records). Ask an Admin of your tenant."));
    return;
  }
  // Controls, drawn once: re-rendering them would take the focus away.
  const streamSel = h("select", { id: "audit-stream" }, ...list.map((s) => h("option", { value: s.key }, s.label))) as HTMLSelectElement;
  const refreshB = h("button", { type: "button", id: "audit-refresh" }, "Refresh") as HTMLButtonElement;
  const actionSel = h("select", { id: "audit-action" }) as HTMLSelectElement;
  const actorSel = h("select", { id: "audit-actor" }) as HTMLSelectElement;
  const entityIn = h("input", { id: "audit-entity", type: "search", placeholder: "node/n1, kv/…", autocomplete: "off" }) as HTMLInputElement;
  const textIn = h("input", { id: "audit-text", type: "search", placeholder: "anything in the record", autocomplete: "off" }) as HTMLInputElement;
  const sizeSel = h("select", { id: "audit-pagesize" }, ...[25, 50, 100, 200].map((n) => h("option", { value: String(n) }, String(n)))) as HTMLSelectElement;
  sizeSel.value = "50";
  const status = h("p", { id: "audit-verify", class: "audit-status", role: "status", "data-state": "busy" }, "Reading the signed checkpoint…");
  const progress = h("progress", { id: "audit-progress", "aria-label": "Records verified", max: "1", value: "0" }) as HTMLProgressElement;
  progress.hidden = true;
  const facts = h("dl", { class: "audit-facts", id: "audit-facts" });
  const note = h("p", { class: "muted", id: "audit-note" });
  const errors = h("div", { id: "audit-errors" });
  const tableBox = h("div", { id: "audit-records-box", class: "audit-records-box" });
  const newerB = h("button", { type: "button", id: "audit-newer" }, "Newer") as HTMLButtonElement;
  const olderB = h("button", { type: "button", id: "audit-older" }, "Older") as HTMLButtonElement;
  const pageInfo = h("span", { id: "audit-pageinfo", class: "muted" });
  const loadMoreB = h("button", { type: "button", id: "audit-load-more" }, "Load older records") as HTMLButtonElement;
  loadMoreB.hidden = true;
  const checkAllB = h("button", { type: "button", id: "audit-check-all" }, "Check every loaded record") as HTMLButtonElement;
  checkAllB.hidden = true;
  const exportB = h("button", { type: "button", id: "audit-export" }, "Export matching records (JSON Lines)") as HTMLButtonElement;
  const exportAllB = h("button", { type: "button", id: "audit-export-all" }, "Export the whole stream (JSON Lines)") as HTMLButtonElement;
  const download = h("p", { id: "audit-download", class: "audit-download", "aria-live": "polite" });

  show(h("h1", {}, "Audit"),
    h("div", { class: "audit-bar" }, h("label", { for: "audit-stream" }, "Stream", streamSel), refreshB),
    h("section", { "aria-labelledby": "audit-verify-h", class: "audit-verify" },
      h("h2", { id: "audit-verify-h" }, "Verification against the signed checkpoint"), status, progress, facts, note),
    errors,
    h("h2", {}, "Records"),
    h("form", { class: "audit-filters", role: "search", "aria-label": "Filter the records" },
      h("label", { for: "audit-action" }, "Action", actionSel),
      h("label", { for: "audit-actor" }, "Actor", actorSel),
      h("label", { for: "audit-entity" }, "Entity contains", entityIn),
      h("label", { for: "audit-text" }, "Text", textIn),
      h("label", { for: "audit-pagesize" }, "Per page", sizeSel)),
    h("div", { class: "audit-pager" }, newerB, olderB, pageInfo, loadMoreB, checkAllB),
    tableBox,
    h("div", { class: "audit-export" }, exportB, exportAllB), download);
  const form = document.querySelector(".audit-filters") as HTMLFormElement;
  form.addEventListener("submit", (e) => e.preventDefault());

  // Records name tenants by id; a region admin reads the names.
  const tenantNames = new Map<string, string>();
  if (isRegionAdmin()) {
    try {
      for (const t of await api<{ name: string; id: string }[]>("GET", "/api/v1/tenants", undefined, signal)) tenantNames.set(t.id, t.name);
    } catch { /* ids then */ }
  }

  // The loaded stream.
  let stream = list[0];
  let cp: OpenedCheckpoint | null = null;
  let vkey = "";
  let bySeq = new Map<number, Row>();
  let rows: Row[] = []; // ascending seq
  let dirty = false;
  let lo = 0; // region streams: the lowest seq loaded
  let tenantNext = 0; // tenant streams: where the next page starts
  let tenantMore = false;
  let fullMode = false;
  let fullDone = false;
  let page = 0;
  let load: AbortController | null = null;
  let objectURL = "";
  signal.addEventListener("abort", () => { load?.abort(); if (objectURL) URL.revokeObjectURL(objectURL); });
  let checkCells = new Map<number, HTMLElement>();
  // tree: the state of the whole-tree check (full mode).
  let tree: { done: number; bad: Row[]; unreadable: Row | null; root: "" | "ok" | "bad" } = { done: 0, bad: [], unreadable: null, root: "" };
  let openError = "";
  let unchecked = false;

  const sorted = () => {
    if (dirty) { rows = [...bySeq.values()].sort((a, b) => a.seq - b.seq); dirty = false; }
    return rows;
  };
  const add = (es: Entry[]) => {
    for (const e of es) {
      if (!bySeq.has(e.seq)) { bySeq.set(e.seq, toRow(e, tenantNames)); dirty = true; }
    }
  };
  const fetchPage = (from: number, sig: AbortSignal) =>
    api<AuditPage>("GET", `${stream.path}?from=${from}&size=${cp!.size}&limit=${pageLimit}`, undefined, sig);

  // The filters.
  const fillSelect = (sel: HTMLSelectElement, values: string[], anyLabel: string) => {
    const want = ["", ...values].join("\n");
    if (sel.dataset.options === want) return;
    const cur = sel.value;
    sel.replaceChildren(h("option", { value: "" }, anyLabel), ...values.map((v) => h("option", { value: v }, v)));
    sel.dataset.options = want;
    sel.value = values.includes(cur) ? cur : "";
  };
  const matching = (): Row[] => {
    const action = actionSel.value, actor = actorSel.value;
    const entity = entityIn.value.trim().toLowerCase(), text = textIn.value.trim().toLowerCase();
    return sorted().filter((r) => (!action || r.rec?.action === action) && (!actor || r.rec?.actor === actor) &&
      (!entity || (r.rec?.entity || "").toLowerCase().includes(entity)) && (!text || r.lower.includes(text) || String(r.seq) === text));
  };

  const checkChip = (r: Row): HTMLElement => {
    switch (r.check) {
      case "ok": return chip("in signed tree", "ok", "this record's bytes are in the tree the checkpoint signs");
      case "bad": return chip("mismatch", "bad", r.why || "not in the signed tree");
      case "unproven": return chip("not proven", "warn", "the tree rebuilt from the records does not match the checkpoint");
      case "busy": return chip("checking…", "");
      default: return chip("not checked", "", "page to it, or use “Check every loaded record”");
    }
  };

  const render = () => {
    const all = sorted();
    const actions = new Set<string>(), actors = new Set<string>();
    for (const r of all) { if (r.rec?.action) actions.add(r.rec.action); if (r.rec?.actor) actors.add(r.rec.actor); }
    fillSelect(actionSel, [...actions].sort(), "any action");
    fillSelect(actorSel, [...actors].sort(), "any actor");
    const match = matching().reverse(); // newest first
    const per = Number(sizeSel.value) || 50;
    const pages = Math.max(1, Math.ceil(match.length / per));
    page = Math.min(page, pages - 1);
    const shown = match.slice(page * per, page * per + per);
    const showTenant = !stream.tenant;
    checkCells = new Map();
    const head = ["Seq", "Time (UTC)", "Actor", "Action", "Entity", ...(showTenant ? ["Tenant"] : []), "What", "Checked"];
    const colClass = (x: string) => `audit-col-${x.split(" ")[0].toLowerCase()}`;
    const body = shown.map((r) => {
      const rec = r.rec;
      const cell = h("td", { class: "audit-check" }, checkChip(r));
      checkCells.set(r.seq, cell);
      if (!rec) {
        return h("tr", { "data-seq": String(r.seq), class: "audit-bad" }, h("td", {}, String(r.seq)), h("td", { colspan: String(head.length - 2) }, "(unreadable record: not JSON)"), cell);
      }
      const details = h("details", {}, h("summary", {}, "full record"), h("pre", {}, JSON.stringify(rec, null, 2)));
      return h("tr", { "data-seq": String(r.seq), "data-action": rec.action || "" },
        h("td", {}, String(r.seq)),
        h("td", {}, when(rec.time)),
        h("td", {}, rec.actor || ""), h("td", {}, rec.action || ""), h("td", {}, rec.entity || ""),
        ...(showTenant ? [h("td", rec.tenant ? { title: `tenant id ${rec.tenant}` } : {}, rec.tenant ? tenantNames.get(rec.tenant) || rec.tenant : "")] : []),
        h("td", { class: "audit-what" }, what(rec), details), cell);
    });
    const from = match.length ? page * per + 1 : 0;
    const caption = `${stream.label}: records ${num(from)}–${num(page * per + shown.length)} of ${num(match.length)} matching, newest first` +
      ` (${num(all.length)} loaded${cp ? `; the signed log holds ${num(cp.size)}` : ""})`;
    tableBox.replaceChildren(h("table", { id: "audit-records", class: "audit-records", "data-matching": String(match.length), "data-loaded": String(all.length) },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, ...head.map((x) => h("th", { scope: "col", class: colClass(x) }, x)))),
      h("tbody", {}, ...body)));
    pageInfo.textContent = `Page ${page + 1} of ${pages}`;
    newerB.disabled = page === 0;
    olderB.disabled = page >= pages - 1;
    loadMoreB.hidden = !(stream.tenant ? tenantMore : lo > 0 && !fullMode);
    loadMoreB.textContent = stream.tenant ? "Load more records" : "Load older records";
    checkAllB.hidden = fullMode || !cp || unchecked;
    exportB.textContent = `Export ${num(match.length)} matching records (JSON Lines)`;
    exportB.disabled = match.length === 0;
    lastShown = shown;
    if (!fullMode && cp && !unchecked) void proveShown(shown);
  };

  // setStatus says where verification stands.
  const setStatus = (state: "busy" | "verified" | "partial" | "mismatch" | "error", text: string) => {
    status.dataset.state = state;
    status.className = `audit-status ${state}`;
    status.textContent = text;
    if (state === "mismatch") status.setAttribute("role", "alert"); else status.setAttribute("role", "status");
  };

  const sigSentence = () => cp?.signature === "verified"
    ? `Its Ed25519 signature by ${cp.origin} was checked in this browser with the key this node reports.`
    : "The checkpoint's signature was not checked: this browser has no Ed25519 in WebCrypto; run `outpostctl audit verify`.";

  // summarize writes the status from what the checks found.
  const summarize = () => {
    if (openError || unchecked) return;
    if (!cp) return;
    const root = `size ${num(cp.size)}, root ${cp.rootB64}`;
    const sigOK = cp.signature === "verified";
    if (fullMode) {
      if (tree.unreadable) {
        setStatus("mismatch", `Mismatch: record ${tree.unreadable.seq} is missing, out of order or unreadable. The log does not match its signed checkpoint (${root}).`);
        return;
      }
      if (tree.bad.length) {
        const more = tree.bad.length > 1 ? ` (and ${num(tree.bad.length - 1)} more)` : "";
        setStatus("mismatch", `Mismatch: ${describe(tree.bad[0])} does not match its leaf hash${more}: it was changed after it was logged. Checkpoint: ${root}.`);
        return;
      }
      if (!fullDone) {
        setStatus("busy", `Verifying ${num(tree.done)}/${num(cp.size)} records against the signed checkpoint…`);
        return;
      }
      if (tree.root === "bad") {
        setStatus("mismatch", `Mismatch: the records do not hash to the signed checkpoint's root (records or tree hashes were rewritten). Checkpoint: ${root}.`);
        return;
      }
      setStatus(sigOK ? "verified" : "partial", `${sigOK ? "Verified" : "Tree verified, signature not checked"}: all ${num(cp.size)} records hash to the signed checkpoint (${root}). ${sigSentence()}`);
      return;
    }
    const all = sorted();
    const bad = all.filter((r) => r.check === "bad");
    const ok = all.filter((r) => r.check === "ok").length;
    const busy = all.some((r) => r.check === "busy");
    if (bad.length) {
      setStatus("mismatch", `Mismatch: ${describe(bad[0])} is not in the signed tree (${root}): its inclusion proof fails${bad.length > 1 ? ` (and ${num(bad.length - 1)} more)` : ""}.`);
      return;
    }
    if (busy) { setStatus("busy", `Checking inclusion proofs: ${num(ok)} of ${num(all.length)} loaded records proven so far…`); return; }
    const why = stream.tenant
      ? `A tenant's records are a part of the region's tree, so each is checked by its inclusion proof (${num(ok)} of the ${num(all.length)} loaded so far: those shown, or all with “Check every loaded record”). One at a time from the command line: outpostctl audit verify-record SEQ --tenant ${stream.tenant}${stream.provider ? " --provider" : ""}.`
      : `The log holds ${num(cp.size)} records, more than the ${num(fullCap)} this browser rebuilds the tree from, so each record shown is checked by its inclusion proof (${num(ok)} so far). For the whole log: outpostctl audit verify${stream.provider ? " --provider" : ""}.`;
    setStatus(sigOK ? "verified" : "partial", `${sigOK ? "Verified" : "Proofs verified, signature not checked"}: ${num(ok)} record(s) proven in the signed tree (${root}). ${sigOK ? "" : sigSentence() + " "}${why}`);
  };

  // proveOne checks one record by its inclusion proof against cp.
  const proveOne = async (r: Row, sig: AbortSignal) => {
    r.check = "busy";
    try {
      const p = await api<{ seq: number; size: number; proof: string[] }>("GET", `${stream.path}/proof?seq=${r.seq}&size=${cp!.size}`, undefined, sig);
      const ok = p.seq === r.seq && p.size === cp!.size && r.rec?.seq === r.seq &&
        await checkInclusion(p.proof.map(b64decode), cp!.size, cp!.root, r.seq, await leafHash(b64decode(r.data)));
      r.check = ok ? "ok" : "bad";
      if (!ok) r.why = "its inclusion proof does not lead to the signed root";
    } catch (e) {
      if (sig.aborted) { r.check = ""; return; }
      r.check = "";
      throw e;
    }
  };
  const updateChip = (r: Row) => checkCells.get(r.seq)?.replaceChildren(checkChip(r));
  let proving = false;
  let lastShown: Row[] = [];
  const proveShown = async (shown: Row[]) => {
    const todo = shown.filter((r) => r.check === "");
    if (!todo.length || proving || !load) return;
    proving = true;
    let failed = false;
    const sig = load.signal;
    for (const r of todo) { r.check = "busy"; updateChip(r); }
    summarize();
    try {
      for (const r of todo) {
        if (sig.aborted) break;
        await proveOne(r, sig);
        updateChip(r);
        summarize();
      }
    } catch (e) {
      failed = true;
      report(e, errors);
    } finally {
      for (const r of todo) if (r.check === "busy") { r.check = ""; updateChip(r); }
      proving = false;
      summarize();
    }
    // The page may have moved on meanwhile: check what it shows now.
    if (!failed && load && !load.signal.aborted && lastShown.some((r) => r.check === "")) void proveShown(lastShown);
  };

  // fullVerify rebuilds the whole tree from every record, in order.
  const fullVerify = async (sig: AbortSignal) => {
    const n = cp!.size;
    const tb = new TreeBuilder();
    progress.max = Math.max(1, n);
    progress.hidden = false;
    for (let seq = 0; seq < n;) {
      if (!bySeq.has(seq)) {
        const pg = await fetchPage(seq, sig);
        if (!pg.entries.length) throw new Error(`the node returned no records from ${seq} of ${n}`);
        add(pg.entries);
      }
      const r = bySeq.get(seq);
      if (!r || r.rec?.seq !== seq) {
        tree.unreadable = r || ({ seq, data: "", leaf: "", rec: null, json: "", lower: "", check: "bad" } as Row);
        if (r) { r.check = "bad"; r.why = "missing, out of order or unreadable"; }
        return;
      }
      const leaf = await leafHash(b64decode(r.data));
      let served: Uint8Array | null = null;
      try { served = b64decode(r.leaf); } catch { /* bad hash */ }
      if (!served || !equalBytes(leaf, served)) {
        r.check = "bad";
        r.why = "its bytes do not match its leaf hash: changed after it was logged";
        tree.bad.push(r);
      }
      await tb.add(leaf);
      seq++;
      tree.done = seq;
      if (seq % 500 === 0 || seq === n) {
        progress.value = seq;
        summarize();
        if (sig.aborted) return;
      }
      if (seq % pageLimit === 0) render();
    }
    const root = await tb.root();
    tree.root = equalBytes(root, cp!.root) ? "ok" : "bad";
    for (const r of bySeq.values()) {
      if (r.seq >= n || r.check === "bad") continue;
      r.check = tree.root === "ok" ? "ok" : "unproven";
    }
    fullDone = true;
    lo = 0;
    progress.hidden = true;
  };

  // open loads the stream: the checkpoint, the newest records, then the
  // check.
  const open = async () => {
    load?.abort();
    const ac = new AbortController();
    load = ac;
    if (signal.aborted) return;
    signal.addEventListener("abort", () => ac.abort(), { once: true });
    const sig = ac.signal;
    cp = null; vkey = ""; bySeq = new Map(); rows = []; dirty = false; lo = 0; tenantNext = 0; tenantMore = false;
    fullMode = false; fullDone = false; page = 0; openError = ""; unchecked = false;
    tree = { done: 0, bad: [], unreadable: null, root: "" };
    errors.replaceChildren(); facts.replaceChildren(); note.textContent = ""; progress.hidden = true;
    setStatus("busy", "Reading the signed checkpoint…");
    render();
    const origin = `outpost.audit/${who!.region}${stream.provider ? "/provider" : ""}`;
    if (!window.isSecureContext || !crypto.subtle) {
      // No WebCrypto outside a secure context (HTTPS or localhost): the
      // records can be read, not checked.
      unchecked = true;
    }
    let signed: string;
    try {
      [signed, vkey] = await Promise.all([getText(`${stream.path}/checkpoint`, sig), getText(`${stream.path}/key`, sig)]);
      vkey = vkey.trim();
    } catch (e) {
      if (sig.aborted) return;
      openError = errorText(e);
      setStatus("error", `Could not read the checkpoint: ${openError}`);
      return;
    }
    if (unchecked) {
      await browseUnchecked(signed, sig);
      return;
    }
    try {
      cp = await openCheckpoint(signed, vkey, origin);
    } catch (e) {
      if (sig.aborted) return;
      openError = e instanceof Error ? e.message : String(e);
      setStatus("mismatch", `Mismatch: the checkpoint does not verify: ${openError}.`);
      facts.replaceChildren(h("dt", {}, "Key (as this node reports it)"), h("dd", {}, h("code", {}, vkey)));
      return;
    }
    facts.replaceChildren(
      h("dt", {}, "Log"), h("dd", {}, cp.origin),
      h("dt", {}, "Signed checkpoint"), h("dd", { id: "audit-checkpoint" }, `size ${num(cp.size)}, root `, h("code", {}, cp.rootB64)),
      h("dt", {}, "Signature"), h("dd", { id: "audit-signature" }, cp.signature === "verified"
        ? chip("Ed25519 signature valid (checked in this browser)", "ok")
        : chip("signature not checked in this browser; run outpostctl audit verify", "warn")),
      h("dt", {}, "Key (as this node reports it)"), h("dd", {}, h("code", { class: "audit-key" }, vkey)));
    note.textContent = `The records below are the log as of this checkpoint; Refresh reads a newer one. The key came from this node: compare it with a copy you trust, or pin it with outpostctl audit verify --key '${vkey}'.`;
    fullMode = !stream.tenant && cp.size <= fullCap;
    try {
      if (stream.tenant) {
        await loadTenant(sig);
      } else {
        lo = cp.size;
        await loadOlder(sig, fullMode ? pageLimit : windowSize);
      }
      if (sig.aborted) return;
      render();
      if (fullMode) {
        await fullVerify(sig);
        if (sig.aborted) return;
        render();
      }
      summarize();
    } catch (e) {
      if (sig.aborted) return;
      progress.hidden = true;
      setStatus("error", `Could not finish reading the log: ${errorText(e)}`);
    }
  };

  // browseUnchecked reads the log without checking it, where the browser
  // has no WebCrypto (plain HTTP to a remote node), and says so.
  const browseUnchecked = async (signed: string, sig: AbortSignal) => {
    const size = Number(signed.split("\n")[1]);
    if (!Number.isSafeInteger(size) || size < 0) { setStatus("error", "The checkpoint does not parse."); return; }
    cp = { origin: signed.split("\n")[0], size, root: new Uint8Array(32), rootB64: signed.split("\n")[2] || "", signature: "unsupported" };
    setStatus("partial", `Not verified: this page is not served over HTTPS, and browsers offer no WebCrypto to a page that is not, so nothing here was checked. Run outpostctl audit verify${stream.provider ? " --provider" : ""}, or open the UI over HTTPS.`);
    facts.replaceChildren(h("dt", {}, "Checkpoint (not verified)"), h("dd", {}, `size ${num(size)}`), h("dt", {}, "Key (as this node reports it)"), h("dd", {}, h("code", { class: "audit-key" }, vkey)));
    try {
      if (stream.tenant) await loadTenant(sig); else { lo = size; await loadOlder(sig, windowSize); }
      render();
    } catch (e) {
      if (!sig.aborted) report(e, errors);
    }
  };

  // loadOlder loads up to count records below lo (a region stream).
  const loadOlder = async (sig: AbortSignal, count: number) => {
    const stop = Math.max(0, lo - count);
    while (lo > stop) {
      const from = Math.max(stop, lo - pageLimit);
      const pg = await fetchPage(from, sig);
      add(pg.entries.filter((e) => e.seq < lo));
      lo = from;
    }
  };

  // loadTenant loads the tenant's records forward, tenantCap at a time.
  const loadTenant = async (sig: AbortSignal) => {
    const stop = bySeq.size + tenantCap;
    tenantMore = true;
    while (bySeq.size < stop) {
      const pg = await fetchPage(tenantNext, sig);
      add(pg.entries);
      if (!pg.entries.length || pg.entries[pg.entries.length - 1].seq + 1 >= cp!.size) { tenantMore = false; break; }
      tenantNext = pg.entries[pg.entries.length - 1].seq + 1;
    }
  };

  streamSel.addEventListener("change", () => {
    stream = list.find((s) => s.key === streamSel.value) || list[0];
    void open();
  });
  refreshB.addEventListener("click", () => void open());
  for (const el of [actionSel, actorSel, sizeSel]) el.addEventListener("change", () => { page = 0; render(); });
  let typing = 0;
  for (const el of [entityIn, textIn]) el.addEventListener("input", () => { clearTimeout(typing); typing = window.setTimeout(() => { page = 0; render(); }, 150); });
  newerB.addEventListener("click", () => { page = Math.max(0, page - 1); render(); });
  olderB.addEventListener("click", () => { page++; render(); });
  loadMoreB.addEventListener("click", async () => {
    if (!load || !cp) return;
    loadMoreB.disabled = true;
    try {
      if (stream.tenant) await loadTenant(load.signal); else await loadOlder(load.signal, windowSize);
      render();
      summarize();
    } catch (e) { report(e, errors); } finally { loadMoreB.disabled = false; }
  });
  checkAllB.addEventListener("click", async () => {
    if (!load || !cp || proving) return;
    const sig = load.signal;
    const todo = sorted().filter((r) => r.check === "").slice(0, proofCap);
    checkAllB.disabled = true;
    proving = true;
    progress.max = Math.max(1, todo.length);
    progress.value = 0;
    progress.hidden = false;
    try {
      for (const [i, r] of todo.entries()) {
        if (sig.aborted) return;
        await proveOne(r, sig);
        updateChip(r);
        progress.value = i + 1;
        if (i % 20 === 0) summarize();
      }
      if (sorted().some((r) => r.check === "")) note.textContent = `Checked ${num(todo.length)} records (at most ${num(proofCap)} at a time); press again for more.`;
    } catch (e) { report(e, errors); } finally {
      proving = false; checkAllB.disabled = false; progress.hidden = true; summarize();
    }
  });

  // Export: the records as JSON Lines, each with the exact bytes hashed
  // into the tree (data, base64), its leaf hash, and the record decoded.
  const offer = (rs: Row[], kind: string) => {
    const lines = rs.map((r) => JSON.stringify({ seq: r.seq, data: r.data, leaf_hash: r.leaf, record: r.rec }));
    const blob = new Blob([lines.map((l) => l + "\n").join("")], { type: "application/x-ndjson" });
    if (objectURL) URL.revokeObjectURL(objectURL);
    objectURL = URL.createObjectURL(blob);
    const name = `audit-${who!.region}-${stream.key.replace(/[^A-Za-z0-9_-]+/g, "-")}-${kind}-${rs.length ? `${rs[0].seq}-${rs[rs.length - 1].seq}` : "empty"}.jsonl`;
    const a = h("a", { href: objectURL, download: name, id: "audit-download-link", "data-records": String(rs.length) }, `Download ${name}`) as HTMLAnchorElement;
    download.replaceChildren(a, ` (${num(rs.length)} records${cp ? `, as of the checkpoint of size ${num(cp.size)}` : ""})`);
    a.click();
  };
  exportB.addEventListener("click", () => offer(matching(), "matching"));
  exportAllB.addEventListener("click", async () => {
    if (!load || !cp) return;
    const sig = load.signal;
    exportAllB.disabled = true;
    try {
      if (stream.tenant) { while (tenantMore && !sig.aborted) await loadTenant(sig); } else await loadOlder(sig, lo);
      if (sig.aborted) return;
      render();
      offer(sorted(), "all");
    } catch (e) { report(e, errors); } finally { exportAllB.disabled = false; }
  });

  await open();
}
