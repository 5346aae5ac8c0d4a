// Shared pieces of the UI: the API's shapes, the one fetch wrapper, DOM
// building without innerHTML, the session (who is logged in, with which
// roles) and the role checks every page uses to decide which controls to
// draw. The server checks every role again: hiding a control is for the
// operator's sake, never the security boundary.

export type ActiveGrant = { tenant: string; id: string; expires: string };
export type WhoAmI = { region: string; actor: string; user?: string; region_admin: boolean; tenants: Record<string, string> | null; grants?: ActiveGrant[]; federation?: boolean };
export type RegionNode = { id: string; raft_state: string; suffrage: string; last_contact_ms: number; applied_index: number; agents: number; api_url: string; error?: string };
export type Lease = { holder: string; token: number; expires_in_ms: number } | null;
export type Region = { region: string; node: string; leader: string; nodes: RegionNode[]; lease: Lease };
export type Agent = { id: string; tenant?: string; host: string; version: string; node: string; rtt_ms?: number; mode: string; mode_reason?: string; health?: string; cert_expires: string; flags?: string[]; revoked?: boolean };
export type PeerStatus = { peer: string; status: string; latency_ms: number; data_age_ms: number; rows: number; error?: string };
export type GlobalAgent = Agent & { source: string; region: string };
export type GlobalAgents = { complete: boolean; peers: PeerStatus[]; agents: GlobalAgent[] };
export type Peer = { name: string; addr: string; ca_pin: string; ca_expires: string; links: number; state: { state: string; rtt_ms: number; last_ok?: string; last_error?: string; data_age_ms: number; cert_expires?: string; node: string } };

export class APIError extends Error {
  constructor(public status: number, message: string, public hint?: string, public code?: string) { super(message); }
}

// api calls the node's API with the session cookie. A non-2xx answer
// throws APIError with the server's message and hint.
export async function api<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const r = await fetch(path, {
    method, credentials: "same-origin", signal,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) {
    let msg = `HTTP ${r.status}`, hint: string | undefined, code: string | undefined;
    try { const e = JSON.parse(text); msg = e.error || msg; hint = e.hint; code = e.code; } catch { /* not JSON */ }
    throw new APIError(r.status, msg, hint, code);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

// tpath builds a tenant-scoped API path with the tenant name escaped.
export function tpath(tenant: string, rest: string): string {
  return `/api/v1/tenants/${encodeURIComponent(tenant)}${rest}`;
}

export type Child = globalThis.Node | string | null | undefined | false;

// h builds an element; string children become text nodes (never HTML).
export function h(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

export function chip(text: string, kind: "ok" | "warn" | "bad" | "" = "", title?: string): HTMLElement {
  const c = h("span", { class: `chip ${kind}` }, text);
  if (title) c.title = title;
  return c;
}

export function statusKind(s: string): "ok" | "warn" | "bad" {
  if (s === "ok" || s === "healthy" || s === "leader" || s === "follower" || s === "up") return "ok";
  if (s === "stale" || s === "unknown" || s === "candidate" || s === "partial") return "warn";
  return "bad";
}

export function table(headers: string[], rows: (globalThis.Node | string)[][], caption: string, attrs: Record<string, string> = {}): HTMLElement {
  return h("table", attrs,
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, ...headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))));
}

// button makes a button that runs fn, disabled while it runs, and shows
// an error next to it instead of failing silently.
export function button(label: string, fn: () => Promise<void>, attrs: Record<string, string> = {}): HTMLElement {
  const b = h("button", { type: "button", ...attrs }, label) as HTMLButtonElement;
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await fn(); } catch (e) { report(e, b.parentElement || main()); } finally { b.disabled = false; }
  });
  return b;
}

export function fmtTime(s: string | undefined): string {
  return s ? s.slice(0, 19).replace("T", " ") : "–";
}

export function fmtDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = Math.round(s / 60);
  return m < 120 ? `${m} min` : `${Math.round(m / 60)} h`;
}

export const main = () => document.getElementById("main")!;

export function show(...content: globalThis.Node[]) {
  main().replaceChildren(...content);
}

// errorText says what went wrong and, where the server said, what to do.
export function errorText(e: unknown): string {
  return e instanceof APIError ? `${e.message}${e.hint ? ` (${e.hint})` : ""}` : String(e);
}

// report shows an error in place (a 401 goes to the login page).
export function report(e: unknown, where: HTMLElement = main()) {
  if (e instanceof DOMException && e.name === "AbortError") return;
  if (e instanceof APIError && e.status === 401) { location.hash = "#/login"; return; }
  where.append(h("p", { class: "error", role: "alert" }, errorText(e)));
}

// The session.
export let who: WhoAmI | null = null;

export async function loadWho(): Promise<WhoAmI | null> {
  try { who = await api<WhoAmI>("GET", "/api/v1/whoami"); } catch { who = null; }
  return who;
}

export function clearWho() { who = null; }

const rank: Record<string, number> = { viewer: 1, operator: 2, admin: 3 };

// roleIn is the caller's role in a tenant ("" for none).
export function roleIn(tenant: string): string {
  return who?.tenants?.[tenant] || "";
}

// can reports whether the caller's role in tenant reaches need
// ("viewer", "operator", "admin"). A break-glass grant never does for
// anything above viewer, and pages draw no state-changing control on it.
export function can(tenant: string, need: "viewer" | "operator" | "admin"): boolean {
  return (rank[roleIn(tenant)] || 0) >= rank[need];
}

// federationOn: this node has federation on, so global views answer
// (without it they are 404s, which pages do not ask for).
export function federationOn(): boolean {
  return !!who?.federation;
}

export function isRegionAdmin(): boolean {
  return !!who?.region_admin;
}

// myTenants lists the tenants whose data the caller may read: its own,
// plus those a break-glass grant opens (read-only).
export function myTenants(): string[] {
  const out = new Set(Object.keys(who?.tenants || {}));
  for (const g of who?.grants || []) out.add(g.tenant);
  return [...out].sort();
}

// follow reads the node's event stream (NDJSON) and calls onEvent for
// each line until signal aborts; it reconnects after a pause.
export async function follow(signal: AbortSignal, onEvent: (line: string) => void) {
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
        while ((i = buf.indexOf("\n")) >= 0) { const line = buf.slice(0, i); buf = buf.slice(i + 1); onEvent(line); }
      }
    } catch {
      if (signal.aborted) return;
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
}

// every runs fn now and then every ms until signal aborts, never two at once.
export async function every(signal: AbortSignal, ms: number, fn: () => Promise<void>): Promise<() => Promise<void>> {
  let busy = false;
  const run = async () => {
    if (busy || signal.aborted) return;
    busy = true;
    try { await fn(); } catch (e) { report(e); } finally { busy = false; }
  };
  await run();
  const timer = setInterval(run, ms);
  signal.addEventListener("abort", () => clearInterval(timer));
  return run;
}

// A page draws itself into #main; params are the route's :parts.
export type Page = (signal: AbortSignal, params: Record<string, string>) => Promise<void>;
