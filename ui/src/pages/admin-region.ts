// The Admin page's region sections, for region admins: tenants, user
// accounts, region API tokens, break-glass requests, federation peers and
// the master key.
import { api, chip, federationOn, fmtTime, h, loadWho, Peer, statusKind, table, tpath, who } from "../lib";
import { act, APIToken, confirmAction, Ctx, durationCheck, empty, field, loading, form, Grant, grantState, input, KeyStatus, minPassword, poll, re, secretBox, secretSlot, select, Tenant, User } from "./admin-ui";

const hour = 3.6e6;

export async function drawTenants(c: Ctx) {
  const list = loading();
  const users = h("datalist", { id: "admin-users-list" });
  const refresh = async () => {
    const [tenants, accounts] = await Promise.all([
      api<Tenant[]>("GET", "/api/v1/tenants", undefined, c.signal),
      api<User[]>("GET", "/api/v1/users", undefined, c.signal)]);
    users.replaceChildren(...accounts.map((u) => h("option", { value: u.name })));
    const admins = (t: string) => accounts.filter((u) => u.tenants?.[t] === "admin").map((u) => u.name).join(", ") || "–";
    list.replaceChildren(tenants.length === 0 ? empty("No tenants yet.") :
      table(["Tenant", "ID", "Created", "Admins"], tenants.map((t) => [t.name, t.id, fmtTime(t.created), admins(t.name)]),
        `${tenants.length} tenants`, { id: "tenants-table" }));
  };
  const name = field("Tenant name", input({ id: "tenant-name" }), {
    required: true, hint: "1–63 lower-case letters, digits and '-', starting and ending with a letter or digit",
    check: (v) => re.tenant.test(v.trim()) ? null : "use 1–63 lower-case letters, digits and '-', not starting or ending with '-'",
  });
  const admin = field("First Admin", input({ id: "tenant-admin", list: "admin-users-list" }), {
    required: true, hint: "an existing account (create it under Users first); region admins do not read tenant data, so a tenant needs its own Admin",
    check: (v) => re.user.test(v.trim()) ? null : "an account name: lower-case letters, digits, '.', '_' and '-'",
  });
  const f = form("Create a tenant", [name, admin], "Create tenant", c.status, async () => {
    const t = await api<Tenant>("POST", "/api/v1/tenants", { name: name.input.value.trim(), admin: admin.input.value.trim() }, c.signal);
    c.status.done(`Tenant ${t.name} created, with ${admin.input.value.trim()} as its first Admin.`);
    name.input.value = ""; admin.input.value = "";
    await refresh();
  }, [users]);
  c.body.replaceChildren(f, h("h3", {}, "Tenants"), list);
  await refresh();
}

export async function drawUsers(c: Ctx) {
  const list = loading();
  const shown = secretSlot();
  const refresh = async () => {
    const users = await api<User[]>("GET", "/api/v1/users", undefined, c.signal);
    list.replaceChildren(table(["Account", "Source", "Region admin", "Tenants", "Lockout", "Actions"], users.map((u) => {
      const locked = !!u.locked_until || !!u.slowed;
      const lock = u.locked_until ? `locked until ${fmtTime(u.locked_until)} for ${u.locked_sources || 1} address(es)` : u.slowed ? "slowed: many wrong passwords" : "–";
      const tenants = Object.entries(u.tenants || {}).map(([t, r]) => `${t}: ${r}`).join(", ") || "–";
      return [u.name, u.source, u.region_admin ? "yes" : "no", tenants, locked ? chip(lock, "warn") : lock,
        h("span", { class: "actions" }, locked ? act("Unlock", `Unlock ${u.name}`, c.status, async () => {
          await api("POST", `/api/v1/users/${encodeURIComponent(u.name)}/unlock`, undefined, c.signal);
          c.status.done(`Account ${u.name} unlocked: it can log in again from every address.`);
          await refresh();
        }) : "")];
    }), `${users.length} accounts`, { id: "users-table" }));
  };
  const name = field("Account name", input({ id: "user-name" }), {
    required: true, hint: "1–64 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit",
    check: (v) => re.user.test(v.trim()) ? null : "use 1–64 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit",
  });
  const pw = field("Password (optional)", input({ id: "user-password-input", type: "password", autocomplete: "new-password" }), {
    hint: `leave it empty to have one generated and shown once; otherwise at least ${minPassword} characters`,
    check: (v) => v.length < minPassword ? `the password is shorter than ${minPassword} characters` : v.length > 1024 ? "the password is longer than 1024 bytes" : null,
  });
  const ra = field("Region admin (runs the region's infrastructure; reads no tenant's data)", input({ id: "user-region-admin", type: "checkbox" }));
  const f = form("Create an account", [name, pw, ra], "Create account", c.status, async () => {
    const n = name.input.value.trim();
    const isRA = (ra.input as HTMLInputElement).checked;
    if (isRA && !(await confirmAction(`Make ${n} a region admin? It can create tenants, accounts, tokens and peers in the whole region.`, "Create region admin", c.signal))) return;
    const body: Record<string, unknown> = { name: n };
    if (pw.input.value) body.password = pw.input.value;
    if (isRA) body.region_admin = true;
    const u = await api<User>("POST", "/api/v1/users", body, c.signal);
    pw.input.value = ""; name.input.value = ""; (ra.input as HTMLInputElement).checked = false;
    if (u.password) {
      const box = secretBox(c.signal, {
        id: "user-password", title: `Password of ${u.name}`, what: `the password of ${u.name}`, value: u.password,
        warning: "Shown only this once: the node keeps only its hash, and this page forgets it when you hide it or leave this section. Give it to its owner over a safe channel.",
      });
      shown.put(box);
      c.status.done(`Account ${u.name} created, with a generated password (below).`);
    } else {
      c.status.done(`Account ${u.name} created with the password you chose.`);
    }
    await refresh();
  });
  c.body.replaceChildren(f, shown.el, h("h3", {}, "Accounts"), list);
  await refresh();
}

