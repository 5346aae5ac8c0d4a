// Time-series charts over the tenant's PromQL API, drawn with uPlot: a
// query_range matrix aligned on a fixed grid of the chosen window, the
// theme's colours (CSS variables, followed live), a legend with each
// series' latest value (the text a screen reader gets), and data that is
// partial said so on the chart, never a silent gap: stretches without
// samples are hatched and listed, what the agents lost in the window (the
// answer's losses block, or the caller's own count) and nodes that did
// not answer are written next to the chart, and the chart's element
// carries data-partial="true". A chart is created once and updated with
// setData on every refresh.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./agent.css";
import { api, button, every, h, roleIn, tpath } from "../lib";

// The answer of the tenant's Prometheus API, with Outpost's blocks.
export type Losses = { from: string; to: string; events: Record<string, number>; export_batches: Record<string, number>; complete: boolean };
export type NodeStatus = { node: string; status: string; latency_ms?: number; series?: number; error?: string };
export type Sample = { metric: Record<string, string>; values?: [number, string][]; value?: [number, string] };
export type PromAnswer = {
  status: string;
  data?: { resultType: string; result: Sample[] };
  warnings?: string[];
  nodes?: NodeStatus[];
  losses?: Losses;
};

// A window of time and the grid its charts share: points every step
// seconds from start to end (unix seconds), and the range rate() reads.
export type Grid = { seconds: number; start: number; end: number; step: number; rate: number; xs: number[] };

export const WINDOWS: { label: string; seconds: number }[] = [
  { label: "15 min", seconds: 900 }, { label: "1 h", seconds: 3600 }, { label: "6 h", seconds: 21600 },
];

// grid picks a step that keeps a window at 500 points or fewer and ends
// it at the last whole step, so refreshes line up.
export function grid(seconds: number, nowMs = Date.now()): Grid {
  const step = [5, 10, 15, 30, 60, 120, 300, 600].find((s) => seconds / s <= 500) ?? Math.ceil(seconds / 500);
  const end = Math.floor(nowMs / 1000 / step) * step;
  const start = end - seconds;
  const xs: number[] = [];
  for (let t = start; t <= end; t += step) xs.push(t);
  // rate() needs two samples in its range: agents export every 15 s by
  // default, so a minute holds about four.
  return { seconds, start, end, step, rate: Math.max(60, 4 * step), xs };
}

// Queries share two slots per page load: the node serves a tenant two
// queries at once by default, and the rest would only queue there.
let inFlight = 0;
const waiting: (() => void)[] = [];
async function slot<T>(fn: () => Promise<T>): Promise<T> {
  if (inFlight >= 2) await new Promise<void>((res) => waiting.push(res));
  else inFlight++;
  try { return await fn(); } finally {
    const next = waiting.shift();
    if (next) next(); else inFlight--;
  }
}

export function queryRange(tenant: string, query: string, g: Grid, signal: AbortSignal): Promise<PromAnswer> {
  const p = new URLSearchParams({ query, start: String(g.start), end: String(g.end), step: String(g.step) });
  return slot(() => api<PromAnswer>("GET", tpath(tenant, `/prometheus/api/v1/query_range?${p}`), undefined, signal));
}

export function queryInstant(tenant: string, query: string, signal: AbortSignal, at?: number): Promise<PromAnswer> {
  const p = new URLSearchParams({ query });
  if (at !== undefined) p.set("time", String(at));
  return slot(() => api<PromAnswer>("GET", tpath(tenant, `/prometheus/api/v1/query?${p}`), undefined, signal));
}

