// pageAdmin: tenants, users and roles, tokens (API and agent bootstrap,
// with the exact outpost-agent line to run), peers and links, break-glass
// and keys. One section is drawn at a time, named in the route's query
// (#/admin?section=users, #/admin?tenant=acme&section=members), so
// leaving a section — to another, or another page — drops everything it
// showed, secrets shown once included. Region sections are drawn for
// region admins; tenant sections for each tenant the caller is an Admin
// of. The server checks every role again.
import "./admin.css";
import { api, can, fmtTime, h, isRegionAdmin, loadWho, roleIn, show, who } from "../lib";
import { drawBreakglassRegion, drawKeys, drawPeers, drawTenants, drawTokens, drawUsers } from "./admin-region";
import { drawAgentTokens, drawBreakglassTenant, drawLinks, drawMembers, drawSettings } from "./admin-tenant";
import { act, Ctx, Invitation, Status } from "./admin-ui";

type Section = [key: string, title: string, draw: (c: Ctx) => Promise<void>];

const regionSections: Section[] = [
  ["tenants", "Tenants", drawTenants],
  ["users", "Users", drawUsers],
  ["tokens", "API tokens", drawTokens],
  ["breakglass", "Break-glass", drawBreakglassRegion],
  ["peers", "Peers", drawPeers],
  ["keys", "Keys", drawKeys],
];

const tenantSections: Section[] = [
  ["members", "Members and roles", drawMembers],
  ["agent-tokens", "Bootstrap tokens", drawAgentTokens],
  ["tokens", "API tokens", drawTokens],
  ["links", "Links", drawLinks],
  ["breakglass", "Break-glass requests", drawBreakglassTenant],
  ["settings", "Settings", drawSettings],
];

const href = (section: string, tenant = "") =>
  `#/admin?${tenant ? `tenant=${encodeURIComponent(tenant)}&` : ""}section=${encodeURIComponent(section)}`;

// invitations lists the invitations addressed to the caller, to accept
// or decline here (an invited account may have no role to see more).
async function invitations(signal: AbortSignal, status: Status): Promise<HTMLElement | null> {
  let inv: Invitation[];
  try { inv = await api<Invitation[]>("GET", "/api/v1/invitations", undefined, signal); } catch { return null; }
  if (inv.length === 0) return null;
  const answer = (i: Invitation, how: "accept" | "decline") => act(how === "accept" ? "Accept" : "Decline",
    `${how === "accept" ? "Accept" : "Decline"} the invitation to ${i.tenant}`, status, async () => {
      await api("POST", `/api/v1/invitations/${encodeURIComponent(i.tenant)}/${how}`, undefined, signal);
      await loadWho();
      // Draw again (nav included) with the new roles.
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    }, how === "decline" ? "danger" : "");
  return h("section", { class: "invitations", "aria-labelledby": "invitations-title" },
    h("h2", { id: "invitations-title" }, "Invitations to you"),
    h("ul", {}, ...inv.map((i) => h("li", {}, `${i.tenant}: ${i.role}, invited by ${i.invited_by}, until ${fmtTime(i.expires)} `, answer(i, "accept"), " ", answer(i, "decline")))));
}

export async function pageAdmin(signal: AbortSignal) {
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const status = new Status();
  const adminOf = Object.keys(who?.tenants || {}).filter((t) => can(t, "admin")).sort();
  const inv = await invitations(signal, status);
  if (!isRegionAdmin() && adminOf.length === 0) {
    const mine = Object.entries(who?.tenants || {}).map(([t, r]) => `${r} of ${t}`).join(", ");
    show(h("h1", {}, "Admin"), status.el, ...(inv ? [inv] : []),
      h("p", {}, "This page is for region admins and tenant Admins. ",
        mine ? `Your roles: ${mine}. ` : "You have no role in any tenant. ",
        "To manage a tenant's members, tokens, links and settings you need its Admin role: ask one of its Admins. Region settings need a region admin account."));
    return;
  }
  let tenant = q.get("tenant") || "";
  let key = q.get("section") || "";
  if (!tenant) {
    if (!isRegionAdmin()) tenant = adminOf[0];
    else if (!regionSections.some((s) => s[0] === key)) key = "tenants";
  }
  if (tenant && !tenantSections.some((s) => s[0] === key)) key = "members";

  // The sections' navigation.
  const link = (s: Section, t: string) => {
    const a = h("a", { href: href(s[0], t) }, s[1]);
    if (s[0] === key && t === tenant) a.setAttribute("aria-current", "page");
    return h("li", {}, a);
  };
  const groups: HTMLElement[] = [];
  if (isRegionAdmin()) {
    groups.push(h("div", { class: "admin-group" }, h("span", { class: "group-label", id: "admin-group-region" }, `Region ${who?.region || ""}`),
      h("ul", { "aria-labelledby": "admin-group-region" }, ...regionSections.map((s) => link(s, "")))));
  }
  if (adminOf.length > 0) {
    const shown = adminOf.includes(tenant) ? tenant : adminOf[0];
    let label: HTMLElement;
    if (adminOf.length === 1) {
      label = h("span", { class: "group-label", id: "admin-group-tenant" }, `Tenant ${shown}`);
    } else {
      const sel = h("select", { id: "admin-tenant" }, ...adminOf.map((t) => h("option", { value: t }, t))) as HTMLSelectElement;
      sel.value = shown;
      sel.addEventListener("change", () => { location.hash = href(tenant ? key : "members", sel.value); });
      label = h("span", { class: "group-label", id: "admin-group-tenant" }, h("label", { for: "admin-tenant" }, "Tenant"), " ", sel);
    }
    groups.push(h("div", { class: "admin-group" }, label,
      h("ul", { "aria-labelledby": "admin-group-tenant" }, ...tenantSections.map((s) => link(s, shown)))));
  }
  const nav = h("nav", { class: "admin-nav", "aria-label": "Admin sections" }, ...groups);

  const body = h("div", { class: "admin-body" }, h("p", {}, "Loading…"));
  let section: Section | undefined;
  let title: string;
  if (tenant) {
    section = tenantSections.find((s) => s[0] === key);
    title = `${section?.[1]} · tenant ${tenant}`;
  } else {
    section = regionSections.find((s) => s[0] === key);
    title = `${section?.[1]} · region ${who?.region || ""}`;
  }
  show(h("h1", {}, "Admin"), ...(inv ? [inv] : []), nav, h("h2", { id: "admin-section", tabindex: "-1" }, title), status.el, body);
  if (tenant && !can(tenant, "admin")) {
    const r = roleIn(tenant);
    body.replaceChildren(h("p", {}, `This needs the Admin role in tenant ${tenant}; ${r ? `yours is ${r}` : "you have no role there"}. Ask one of its Admins.`));
    return;
  }
  if (!tenant && !isRegionAdmin()) {
    body.replaceChildren(h("p", {}, "This needs a region admin account."));
    return;
  }
  try {
    await section![2]({ signal, body, status, tenant });
  } catch (e) {
    body.replaceChildren();
    status.fail(e);
  }
}