// tokenSection draws API tokens: the region's (tenant "") or a tenant's.
export async function drawTokens(c: Ctx) {
  const base = c.tenant ? tpath(c.tenant, "/tokens") : "/api/v1/tokens";
  const list = loading();
  const shown = secretSlot();
  const refresh = async () => {
    const toks = await api<APIToken[]>("GET", base, undefined, c.signal);
    list.replaceChildren(toks.length === 0 ? empty("No API tokens.") :
      table(["Name", "ID", "Role", "Created", "Expires", "Created by", "Acts for", "Actions"], toks.map((t) => [t.name, t.id, t.role, fmtTime(t.created),
        t.expires ? fmtTime(t.expires) : "never", t.created_by, t.owner || "–",
        h("span", { class: "actions" }, act("Revoke", `Revoke token ${t.name}`, c.status, async () => {
          if (!(await confirmAction(`Revoke API token ${t.name} (${t.id})? Whatever uses it is refused from now on.`, "Revoke token", c.signal))) return;
          await api("DELETE", `${base}/${encodeURIComponent(t.id)}`, undefined, c.signal);
          c.status.done(`API token ${t.name} (${t.id}) revoked.`);
          await refresh();
        }, "danger"))]), `${toks.length} tokens`, { id: "tokens-table" }));
  };
  const name = field("Name", input({ id: "token-name" }), {
    required: true, hint: "what the token is for, e.g. ci or grafana (1–64 characters)",
    check: (v) => v.length > 64 ? "at most 64 characters" : null,
  });
  const fields = [name];
  const role = field("Role", select(c.tenant ? [["viewer", "Viewer (reads)"], ["operator", "Operator (reads, dispatches, writes data)"], ["admin", "Admin"]] : [["region-admin", "Region admin"]], { id: "token-role" }));
  if (c.tenant) fields.push(role);
  const ttl = field("Expires after (optional)", input({ id: "token-ttl", placeholder: "720h" }), {
    hint: "a duration up to 8784h (e.g. 720h for 30 days); empty: it never expires",
    check: durationCheck(1e-6, 8784 * hour, "above 0 and at most 8784h"),
  });
  fields.push(ttl);
  const f = form("Create an API token", fields, "Create token", c.status, async () => {
    const body: Record<string, string> = { name: name.input.value };
    if (c.tenant) body.role = role.input.value;
    if (ttl.input.value.trim()) body.ttl = ttl.input.value.trim();
    const t = await api<APIToken>("POST", base, body, c.signal);
    name.input.value = ""; ttl.input.value = "";
    const box = secretBox(c.signal, {
      id: "token-secret", title: `API token ${t.name}`, what: `API token ${t.name}`, value: t.token || "",
      warning: `Shown only this once: the node keeps only its hash, and this page forgets it when you hide it or leave this section. Send it as "Authorization: Bearer TOKEN", or set OUTPOST_TOKEN for outpostctl. It acts for ${t.owner || t.created_by} and never has more access than that account.`,
    });
    shown.put(box);
    c.status.done(`API token ${t.name} (${t.id}) created${t.expires ? `, expires ${fmtTime(t.expires)}` : ""}.`);
    await refresh();
  });
  c.body.replaceChildren(f, shown.el, h("h3", {}, c.tenant ? `API tokens of tenant ${c.tenant}` : "Region admin API tokens"), list);
  await refresh();
}

