// The Admin page's tenant sections, for a tenant's Admins: members and
// roles, agent bootstrap tokens (with the exact outpost-agent line to
// run), links to peer regions, break-glass requests to approve, and
// settings. (The tenant's API tokens are drawn by drawTokens.)
import { api, chip, fmtTime, h, table, tpath, who } from "../lib";
import { act, BootstrapToken, confirmAction, Ctx, durationCheck, empty, field, loading, form, Grant, grantState, input, Link, Member, poll, re, secretBox, secretSlot, select, Settings, shq } from "./admin-ui";

const roleOptions: [string, string][] = [["viewer", "Viewer"], ["operator", "Operator"], ["admin", "Admin"]];

export async function drawMembers(c: Ctx) {
  const list = loading();
  const base = tpath(c.tenant, "/members");
  const refresh = async () => {
    const ms = await api<Member[]>("GET", base, undefined, c.signal);
    list.replaceChildren(ms.length === 0 ? empty("No members.") : table(["Account", "Role", "Status", "Change role", "Actions"], ms.map((m) => {
      const sel = select(roleOptions, { "aria-label": `Role of ${m.user}` });
      sel.value = m.role;
      const invited = m.status === "invited";
      const status = invited ? chip(`invited by ${m.invited_by || "?"}, until ${fmtTime(m.expires)}`, "warn") : chip("member", "ok");
      const change = act("Change role", `Change role of ${m.user}`, c.status, async () => {
        const role = sel.value;
        if (role === m.role) { c.status.done(`${m.user} already has the ${role} role.`); return; }
        if (m.user === who?.user && m.role === "admin" && !(await confirmAction(`Give up your own Admin role in ${c.tenant}? You will no longer manage it.`, "Change my role", c.signal))) return;
        const r = await api<Member>("PUT", `${base}/${encodeURIComponent(m.user)}`, { role }, c.signal);
        c.status.done(r.status === "invited" ? `The invitation of ${m.user} now offers the ${role} role.` : `${m.user} is now ${role} of ${c.tenant}.`);
        await refresh();
      });
      const remove = act(invited ? "Withdraw" : "Remove", invited ? `Withdraw the invitation of ${m.user}` : `Remove ${m.user}`, c.status, async () => {
        const q = invited ? `Withdraw the invitation of ${m.user} to ${c.tenant}?` : `Remove ${m.user} from tenant ${c.tenant}? The account loses its ${m.role} role at once.`;
        if (!(await confirmAction(q, invited ? "Withdraw invitation" : "Remove member", c.signal))) return;
        await api("DELETE", `${base}/${encodeURIComponent(m.user)}`, undefined, c.signal);
        c.status.done(invited ? `Invitation of ${m.user} withdrawn.` : `${m.user} removed from ${c.tenant}.`);
        await refresh();
      }, "danger");
      return [m.user, m.role, status, h("span", { class: "actions" }, sel, " ", change), h("span", { class: "actions" }, remove)];
    }), `${ms.length} members and invitations`, { id: "members-table" }));
  };
  const user = field("Account", input({ id: "member-user" }), {
    required: true, hint: "the account name; it joins once it accepts the invitation (on its Admin page, or outpostctl invitations accept)",
    check: (v) => v.startsWith("oidc:") ? "single sign-on accounts take their roles from the identity provider's groups" : re.user.test(v.trim()) ? null : "an account name: lower-case letters, digits, '.', '_' and '-'",
  });
  const role = field("Role", select(roleOptions, { id: "member-role" }));
  const f = form("Invite an account", [user, role], "Invite", c.status, async () => {
    const u = user.input.value.trim();
    const r = await api<Member>("PUT", `${base}/${encodeURIComponent(u)}`, { role: role.input.value }, c.signal);
    user.input.value = "";
    c.status.done(r.status === "invited"
      ? `Invitation sent to ${u} as ${r.role}, valid until ${fmtTime(r.expires)}: the account joins when it accepts. (The answer is the same whether or not such an account exists.)`
      : `${u} is now ${r.role} of ${c.tenant}.`);
    await refresh();
  });
  c.body.replaceChildren(h("p", {}, "Viewers read the tenant's data; Operators also dispatch configurations and write data; Admins also manage members, tokens, links and settings."), f, h("h3", {}, `Members of ${c.tenant}`), list);
  await refresh();
}

