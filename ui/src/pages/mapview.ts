// The service map's canvas: cytoscape.js, set up for big graphs.
//
// Two cytoscape instances share the canvas area, one shown at a time:
// "all" holds every node and edge and is never restyled by a filter;
// "filtered" holds the same nodes, faded, and only the edges the filter
// keeps, with their ends lit. Changing the style of thousands of
// elements is what costs in cytoscape (each one's style is worked out
// again, its bounds, its place in the drawing order: about half a second
// for 9,000 edges on a laptop core), so a filter never touches "all": it
// builds "filtered" from the edges it keeps (work in proportion to those),
// and clearing a filter just shows "all" again.
//
// Also for size: edges are haystack lines once there are more than a
// couple of thousand (the cheapest cytoscape draws) and are left out while
// the viewport moves; labels are drawn only once zoomed in far enough to
// read them; one pixel per CSS pixel; no motion blur; the regions are
// plain nodes drawn beneath the rest, not compound parents (with those,
// every re-sort of the drawing order walks each element's ancestors); and
// nodes cannot be dragged (the placement is the map's memory, see
// maplayout.ts).
//
// Under the UI's CSP (no inline style) cytoscape's start-up would insert a
// <style> element, which the browser refuses and reports: the rule it
// holds (its container is position: relative) is in map.css instead, and
// an empty placeholder with the id cytoscape looks for tells it the rule
// is there already.

import cytoscape from "cytoscape";
import { Graph, heat, Heat, Index, MapEdge } from "./mapgraph";
import { Pos } from "./maplayout";

export type Colors = { bg: string; fg: string; muted: string; line: string; card: string; accent: string; warn: string; bad: string };

export function themeColors(): Colors {
  const cs = getComputedStyle(document.documentElement);
  const v = (name: string, dflt: string) => cs.getPropertyValue(name).trim() || dflt;
  return { bg: v("--bg", "#ffffff"), fg: v("--fg", "#1b1f24"), muted: v("--muted", "#57606a"), line: v("--line", "#d0d7de"),
    card: v("--card", "#f6f8fa"), accent: v("--accent", "#0550ae"), warn: v("--warn", "#9a6700"), bad: v("--bad", "#cf222e") };
}

// Above this many edges "all" uses the big-graph settings.
export const bigEdges = 2000;

// edgeWidth: 1 px at 100 B/s or less, one more per factor of ten, 7 at
// 100 MB/s and above.
export function edgeWidth(e: MapEdge): number {
  if (e.bytes <= 0) return e.est > 0 || e.conns > 0 ? 1.5 : 1;
  return Math.round((1 + Math.min(6, Math.max(0, Math.log10(e.bytes + 1) - 2))) * 10) / 10;
}