// promString quotes a label value for a PromQL selector.
export function promString(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

export function num(s: string): number | null {
  const v = Number(s);
  return Number.isFinite(v) ? v : null;
}

// A series on the grid: null where the answer has no sample.
export type Line = { label: string; values: (number | null)[]; metric?: Record<string, string> };

// lines aligns a matrix on the grid, one line per series, labelled by
// label, each value multiplied by scale (seconds to ms: 1000).
export function lines(g: Grid, a: PromAnswer, label: (m: Record<string, string>) => string, scale = 1): Line[] {
  const out: Line[] = [];
  for (const s of a.data?.result || []) {
    const values: (number | null)[] = new Array(g.xs.length).fill(null);
    for (const [t, v] of s.values || []) {
      const i = Math.round((t - g.start) / g.step);
      const n = num(v);
      if (i >= 0 && i < values.length && n !== null) values[i] = n * scale;
    }
    out.push({ label: label(s.metric), values, metric: s.metric });
  }
  return out.sort((a, b) => a.label.localeCompare(b.label));
}

// present is, per grid point, whether any series of the answer has a
// sample there (e.g. an agent's own health series: it was exporting).
export function present(g: Grid, a: PromAnswer): boolean[] {
  const out = new Array(g.xs.length).fill(false);
  for (const l of lines(g, a, () => "")) l.values.forEach((v, i) => { if (v !== null) out[i] = true; });
  return out;
}

// Units and their formats.
export type Unit = "bytes/s" | "/s" | "ms" | "ratio" | "count";

function si(v: number, digits = 3): string {
  const a = Math.abs(v);
  for (const [d, p] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]] as [number, string][]) {
    if (a >= d) return `${+(v / d).toPrecision(digits)} ${p}`;
  }
  return `${+v.toPrecision(digits)} `;
}

export function fmt(unit: Unit, v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  switch (unit) {
    case "bytes/s": return `${si(v)}B/s`;
    case "/s": return `${si(v)}/s`.replace(" /s", "/s");
    case "ms": return v >= 1000 ? `${+(v / 1000).toPrecision(3)} s` : `${+v.toPrecision(3)} ms`;
    case "ratio": return `${Math.round(v * 100)}%`;
    case "count": return si(v).trim();
  }
}

