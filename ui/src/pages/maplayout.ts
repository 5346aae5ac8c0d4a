// Stable placement for the service map: no force layout (it reshuffles
// the whole picture whenever one node comes or goes, and costs seconds at
// 2,000 nodes). Each group (a region of a tenant) is a disc of slots on a
// sunflower spiral; a node's slot comes from a hash of its id, the next
// free one when that is taken, and once placed a node keeps its slot for
// as long as the page is loaded, even while it is gone from the answer
// (it comes back where it was). Groups sit on a grid, in name order, and a
// group that appears later goes after the others. The same graph loaded
// afresh is placed the same way every time; a graph that grew keeps every
// node it had where it was.

import { hash32 } from "./mapgraph";

export type Pos = { x: number; y: number };

// Spacing between neighbouring slots (model units; a node is 16 across).
const spacing = 30;
const golden = Math.PI * (3 - Math.sqrt(5));
const gap = 400;

function slotPos(cx: number, cy: number, s: number): Pos {
  const r = spacing * Math.sqrt(s + 0.5);
  const a = s * golden;
  return { x: Math.round((cx + r * Math.cos(a)) * 100) / 100, y: Math.round((cy + r * Math.sin(a)) * 100) / 100 };
}

// radius is the disc a group of cap slots fills.
const radius = (cap: number) => spacing * Math.sqrt(cap + 0.5) + spacing;

// The slots a group of n nodes hashes into: a power of two at least
// twice n, so a group can double before new nodes land further out.
function capacity(n: number): number {
  let c = 16;
  while (c < 2 * n) c *= 2;
  return c;
}

type Group = { cx: number; cy: number; cap: number; used: Set<number>; cell: number };

// Placement remembers where everything went; the page keeps one per view
// (live data, synthetic) for as long as it is loaded.
export class Placement {
  private groups = new Map<string, Group>();
  private nodes = new Map<string, { g: string; slot: number }>();
  private pitch = 0;
  private columns = 0;
  private cells = 0;
  private bottom = 0; // the lowest extent of any group, for a group too big for a cell

  get remembered(): number { return this.nodes.size; }

  // center is where a group's disc is centred.
  center(group: string): Pos | undefined {
    const g = this.groups.get(group);
    return g && { x: g.cx, y: g.cy };
  }

  // place returns a position for every node; groups lists every group id
  // (in any order), nodes each node's id and group.
  place(groups: string[], nodes: { id: string; group: string }[]): Map<string, Pos> {
    // Bound the memory: a page left open over a churning fleet starts over.
    if (this.nodes.size > 200000) this.reset();
    const byGroup = new Map<string, string[]>();
    for (const g of groups) byGroup.set(g, []);
    for (const n of nodes) {
      let l = byGroup.get(n.group);
      if (!l) byGroup.set(n.group, (l = []));
      l.push(n.id);
    }
    const fresh = [...byGroup.keys()].filter((g) => !this.groups.has(g)).sort();
    if (fresh.length > 0) this.placeGroups(fresh, byGroup);
    const out = new Map<string, Pos>();
    for (const [gid, ids] of byGroup) {
      const g = this.groups.get(gid)!;
      const newIds: string[] = [];
      for (const id of ids) {
        const known = this.nodes.get(id);
        if (known && known.g === gid) out.set(id, slotPos(g.cx, g.cy, known.slot));
        else newIds.push(id);
      }
      if (newIds.length === 0) continue;
      // Room to grow: new nodes hash into a larger disc once this one
      // fills up (the placed ones stay where they are).
      while (g.used.size + newIds.length > g.cap / 2) g.cap *= 2;
      newIds.sort();
      for (const id of newIds) {
        let s = hash32(id) % g.cap;
        while (g.used.has(s)) s++;
        g.used.add(s);
        this.nodes.set(id, { g: gid, slot: s });
        out.set(id, slotPos(g.cx, g.cy, s));
      }
    }
    return out;
  }

  private placeGroups(fresh: string[], byGroup: Map<string, string[]>) {
    const caps = fresh.map((g) => capacity(byGroup.get(g)!.length));
    if (this.pitch === 0) {
      // The first layout: a grid about as wide as high.
      this.pitch = 2 * Math.max(...caps.map((c) => radius(2 * c))) + gap;
      this.columns = Math.max(2, Math.ceil(Math.sqrt(fresh.length)));
    }
    const columns = this.columns;
    fresh.forEach((gid, i) => {
      const cap = caps[i];
      const r = radius(2 * cap);
      let cx: number, cy: number, cell = -1;
      if (2 * r + gap <= this.pitch) {
        cell = this.cells++;
        cx = (cell % columns) * this.pitch;
        cy = Math.floor(cell / columns) * this.pitch;
      } else {
        // Too big for a cell of the grid: below everything, by itself.
        cx = r;
        cy = Math.max(this.bottom, Math.ceil(this.cells / columns) * this.pitch - this.pitch / 2) + gap + r;
        this.bottom = cy + r;
        // The grid goes on in the first row below it.
        this.cells = columns * Math.ceil((this.bottom + gap + this.pitch / 2) / this.pitch);
      }
      this.bottom = Math.max(this.bottom, cy + r);
      this.groups.set(gid, { cx, cy, cap, used: new Set(), cell });
    });
  }

  reset() {
    this.groups.clear();
    this.nodes.clear();
    this.pitch = 0;
    this.columns = 0;
    this.cells = 0;
    this.bottom = 0;
  }
}
