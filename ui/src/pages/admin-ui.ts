// The Admin page's building blocks: the API shapes it uses, labelled
// form fields with the server's own checks mirrored (the server still
// decides), a status line per section (success, or the server's error
// and hint verbatim), a confirmation dialog for destructive actions, and
// the box that shows a secret once and forgets it.
import { APIError, errorText, h, report } from "../lib";

export type Tenant = { name: string; id: string; created: string; role?: string };
export type User = { name: string; source: string; region_admin: boolean; tenants: Record<string, string> | null; locked_until?: string; locked_sources?: number; slowed?: boolean; password?: string };
export type APIToken = { id: string; name: string; role: string; tenant?: string; created: string; expires?: string; created_by: string; owner?: string; token?: string };
export type Grant = { id: string; tenant: string; requester: string; reason: string; duration: string; created: string; approved: boolean; approved_by?: string; expires?: string; active: boolean };
export type KeyStatus = { node: string; key_id: string; previous_key_id?: string; secrets: number; on_previous: number; rewrapped?: number };
export type Link = { id: string; peer: string; tenant: string; created: string; created_by: string };
export type Member = { user: string; role: string; status?: string; invited_by?: string; expires?: string };
export type Invitation = { tenant: string; role: string; invited_by: string; created: string; expires: string };
export type BootstrapToken = { id: string; tenant: string; created: string; expires: string; created_by: string; status: string; agent?: string; token?: string; ca_pin?: string; servers?: string[] };
export type Settings = { breakglass_auto_approve: boolean; probe_allow?: string[] };

// What a section draws with: where, its status line, the tenant it is
// about ("" for region sections) and the signal that ends it.
export type Ctx = { signal: AbortSignal; body: HTMLElement; status: Status; tenant: string };

// The server's name rules (node/auth/model.go, node/peering).
export const re = {
  user: /^[a-z0-9][a-z0-9._-]{0,63}$/,
  tenant: /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
  peer: /^[a-z0-9][a-z0-9-]{0,62}$/,
  linkID: /^lnk-[a-z2-7]{8,40}$/,
  printable: /^[\x21-\x7e]+$/,
};
export const minPassword = 12;
export const roles = ["viewer", "operator", "admin"];

let seq = 0;
export const uid = (p: string) => `${p}-${++seq}`;

const durUnits: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1e3, m: 6e4, h: 3.6e6 };

// parseDuration reads a Go duration ("15m", "1h30m") into milliseconds;
// null when it is not one.
export function parseDuration(s: string): number | null {
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(s)) return null;
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * durUnits[m[2]];
  return ms;
}

// durationCheck checks a Go duration within [min, max] milliseconds.
export function durationCheck(min: number, max: number, range: string) {
  return (v: string): string | null => {
    const ms = parseDuration(v.trim());
    if (ms === null) return `"${v}" is not a duration: write it like 15m, 1h or 1h30m`;
    if (ms < min || ms > max) return `use a duration ${range}`;
    return null;
  };
}

// shq quotes a word for a POSIX shell when it needs it.
export function shq(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

// Status is a section's message line: what just succeeded, or the
// server's refusal with its hint, as the server wrote them.
export class Status {
  readonly el: HTMLElement;
  private ok = h("p", { role: "status", class: "ok-msg", id: "admin-ok" });
  private err = h("p", { role: "alert", class: "error", id: "admin-error" });
  constructor() { this.el = h("div", { class: "admin-status" }, this.ok, this.err); }
  done(msg: string) { this.err.textContent = ""; this.ok.textContent = msg; }
  fail(e: unknown) {
    if (e instanceof DOMException && e.name === "AbortError") return;
    if (e instanceof APIError && e.status === 401) { report(e); return; }
    this.ok.textContent = "";
    this.err.textContent = errorText(e);
  }
  clear() { this.ok.textContent = ""; this.err.textContent = ""; }
}

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

export interface Field { wrap: HTMLElement; input: Control; validate(): boolean }

// field labels a control, with an optional hint and a check whose
// message is tied to it (aria-describedby, aria-invalid).
export function field(label: string, input: Control, o: { hint?: string; required?: boolean; check?: (v: string) => string | null } = {}): Field {
  if (!input.id) input.id = uid("f");
  const err = h("p", { class: "field-error", id: `${input.id}-err` });
  const hint = o.hint ? h("p", { class: "hint", id: `${input.id}-hint` }, o.hint) : null;
  input.setAttribute("aria-describedby", [hint?.id, err.id].filter(Boolean).join(" "));
  if (o.required) input.required = true;
  const isCheck = input instanceof HTMLInputElement && input.type === "checkbox";
  const lab = h("label", { for: input.id }, label);
  const wrap = isCheck ? h("div", { class: "field check" }, input, lab, hint, err) : h("div", { class: "field" }, lab, input, hint, err);
  return {
    wrap, input,
    validate() {
      const v = input.value;
      let msg: string | null = null;
      if (o.required && !v.trim()) msg = `${label} is required`;
      else if (o.check && (v.trim() || o.required)) msg = o.check(v);
      err.textContent = msg || "";
      if (msg) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
      return !msg;
    },
  };
}

export function input(attrs: Record<string, string> = {}): HTMLInputElement {
  return h("input", { type: "text", autocomplete: "off", spellcheck: "false", ...attrs }) as HTMLInputElement;
}

export function select(options: [string, string][], attrs: Record<string, string> = {}): HTMLSelectElement {
  return h("select", attrs, ...options.map(([v, label]) => h("option", { value: v }, label))) as HTMLSelectElement;
}

// form runs fn on submit once every field passes its check, with the
// submit button disabled meanwhile; a refusal lands in the status line.
// Fields drawn in extra are checked too when listed in alsoCheck.
export function form(title: string, fields: Field[], submit: string, status: Status, fn: () => Promise<void>, extra: globalThis.Node[] = [], alsoCheck: Field[] = []): HTMLElement {
  const id = uid("form");
  const btn = h("button", { type: "submit" }, submit) as HTMLButtonElement;
  const f = h("form", { class: "admin-form", novalidate: "", "aria-labelledby": id }, ...fields.map((x) => x.wrap), ...extra, h("div", { class: "form-actions" }, btn)) as HTMLFormElement;
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const bad = [...fields, ...alsoCheck].filter((x) => !x.validate());
    if (bad.length) { status.clear(); bad[0].input.focus(); return; }
    btn.disabled = true;
    try { await fn(); } catch (e) { status.fail(e); } finally { btn.disabled = false; }
  });
  return h("section", { class: "admin-box" }, h("h3", { id }, title), f);
}

