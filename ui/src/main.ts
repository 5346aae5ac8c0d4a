// Outpost's web UI: a small single-page app over the node's HTTP API,
// with the session cookie the login sets. Every state change goes through
// the same role-checked API routes the CLI uses; nothing is kept in
// local storage. The DOM is built with textContent only (no innerHTML of
// data), and the node serves this under a CSP without inline script.
import "./app.css";
import { clearWho, h, isRegionAdmin, loadWho, myTenants, Page, report, show, who, api, can } from "./lib";
import { pageLogin } from "./pages/login";
import { pageOverview } from "./pages/overview";
import { pageAgents } from "./pages/agents";
import { pageAgent } from "./pages/agent";
import { pageMap } from "./pages/map";
import { pageProbes } from "./pages/probes";
import { pageDrills } from "./pages/drills";
import { pageAudit } from "./pages/audit";
import { pageAdmin } from "./pages/admin";
import { pageFederation } from "./pages/federation";

// The routes: a pattern's :parts become the page's params.
const routes: [string, Page][] = [
  ["#/overview", pageOverview],
  ["#/agents", pageAgents],
  ["#/agents/:tenant/:id", pageAgent],
  ["#/map", pageMap],
  ["#/probes", pageProbes],
  ["#/drills", pageDrills],
  ["#/audit", pageAudit],
  ["#/admin", pageAdmin],
  ["#/federation", pageFederation],
];

function match(hash: string): [Page, Record<string, string>] | null {
  const [path] = hash.split("?");
  const parts = path.split("/");
  for (const [pattern, page] of routes) {
    const want = pattern.split("/");
    if (want.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    want.forEach((w, i) => {
      if (w.startsWith(":")) params[w.slice(1)] = decodeURIComponent(parts[i]);
      else if (w !== parts[i]) ok = false;
    });
    if (ok) return [page, params];
  }
  return null;
}

// nav draws the links this caller has a use for.
function drawNav() {
  const nav = document.getElementById("nav")!;
  const tenantData = myTenants().length > 0;
  const tenantAdmin = myTenants().some((t) => can(t, "admin"));
  const links: [string, string, boolean][] = [
    ["#/overview", "Overview", true],
    ["#/agents", "Agents", true],
    ["#/map", "Service map", tenantData],
    ["#/probes", "Probes", tenantData],
    ["#/drills", "Drills", isRegionAdmin()],
    ["#/audit", "Audit", isRegionAdmin() || tenantAdmin],
    ["#/admin", "Admin", isRegionAdmin() || tenantAdmin],
    ["#/federation", "Federation", true],
  ];
  nav.replaceChildren(...links.filter((l) => l[2]).map(([href, label]) => h("a", { href }, label)));
  nav.hidden = who === null;
  document.getElementById("logout")!.hidden = who === null;
  document.getElementById("who")!.textContent = who ? `${who.user || who.actor} · region ${who.region}${who.region_admin ? " · region admin" : ""}` : "";
}

// The break-glass banner: while a grant lasts, every page says whose data
// this admin can read and until when, counting down.
function drawGrants() {
  const el = document.getElementById("breakglass")!;
  const now = Date.now();
  const live = (who?.grants || []).filter((g) => Date.parse(g.expires) > now);
  el.hidden = live.length === 0;
  el.replaceChildren(...live.map((g) => {
    const left = Math.max(0, Math.round((Date.parse(g.expires) - now) / 1000));
    return h("span", { class: "grant" }, `Break-glass: read-only access to tenant ${g.tenant} until ${new Date(g.expires).toLocaleTimeString()} (${Math.floor(left / 60)} min ${left % 60} s left)`);
  }));
  if (who?.grants && live.length !== who.grants.length) who.grants = live;
}
setInterval(drawGrants, 1000);

let pageAbort: AbortController | null = null;

async function route() {
  pageAbort?.abort();
  pageAbort = new AbortController();
  const hash = location.hash || "#/overview";
  if (hash === "#/login") { drawNav(); drawGrants(); pageLogin(); return; }
  if (!(await loadWho())) { drawNav(); location.hash = "#/login"; return; }
  drawNav();
  drawGrants();
  for (const a of document.querySelectorAll("nav a")) {
    const href = a.getAttribute("href")!;
    const path = hash.split("?")[0];
    if (path === href || path.startsWith(href + "/")) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const m = match(hash);
  if (!m) { show(h("h1", {}, "Not found"), h("p", {}, "No such page: pick one from the menu.")); return; }
  try { await m[0](pageAbort.signal, m[1]); } catch (e) { report(e); }
}

document.getElementById("logout")!.addEventListener("click", async () => {
  try { await api("POST", "/api/v1/logout"); } catch { /* logged out anyway */ }
  clearWho();
  location.hash = "#/login";
});
window.addEventListener("hashchange", () => void route());
void route();