export async function drawBreakglassRegion(c: Ctx) {
  const list = loading();
  const tenantSel = select([], { id: "bg-tenant" });
  const refresh = async () => {
    const grants = await api<Grant[]>("GET", "/api/v1/breakglass", undefined, c.signal);
    grants.sort((a, b) => b.created.localeCompare(a.created));
    list.replaceChildren(grants.length === 0 ? empty("No break-glass grants.") :
      table(["Tenant", "ID", "Requested by", "Reason", "Duration", "Requested", "State", "Approved by"], grants.map((g) => {
        const [st, kind] = grantState(g);
        return [g.tenant, g.id, g.requester, g.reason, g.duration, fmtTime(g.created), chip(st, kind), g.approved_by || "–"];
      }), `${grants.length} grants, newest first`, { id: "grants-table" }));
    await loadWho(); // the banner follows a grant approved meanwhile
  };
  const tenants = await api<Tenant[]>("GET", "/api/v1/tenants", undefined, c.signal);
  tenantSel.replaceChildren(...tenants.map((t) => h("option", { value: t.name }, t.name)));
  const tenant = field("Tenant", tenantSel, { required: true });
  const reason = field("Reason", h("textarea", { id: "bg-reason", rows: "3" }) as HTMLTextAreaElement, {
    required: true, hint: "why you need its data (an incident or ticket id), 8–500 characters; the tenant's Admins read it",
    check: (v) => v.trim().length < 8 || v.length > 500 ? "the reason must be 8–500 characters" : null,
  });
  const dur = field("Duration", input({ id: "bg-duration", value: "1h" }), {
    required: true, hint: "how long the access lasts once approved, at most 24h",
    check: durationCheck(1e-6, 24 * hour, "above 0 and at most 24h"),
  });
  const f = form("Request read access to a tenant (break-glass)", [tenant, reason, dur], "Request access", c.status, async () => {
    const t = tenantSel.value;
    const g = await api<Grant>("POST", tpath(t, "/breakglass"), { reason: reason.input.value, duration: dur.input.value.trim() }, c.signal);
    reason.input.value = "";
    if (g.active) {
      c.status.done(`Grant ${g.id} is active until ${new Date(g.expires || "").toLocaleString()} (tenant ${t} approves automatically): read-only access to its data, every read recorded.`);
    } else {
      c.status.done(`Requested grant ${g.id} for tenant ${t}: an Admin of ${t} must approve it; the access then lasts ${g.duration}.`);
    }
    await refresh();
  });
  c.body.replaceChildren(tenants.length === 0 ? empty("No tenants: nothing to request access to.") : f, h("h3", {}, "Grants"), list);
  await refresh();
  poll(c, 10000, refresh);
}

