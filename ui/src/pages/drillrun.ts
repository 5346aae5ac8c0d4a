// One failover drill run from the Drills page, as the node serving the
// page sees it: its event stream (leader, lease, fenced, dispatch) and a
// poll of /api/v1/region and /api/v1/drills about once a second. It keeps
// the timeline, measured from the moment the fault was sent, and decides
// when the region is healthy again. It draws nothing: drills.ts does.

export type DrillMode = "isolate" | "transfer" | "stop";

export type LeaseView = { holder: string; token: number; expires_in_ms: number; released?: boolean } | null;
export type RegionView = {
  region: string; node: string; leader: string; lease: LeaseView;
  nodes: { id: string; raft_state: string; suffrage: string; error?: string; api_url: string; applied_index: number; last_contact_ms: number }[];
};
export type DrillState = {
  node: string; enabled: boolean; isolated: boolean; blocked?: string[]; heals_in_ms?: number; lease?: LeaseView;
  heartbeat_timeout_ms: number; election_timeout_ms: number;
};
export type StaleProbe = { id: string; token: number; outcome: string; error?: string };
export type Event = {
  kind: string; at: string; node: string; leader?: string; lease?: LeaseView;
  dispatch?: { id: string; token: number; node: string }; reason?: string; initial?: boolean;
};

// Entry is one line of the timeline; t is milliseconds from the fault.
export type Entry = { t: number; kind: string; text: string };

// SavedDrill is the report kept in the region's key/value store
// (drill-reports/…) and shown under Past drills.
export type SavedDrill = {
  version: 1;
  id: string;
  region: string;
  node: string; // the node faulted, which served the page and observed
  mode: DrillMode;
  duration_ms?: number;
  restart_after_ms?: number;
  started: string; // ISO time the fault was sent
  actor: string;
  start: { leader: string; holder: string; token: number };
  outcome: "running" | "recovered" | "not recovered" | "refused" | "abandoned";
  new_leader?: string;
  leader_elected_ms?: number; // first leader other than the one at the start
  no_leader_ms?: number; // time this node knew no leader
  new_holder?: string;
  new_token?: number;
  lease_acquired_ms?: number; // the lease under a higher token
  no_lease_ms?: number; // from the old holder fenced or released to the new lease
  healed_ms?: number;
  recovered_ms?: number;
  stale?: StaleProbe;
  timeline: Entry[];
};

const maxEntries = 200;
// giveUpAfter: the run ends "not recovered" this long after the fault's
// own span (the isolation, the restart delay) without a healthy region.
export const giveUpAfter = 60_000;