// agentLine is the command that enrolls and runs an agent: the same line
// `outpostctl tokens create` prints, with the options chosen here.
export function agentLine(t: BootstrapToken, o: { state: string; host: string; mode: string }): string {
  const servers = t.servers?.length ? t.servers.join(",") : "URL[,URL…]";
  const parts = [`OUTPOST_AGENT_TOKEN=${shq(t.token || "")}`, "outpost-agent", "--servers", shq(servers), "--ca-pin", shq(t.ca_pin || ""), "--state", shq(o.state)];
  if (o.host) parts.push("--host", shq(o.host));
  if (o.mode === "procfs" || o.mode === "ebpf") parts.push("--mode", o.mode);
  if (o.mode === "none") parts.push("--no-telemetry");
  return parts.join(" ");
}

export async function drawAgentTokens(c: Ctx) {
  const list = loading();
  const shown = secretSlot();
  const base = tpath(c.tenant, "/agent-tokens");
  const refresh = async () => {
    const toks = await api<BootstrapToken[]>("GET", base, undefined, c.signal);
    toks.sort((a, b) => b.created.localeCompare(a.created));
    list.replaceChildren(toks.length === 0 ? empty("No bootstrap tokens.") :
      table(["ID", "Status", "Agent", "Created", "Expires", "Created by", "Actions"], toks.map((t) => [t.id,
        chip(t.status, t.status === "redeemed" ? "ok" : t.status === "unused" ? "warn" : ""), t.agent || "–", fmtTime(t.created), fmtTime(t.expires), t.created_by,
        h("span", { class: "actions" }, t.status === "unused" ? act("Revoke", `Revoke bootstrap token ${t.id}`, c.status, async () => {
          if (!(await confirmAction(`Revoke bootstrap token ${t.id}? An agent not yet enrolled with it cannot enroll.`, "Revoke token", c.signal))) return;
          await api("DELETE", `${base}/${encodeURIComponent(t.id)}`, undefined, c.signal);
          c.status.done(`Bootstrap token ${t.id} revoked.`);
          await refresh();
        }, "danger") : "")]), `${toks.length} bootstrap tokens, newest first`, { id: "agent-tokens-table" }));
  };
  const ttl = field("Valid for", input({ id: "agent-ttl", value: "15m" }), {
    required: true, hint: "from 1m to 24h; a token enrolls one agent, once",
    check: durationCheck(6e4, 24 * 3.6e6, "from 1m to 24h"),
  });
  const state = field("State directory on the host", input({ id: "agent-state", value: "/var/lib/outpost-agent" }), {
    required: true, hint: "where the agent keeps its key (made there, never sent), certificate and state",
    check: (v) => /[\n\r]/.test(v) ? "one line" : null,
  });
  const host = field("Host name to report (optional)", input({ id: "agent-host" }), {
    hint: "default: the host's own name; selectors match it (host=…)",
    check: (v) => re.printable.test(v) && v.length <= 253 ? null : "1–253 printable characters without spaces",
  });
  const mode = field("Observation", select([["auto", "auto: eBPF, else procfs (saying why)"], ["procfs", "procfs only (no root needed)"], ["ebpf", "eBPF (needs root or CAP_BPF and CAP_PERFMON)"], ["none", "none: control plane only (--no-telemetry)"]], { id: "agent-mode" }));
  // The token is held here only while its box is shown.
  let current: BootstrapToken | null = null;
  let box: ReturnType<typeof secretBox> | null = null;
  const opts = () => ({ state: state.input.value.trim(), host: host.input.value.trim(), mode: mode.input.value });
  for (const x of [state, host, mode]) x.input.addEventListener(x.input instanceof HTMLSelectElement ? "change" : "input", () => { if (current && box) box.set(agentLine(current, opts())); });
  const options = h("fieldset", {}, h("legend", {}, "The outpost-agent command line"), state.wrap, host.wrap, mode.wrap);
  const f = form("Create a bootstrap token", [ttl], "Create token", c.status, async () => {
    const t = await api<BootstrapToken>("POST", base, { ttl: ttl.input.value.trim() }, c.signal);
    shown.clear(); // the box before, and its token
    current = t;
    const exp = new Date(t.expires).toLocaleString();
    const warnings: globalThis.Node[] = [];
    if (!t.servers?.length) warnings.push(h("p", { class: "error" }, "No node of this region advertises an agent port (agents.advertise): replace URL[,URL…] with the nodes' agent endpoints."));
    box = secretBox(c.signal, {
      id: "agent-command", title: "Run this on the host", what: "the outpost-agent command line", value: agentLine(t, opts()),
      warning: `The bootstrap token ${t.id} is in this line, shown only this once (this page forgets it when you hide it or leave this section). It enrolls one agent in tenant ${c.tenant}, until ${exp}. Changing the options above changes the line.`,
      extra: warnings, onClear: () => { current = null; box = null; },
    });
    shown.put(box);
    c.status.done(`Bootstrap token ${t.id} created for tenant ${c.tenant}, valid until ${exp}.`);
    await refresh();
  }, [options], [state, host]);
  c.body.replaceChildren(h("p", {}, "An agent enrolls once with a bootstrap token, then authenticates with its own certificate."), f, shown.el, h("h3", {}, "Bootstrap tokens"), list);
  await refresh();
  poll(c, 10000, refresh); // see a token redeemed as its agent enrolls
}