export async function drawPeers(c: Ctx) {
  const list = loading();
  const refresh = async () => {
    const peers = await api<Peer[]>("GET", "/api/v1/peers", undefined, c.signal);
    list.replaceChildren(peers.length === 0 ? empty("No peers.") :
      table(["Peer", "Addresses", "State", "RTT", "Last OK", "CA pin", "CA expires", "Links", "Last error", "Actions"], peers.map((p) => [
        p.name, p.addr.split(",").join(", "), chip(p.state.state, statusKind(p.state.state)), `${p.state.rtt_ms.toFixed(1)} ms`,
        p.state.last_ok ? fmtTime(p.state.last_ok) : "never", h("code", { class: "wrap" }, p.ca_pin), (p.ca_expires || "").slice(0, 10), String(p.links),
        p.state.last_error || "",
        h("span", { class: "actions" }, act("Remove", `Remove peer ${p.name}`, c.status, async () => {
          if (!(await confirmAction(`Remove peer ${p.name}? Its ${p.links} tenant link(s) are removed too, and global views stop asking it.`, "Remove peer", c.signal))) return;
          const r = await api<{ links_removed: number }>("DELETE", `/api/v1/peers/${encodeURIComponent(p.name)}`, undefined, c.signal);
          c.status.done(`Peer ${p.name} removed, with ${r.links_removed} link(s).`);
          await refresh();
        }, "danger"))]), `${peers.length} peers, as node ${peers[0]?.state.node || ""} sees them`, { id: "peers-admin-table" }));
  };
  if (!federationOn()) {
    c.body.replaceChildren(h("p", {}, "Federation is off on this node: it takes no peers. Set federation.bind in each node's config (docs/config.md) to federate regions."), list);
    await refresh();
    return;
  }
  const name = field("Peer region name", input({ id: "peer-name" }), {
    required: true, hint: "the other region's own name (lower-case letters, digits and '-')",
    check: (v) => !re.peer.test(v.trim()) ? "use lower-case letters, digits and '-' (up to 63)" : v.trim() === who?.region ? "that is this region's own name" : null,
  });
  const addr = field("Federation addresses", input({ id: "peer-addr", placeholder: "10.0.0.5:7443,10.0.0.6:7443" }), {
    required: true, hint: "HOST:PORT of the peer's federation endpoint, or up to 8 of them (its nodes) separated by commas",
    check: (v) => {
      const a = v.split(",").map((x) => x.trim()).filter(Boolean);
      if (a.length === 0 || a.length > 8 || v.length > 1024) return "give 1 to 8 HOST:PORT addresses separated by commas";
      const bad = a.find((x) => !/^(\[[^\]\s]+\]|[^\s:[\]]+):[0-9]+$/.test(x));
      return bad ? `"${bad}" is not HOST:PORT` : null;
    },
  });
  const caText = h("textarea", { id: "peer-ca", rows: "6", spellcheck: "false" }) as HTMLTextAreaElement;
  const ca = field("The peer's region CA certificate (PEM)", caText, {
    required: true, hint: "its CA certificate, pinned: the peer's nodes must present certificates it signed",
    check: (v) => v.includes("-----BEGIN CERTIFICATE-----") && v.includes("-----END CERTIFICATE-----") ? null : "paste one PEM certificate (-----BEGIN CERTIFICATE----- …)",
  });
  const caFile = input({ id: "peer-ca-file", type: "file", accept: ".pem,.crt,.cer" });
  caFile.addEventListener("change", async () => {
    const file = caFile.files?.[0];
    if (file) caText.value = await file.text();
  });
  const caFileField = field("…or load the CA certificate from a file", caFile);
  const secret = field("Shared secret", input({ id: "peer-secret", type: "password", autocomplete: "off" }), {
    required: true, hint: "the same secret in both regions, 32 bytes or more (e.g. openssl rand -hex 32); stored sealed by the master key and never shown again",
    check: (v) => { const n = new TextEncoder().encode(v).length; return n < 32 ? `the secret is ${n} bytes; use at least 32` : n > 4096 ? "the secret is over 4096 bytes" : null; },
  });
  const f = form("Add a peer region", [name, addr, ca, caFileField, secret], "Add peer", c.status, async () => {
    const p = await api<Peer>("POST", "/api/v1/peers", { name: name.input.value.trim(), addr: addr.input.value.trim(), ca_pem: caText.value, secret: secret.input.value }, c.signal);
    secret.input.value = ""; caText.value = ""; caFile.value = ""; name.input.value = ""; addr.input.value = "";
    c.status.done(`Peer ${p.name} added (CA pin ${p.ca_pin}). In region ${p.name}, add this region (${who?.region}) as a peer with the same secret; then tenants link to it on their Admin page (Links).`);
    await refresh();
  });
  c.body.replaceChildren(f, h("h3", {}, "Peers"), list);
  await refresh();
}

export async function drawKeys(c: Ctx) {
  const view = h("div");
  const draw = (k: KeyStatus) => {
    view.replaceChildren(h("dl", { class: "facts", id: "keys-status" },
      h("dt", {}, "Node"), h("dd", {}, k.node),
      h("dt", {}, "Current master key"), h("dd", {}, k.key_id),
      h("dt", {}, "Previous master key"), h("dd", {}, k.previous_key_id || "none configured"),
      h("dt", {}, "Sealed secrets"), h("dd", {}, String(k.secrets)),
      h("dt", {}, "Still on the previous key"), h("dd", {}, k.on_previous ? chip(String(k.on_previous), "warn") : chip("0", "ok"))),
    h("p", {}, act("Rotate", "Rotate: re-wrap every secret with the current master key", c.status, async () => {
      if (!(await confirmAction(`Re-wrap the ${k.on_previous} secret(s) still sealed by the previous master key ${k.previous_key_id || "(none)"} with the current key ${k.key_id}?`, "Rotate", c.signal))) return;
      const r = await api<KeyStatus>("POST", "/api/v1/keys/rotate", undefined, c.signal);
      c.status.done(`Re-wrapped ${r.rewrapped || 0} secret(s); ${r.on_previous} still on the previous key.${r.on_previous ? "" : " Rotation is complete once every node has restarted with the new key."}`);
      draw(r);
    })));
  };
  const k = await api<KeyStatus>("GET", "/api/v1/keys", undefined, c.signal);
  c.body.replaceChildren(h("p", {}, "The master key seals the region's stored secrets (peers' shared secrets, the keys canary). After configuring a new key (keys.master_key_file, with the old one as keys.previous_master_key_file), rotate to re-wrap what is still sealed by the old one."), view);
  draw(k);
}
