/**
 * The Tile-Selector: the GEMM cost model of gemm.ts minimised over every legal tiling. Distributions
 * are visited in order of a lower bound (transfers + launch + the kernel's compute and DMA floors) and
 * the search stops when no remaining distribution can beat the best tiling found.
 */
import {
  distributions,
  kernelModel,
  tiles,
  transferEstimate,
  weightBlock,
  elemBytesOf,
  cdiv,
  type Distribution,
  type GemmEstimate,
  type GemmShape,
  type Tile,
  type Tiling,
} from "./gemm.js";
import type { UpmemSystem } from "./system.js";

export interface Choice {
  readonly tiling: Tiling;
  readonly estimate: GemmEstimate;
}

/**
 * A floor on a distribution's time for `m` rows: transfers, launch and a kernel no tile's model goes
 * below (kernelModel's pipeline term is at least every MAC instruction, its engine term at least
 * streaming W once, and its chain term at least one tasklet walking one output element over the
 * block's K with two reads and a write).
 */
function floor(shape: GemmShape, d: Distribution, sys: UpmemSystem, m: number): number {
  const { nbPad, kb } = weightBlock(shape, d);
  const { push, pull } = transferEstimate(shape, d, sys, m);
  const mac = shape.dtype === "i8" ? sys.isa.mac_i8 : sys.isa.mac_f32;
  const macs = cdiv(m, d.dm) * nbPad * kb * mac;
  const bytes = nbPad * kb * elemBytesOf(shape.dtype);
  const item =
    2 * sys.dma.read_alpha +
    sys.dma.write_alpha +
    sys.pipeline.issue_interval * (kb * mac + sys.isa.dot_overhead);
  const kernel = Math.max(macs, sys.dma.beta * bytes, item) / sys.frequency;
  return push + pull + sys.launch_overhead + kernel;
}

/** The best tile of a distribution for rows `ms` (summed: one W layout serves every phase). */
export function bestTiles(
  shape: GemmShape,
  d: Distribution,
  sys: UpmemSystem,
  ms: readonly number[],
): { tiles: Tile[]; estimates: GemmEstimate[]; total: number } | undefined {
  const out: { tiles: Tile[]; estimates: GemmEstimate[]; total: number } = {
    tiles: [],
    estimates: [],
    total: 0,
  };
  const ts = tiles({ ...shape, m: Math.max(...ms) }, d, sys);
  for (const m of ms) {
    const s = { ...shape, m };
    const { push, pull } = transferEstimate(s, d, sys);
    const fixed = push + pull + sys.launch_overhead;
    const model = kernelModel(s, d, sys);
    const mb = cdiv(m, d.dm);
    let best: { t: Tile; kernel: number } | undefined;
    for (const t of ts) {
      if (t.tm > 1 && t.tm / 2 >= mb) continue;
      const kernel = model(t) / sys.frequency;
      if (!best || kernel < best.kernel) best = { t, kernel };
    }
    if (!best) return undefined;
    out.tiles.push(best.t);
    out.estimates.push({
      kernel: best.kernel,
      push,
      pull,
      launch: sys.launch_overhead,
      total: best.kernel + fixed,
    });
    out.total += best.kernel + fixed;
  }
  return out;
}

/** Distributions grouped by weight layout dn x dk (each with the values of dm a call may use). */
export function byLayout(all: readonly Distribution[]): Distribution[][] {
  const layouts = new Map<string, Distribution[]>();
  for (const d of all) {
    const key = `${d.dn} ${d.dk}`;
    const ds = layouts.get(key);
    if (ds) ds.push(d);
    else layouts.set(key, [d]);
  }
  return [...layouts.values()];
}

/**
 * The layout whose per-row-count picks sum to the least, each weighted by its calls (`weights`,
 * default 1 each: e.g. one prefill and 128 decode calls per request), with layouts in order of a
 * lower bound `lb` (of the same weighted sum), the search stopping when no remaining layout can beat
 * the best; and its picks. The layout keeps the largest dm of its picks (a call may use fewer replicas).
 */