function style(c: Colors, big: boolean, filtered: boolean): cytoscape.StylesheetJson {
  const s: cytoscape.StylesheetJson = [
    { selector: "node", style: { width: 16, height: 16, "background-color": c.accent, "border-width": 0, label: "data(label)",
      "font-size": 10, "min-zoomed-font-size": 9, color: c.fg, "text-valign": "bottom", "text-margin-y": 3,
      "text-outline-color": c.bg, "text-outline-width": 2, "font-family": "system-ui, sans-serif" } },
    { selector: "node.addr", style: { shape: "diamond", "background-color": c.muted } },
    { selector: "node.slow", style: { "border-width": 3, "border-color": c.warn } },
    { selector: "node.bad", style: { "border-width": 3, "border-color": c.bad } },
    { selector: "edge", style: big
      ? { "curve-style": "haystack", "haystack-radius": 0, width: "data(w)", "line-color": c.muted, opacity: 0.45 }
      : { "curve-style": "straight", width: "data(w)", "line-color": c.muted, opacity: 0.6,
        "target-arrow-shape": "triangle", "target-arrow-color": c.muted, "arrow-scale": 0.8 } },
    { selector: "edge:loop", style: { "curve-style": "bezier", "control-point-step-size": 40, "loop-direction": "-45deg", "loop-sweep": "-90deg" } },
    { selector: "edge.slow", style: { "line-color": c.warn, "target-arrow-color": c.warn, opacity: 0.8, "z-index": 1 } },
    { selector: "edge.bad", style: { "line-color": c.bad, "target-arrow-color": c.bad, opacity: 0.9, "z-index": 2 } },
  ];
  if (filtered) s.push({ selector: "node", style: { opacity: 0.2 } }, { selector: "node.lit", style: { opacity: 1 } });
  s.push(
    { selector: "node.region", style: { shape: "ellipse", width: "data(d)", height: "data(d)", "background-color": c.card, "background-opacity": 0.6,
      "border-width": 1, "border-color": c.line, label: "data(label)", "font-size": "data(fs)", "min-zoomed-font-size": 7,
      "text-valign": "top", "text-halign": "center", "text-margin-y": -8, color: c.muted, "text-outline-width": 0, opacity: 1,
      events: "no", "z-index-compare": "manual", "z-index": 0 } },
    // No z-index here: a change of one would make cytoscape re-sort every
    // element on each click.
    { selector: "node:selected", style: { "border-width": 4, "border-color": c.fg, opacity: 1 } },
    { selector: "edge:selected", style: { "line-color": c.accent, "target-arrow-color": c.accent, opacity: 1, width: 4 } },
  );
  return s;
}

export type Selected = { kind: "node" | "edge"; id: string } | null;

type ElementJSON = cytoscape.ElementDefinition;

// groupDiscs: each group's disc (the smallest around its nodes, centred
// where the placement centres the group), for the region's background.
function groupDiscs(g: Graph, pos: Map<string, Pos>, centers: Map<string, Pos>): Map<string, { x: number; y: number; d: number }> {
  const out = new Map<string, { x: number; y: number; d: number }>();
  for (const n of g.nodes) {
    const c = centers.get(n.group), p = pos.get(n.id);
    if (!c || !p) continue;
    const r = Math.hypot(p.x - c.x, p.y - c.y) + 60;
    const o = out.get(n.group);
    if (!o) out.set(n.group, { x: c.x, y: c.y, d: 2 * r });
    else o.d = Math.max(o.d, 2 * r);
  }
  for (const o of out.values()) o.d = Math.round(o.d);
  return out;
}

export function nodeHeat(g: Graph, ix: Index): Heat[] {
  const out: Heat[] = new Array(g.nodes.length).fill("");
  g.edges.forEach((e, i) => {
    const x = heat(e);
    if (!x) return;
    for (const j of [ix.src[i], ix.dst[i]]) if (out[j] !== "bad") out[j] = x;
  });
  return out;
}

// nodeElements: the regions first (drawn first, so beneath everything),
// then the hosts and addresses.
function nodeElements(g: Graph, ix: Index, pos: Map<string, Pos>, centers: Map<string, Pos>): ElementJSON[] {
  const discs = groupDiscs(g, pos, centers);
  const hot = nodeHeat(g, ix);
  const out: ElementJSON[] = [];
  for (const gr of g.groups) {
    const d = discs.get(gr.id);
    if (!d) continue; // no node in it
    out.push({ group: "nodes", data: { id: "g:" + gr.id, label: gr.label, d: d.d, fs: Math.round(Math.max(24, Math.min(600, d.d / 16))) },
      position: { x: d.x, y: d.y }, classes: "region" });
  }
  g.nodes.forEach((n, i) => {
    out.push({ group: "nodes", data: { id: n.id, label: n.label }, position: { ...pos.get(n.id)! },
      classes: `${n.kind === "agent" ? "host" : "addr"} ${hot[i]}`.trim() });
  });
  return out;
}

// edgeElement: the style reads only w and the class; the figures ride in
// scratch (changing them costs no restyle), for whoever inspects the graph.
function edgeElement(e: MapEdge): ElementJSON {
  return { group: "edges", data: { id: e.id, source: e.source, target: e.target, w: edgeWidth(e) }, classes: heat(e),
    scratch: { map: { b: e.bytes, r: e.retx, f: e.fail } } };
}