export async function drawLinks(c: Ctx) {
  const list = loading();
  const shown = secretSlot();
  const base = tpath(c.tenant, "/links");
  const refresh = async () => {
    const links = await api<Link[]>("GET", base, undefined, c.signal);
    list.replaceChildren(links.length === 0 ? empty("No links.") :
      table(["Peer", "Link id", "Created", "Created by", "Actions"], links.map((l) => [l.peer, h("code", {}, l.id), fmtTime(l.created), l.created_by,
        h("span", { class: "actions" }, act("Delete", `Delete link ${l.id} to ${l.peer}`, c.status, async () => {
          if (!(await confirmAction(`Delete link ${l.id} to peer ${l.peer}? Global views of ${c.tenant} stop including ${l.peer}, and ${l.peer} can no longer read this tenant's data through it.`, "Delete link", c.signal))) return;
          await api("DELETE", `${base}/${encodeURIComponent(l.peer)}/${encodeURIComponent(l.id)}`, undefined, c.signal);
          c.status.done(`Link ${l.id} to ${l.peer} deleted.`);
          await refresh();
        }, "danger"))]), `${links.length} links`, { id: "links-table" }));
  };
  const peer = field("Peer region", input({ id: "link-peer" }), {
    required: true, hint: "a peer a region admin added (Admin → Peers)",
    check: (v) => re.peer.test(v.trim()) ? null : "a region name: lower-case letters, digits and '-'",
  });
  const id = field("Link id from the other side (optional)", input({ id: "link-id-input", placeholder: "lnk-…" }), {
    hint: "leave it empty on the first side: a new id is made; on the second side give the id the first side made",
    check: (v) => re.linkID.test(v.trim()) ? null : "a link id looks like lnk- and 8 to 40 of a–z, 2–7",
  });
  const f = form("Link this tenant to a peer region", [peer, id], "Create link", c.status, async () => {
    const body: Record<string, string> = { peer: peer.input.value.trim() };
    if (id.input.value.trim()) body.link_id = id.input.value.trim();
    const l = await api<Link>("POST", base, body, c.signal);
    peer.input.value = ""; id.input.value = "";
    if (body.link_id) {
      shown.clear();
      c.status.done(`Linked ${c.tenant} to ${l.peer} with link id ${l.id}: both sides are configured.`);
    } else {
      const box = secretBox(c.signal, {
        id: "link-id", title: `Link id to configure in ${l.peer}`, what: "the link id", value: l.id,
        warning: `Give this id to an Admin of the counterpart tenant in region ${l.peer}: there, they create a link to peer ${who?.region} with it (outpostctl links create --tenant TENANT --peer ${who?.region} --link-id ${l.id}). Only the id crosses between the regions; it stays listed below.`,
      });
      shown.put(box);
      c.status.done(`Link ${l.id} to ${l.peer} created.`);
    }
    await refresh();
  });
  c.body.replaceChildren(f, shown.el, h("h3", {}, `Links of ${c.tenant}`), list);
  await refresh();
}