function clock(t: number): string {
  return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function span(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${+(seconds / 3600).toFixed(1)} h`;
}

// The theme, read from the CSS variables (app.css; the chart palette in
// agent.css) and read again when the system switches light and dark.
type Palette = { fg: string; muted: string; line: string; warn: string; bad: string; series: string[] };
let palette: Palette | null = null;
function colours(): Palette {
  if (palette) return palette;
  const cs = getComputedStyle(document.documentElement);
  const v = (name: string, dflt: string) => cs.getPropertyValue(name).trim() || dflt;
  const series = [1, 2, 3, 4, 5, 6].map((i) => v(`--chart-${i}`, ""));
  const fallback = [v("--accent", "#0550ae"), v("--ok", "#1a7f37"), v("--warn", "#9a6700"), v("--bad", "#cf222e"), v("--muted", "#57606a"), v("--fg", "#1b1f24")];
  palette = {
    fg: v("--fg", "#1b1f24"), muted: v("--muted", "#57606a"), line: v("--line", "#d0d7de"), warn: v("--warn", "#9a6700"), bad: v("--bad", "#cf222e"),
    series: series.map((c, i) => c || fallback[i]),
  };
  return palette;
}
const themed = new Set<Chart>();
const dark = window.matchMedia("(prefers-color-scheme: dark)");
dark.addEventListener("change", () => { palette = null; for (const c of themed) c.retheme(); });

// hatch is the fill of a stretch without samples: diagonal stripes in the
// theme's warning colour.
function hatch(ctx: CanvasRenderingContext2D, colour: string): CanvasPattern | string {
  const c = document.createElement("canvas");
  const px = Math.max(1, Math.round(window.devicePixelRatio || 1));
  c.width = c.height = 8 * px;
  const x = c.getContext("2d");
  if (!x) return colour;
  x.strokeStyle = colour;
  x.globalAlpha = 0.45;
  x.lineWidth = px;
  x.beginPath();
  x.moveTo(0, 8 * px); x.lineTo(8 * px, 0);
  x.moveTo(-2 * px, 2 * px); x.lineTo(2 * px, -2 * px);
  x.moveTo(6 * px, 10 * px); x.lineTo(10 * px, 6 * px);
  x.stroke();
  return ctx.createPattern(c, "repeat") || colour;
}

// Status says how complete a chart's data is.
export type Status = {
  // answers whose losses, nodes and warnings count (by default the
  // losses block of each; see losses).
  answers?: PromAnswer[];
  // present, per grid point, says the source was exporting: a missing
  // sample there is no gap (zeroWhenPresent: a counter that did not move
  // is 0), and where it was not, after expectFrom, is a gap.
  present?: boolean[];
  zeroWhenPresent?: boolean;
  // expectFrom (unix s): before it no data is expected (the agent did not
  // exist yet). Without present, a series' missing samples between its
  // first and last are gaps, and with expectFrom also those after it.
  expectFrom?: number;
  // losses replaces the answers' losses blocks (tenant-wide) with the
  // caller's own count: the text, and the grid times where losses were.
  losses?: { text: string; at: number[] };
  // gapWhy explains the hatched stretches.
  gapWhy?: string;
  // notes are further reasons the data is partial (a peer missing).
  notes?: string[];
  // empty is said when there is no data at all.
  empty?: string;
};

export type ChartOptions = {
  id: string;
  title: string;
  unit: Unit;
  signal: AbortSignal;
  height?: number;
  // describe says what the chart shows, for its caption.
  describe?: string;
};

// Chart is one chart: a figure holding the uPlot canvas, the legend
// with the latest values, and what is partial.
export class Chart {
  readonly el: HTMLElement;
  private plot: HTMLElement;
  private legend: HTMLElement;
  private readout: HTMLElement;
  private partialBox: HTMLElement;
  private badge: HTMLElement;
  private empty: HTMLElement;
  private u: uPlot | null = null;
  private g: Grid | null = null;
  private labels: string[] = [];
  private gaps: [number, number][] = [];
  private lossAt: number[] = [];
  private pattern: CanvasPattern | string | null = null;
  private ro: ResizeObserver;

  constructor(private o: ChartOptions) {
    const titleId = `${o.id}-title`;
    this.badge = h("span", { class: "chip warn", hidden: "" }, "partial");
    this.plot = h("div", { class: "chart-plot", role: "img", "aria-label": `${o.title}: loading` });
    this.legend = h("ul", { class: "chart-legend", "aria-label": `${o.title}: latest values` });
    this.readout = h("p", { class: "chart-readout muted", "aria-hidden": "true" });
    this.partialBox = h("div", { class: "chart-partial", role: "note", hidden: "" });
    this.empty = h("p", { class: "chart-empty muted", hidden: "" });
    this.el = h("figure", { class: "chart", id: o.id, "aria-labelledby": titleId, "data-partial": "false", "data-points": "0", "data-nonzero": "0" },
      h("figcaption", { id: titleId }, h("span", { class: "chart-title" }, o.title), " ", this.badge,
        o.describe ? h("span", { class: "chart-describe muted" }, o.describe) : null),
      this.partialBox, this.plot, this.readout, this.legend, this.empty);
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(this.el);
    themed.add(this);
    o.signal.addEventListener("abort", () => this.destroy());
  }

  private width(): number {
    return Math.max(240, Math.floor(this.el.clientWidth || 480));
  }

  private resize() {
    if (!this.u) return;
    const w = this.width();
    if (Math.abs(w - this.u.width) > 1) this.u.setSize({ width: w, height: this.o.height || 200 });
  }

  retheme() {
    this.pattern = null;
    this.drawLegendSwatches();
    this.u?.redraw(true, true);
  }

  destroy() {
    this.ro.disconnect();
    themed.delete(this);
    this.u?.destroy();
    this.u = null;
  }

  private seriesOpts(label: string, i: number): uPlot.Series {
    return {
      label, width: 1.5, spanGaps: false,
      stroke: () => colours().series[i % colours().series.length],
      value: (_u: uPlot, v: number | null) => fmt(this.o.unit, v),
      points: { size: 4 },
    };
  }

  private create(g: Grid) {
    const unit = this.o.unit;
    const axisColour = () => colours().muted;
    const gridColour = () => colours().line;
    const opts: uPlot.Options = {
      width: this.width(), height: this.o.height || 200,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      scales: {
        x: { time: true, range: () => [this.g?.start ?? g.start, this.g?.end ?? g.end] },
        y: { range: (_u, _min, max) => unit === "ratio" ? [0, 1.05] : [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        { stroke: axisColour, grid: { stroke: gridColour, width: 1 }, ticks: { stroke: gridColour, width: 1 } },
        { stroke: axisColour, grid: { stroke: gridColour, width: 1 }, ticks: { stroke: gridColour, width: 1 }, size: 72,
          values: (_u, splits) => splits.map((v) => fmt(unit, v)) },
      ],
      series: [{}, ...this.labels.map((l, i) => this.seriesOpts(l, i))],
      hooks: {
        drawClear: [(u) => this.drawGaps(u)],
        draw: [(u) => this.drawLosses(u)],
        setCursor: [(u) => this.showCursor(u)],
      },
    };
    this.u = new uPlot(opts, this.data(g, []), this.plot);
  }

  private data(g: Grid, ls: Line[]): uPlot.AlignedData {
    return [g.xs, ...ls.map((l) => l.values)] as uPlot.AlignedData;
  }

  // The stretches without samples, hatched under the series.
  private drawGaps(u: uPlot) {
    if (!this.gaps.length) return;
    const ctx = u.ctx;
    if (!this.pattern) this.pattern = hatch(ctx, colours().warn);
    const { top, height, left, width } = u.bbox;
    ctx.save();
    ctx.fillStyle = this.pattern;
    for (const [a, b] of this.gaps) {
      const x0 = Math.max(left, u.valToPos(a, "x", true));
      const x1 = Math.min(left + width, u.valToPos(b, "x", true));
      if (x1 > x0) ctx.fillRect(x0, top, x1 - x0, height);
    }
    ctx.restore();
  }

  // Where the agents lost events: a mark on the plot's bottom edge.
  private drawLosses(u: uPlot) {
    if (!this.lossAt.length) return;
    const ctx = u.ctx;
    const { top, height } = u.bbox;
    const px = window.devicePixelRatio || 1;
    ctx.save();
    ctx.fillStyle = colours().bad;
    for (const t of this.lossAt) {
      const x = u.valToPos(t, "x", true);
      ctx.beginPath();
      ctx.moveTo(x, top + height - 7 * px);
      ctx.lineTo(x - 4 * px, top + height);
      ctx.lineTo(x + 4 * px, top + height);
      ctx.closePath();
      ctx.fill();
    }
    ctx.restore();
  }

  private showCursor(u: uPlot) {
    const i = u.cursor.idx;
    if (i === null || i === undefined || !this.g) { this.readout.textContent = ""; return; }
    const parts = this.labels.map((l, si) => `${l} ${fmt(this.o.unit, (u.data[si + 1] as (number | null)[])[i])}`);
    this.readout.textContent = `${clock(this.g.xs[i])}: ${parts.join(", ") || "no data"}`;
  }

  private drawLegendSwatches() {
    this.legend.querySelectorAll<HTMLElement>(".swatch").forEach((s, i) => {
      s.style.backgroundColor = colours().series[i % colours().series.length];
    });
  }

  // update draws ls on the grid g with what is partial about them.
  update(g: Grid, ls: Line[], st: Status = {}) {
    this.g = g;
    const n = g.xs.length;
    // Where samples are missing though they were expected.
    const missing: boolean[] = new Array(n).fill(false);
    const from = st.expectFrom ?? -Infinity;
    if (st.present) {
      const p = st.present;
      for (let i = 0; i < n; i++) if (!p[i] && g.xs[i] >= from) missing[i] = true;
      for (const l of ls) {
        for (let i = 0; i < n; i++) {
          if (!p[i]) l.values[i] = null;
          else if (l.values[i] === null && st.zeroWhenPresent) l.values[i] = 0;
        }
      }
    } else {
      for (const l of ls) {
        const first = l.values.findIndex((v) => v !== null);
        if (first < 0) continue;
        let last = n - 1;
        if (st.expectFrom === undefined) while (last > first && l.values[last] === null) last--;
        let lo = first;
        if (st.expectFrom !== undefined) { const e = g.xs.findIndex((x) => x >= from); if (e >= 0) lo = Math.min(first, e); }
        for (let i = lo; i <= last; i++) if (l.values[i] === null) missing[i] = true;
      }
      if (!ls.length && st.expectFrom !== undefined) for (let i = 0; i < n; i++) if (g.xs[i] >= from) missing[i] = true;
    }
    const runs: [number, number][] = [];
    for (let i = 0; i < n; i++) {
      if (!missing[i]) continue;
      let j = i;
      while (j + 1 < n && missing[j + 1]) j++;
      runs.push([i, j]);
      i = j;
    }
    this.gaps = runs.map(([a, b]) => [g.xs[a] - g.step / 2, g.xs[b] + g.step / 2]);

    // What is partial, in words.
    const notes: string[] = [];
    if (runs.length) {
      const listed = runs.slice(0, 3).map(([a, b]) => {
        const to = b === n - 1 ? "now" : clock(g.xs[b]);
        return `${clock(g.xs[a])}–${to} (${span((b - a + 1) * g.step)})`;
      });
      notes.push(`No samples ${listed.join(", ")}${runs.length > 3 ? ` and ${runs.length - 3} more stretches` : ""} (hatched)${st.gapWhy ? `: ${st.gapWhy}` : ""}.`);
    }
    this.lossAt = [];
    if (st.losses) {
      if (st.losses.text) notes.push(st.losses.text);
      this.lossAt = st.losses.at;
    } else {
      const l = (st.answers || []).map((a) => a.losses).find((x) => x && !x.complete);
      if (l) notes.push(lossText(l, "The tenant's agents"));
    }
    for (const a of st.answers || []) {
      for (const nd of a.nodes || []) {
        if (nd.status !== "ok") notes.push(`Node ${nd.node} did not answer (${nd.status}${nd.error ? `: ${nd.error}` : ""}): samples of agents attached to it are missing.`);
      }
      for (const w of a.warnings || []) if (!w.startsWith("agents lost data") && !/^node /.test(w)) notes.push(w);
    }
    notes.push(...(st.notes || []));
    const uniq = [...new Set(notes)];
    this.partialBox.replaceChildren(...uniq.map((t, i) => h("p", {}, i === 0 ? h("strong", {}, "Partial: ") : null, t)));
    this.partialBox.hidden = uniq.length === 0;
    this.badge.hidden = uniq.length === 0;
    this.el.dataset.partial = String(uniq.length > 0);

    // The data.
    let points = 0, nonzero = 0;
    for (const l of ls) for (const v of l.values) if (v !== null) { points++; if (v !== 0) nonzero++; }
    this.el.dataset.points = String(points);
    this.el.dataset.nonzero = String(nonzero);
    const labels = ls.map((l) => l.label);
    if (!this.u) {
      if (this.o.signal.aborted) return;
      this.labels = labels;
      if (!this.el.isConnected) { requestAnimationFrame(() => this.update(g, ls, st)); return; }
      this.create(g);
    } else if (labels.join("\u0000") !== this.labels.join("\u0000")) {
      // Series came or went (a new probe target): change the series in
      // place, keeping the chart.
      const u = this.u;
      while (u.series.length > 1) u.delSeries(u.series.length - 1);
      this.labels = labels;
      labels.forEach((l, i) => u.addSeries(this.seriesOpts(l, i), i + 1));
    }
    this.u!.setData(this.data(g, ls));

    // The legend: each series' latest value, which is also what a screen
    // reader is told.
    const latest = ls.map((l) => {
      for (let i = n - 1; i >= 0; i--) if (l.values[i] !== null) return l.values[i];
      return null;
    });
    this.legend.replaceChildren(...ls.map((l, i) => h("li", {}, h("span", { class: "swatch", "aria-hidden": "true" }), `${l.label}: `,
      h("span", { class: "value" }, fmt(this.o.unit, latest[i])))));
    this.drawLegendSwatches();
    const win = span(g.seconds);
    this.empty.textContent = st.empty || "No data in this window.";
    this.empty.hidden = points > 0;
    const summary = ls.length ? ls.map((l, i) => `${l.label} ${fmt(this.o.unit, latest[i])}`).join(", ") : "no data";
    this.plot.setAttribute("aria-label", `${this.o.title}, last ${win}. Latest: ${summary}.${uniq.length ? ` Partial: ${uniq.join(" ")}` : ""}`);
  }
}

// lossText says what a losses block (or the caller's own count, in the
// same shape) holds.
export function lossText(l: Pick<Losses, "events" | "export_batches">, who: string): string {
  const part = (m: Record<string, number>) => Object.entries(m || {}).filter(([, v]) => v >= 0.5).sort((a, b) => b[1] - a[1]);
  const ev = part(l.events), ex = part(l.export_batches);
  const sum = (xs: [string, number][]) => Math.round(xs.reduce((s, [, v]) => s + v, 0));
  const out: string[] = [];
  const n = (k: number, one: string, many: string) => `${k} ${k === 1 ? one : many}`;
  if (ev.length) out.push(`lost ${n(sum(ev), "event", "events")} (${ev.map(([k, v]) => `${Math.round(v)} at stage ${k}`).join(", ")})`);
  if (ex.length) out.push(`dropped ${n(sum(ex), "export batch", "export batches")} (${ex.map(([k, v]) => `${Math.round(v)} ${k}`).join(", ")})`);
  return out.length ? `${who} ${out.join(" and ")} in this window: the counts may be low.` : "";
}

// windowPicker draws the window buttons; pick is called with the chosen
// window's seconds.
export function windowPicker(current: number, pick: (seconds: number) => void): HTMLElement {
  const box = h("div", { class: "window-picker", role: "group", "aria-label": "Time window" }, h("span", { class: "muted" }, "Window: "));
  const buttons = WINDOWS.map((w) => {
    const b = h("button", { type: "button", "aria-pressed": String(w.seconds === current) }, w.label);
    b.addEventListener("click", () => {
      for (const x of buttons) x.setAttribute("aria-pressed", String(x === b));
      pick(w.seconds);
    });
    return b;
  });
  box.append(...buttons);
  return box;
}

// refreshLoop runs refresh now and every 15 s while the page is open,
// and says so in where. Under a break-glass grant every read is recorded
// in the provider audit stream before it happens, so the page reads once
// and again only when asked.
export async function refreshLoop(signal: AbortSignal, tenant: string, refresh: () => Promise<void>, where: HTMLElement) {
  if (roleIn(tenant) !== "") {
    where.replaceChildren(h("span", { class: "muted" }, "Refreshed every 15 s."));
    await every(signal, 15000, refresh);
    return;
  }
  where.replaceChildren(h("span", { class: "muted" }, "Read under a break-glass grant: each read is recorded in the provider audit stream, so this page does not refresh itself. "),
    button("Read again", refresh, { id: "read-again" }));
  await refresh();
}