const coll = (cy: cytoscape.Core, a: cytoscape.SingularElementArgument[]) => cy.collection(a as unknown as cytoscape.CollectionArgument);

// sync brings an instance to the wanted elements: removes those gone,
// adds those new, and updates the rest only where what the style reads
// changed.
function sync(cy: cytoscape.Core, want: ElementJSON[]) {
  const ids = new Set(want.map((e) => e.data.id!));
  cy.batch(() => {
    cy.remove(cy.elements().filter((el) => !ids.has(el.id())));
    const add: ElementJSON[] = [];
    for (const w of want) {
      const el = cy.getElementById(w.data.id!);
      if (el.empty()) { add.push(w); continue; }
      if (w.scratch) el.scratch("map", w.scratch.map);
      const d = el.data();
      if (Object.entries(w.data).some(([k, v]) => d[k] !== v)) el.data(w.data);
      if (w.position && el.hasClass("region")) el.position(w.position);
      const lit = el.hasClass("lit") ? " lit" : "";
      const cls = ((w.classes as string) || "") + lit;
      if (el.classes().join(" ") !== cls.trim()) el.classes(cls);
    }
    if (add.length) cy.add(add);
  });
}

export class MapView {
  private all: cytoscape.Core;
  private filtered: cytoscape.Core | null = null;
  private active: cytoscape.Core;
  private allBox: HTMLElement;
  private filteredBox: HTMLElement;
  private shown = new Set<string>(); // the edges in "filtered"
  private lit = new Set<string>(); // the nodes lit in "filtered"
  private selectedId: string | null = null;
  private colors: Colors;
  private big: boolean;
  private keyHandler: (ev: KeyboardEvent) => void;
  private g: Graph;
  private ix: Index;
  private pos: Map<string, Pos>;
  private centers: Map<string, Pos>;

  constructor(private container: HTMLElement, g: Graph, ix: Index, pos: Map<string, Pos>, centers: Map<string, Pos>, private onSelect: (s: Selected) => void) {
    if (!document.getElementById("__________cytoscape_stylesheet")) {
      // See the comment at the top: cytoscape's inline <style>, refused
      // by the CSP, is in map.css.
      const placeholder = document.createElement("template");
      placeholder.id = "__________cytoscape_stylesheet";
      document.head.append(placeholder);
    }
    [this.g, this.ix, this.pos, this.centers] = [g, ix, pos, centers];
    this.colors = themeColors();
    // Both stay laid out (the one not shown is only invisible, see
    // map.css), so the filtered one is sized and drawn before its turn.
    this.allBox = Object.assign(document.createElement("div"), { className: "map-cy", id: "map-cy-all" });
    this.allBox.dataset.active = "true";
    this.filteredBox = Object.assign(document.createElement("div"), { className: "map-cy", id: "map-cy-filtered" });
    container.replaceChildren(this.allBox, this.filteredBox);
    this.big = g.edges.length > bigEdges;
    this.all = this.instance(this.allBox, [...nodeElements(g, ix, pos, centers), ...g.edges.map(edgeElement)], this.big, false);
    this.active = this.all;
    this.keyHandler = (ev: KeyboardEvent) => {
      const step = 80;
      switch (ev.key) {
        case "ArrowLeft": this.panBy(step, 0); break;
        case "ArrowRight": this.panBy(-step, 0); break;
        case "ArrowUp": this.panBy(0, step); break;
        case "ArrowDown": this.panBy(0, -step); break;
        case "+": case "=": this.zoomBy(1.25); break;
        case "-": case "_": this.zoomBy(0.8); break;
        case "0": this.fit(); break;
        case "Escape": this.unselect(); onSelect(null); break;
        default: return;
      }
      ev.preventDefault();
    };
    container.addEventListener("keydown", this.keyHandler);
  }