export const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export class DrillRun {
  readonly r: SavedDrill;
  done = false;
  private leader: string;
  private lease: { holder: string; token: number; released: boolean };
  private leaderLostAt: number | null = null;
  private leaseGoneAt: number | null = null;
  private isolatedSeen = false;
  private selfHealAt: number | null = null;
  private healAt: number | null = null;
  private downAt: number | null = null;
  private backAt: number | null = null;
  private firstDispatch = false;

  constructor(mode: DrillMode, node: string, actor: string, reg: RegionView, params: { duration_ms?: number; restart_after_ms?: number }) {
    const started = new Date();
    const holder = reg.lease?.holder || "";
    const token = reg.lease?.token || 0;
    this.leader = reg.leader;
    this.lease = { holder, token, released: !!reg.lease?.released };
    const stamp = started.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
    this.r = {
      version: 1, id: `${stamp}-${node}-${mode}`, region: reg.region, node, mode, ...params,
      started: started.toISOString(), actor, start: { leader: reg.leader, holder, token }, outcome: "running", timeline: [],
    };
  }

  // span is how long the fault itself lasts.
  span(): number {
    return this.r.mode === "isolate" ? this.r.duration_ms || 0 : this.r.mode === "stop" ? this.r.restart_after_ms || 0 : 0;
  }

  // hitHolder: the fault is on the lease holder, so recovery means a new
  // lease under a higher token.
  hitHolder(): boolean {
    return this.r.start.holder === this.r.node;
  }

  // add puts an entry on the timeline, in time order (an entry can be
  // dated before the poll that noticed it).
  add(t: number, kind: string, text: string) {
    const tl = this.r.timeline;
    if (tl.length >= maxEntries) return;
    const e = { t: Math.max(0, Math.round(t)), kind, text };
    let i = tl.length;
    while (i > 0 && tl[i - 1].t > e.t) i--;
    tl.splice(i, 0, e);
  }

  // healSent notes a heal sent from the page.
  healSent(t: number) {
    this.healAt = t;
    this.add(t, "heal-sent", `heal sent to ${this.r.node}`);
  }

  start(text: string) {
    const s = this.r.start;
    this.add(0, "start", `${text}. At the start: leader ${s.leader || "(none)"}, lease ${s.holder || "(none)"} with fencing token ${s.token}.`);
  }

  private sawLeader(t: number, leader: string, how: string) {
    if (leader === this.leader) return;
    if (leader === "") {
      this.leaderLostAt = t;
      this.add(t, "leader-lost", `${this.r.node} knows no Raft leader (${this.leader} lost it; an election is under way)${how}`);
    } else {
      if (this.leaderLostAt !== null) {
        this.r.no_leader_ms = (this.r.no_leader_ms || 0) + (t - this.leaderLostAt);
        this.leaderLostAt = null;
      }
      const isNew = leader !== this.r.start.leader && this.r.new_leader === undefined;
      if (isNew) {
        this.r.new_leader = leader;
        this.r.leader_elected_ms = Math.round(t);
      }
      this.add(t, "leader", `${isNew ? "new leader elected" : "leader"}: ${leader}${how}`);
    }
    this.leader = leader;
  }

  private sawLease(t: number, l: LeaseView, how: string) {
    if (!l) return;
    const holder = l.holder || "";
    const released = !!l.released || holder === "";
    if (holder === this.lease.holder && l.token === this.lease.token && released === this.lease.released) return;
    if (released && l.token <= this.lease.token) {
      this.add(t, "lease-released", `lease released by ${this.lease.holder || "its holder"} (token ${l.token}); no one may dispatch until a node acquires it${how}`);
      if (this.leaseGoneAt === null) this.leaseGoneAt = t;
    } else if (holder && l.token > this.r.start.token && this.r.new_token === undefined) {
      this.r.new_holder = holder;
      this.r.new_token = l.token;
      this.r.lease_acquired_ms = Math.round(t);
      if (this.leaseGoneAt !== null) this.r.no_lease_ms = Math.round(t - this.leaseGoneAt);
      this.add(t, "lease-acquired", `lease acquired by ${holder} with fencing token ${l.token} (was ${this.r.start.token})${how}`);
    } else if (holder) {
      this.add(t, "lease", `lease held by ${holder}, token ${l.token}${how}`);
    }
    this.lease = { holder, token: l.token, released };
  }

  // event takes one line of the node's event stream, t ms after the fault.
  event(t: number, ev: Event) {
    if (this.done) return;
    const how = ev.initial ? " (the event stream's opening state)" : "";
    switch (ev.kind) {
      case "leader":
        this.sawLeader(t, ev.leader || "", how);
        break;
      case "lease":
        this.sawLease(t, ev.lease || null, how);
        break;
      case "fenced":
        this.add(t, "fenced", `${ev.node} fenced itself: ${ev.reason || "stopped dispatching"}`);
        if (ev.node === this.r.start.holder && this.leaseGoneAt === null) this.leaseGoneAt = t;
        break;
      case "dispatch":
        if (ev.dispatch && ev.dispatch.token > this.r.start.token && !this.firstDispatch) {
          this.firstDispatch = true;
          this.add(t, "dispatch", `first dispatch under token ${ev.dispatch.token}: ${ev.dispatch.id} from ${ev.dispatch.node}`);
        }
        break;
      case "lagged":
        this.add(t, "lagged", "the event stream fell behind and reconnects; the poll fills in");
        break;
    }
  }

  // poll takes one round of polling: the region and this node's drill
  // state, or why they did not answer. It returns true when the run ends.
  poll(t: number, reg: RegionView | null, ds: DrillState | null, err: string) {
    if (this.done) return false;
    if (!reg || !ds) {
      if (this.downAt === null && t > 0) {
        this.downAt = t;
        this.add(t, "down", `${this.r.node} does not answer: ${err}`);
      }
      return this.giveUp(t);
    }
    if (this.downAt !== null && this.backAt === null) {
      this.backAt = t;
      this.add(t, "up", `${this.r.node} answers again (down for ${secs(t - this.downAt)})`);
    }
    const cut = ds.isolated || (ds.blocked || []).length > 0;
    if (cut) {
      if (!this.isolatedSeen) this.add(t, "isolated", `${this.r.node} is cut off from its peers (Raft port); it heals by itself in ${secs(ds.heals_in_ms || 0)}`);
      this.isolatedSeen = true;
      this.selfHealAt = t + (ds.heals_in_ms || 0);
    } else if (this.isolatedSeen && this.r.healed_ms === undefined) {
      // Healed since the last poll: by the heal sent, or by itself when
      // its time ran out (the node said when), else as seen now.
      let at = t, how = "";
      if (this.healAt !== null) at = this.healAt;
      else if (this.selfHealAt !== null && this.selfHealAt <= t) { at = this.selfHealAt; how = " by itself, at the end of the cut"; }
      this.r.healed_ms = Math.round(at);
      this.add(at, "heal", `${this.r.node} healed${how}: it talks to its peers again`);
    }
    this.sawLeader(t, reg.leader, " (poll)");
    this.sawLease(t, reg.lease, " (poll)");
    if (this.hitHolder() && reg.lease && reg.lease.holder === this.r.start.holder && reg.lease.token === this.r.start.token &&
      reg.lease.expires_in_ms === 0 && this.leaseGoneAt === null) {
      this.leaseGoneAt = t;
      this.add(t, "lease-expired", `the lease of ${reg.lease.holder} (token ${reg.lease.token}) ran out, as ${this.r.node} sees it`);
    }
    const up = reg.nodes.length > 0 && reg.nodes.every((n) => (n.raft_state === "leader" || n.raft_state === "follower") && !n.error);
    const lease = reg.lease && reg.lease.holder ? reg.lease : null;
    let healthy = up && reg.leader !== "" && lease !== null && !cut && t >= this.span();
    if (this.hitHolder()) healthy = healthy && lease!.token > this.r.start.token;
    if (this.r.mode === "transfer" && this.r.start.leader === this.r.node) healthy = healthy && reg.leader !== this.r.node;
    if (this.r.mode === "stop") healthy = healthy && (this.backAt !== null || t >= this.span() + 2000);
    if (healthy) {
      this.r.recovered_ms = Math.round(t);
      this.r.outcome = "recovered";
      this.add(t, "healthy", `region healthy again: ${reg.nodes.length}/${reg.nodes.length} nodes up, leader ${reg.leader}, lease ${lease!.holder} with token ${lease!.token}`);
      this.done = true;
      return true;
    }
    return this.giveUp(t);
  }

  private giveUp(t: number): boolean {
    if (t < this.span() + giveUpAfter) return false;
    this.r.outcome = "not recovered";
    this.add(t, "timeout", `not healthy ${secs(t - this.span())} after the fault ended; check \`outpostctl status\` and the nodes' logs`);
    this.done = true;
    return true;
  }

  // stale records the fencing check: a dispatch from this node under the
  // token it last held.
  stale(t: number, p: StaleProbe, holderNow: string) {
    this.r.stale = p;
    const s = `stale dispatch from ${this.r.node} under its old token ${p.token}`;
    switch (p.outcome) {
      case "refused":
        this.add(t, "stale-refused", `${s}: refused by the fence, as it must be`);
        break;
      case "accepted":
        this.add(t, "stale-accepted", holderNow === this.r.node
          ? `${s}: accepted (${this.r.node} holds the lease again, so it is not stale)`
          : `${s}: ACCEPTED although ${holderNow || "another node"} holds the lease: a fencing failure`);
        break;
      default:
        this.add(t, "stale-untested", `${s}: ${p.outcome}${p.error ? ` (${p.error})` : ""}; the fence was not tested`);
    }
  }

  refused(text: string) {
    this.r.outcome = "refused";
    this.add(0, "refused", text);
    this.done = true;
  }

  abandon(t: number) {
    if (this.done) return;
    this.r.outcome = "abandoned";
    this.add(t, "abandoned", "the page was left before the region was healthy again; nothing more was measured");
    this.done = true;
  }
}
