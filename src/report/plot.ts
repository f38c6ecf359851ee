/**
 * Plots of `pimc bench`: plain data in, a vega-lite spec out (pure functions), and the spec
 * rendered headless by vega to an SVG string (no canvas, no native code; same data, same bytes),
 * or that SVG rasterized to PNG by resvg (its text in the system's fonts).
 */
import { Error as ErrorLevel, logger, parse, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { si } from "./format.js";

/** Busy seconds of each engine during one step, and the step's latency. */
export interface StepBusy {
  batch: number;
  /** The step's latency (first command's start to last command's end). */
  seconds: number;
  /** Busy seconds per engine (keys of BenchPlot.engines). */
  busy: Readonly<Record<string, number>>;
  /** `--baselines`: the step with every op on the host, and with every op PIM can run there (null: none). */
  host_only?: number;
  pim_only?: number | null;
}

/** A step's energy per token, joules by part. */
export interface StepEnergy {
  batch: number;
  perToken: Readonly<Record<string, number>>;
}

/** One op or kernel of one step (a row of the bench table). */
export interface OpPoint {
  name: string;
  device: string;
  batch: number;
  seconds: number;
  bytes: number;
  /** Work done, in the unit of the device's roof: flops, or instructions for a roof in instr/s. */
  flops: number;
}

/** A device's roofline: min(flops, bandwidth x intensity). */
export interface Roof {
  /** The device, as the points name it (points of that device share its colour). */
  device: string;
  /** Peak throughput, flop/s. */
  flops: number;
  /** Peak memory bandwidth, bytes/s. */
  bandwidth: number;
  /** What the compute roof counts, when not flops (e.g. "instr/s"). */
  unit?: string;
}

/** An engine of the breakdown: its key in StepBusy.busy and its label. */
export interface Engine {
  key: string;
  label: string;
}

export interface BenchPlot {
  title: string;
  subtitle?: string;
  /** The engines, bottom to top of the stacked bars. */
  engines: readonly Engine[];
  steps: StepBusy[];
  /** Energy per token of each step by part (targets that model energy: docs/energy.md). */
  energy?: readonly StepEnergy[];
  points: OpPoint[];
  roofs: Roof[];
}

export interface AblationBar {
  config: string;
  seconds: number;
  speedup_vs_basegemm: number;
}

export type Spec = TopLevelSpec;

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

/** The engines' colours, bottom to top (vega's tableau10 order). */
const PALETTE = ["#4c78a8", "#f58518", "#e45756", "#54a24b", "#72b7b2", "#eeca3b", "#ff9da6", "#9d755d"];

/** The unit to show `s` seconds in, and its size in seconds. */
const timeUnit = (s: number): [string, number] =>
  s >= 1 ? ["s", 1] : s >= 1e-3 ? ["ms", 1e-3] : ["us", 1e-6];

/** Seconds for labels, three significant digits: "85.2 ms", "39.6 s", "412 us". */
export function seconds(s: number): string {
  const [unit, size] = timeUnit(s);
  const v = s / size;
  return `${v >= 100 ? v.toFixed(0) : v.toPrecision(3)} ${unit}`;
}

const pow10Below = (x: number): number => 10 ** Math.floor(Math.log10(x));
const pow10Above = (x: number): number => 10 ** Math.ceil(Math.log10(x));

/** The reference steps drawn as ticks beside the latency, with their colours. */
const REFS = [
  { key: "host_only", label: "host only", color: "#9d755d", colorName: "brown" },
  { key: "pim_only", label: "PIM only", color: "#b279a2", colorName: "pink" },
] as const;

/**
 * The stacked busy time of each engine per batch size, with the step latency as a tick (and the
 * host-only and PIM-only steps as ticks of their colours, when given).
 */
export function breakdownSpec(steps: readonly StepBusy[], engines: readonly Engine[]) {
  const PARTS = engines.map((e, i) => ({ ...e, color: PALETTE[i % PALETTE.length]! }));
  const busy = (s: StepBusy, key: string): number => s.busy[key] ?? 0;
  const refOf = (s: StepBusy, key: (typeof REFS)[number]["key"]): number | undefined => s[key] ?? undefined;
  // The axis in the unit of the longest step (or busiest engine).
  const [unit, size] = timeUnit(
    Math.max(
      0,
      ...steps.flatMap((s) => [
        s.seconds,
        ...PARTS.map((p) => busy(s, p.key)),
        ...REFS.map((r) => refOf(s, r.key) ?? 0),
      ]),
    ),
  );
  const refs = REFS.filter((r) => steps.some((s) => refOf(s, r.key) !== undefined));
  const parts = steps.flatMap((s) =>
    PARTS.map((p, order) => ({ batch: s.batch, engine: p.label, order, t: busy(s, p.key) / size })),
  );
  const latency = steps.map((s) => ({
    batch: s.batch,
    t: s.seconds / size,
    top: Math.max(s.seconds, ...PARTS.map((p) => busy(s, p.key))) / size,
    label: seconds(s.seconds),
  }));
  const x = {
    field: "batch",
    type: "ordinal" as const,
    title: "batch size",
    sort: steps.map((s) => s.batch),
    axis: { labelAngle: 0 },
  };
  return {
    title: {
      text: "Where the time goes per step",
      subtitle: `busy time per engine (engines overlap); black tick: step latency${refs.map((r) => `; ${r.colorName} tick: ${r.label}`).join("")}`,
    },
    width: 320,
    height: 280,
    layer: [
      {
        data: { values: parts },
        mark: { type: "bar" as const },
        encoding: {
          x,
          y: {
            field: "t",
            type: "quantitative" as const,
            stack: "zero" as const,
            title: `busy time (${unit})`,
          },
          color: {
            field: "engine",
            type: "nominal" as const,
            title: "engine",
            scale: { domain: PARTS.map((p) => p.label), range: PARTS.map((p) => p.color) },
            sort: PARTS.map((p) => p.label),
          },
          order: { field: "order", type: "quantitative" as const },
        },
      },
      {
        data: { values: latency },
        mark: { type: "tick" as const, color: "black", thickness: 3 },
        encoding: { x, y: { field: "t", type: "quantitative" as const } },
      },
      {
        data: { values: latency },
        mark: { type: "text" as const, dy: -8, fontSize: 11 },
        encoding: { x, y: { field: "top", type: "quantitative" as const }, text: { field: "label" } },
      },
      ...refs.map((r) => ({
        data: {
          values: steps.flatMap((s) => {
            const t = refOf(s, r.key);
            return t === undefined ? [] : [{ batch: s.batch, t: t / size }];
          }),
        },
        mark: { type: "tick" as const, color: r.color, thickness: 3, size: 40 },
        encoding: { x, y: { field: "t", type: "quantitative" as const } },
      })),
    ],
  };
}

/** A quantitative position channel on a log scale over `domain`, with SI labels (10m, 1k, 2G). */
const logAxis = (field: string, title: string, domain: readonly number[]) => ({
  field,
  type: "quantitative" as const,
  title,
  scale: { type: "log" as const, domain: [...domain] },
  axis: { format: "~s" },
});

/** Points (intensity, throughput) where a roof bends or the axis ends, for a line in log-log axes. */
export function roofLine(roof: Roof, xDomain: readonly [number, number]): { x: number; y: number }[] {
  const [lo, hi] = xDomain;
  const ridge = roof.flops / roof.bandwidth;
  const xs = ridge > lo && ridge < hi ? [lo, ridge, hi] : [lo, hi];
  return xs.map((x) => ({ x, y: Math.min(roof.flops, roof.bandwidth * x) }));
}

/** Size of a roofline panel, pixels. */
const ROOF_W = 380;
const ROOF_H = 280;

/** A label's extent in pixels from the plot's bottom left. */
export interface Box {
  readonly x0: number;
  readonly x1: number;
  readonly y0: number;
  readonly y1: number;
}

/** Where a point's label sits: north-east (right, above), south-east, north-west, south-west. */
export type LabelSide = "ne" | "se" | "nw" | "sw";
const SIDES: readonly LabelSide[] = ["ne", "se", "nw", "sw"];
/** Approximate pixels per character of a 9-pixel label. */
const CHAR_W = 5.5;

/**
 * The labels of a roofline's points: points closer than a label's height share one label (their
 * names, each with its batch sizes when `withBatch`: "gemm1 (b1, b4), gemm7 (b1)") on the highest of
 * them; each label goes to the first side of its point where it overlaps no label placed before and
 * stays inside the plot (highest throughput first). The other points get an empty label.
 */
export function placeLabels<P extends { intensity: number; throughput: number; name: string; batch: number }>(
  pts: readonly P[],
  xDomain: readonly [number, number],
  yDomain: readonly [number, number],
  withBatch: boolean,
  /** Boxes already taken (the roofs' labels), in pixels from the bottom left. */
  taken: readonly Box[] = [],
): (P & { label: string; side: LabelSide })[] {
  const px = (v: number, [lo, hi]: readonly [number, number], size: number): number =>
    (size * Math.log10(v / lo)) / Math.log10(hi / lo);
  const out = pts.map((p) => ({ ...p, label: "", side: "ne" as LabelSide }));
  const groups: { x: number; y: number; members: typeof out }[] = [];
  for (const p of [...out].sort((a, b) => b.throughput - a.throughput)) {
    const x = px(p.intensity, xDomain, ROOF_W);
    const y = px(p.throughput, yDomain, ROOF_H);
    const g = groups.find((q) => Math.abs(q.x - x) < 12 && Math.abs(q.y - y) < 10);
    if (g) g.members.push(p);
    else groups.push({ x, y, members: [p] });
  }
  const boxes: Box[] = [...taken];
  const batchList = (ms: readonly P[]): string =>
    [...new Set(ms.map((m) => m.batch))]
      .sort((a, b) => a - b)
      .map((b) => `b${b}`)
      .join(", ");
  for (const { x, y, members } of groups) {
    const names = [...new Set(members.map((m) => m.name))];
    let label = names
      .map((n) => (withBatch ? `${n} (${batchList(members.filter((m) => m.name === n))})` : n))
      .join(", ");
    // Too long for a third of the plot: the names, then every batch size of the group once.
    if (withBatch && label.length * CHAR_W > ROOF_W / 3)
      label = `${names.join(", ")} (${batchList(members)})`;
    const w = label.length * CHAR_W;
    const box = (side: LabelSide) => {
      const east = side.endsWith("e");
      const north = side.startsWith("n");
      return {
        x0: east ? x + 6 : x - 6 - w,
        x1: east ? x + 6 + w : x - 6,
        y0: north ? y + 3 : y - 13,
        y1: north ? y + 13 : y - 3,
      };
    };
    const inside = (b: Box) => b.x0 >= 0 && b.x1 <= ROOF_W;
    const overlaps = (b: Box) =>
      boxes.filter((o) => b.x0 < o.x1 && o.x0 < b.x1 && b.y0 < o.y1 && o.y0 < b.y1).length;
    // A free side inside the plot; else the side inside it with the fewest overlaps; else east.
    const side =
      SIDES.find((s) => inside(box(s)) && overlaps(box(s)) === 0) ??
      SIDES.filter((s) => inside(box(s))).sort((a, b) => overlaps(box(a)) - overlaps(box(b)))[0] ??
      "ne";
    boxes.push(box(side));
    members[0]!.label = label;
    members[0]!.side = side;
  }
  return out;
}

/** The unit of a roof's compute peak ("flop/s" unless it says otherwise). */
const unitOf = (r: Roof): string => r.unit ?? "flop/s";

/** What one unit of work is called in a rate unit: "flop/s" -> "flop", "instr/s" -> "instr". */
const workOf = (unit: string): string => unit.replace(/\/s$/, "");

/**
 * Operational intensity against achieved throughput of each op and kernel, under the devices'
 * roofs: one unit on each axis (the roofs' unit; a device without a roof counts flops), every point
 * labelled with its op or kernel (and batch size when there are several).
 */
export function rooflineSpec(points: readonly OpPoint[], roofs: readonly Roof[]) {
  const unit = roofs[0] ? unitOf(roofs[0]) : "flop/s";
  if (roofs.some((r) => unitOf(r) !== unit))
    throw new Error(`rooflineSpec: roofs in ${unit} and ${roofs.find((r) => unitOf(r) !== unit)!.unit}`);
  const work = workOf(unit);
  const pts = points
    .filter((p) => p.flops > 0 && p.bytes > 0 && p.seconds > 0)
    .map((p) => ({
      name: p.name,
      device: p.device,
      batch: p.batch,
      intensity: p.flops / p.bytes,
      throughput: p.flops / p.seconds,
    }));
  const xs = [...pts.map((p) => p.intensity), ...roofs.map((r) => r.flops / r.bandwidth)];
  const ys = [...pts.map((p) => p.throughput), ...roofs.map((r) => r.flops)];
  const xDomain: [number, number] = xs.length
    ? [pow10Below(Math.min(...xs)), pow10Above(Math.max(...xs) * 3)]
    : [0.01, 100];
  const yDomain: [number, number] = ys.length
    ? [
        pow10Below(Math.min(...ys, ...roofs.map((r) => r.bandwidth * xDomain[0]))),
        pow10Above(Math.max(...ys) * 3),
      ]
    : [1e6, 1e12];
  const lines = roofs.flatMap((r) => roofLine(r, xDomain).map((p) => ({ ...p, device: r.device })));
  // Labels at the right end: the highest roof's above its line, the others below theirs.
  const highest = Math.max(...roofs.map((r) => r.flops));
  const labels = roofs.map((r) => ({
    x: xDomain[1],
    y: r.flops,
    device: r.device,
    above: r.flops === highest,
    label: `${r.device}: ${si(r.flops, unit)}, ${si(r.bandwidth, "B/s")}`,
  }));
  const devices = [...new Set([...roofs.map((r) => r.device), ...pts.map((p) => p.device)])];
  const x = logAxis("x", `operational intensity (${work}/byte)`, xDomain);
  const y = logAxis("y", `achieved throughput (${unit})`, yDomain);
  const color = { field: "device", type: "nominal" as const, title: "device", scale: { domain: devices } };
  const batches = [...new Set(pts.map((p) => p.batch))];
  // Kernels by their name alone ("gemm1", not its tiling in parentheses).
  const short = (n: string): string => n.replace(/ \(.*\)$/, "");
  // The roofs' labels (10-pixel text, right-aligned at the right edge) are taken first.
  const yPx = (v: number): number =>
    (ROOF_H * Math.log10(v / yDomain[0])) / Math.log10(yDomain[1] / yDomain[0]);
  const roofBoxes = labels.map((l) => ({
    x0: ROOF_W - l.label.length * 6,
    x1: ROOF_W,
    y0: yPx(l.y) + (l.above ? 2 : -14),
    y1: yPx(l.y) + (l.above ? 14 : -2),
  }));
  const labelled = placeLabels(
    pts.map((p) => ({ ...p, name: short(p.name) })),
    xDomain,
    yDomain,
    batches.length > 1,
    roofBoxes,
  );
  const point = { x: { ...x, field: "intensity" }, y: { ...y, field: "throughput" } };
  const roofNames = roofs.map((r) => r.device).join(" and ");
  return {
    title: {
      text: `Roofline${roofNames === "" ? "" : ` of ${roofNames}`} (${unit})`,
      subtitle: `one point per op or kernel${batches.length > 1 ? " and batch size (bN)" : ""}; dashed lines: device roofs`,
    },
    width: ROOF_W,
    height: ROOF_H,
    layer: [
      {
        data: { values: lines },
        mark: { type: "line" as const, strokeDash: [6, 3], strokeWidth: 1.5 },
        encoding: { x, y, color },
      },
      ...[true, false].map((above) => ({
        data: { values: labels.filter((l) => l.above === above) },
        mark: { type: "text" as const, align: "right" as const, dy: above ? -7 : 9, fontSize: 10 },
        encoding: { x, y, color, text: { field: "label" } },
      })),
      {
        data: { values: labelled },
        mark: { type: "point" as const, filled: true, size: 50, opacity: 0.8 },
        encoding: {
          ...point,
          color,
          shape: { field: "batch", type: "nominal" as const, title: "batch size", sort: batches },
        },
      },
      ...SIDES.map((side) => ({
        data: { values: labelled.filter((p) => p.label !== "" && p.side === side) },
        mark: {
          type: "text" as const,
          align: side.endsWith("e") ? ("left" as const) : ("right" as const),
          dx: side.endsWith("e") ? 6 : -6,
          dy: side.startsWith("n") ? -8 : 8,
          fontSize: 9,
          color: "#333",
        },
        encoding: { ...point, text: { field: "label" } },
      })),
    ],
  };
}

/**
 * One roofline panel per unit of the roofs (flop/s, instr/s, ...): each point on the panel of its
 * device's roof (a device without a roof: the flop/s panel).
 */
export function rooflineSpecs(points: readonly OpPoint[], roofs: readonly Roof[]) {
  const units = [...new Set(roofs.map(unitOf))];
  if (units.length === 0) return [rooflineSpec(points, [])];
  const unitOfDevice = new Map(roofs.map((r) => [r.device, unitOf(r)]));
  const fallback = units.includes("flop/s") ? "flop/s" : units[0]!;
  return units.map((u) =>
    rooflineSpec(
      points.filter((p) => (unitOfDevice.get(p.device) ?? fallback) === u),
      roofs.filter((r) => unitOf(r) === u),
    ),
  );
}

/** The breakdown above the rooflines (one per unit). */
/** Energy per token per step, stacked by part (the parts over 1 % of some step's, largest first). */
export function energySpec(steps: readonly StepEnergy[]) {
  const total = (s: StepEnergy) => Object.values(s.perToken).reduce((a, j) => a + j, 0);
  const keys = [...new Set(steps.flatMap((s) => Object.keys(s.perToken)))]
    .filter((k) => steps.some((s) => (s.perToken[k] ?? 0) >= 0.01 * total(s)))
    .sort(
      (a, b) =>
        Math.max(...steps.map((s) => s.perToken[b] ?? 0)) - Math.max(...steps.map((s) => s.perToken[a] ?? 0)),
    );
  const max = Math.max(0, ...steps.map(total));
  const [unit, size] = max >= 1 ? ["J", 1] : max >= 1e-3 ? ["mJ", 1e-3] : ["uJ", 1e-6];
  const values = steps.flatMap((s) =>
    keys.map((k, order) => ({ batch: s.batch, part: k, order, j: (s.perToken[k] ?? 0) / size })),
  );
  return {
    title: {
      text: "Energy per token",
      subtitle: "by part (docs/energy.md); dynamic energy, no static power",
    },
    width: 320,
    height: 200,
    data: { values },
    mark: { type: "bar" as const },
    encoding: {
      x: {
        field: "batch",
        type: "ordinal" as const,
        title: "batch size",
        sort: steps.map((s) => s.batch),
        axis: { labelAngle: 0 },
      },
      y: {
        field: "j",
        type: "quantitative" as const,
        stack: "zero" as const,
        title: `energy per token (${unit})`,
      },
      color: {
        field: "part",
        type: "nominal" as const,
        title: "part",
        scale: { domain: keys, range: keys.map((_, i) => PALETTE[i % PALETTE.length]!) },
        sort: keys,
      },
      order: { field: "order", type: "quantitative" as const },
    },
  };
}

export function benchSpec(d: BenchPlot): TopLevelSpec {
  return {
    $schema: SCHEMA,
    title: { text: d.title, ...(d.subtitle !== undefined ? { subtitle: d.subtitle } : {}), anchor: "start" },
    background: "white",
    padding: 12,
    vconcat: [
      breakdownSpec(d.steps, d.engines),
      ...(d.energy && d.energy.length > 0 ? [energySpec(d.energy)] : []),
      ...rooflineSpecs(d.points, d.roofs),
    ],
    spacing: 40,
    resolve: { scale: { color: "independent", shape: "independent" } },
  } as TopLevelSpec;
}

/** Latency per configuration of the ablation (log scale), annotated with the speedup vs BaseGEMM. */
export function ablationSpec(rows: readonly AblationBar[], title: string, subtitle?: string): TopLevelSpec {
  const values = rows.map((r, order) => ({
    config: r.config,
    order,
    seconds: r.seconds,
    label: `${seconds(r.seconds)} · ${r.speedup_vs_basegemm.toFixed(2)}x vs BaseGEMM`,
  }));
  const s = values.map((v) => v.seconds).filter((v) => v > 0);
  // Room on the right for the labels; bars start at the left end (a log scale has no zero).
  const domain = s.length ? [pow10Below(Math.min(...s)), pow10Above(Math.max(...s) * 30)] : [1e-3, 1];
  const y = {
    field: "config",
    type: "nominal" as const,
    title: null,
    sort: values.map((v) => v.config),
    axis: { labelLimit: 800 },
  };
  const x = logAxis("seconds", "latency per step (s, log scale)", domain);
  return {
    $schema: SCHEMA,
    title: { text: title, ...(subtitle !== undefined ? { subtitle } : {}), anchor: "start" },
    background: "white",
    padding: 12,
    width: 420,
    height: { step: 26 },
    data: { values },
    layer: [
      { mark: { type: "bar", color: "#4c78a8" }, encoding: { y, x, x2: { datum: domain[0] } } },
      {
        mark: { type: "text", align: "left", dx: 4, fontSize: 11 },
        encoding: { y, x, text: { field: "label" } },
      },
    ],
  } as TopLevelSpec;
}

/** The figures `pimc sweep --plot` draws from a query's rows. */
export type SweepPlotKind = "line" | "heatmap" | "pareto";

export interface SweepPlot {
  readonly kind: SweepPlotKind;
  readonly title: string;
  readonly rows: readonly Readonly<Record<string, unknown>>[];
  /** Columns: x and y (line, pareto: quantities; heatmap: the two axes), series (colour), value (heatmap cells). */
  readonly x: string;
  readonly y: string;
  readonly series?: string;
  readonly value?: string;
}

/** A log scale for a quantity that spans at least 8x (batch sizes, latencies), else linear. */
function quantityScale(rows: readonly Readonly<Record<string, unknown>>[], field: string) {
  const vs = rows.map((r) => r[field]).filter((v): v is number => typeof v === "number" && v > 0);
  return vs.length > 0 && Math.max(...vs) >= 8 * Math.min(...vs) ? { type: "log" as const } : { zero: false };
}

/**
 * The points that no other beats in both x and y (both smaller is better: latency and energy per
 * token), in order of x: a sweep's Pareto front.
 */
export function paretoFront<R extends Readonly<Record<string, unknown>>>(
  rows: readonly R[],
  x: string,
  y: string,
): R[] {
  const pts = rows
    .filter((r) => typeof r[x] === "number" && typeof r[y] === "number")
    .sort((a, b) => (a[x] as number) - (b[x] as number) || (a[y] as number) - (b[y] as number));
  const front: R[] = [];
  for (const r of pts)
    if (front.length === 0 || (r[y] as number) < (front.at(-1)![y] as number)) front.push(r);
  return front;
}

/** A sweep's figure: a metric against an axis per series, a heatmap of two axes, or a Pareto front. */
export function sweepSpec(p: SweepPlot): TopLevelSpec {
  const head = {
    $schema: SCHEMA,
    title: { text: p.title, anchor: "start" },
    background: "white",
    padding: 12,
  };
  const color =
    p.series !== undefined ? { color: { field: p.series, type: "nominal", title: p.series } } : {};
  const values = p.rows.map((r) => ({
    ...r,
    ...(p.series !== undefined ? { [p.series]: String(r[p.series]) } : {}),
  }));
  if (p.kind === "heatmap") {
    const cell = p.value!;
    const x = { field: p.x, type: "ordinal", title: p.x, sort: "ascending" };
    const y = { field: p.y, type: "ordinal", title: p.y, sort: "ascending" };
    return {
      ...head,
      width: { step: 56 },
      height: { step: 28 },
      data: { values },
      layer: [
        { mark: "rect", encoding: { x, y, color: { field: cell, type: "quantitative", title: cell } } },
        {
          mark: { type: "text", fontSize: 10 },
          encoding: { x, y, text: { field: cell, type: "quantitative", format: ".3~g" } },
        },
      ],
    } as TopLevelSpec;
  }
  const x = { field: p.x, type: "quantitative", title: p.x, scale: quantityScale(p.rows, p.x) };
  const y = { field: p.y, type: "quantitative", title: p.y, scale: quantityScale(p.rows, p.y) };
  const tooltip = Object.keys(p.rows[0] ?? {}).map((k) => ({ field: k }));
  if (p.kind === "pareto") {
    const front = paretoFront(p.rows, p.x, p.y);
    return {
      ...head,
      width: 420,
      height: 300,
      layer: [
        { data: { values }, mark: { type: "point", filled: true }, encoding: { x, y, ...color, tooltip } },
        {
          data: { values: front },
          mark: { type: "line", interpolate: "step-after", color: "#555", strokeDash: [4, 3] },
          encoding: { x, y },
        },
      ],
    } as TopLevelSpec;
  }
  return {
    ...head,
    width: 420,
    height: 300,
    data: { values },
    mark: { type: "line", point: true },
    encoding: { x, y, ...color, tooltip },
  } as TopLevelSpec;
}

/**
 * An SVG as PNG (white background, twice the SVG's size) with resvg, text in the system's fonts.
 */
export async function renderPng(svg: string): Promise<Uint8Array> {
  const { Resvg } = await import("@resvg/resvg-js");
  const png = new Resvg(svg, {
    background: "white",
    fitTo: { mode: "zoom", value: 2 },
    // sans-serif is Arial where installed; elsewhere (Linux without it) DejaVu Sans, not a serif font.
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
  }).render();
  return png.asPng();
}

/** Renders a vega-lite spec to SVG with vega's headless renderer. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  // Only errors (which throw anyway): the CLI's stderr is for the user.
  const log = logger(ErrorLevel);
  const view = new View(parse(compile(spec, { logger: log }).spec), { renderer: "none", logger: log });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