  // fitView is the viewport showing every region whole in a box of w×h
  // pixels. It is worked out from the placement, not with cytoscape's
  // fit (which measures every element, labels included: a second at
  // 12,000 elements).
  private fitView(w: number, hgt: number, pad = 24): { zoom: number; pan: Pos } {
    let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
    const grow = (x: number, y: number, r: number, top: number) => {
      x1 = Math.min(x1, x - r); x2 = Math.max(x2, x + r); y1 = Math.min(y1, y - r - top); y2 = Math.max(y2, y + r);
    };
    for (const d of groupDiscs(this.g, this.pos, this.centers).values()) grow(d.x, d.y, d.d / 2, Math.max(24, Math.min(600, d.d / 16)) + 8);
    if (!Number.isFinite(x1)) return { zoom: 1, pan: { x: w / 2, y: hgt / 2 } };
    const zoom = Math.max(0.01, Math.min(2, (w - 2 * pad) / Math.max(1, x2 - x1), (hgt - 2 * pad) / Math.max(1, y2 - y1)));
    return { zoom, pan: { x: w / 2 - zoom * (x1 + x2) / 2, y: hgt / 2 - zoom * (y1 + y2) / 2 } };
  }

  private instance(box: HTMLElement, elements: ElementJSON[], big: boolean, filtered: boolean): cytoscape.Core {
    const view = this.fitView(this.container.clientWidth, this.container.clientHeight);
    const cy = cytoscape({
      container: box, elements, style: style(this.colors, big, filtered),
      layout: { name: "preset", fit: false }, zoom: view.zoom, pan: view.pan,
      minZoom: 0.01, maxZoom: 4, boxSelectionEnabled: false, autoungrabify: true, selectionType: "single",
      hideEdgesOnViewport: big, textureOnViewport: false, motionBlur: false, pixelRatio: 1,
    });
    cy.on("tap", (ev) => {
      const t = ev.target;
      if (t === cy || t.hasClass("region")) { this.unselect(); this.onSelect(null); return; }
      this.selectedId = t.id();
      this.onSelect({ kind: t.isNode() ? "node" : "edge", id: t.id() });
    });
    return cy;
  }

  // The instance on screen (the tests read it: #map-canvas .map-cy[data-active]).
  get cy(): cytoscape.Core { return this.active; }

  // update brings the canvas to a new answer of the same view: elements
  // gone are removed, new ones added where the placement puts them, the
  // rest keep their place and get their new figures.
  update(g: Graph, ix: Index, pos: Map<string, Pos>, centers: Map<string, Pos>) {
    [this.g, this.ix, this.pos, this.centers] = [g, ix, pos, centers];
    const nodes = nodeElements(g, ix, pos, centers);
    sync(this.all, [...nodes, ...g.edges.map(edgeElement)]);
    if ((g.edges.length > bigEdges) !== this.big) {
      this.big = !this.big;
      this.all.style(style(this.colors, this.big, false));
    }
    if (this.filtered) {
      // Its edges are the filter's: show() puts them back.
      sync(this.filtered, nodes);
      this.shown.clear();
    }
  }

  // show applies a filter's result (vis: 1 for each edge to draw; on:
  // whether a filter is on at all) and returns how many edges are drawn.
  show(vis: Uint8Array, on: boolean): number {
    let count = 0;
    for (let i = 0; i < vis.length; i++) count += vis[i];
    if (!on) { this.activate(this.all); return count; }
    const f = this.filtered ?? this.makeFiltered();
    const { g, ix } = this;
    const shown = new Set<string>(), lit = new Set<string>();
    const add: ElementJSON[] = [];
    for (let i = 0; i < vis.length; i++) {
      if (!vis[i]) continue;
      const e = g.edges[i];
      shown.add(e.id);
      lit.add(g.nodes[ix.src[i]].id);
      lit.add(g.nodes[ix.dst[i]].id);
      if (!this.shown.has(e.id)) add.push(edgeElement(e));
    }
    const pick = (ids: Set<string>, not: Set<string>) => {
      const out: cytoscape.SingularElementArgument[] = [];
      for (const id of ids) if (!not.has(id)) { const el = f.getElementById(id); if (!el.empty()) out.push(el); }
      return out;
    };
    const remove = pick(this.shown, shown), litOn = pick(lit, this.lit), litOff = pick(this.lit, lit);
    f.batch(() => {
      if (remove.length) f.remove(coll(f, remove));
      if (add.length) f.add(add);
      if (litOn.length) coll(f, litOn).addClass("lit");
      if (litOff.length) coll(f, litOff).removeClass("lit");
    });
    this.shown = shown;
    this.lit = lit;
    this.activate(f);
    return count;
  }