export async function drawBreakglassTenant(c: Ctx) {
  const list = loading();
  const base = tpath(c.tenant, "/breakglass");
  const refresh = async () => {
    const grants = await api<Grant[]>("GET", base, undefined, c.signal);
    grants.sort((a, b) => b.created.localeCompare(a.created));
    list.replaceChildren(grants.length === 0 ? empty("No break-glass requests.") :
      table(["ID", "Requested by", "Reason", "Duration", "Requested", "State", "Approved by", "Actions"], grants.map((g) => {
        const [st, kind] = grantState(g);
        return [g.id, g.requester, g.reason, g.duration, fmtTime(g.created), chip(st, kind), g.approved_by || "–",
          h("span", { class: "actions" }, !g.approved ? act("Approve", `Approve grant ${g.id} of ${g.requester}`, c.status, async () => {
            if (!(await confirmAction(`Approve ${g.requester}'s read-only access to ${c.tenant}'s data for ${g.duration}, from now? Reason given: "${g.reason}". Every read is recorded in the provider stream of your audit log.`, "Approve", c.signal))) return;
            const r = await api<Grant>("POST", `${base}/${encodeURIComponent(g.id)}/approve`, undefined, c.signal);
            c.status.done(`Grant ${r.id} approved: ${r.requester} reads ${c.tenant}'s data until ${new Date(r.expires || "").toLocaleString()}.`);
            await refresh();
          }) : "")];
      }), `${grants.length} grants, newest first`, { id: "tenant-grants-table" }));
  };
  c.body.replaceChildren(h("p", {}, "Region admins run the infrastructure and do not read your data. A region admin who needs to (an incident) asks here; once approved, it reads (never writes) the tenant's data until the grant expires, and every read is recorded in your audit log's provider stream."), list);
  await refresh();
  poll(c, 10000, refresh);
}

export async function drawSettings(c: Ctx) {
  const base = tpath(c.tenant, "/settings");
  const s = await api<Settings>("GET", base, undefined, c.signal);
  const auto = field("Approve break-glass requests automatically", input({ id: "settings-auto", type: "checkbox" }), {
    hint: "a region admin's request is then active at once, without an Admin's approval (still recorded)",
  });
  const autoBox = auto.input as HTMLInputElement;
  autoBox.checked = s.breakglass_auto_approve;
  const allow = field("Probe allow-list", h("textarea", { id: "settings-probe-allow", rows: "4", spellcheck: "false" }) as HTMLTextAreaElement, {
    hint: "address ranges (CIDR, one per line, at most 32) the tenant's probes may reach although the SSRF guard refuses them: link-local, cloud metadata, multicast",
    check: (v) => {
      const lines = v.split("\n").map((x) => x.trim()).filter(Boolean);
      if (lines.length > 32) return "at most 32 ranges";
      const bad = lines.find((x) => !/^[0-9a-fA-F.:]+\/[0-9]{1,3}$/.test(x));
      return bad ? `"${bad}" is not a CIDR range (e.g. 169.254.10.0/24)` : null;
    },
  });
  allow.input.value = (s.probe_allow || []).join("\n");
  let saved = s.breakglass_auto_approve;
  const f = form(`Settings of ${c.tenant}`, [auto, allow], "Save settings", c.status, async () => {
    if (autoBox.checked && !saved && !(await confirmAction(`Approve every break-glass request for ${c.tenant} automatically? Region admins then read its data without asking you first.`, "Turn on auto-approve", c.signal))) return;
    const body = { breakglass_auto_approve: autoBox.checked, probe_allow: allow.input.value.split("\n").map((x) => x.trim()).filter(Boolean) };
    const r = await api<Settings>("PUT", base, body, c.signal);
    saved = r.breakglass_auto_approve;
    c.status.done(`Settings of ${c.tenant} saved: break-glass auto-approve ${r.breakglass_auto_approve ? "on" : "off"}, ${(r.probe_allow || []).length} probe range(s) allowed.`);
  });
  c.body.replaceChildren(f);
}