export function bestLayout<C extends { readonly tiling: Distribution; readonly estimate: GemmEstimate }>(
  layouts: readonly { readonly ds: readonly Distribution[]; readonly lb: number }[],
  ms: readonly number[],
  pick: (ds: readonly Distribution[], m: number) => C | undefined,
  weights?: readonly number[],
): { distribution: Distribution; choices: C[] } | undefined {
  let best: { total: number; choices: C[] } | undefined;
  for (const { ds, lb } of layouts) {
    if (best && lb >= best.total) break;
    const choices: C[] = [];
    let total = 0;
    for (const [i, m] of ms.entries()) {
      const c = pick(ds, m);
      if (!c) {
        total = Infinity;
        break;
      }
      choices.push(c);
      total += (weights?.[i] ?? 1) * c.estimate.total;
    }
    if (total < (best?.total ?? Infinity)) best = { total, choices };
  }
  if (!best) return undefined;
  const t0 = best.choices[0]!.tiling;
  const dm = Math.max(...best.choices.map((c) => c.tiling.dm));
  return { distribution: { dm, dn: t0.dn, dk: t0.dk }, choices: best.choices };
}

export interface SelectOptions {
  /** DPUs the GEMM may use (default: all). */
  readonly dpus?: number;
  /** Per-DPU MRAM bytes the W block may take. */
  readonly mramBudget?: number;
  /** Seconds a call costs besides transfers, launch and kernel under a distribution (e.g. without pooling). */
  readonly perCall?: (d: Distribution) => number;
  /** Calls of each row count (same order as `ms`) the joint layout is chosen for; default 1 each. */
  readonly weights?: readonly number[];
}

/** The weighted sum of a layout's per-row-count floors (`bestLayout`'s lower bound). */
export function layoutFloor(
  ds: readonly Distribution[],
  ms: readonly number[],
  floorOf: (d: Distribution, m: number) => number,
  weights?: readonly number[],
): number {
  return ms.reduce(
    (s, m, i) => s + (weights?.[i] ?? 1) * Math.min(...ds.filter((d) => d.dm <= m).map((d) => floorOf(d, m))),
    0,
  );
}

/**
 * Chooses the W layout (dn x dk, replicated dm times) minimising the summed time over the row counts
 * `ms` (e.g. prefill B*S and decode B; weighted by `opts.weights`), and for each row count the best tiling. A call may use fewer
 * replicas than the layout holds (the first dm' x dn x dk DPUs hold a complete copy of W), so each
 * phase picks its own dm; the layout keeps the largest. Undefined when no tiling is legal.
 */
export function selectJoint(
  shape: GemmShape,
  sys: UpmemSystem,
  ms: readonly number[],
  opts: SelectOptions = {},
): { distribution: Distribution; choices: Choice[] } | undefined {
  const e = elemBytesOf(shape.dtype);
  const all = distributions({ ...shape, m: Math.max(...ms) }, sys, opts.dpus ?? sys.dpus).filter((d) => {
    const { nbPad, kb } = weightBlock(shape, d);
    return nbPad * kb * e <= (opts.mramBudget ?? sys.mram / 2);
  });
  // Floors are needed twice (ranking layouts, then ordering a layout's distributions): computed once.
  const floors = new Map<Distribution, Map<number, number>>();
  const floorOf = (d: Distribution, m: number): number => {
    let f = floors.get(d);
    if (!f) floors.set(d, (f = new Map()));
    let x = f.get(m);
    if (x === undefined) f.set(m, (x = floor(shape, d, sys, m) + (opts.perCall?.(d) ?? 0)));
    return x;
  };
  const ranked = byLayout(all)
    .map((ds) => ({ ds, lb: layoutFloor(ds, ms, floorOf, opts.weights) }))
    .sort((a, b) => a.lb - b.lb);
  return bestLayout(
    ranked,
    ms,
    (ds, m) => {
      let pick: Choice | undefined;
      const cands = ds
        .filter((d) => d.dm <= m)
        .map((d) => ({ d, lb: floorOf(d, m) }))
        .sort((a, b) => a.lb - b.lb);
      for (const { d, lb: f } of cands) {
        if (pick && f >= pick.estimate.total) break;
        const r = bestTiles(shape, d, sys, [m]);
        const extra = opts.perCall?.(d) ?? 0;
        if (r && (!pick || r.total + extra < pick.estimate.total)) {
          const e0 = r.estimates[0]!;
          pick = { tiling: { ...d, ...r.tiles[0]! }, estimate: { ...e0, total: e0.total + extra } };
        }
      }
      return pick;
    },
    opts.weights,
  );
}

/** The Tile-Selector for one GEMM shape. */
export function select(shape: GemmShape, sys: UpmemSystem, opts: SelectOptions = {}): Choice | undefined {
  return selectJoint(shape, sys, [shape.m], opts)?.choices[0];
}