  // prepare builds "filtered" ahead of the first filter (the page calls
  // it once the map is drawn and the browser is idle).
  prepare() {
    if (!this.filtered) this.makeFiltered();
  }

  private makeFiltered(): cytoscape.Core {
    this.filtered = this.instance(this.filteredBox, nodeElements(this.g, this.ix, this.pos, this.centers), false, true);
    this.shown.clear();
    this.lit.clear();
    return this.filtered;
  }

  private activate(next: cytoscape.Core) {
    if (this.active === next) return;
    const prev = this.active;
    const [zoom, pan] = [prev.zoom(), { ...prev.pan() }];
    for (const [box, on] of [[this.allBox, next === this.all], [this.filteredBox, next !== this.all]] as const) {
      if (on) box.dataset.active = "true"; else delete box.dataset.active;
    }
    next.viewport({ zoom, pan });
    next.elements().unselect();
    if (this.selectedId) next.getElementById(this.selectedId).select();
    this.active = next;
  }

  // focus selects an element and brings it into view.
  focus(id: string) {
    const cy = this.active;
    const el = cy.getElementById(id);
    this.selectedId = id;
    cy.elements().unselect();
    if (el.empty()) return;
    el.select();
    if (!el.isEdge()) {
      cy.zoom(Math.max(cy.zoom(), 1));
      cy.center(el);
    } else {
      cy.fit((el as cytoscape.EdgeSingular).connectedNodes(), 120);
      if (cy.zoom() > 1.5) { cy.zoom(1.5); cy.center(el); }
    }
  }

  unselect() {
    this.selectedId = null;
    this.active.elements().unselect();
  }

  // Keys and buttons move the view in a short animation: while it runs
  // the big graph is drawn without its edges (as while dragging), then
  // once whole. Without motion (the system asks for less) in one step.
  private motion(): number {
    return matchMedia("(prefers-reduced-motion: reduce)").matches ? 0 : 120;
  }

  private panBy(x: number, y: number) {
    const cy = this.active, d = this.motion();
    if (d === 0) { cy.panBy({ x, y }); return; }
    const p = cy.pan();
    cy.stop(true, true).animate({ pan: { x: p.x + x, y: p.y + y } }, { duration: d });
  }

  zoomBy(f: number) {
    const cy = this.active, d = this.motion();
    const w = this.container.clientWidth, hgt = this.container.clientHeight;
    const level = Math.max(cy.minZoom(), Math.min(cy.maxZoom(), cy.zoom() * f));
    if (d === 0) { cy.zoom({ level, renderedPosition: { x: w / 2, y: hgt / 2 } }); return; }
    // The model point under the middle stays there.
    const p = cy.pan(), z = cy.zoom();
    const mx = (w / 2 - p.x) / z, my = (hgt / 2 - p.y) / z;
    cy.stop(true, true).animate({ zoom: level, pan: { x: w / 2 - mx * level, y: hgt / 2 - my * level } }, { duration: d });
  }

  // resize: after the canvas was hidden (an empty answer) and shown again.
  resize() {
    this.all.resize();
    this.filtered?.resize();
  }

  fit() { this.active.viewport(this.fitView(this.container.clientWidth, this.container.clientHeight)); }

  restyle() {
    this.colors = themeColors();
    this.all.style(style(this.colors, this.big, false));
    this.filtered?.style(style(this.colors, false, true));
  }

  destroy() {
    this.container.removeEventListener("keydown", this.keyHandler);
    this.all.destroy();
    this.filtered?.destroy();
  }
}