// act makes a button for a row's action; a refusal goes to the status line.
export function act(label: string, aria: string, status: Status, fn: () => Promise<void>, cls = ""): HTMLButtonElement {
  const b = h("button", { type: "button", "aria-label": aria, class: cls }, label) as HTMLButtonElement;
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await fn(); } catch (e) { status.fail(e); } finally { if (b.isConnected) b.disabled = false; }
  });
  return b;
}

// confirmAction asks before a destructive action, in a modal dialog
// (Escape or Cancel says no); the dialog goes when the page is left.
export function confirmAction(message: string, yesLabel: string, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const id = uid("confirm");
    const yes = h("button", { type: "button", class: "danger", id: "confirm-yes" }, yesLabel);
    const no = h("button", { type: "button", id: "confirm-no" }, "Cancel");
    const dlg = h("dialog", { class: "confirm", "aria-labelledby": id }, h("p", { id }, message), h("div", { class: "dialog-buttons" }, no, yes)) as HTMLDialogElement;
    yes.addEventListener("click", () => dlg.close("yes"));
    no.addEventListener("click", () => dlg.close("no"));
    dlg.addEventListener("close", () => { resolve(dlg.returnValue === "yes"); dlg.remove(); });
    signal?.addEventListener("abort", () => { if (dlg.open) dlg.close("no"); });
    document.body.append(dlg);
    dlg.showModal();
    no.focus();
  });
}

// secretBox shows a value once (a password, a token, a command line
// holding a token) with a Copy button. It is never stored: the box and
// its text go when the person hides it or leaves the section.
export function secretBox(signal: AbortSignal, o: { id: string; title: string; value: string; warning: string; what: string; extra?: globalThis.Node[]; onClear?: () => void }) {
  const tid = uid("secret");
  const code = h("code", { id: o.id }, o.value);
  const note = h("p", { class: "hint", role: "status" });
  const copy = h("button", { type: "button", class: "copy" }, "Copy") as HTMLButtonElement;
  copy.setAttribute("aria-label", `Copy ${o.what}`);
  const hide = h("button", { type: "button" }, "Hide it now");
  const el = h("section", { class: "secret", "aria-labelledby": tid },
    h("h3", { id: tid }, o.title), h("p", { class: "warning" }, o.warning), ...(o.extra || []),
    h("pre", {}, code), h("div", { class: "secret-actions" }, copy, " ", hide), note);
  const clear = () => {
    const had = el.contains(document.activeElement);
    code.textContent = "";
    el.remove();
    o.onClear?.();
    if (had) document.getElementById("admin-section")?.focus(); // not lost to <body>
  };
  copy.addEventListener("click", async () => {
    try {
      if (!navigator.clipboard) throw new Error("no clipboard");
      await navigator.clipboard.writeText(code.textContent || "");
      note.textContent = "Copied to the clipboard.";
    } catch {
      getSelection()?.selectAllChildren(code);
      note.textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy.";
    }
  });
  hide.addEventListener("click", clear);
  signal.addEventListener("abort", clear);
  return { el, clear, set(v: string) { code.textContent = v; } };
}

// secretSlot is where a section shows its secret box: a new one
// replaces (and clears) the one before.
export function secretSlot() {
  let cur: { clear(): void } | null = null;
  const el = h("div");
  return {
    el,
    put(b: { el: HTMLElement; clear(): void }) { cur?.clear(); cur = b; el.append(b.el); b.el.querySelector<HTMLElement>("button.copy")?.focus(); },
    clear() { cur?.clear(); cur = null; },
  };
}

// poll runs fn every ms until the section is left, reporting failures.
export function poll(c: Ctx, ms: number, fn: () => Promise<void>) {
  let busy = false;
  const timer = setInterval(async () => {
    if (busy || c.signal.aborted) return;
    busy = true;
    try { await fn(); } catch (e) { c.status.fail(e); } finally { busy = false; }
  }, ms);
  c.signal.addEventListener("abort", () => clearInterval(timer));
}

// loading is a list's place until its first answer.
export function loading(): HTMLElement {
  return h("div", {}, h("p", { class: "muted" }, "Loading…"));
}

// empty says a list has nothing yet, instead of an empty table.
export function empty(text: string): HTMLElement {
  return h("p", { class: "muted" }, text);
}

export function grantState(g: Grant): [string, "ok" | "warn" | ""] {
  if (g.active) return [`active until ${new Date(g.expires || "").toLocaleString()}`, "ok"];
  if (!g.approved) return ["pending approval", "warn"];
  return ["expired", ""];
}
