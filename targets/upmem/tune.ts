/**
 * `pimc tune`: the Tile-Selector checked against the emulator. For a GEMM shape the selector picks a
 * tiling from its analytical model (selector.ts); the oracle times legal candidates on the DPU model
 * (dpu.ts, the emulator's ground truth) and keeps the fastest. The oracle is exact over every legal
 * tiling but uses branch-and-bound: candidates are timed in order of a true lower bound of their
 * emulated time, and the search stops when no remaining candidate can beat the best one timed.
 */
import { UserError } from "../../src/errors.js";
import { operandTyper, opCost } from "../../src/ir/cost.js";
import type { LoadedModel } from "../../src/frontend/hf/import.js";
import { describeWorkload, phaseEnvs, type Workload } from "../../src/frontend/workload.js";
import { allFlags, compileModel, type CompileFlags, type PipelineFlags } from "../../src/driver/compile.js";
import { int, ms } from "../../src/report/format.js";
import { table } from "../../src/report/table.js";
import type { TuneOptions as TargetTuneOptions, TuneReport } from "../index.js";
import { timeKernel, type KernelTiming } from "./dpu.js";
import {
  blockBytes,
  forgetTiles,
  gemmKernel,
  kernelFloor,
  kernelLowerBound,
  kSplitFloor,
  roundUp,
  tilingName,
  transferEstimate,
  variantName,
  type Distribution,
  type GemmShape,
  type Tile,
  type Tiling,
} from "./gemm.js";
import { PLAN } from "./passes/plan.js";
import {
  byBlock,
  compareTilings,
  isLegal,
  legalDistributions,
  legalTilings,
  spaceSize,
  tileFamilies,
} from "./space.js";
import { gemmShapeOf } from "./gemm.js";
import { select } from "./selector.js";
import { systemOf, type UpmemSystem } from "./system.js";

/** MRAM offsets of one GEMM alone on the DPUs: W at 0, X after it, Y after X (8-byte aligned). */
export function gemmOffsets(
  shape: GemmShape,
  t: Tiling,
): { w: number; xOff: number; yOff: number; end: number } {
  const b = blockBytes(shape, t);
  const xOff = roundUp(Math.max(8, b.w), 8);
  const yOff = xOff + roundUp(Math.max(8, b.x), 8);
  return { w: 0, xOff, yOff, end: yOff + roundUp(Math.max(8, b.y), 8) };
}

const timingMemo = new WeakMap<UpmemSystem, Map<string, KernelTiming>>();

/**
 * The emulator's timing of the GEMM kernel of one DPU, memoized by the kernel's JSON (distinct
 * distributions often give the same per-DPU geometry and so the same kernel).
 */
export function emulatedKernel(shape: GemmShape, t: Tiling, sys: UpmemSystem): KernelTiming {
  const { w, xOff, yOff } = gemmOffsets(shape, t);
  const k = gemmKernel({ name: "tune", shape, tiling: t, mExpr: shape.m, xOff, yOff });
  const key = JSON.stringify({ ...k, summary: "" });
  let memo = timingMemo.get(sys);
  if (!memo) timingMemo.set(sys, (memo = new Map()));
  let r = memo.get(key);
  if (!r) {
    r = timeKernel(k, sys, { w, B: 1, S: 1, P: 0 });
    memo.set(key, r);
  }
  return r;
}

/**
 * Seconds of one GEMM call on the emulator: push (or broadcast) of X, the kernel with its launch
 * overhead, and the pull of Y with the host's dk-way reduction (what the launch, push and pull
 * commands of machine.ts cost).
 */
export function emulatedGemm(shape: GemmShape, t: Tiling, sys: UpmemSystem): number {
  const { push, pull } = transferEstimate(shape, t, sys);
  return emulatedKernel(shape, t, sys).seconds + push + pull + sys.launch_overhead;
}

/** A lower bound of `emulatedGemm` (exact transfers and launch, kernelLowerBound for the kernel). */
export function gemmLowerBound(shape: GemmShape, t: Tiling, sys: UpmemSystem): number {
  const { push, pull } = transferEstimate(shape, t, sys);
  return kernelLowerBound(shape, t, sys) / sys.frequency + push + pull + sys.launch_overhead;
}

/** Every legal tiling of a shape, materialised (small shapes only: see spaceSize). */
export function candidates(shape: GemmShape, sys: UpmemSystem): Tiling[] {
  return [...legalTilings(shape, sys)];
}

export interface OracleResult {
  readonly tiling: Tiling;
  readonly emulated_s: number;
  /** Legal candidates: the size of the space searched (spaceSize). */
  readonly candidates: number;
  /** Candidates timed on the emulator. */
  readonly timed: number;
}

/** Seconds of a call besides the kernel: transfers (with a K split's partials) and launch. */
const fixedSeconds = (shape: GemmShape, d: Distribution, sys: UpmemSystem, ks: number): number => {
  const { push, pull } = transferEstimate(shape, { ...d, ks }, sys);
  return push + pull + sys.launch_overhead;
};

/** Relative slack of the comparisons of bounds with times (rounding of their sums). */
const SLACK = 1e-9;

/**
 * The fastest legal tiling on the emulator (the space of space.ts). With `prune` (default) it is a
 * branch-and-bound, exact for that space: a tiling's time is its kernel's, which depends only on its
 * block (rows mb, nbPad, kb) and tile, plus its transfers and launch, which depend only on its
 * distribution and K split. So blocks are visited in order of a floor (the cheapest of their
 * distributions' transfers plus kernelFloor), a block's tile families in order of a lower bound over
 * their tasklets, buffering and K splits, and tiles are timed, each with its block's cheapest
 * distribution for its K split, when kernelLowerBound plus those transfers does not exceed the best
 * time found; the search starts from `start` (the selector's pick) when it is legal. Without
 * `prune` every legal tiling is timed (tiny shapes only). Ties go to the first tiling in
 * compareTilings order either way.
 */
export function oracle(
  shape: GemmShape,
  sys: UpmemSystem,
  opts: { prune?: boolean; start?: Tiling } = {},
): OracleResult | undefined {
  const size = spaceSize(shape, sys);
  let best: { t: Tiling; s: number } | undefined;
  let timed = 0;
  const time = (t: Tiling): void => {
    const s = emulatedGemm(shape, t, sys);
    timed++;
    if (!best || s < best.s || (s === best.s && compareTilings(t, best.t) < 0)) best = { t, s };
  };
  if (opts.prune === false) {
    for (const t of legalTilings(shape, sys)) time(t);
    return best && { tiling: best.t, emulated_s: best.s, candidates: size, timed };
  }
  const f = sys.frequency;
  const within = (lb: number): boolean => !best || lb <= best.s * (1 + SLACK);
  if (opts.start && isLegal(shape, opts.start, sys)) time(opts.start);
  const groups = byBlock(shape, legalDistributions(shape, sys)).map(({ block, dists }) => {
    const byKs = new Map<number, { d: Distribution; s: number }[]>();
    /** The block's distributions cheapest for a K split (those within SLACK of the cheapest). */
    const cheapest = (ks: number): { d: Distribution; s: number }[] => {
      let c = byKs.get(ks);
      if (!c) {
        const all = dists.map((d) => ({ d, s: fixedSeconds(shape, d, sys, ks) }));
        const min = Math.min(...all.map((x) => x.s));
        byKs.set(ks, (c = all.filter((x) => x.s <= min * (1 + SLACK))));
      }
      return c;
    };
    const floor = kernelFloor(shape.dtype, block.mb, block.nbPad, block.kb, sys) / f;
    return { block, cheapest, bound: cheapest(1)[0]!.s + floor };
  });
  groups.sort((a, b) => a.bound - b.bound);
  for (const g of groups) {
    if (!within(g.bound)) break;
    const d0 = g.cheapest(1)[0]!.d;
    const f1 = g.cheapest(1)[0]!.s;
    const lbOf = (t: Tiling): number => kernelLowerBound(shape, t, sys) / f;
    /** Times a tile with the block's cheapest distributions for its K split, if its bound allows. */
    const visit = (tile: Tile): void => {
      const ds = g.cheapest(tile.ks ?? 1);
      if (!within(lbOf({ ...d0, ...tile }) + ds[0]!.s)) return;
      for (const { d } of ds) time({ ...d, ...tile });
    };
    const fams = tileFamilies(shape.dtype, g.block, sys).map((fam) => {
      const base = { ...d0, tm: fam.tm, tn: fam.tn, tk: fam.tk };
      // Bounds over the family: the most tasklets bound each buffering from below (only the chain
      // term depends on them), and the smallest K split with totals over the whole of K bounds all.
      let bound = lbOf({ ...base, tasklets: fam.t1, double: false }) + f1;
      if (fam.t2 > 0) bound = Math.min(bound, lbOf({ ...base, tasklets: fam.t2, double: true }) + f1);
      const splitBound =
        fam.splits.length > 0
          ? kSplitFloor(shape, { ...base, tasklets: fam.t1, double: false }, sys) / f
          : Infinity;
      if (fam.splits.length > 0) bound = Math.min(bound, splitBound + g.cheapest(2)[0]!.s);
      return { fam, bound, splitBound };
    });
    fams.sort((a, b) => a.bound - b.bound);
    for (const { fam, bound, splitBound } of fams) {
      if (!within(bound)) break;
      const { tm, tn, tk } = fam;
      for (let tasklets = 1; tasklets <= fam.t1; tasklets++) visit({ tasklets, tm, tn, tk, double: false });
      for (let tasklets = 1; tasklets <= fam.t2; tasklets++) visit({ tasklets, tm, tn, tk, double: true });
      if (fam.splits.length === 0 || !within(splitBound + g.cheapest(2)[0]!.s)) continue;
      for (const ks of fam.splits)
        for (let tasklets = 1; tasklets <= fam.t1; tasklets++)
          visit({ tasklets, tm, tn, tk, double: false, ks });
    }
  }
  return best && { tiling: best.t, emulated_s: best.s, candidates: size, timed };
}

export interface SelectorResult {
  readonly tiling: Tiling;
  /** The PIM-LLM variant (NtileGEMM, KtileGEMM, MixedGEMM, BatchedGEMM). */
  readonly variant: string;
  /** The analytical model's seconds. */
  readonly estimate_s: number;
  /** The emulator's seconds for the chosen tiling. */
  readonly emulated_s: number;
  /** Milliseconds the selector took. */
  readonly select_ms: number;
}

export interface ShapeTune {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly dtype: GemmShape["dtype"];
  readonly selector: SelectorResult;
  readonly oracle?: OracleResult;
  /** oracle.emulated_s / selector.emulated_s (1: the selector found the best tiling). */
  readonly ratio?: number;
  /** Legal tilings of the shape: the space the oracle searched (exhaustive runs only). */
  readonly space_size?: number;
}

export interface TuneOptions {
  /** Also run the oracle. */
  readonly exhaustive?: boolean;
  /** Branch-and-bound in the oracle (default true); false times every candidate. */
  readonly prune?: boolean;
  /** `tuneShapes`: called before shape `i` of `n` is tuned (for a progress bar). */
  readonly onShape?: (i: number, n: number, shape: GemmShape) => void;
}

/** Runs of the selector per shape whose median is reported. */
const SELECT_RUNS = 7;

/**
 * Milliseconds the Tile-Selector takes for a shape: the median of SELECT_RUNS runs, each with the
 * system's tile memo emptied first (what choosing a tiling costs the first time).
 */
export function selectMs(shape: GemmShape, sys: UpmemSystem): number {
  const ts: number[] = [];
  for (let i = 0; i < SELECT_RUNS; i++) {
    forgetTiles(sys);
    const t0 = performance.now();
    select(shape, sys);
    ts.push(performance.now() - t0);
  }
  return ts.sort((a, b) => a - b)[SELECT_RUNS >> 1]!;
}

/** The selector's tiling for a shape and, with `exhaustive`, the oracle's. Undefined when none is legal. */
export function tuneShape(
  shape: GemmShape,
  sys: UpmemSystem,
  opts: TuneOptions = {},
  ms = selectMs(shape, sys),
): ShapeTune | undefined {
  const choice = select(shape, sys);
  if (!choice) return undefined;
  const selector: SelectorResult = {
    tiling: choice.tiling,
    variant: variantName(choice.tiling),
    estimate_s: choice.estimate.total,
    emulated_s: emulatedGemm(shape, choice.tiling, sys),
    select_ms: ms,
  };
  const base = { m: shape.m, n: shape.n, k: shape.k, dtype: shape.dtype, selector };
  if (!opts.exhaustive) return base;
  const o = oracle(shape, sys, {
    ...(opts.prune === undefined ? {} : { prune: opts.prune }),
    start: choice.tiling,
  });
  if (!o) return base;
  return { ...base, oracle: o, ratio: o.emulated_s / selector.emulated_s, space_size: o.candidates };
}

/** Rounds of the selector over every shape before timing it (JIT warm-up). */
const WARM_UP = 10;

/**
 * `tuneShape` for every shape, the selector's times measured first, after running it WARM_UP times
 * on each shape. Throws a UserError when a shape has no legal tiling.
 */
export function tuneShapes(
  shapes: readonly GemmShape[],
  sys: UpmemSystem,
  opts: TuneOptions = {},
): ShapeTune[] {
  for (let i = 0; i < WARM_UP; i++)
    for (const s of shapes) {
      forgetTiles(sys);
      select(s, sys);
    }
  // Timed before any emulation (whose garbage would otherwise be collected during the timing).
  const times = shapes.map((s) => selectMs(s, sys));
  return shapes.map((s, i) => {
    opts.onShape?.(i, shapes.length, s);
    const r = tuneShape(s, sys, opts, times[i]);
    if (!r)
      throw new UserError(
        `no legal UPMEM tiling for the GEMM ${s.m}x${s.n}x${s.k} ${s.dtype} on ${sys.dpus} DPUs`,
      );
    return r;
  });
}

export interface TuneSummary {
  /** Geometric mean of the ratios (exhaustive runs only). */
  readonly geomean_ratio?: number;
  /** Fraction of shapes whose selector time is within 5% of the oracle's (ratio >= 1/1.05). */
  readonly within_5pct_fraction?: number;
  /** Legal tilings of all the shapes (exhaustive runs only). */
  readonly space_size?: number;
  readonly mean_select_ms: number;
  readonly max_select_ms: number;
}

export function summarize(rs: readonly ShapeTune[]): TuneSummary {
  const ratios = rs.flatMap((r) => (r.ratio === undefined ? [] : [r.ratio]));
  const ms = rs.map((r) => r.selector.select_ms);
  const out = {
    mean_select_ms: ms.reduce((s, x) => s + x, 0) / Math.max(1, ms.length),
    max_select_ms: Math.max(0, ...ms),
  };
  if (ratios.length === 0) return out;
  return {
    geomean_ratio: Math.exp(ratios.reduce((s, r) => s + Math.log(r), 0) / ratios.length),
    within_5pct_fraction: ratios.filter((r) => r * 1.05 >= 1).length / ratios.length,
    space_size: rs.reduce((t, r) => t + (r.space_size ?? 0), 0),
    ...out,
  };
}

export { tilingName };

/**
 * The distinct GEMM shapes of a model on the UPMEM target: the target's pipeline without CPU/PIM
 * cooperation (every GEMM with a constant weight goes to the DPUs), then the linear and qlinear ops
 * of the prefill and decode functions (or `phases`) under the workload's dims (prefill: B x prompt
 * rows, decode: B x speculation), in order of first appearance. Without --system: the default UPMEM
 * system.
 */
export async function gemmShapes(
  model: LoadedModel,
  flags: PipelineFlags,
  w: Workload,
  phases: readonly ("prefill" | "decode")[] = ["prefill", "decode"],
): Promise<{ shapes: GemmShape[]; system: UpmemSystem; systemName: string }> {
  const { module, system, target } = await compileModel(
    model,
    {
      ...flags,
      target: flags.system === undefined ? (flags.target ?? "upmem") : flags.target,
      cooperation: false,
      // The shapes are read off the placed module: no lowering plan (tune selects each shape itself).
      disablePass: [...flags.disablePass, PLAN],
    },
    w,
    2,
  );
  if (target.name !== "upmem")
    throw new UserError(
      `pimc tune needs an upmem system, got target ${target.name} (try --system examples/systems/upmem-2048.pim)`,
    );
  const envs: Record<string, Record<string, number>> = phaseEnvs(w);
  const seen = new Map<string, GemmShape>();
  for (const f of module.funcs) {
    const env = envs[f.name];
    if (!env || !(phases as readonly string[]).includes(f.name)) continue;
    const typeOf = operandTyper(module, f);
    for (const op of f.body) {
      if (op.opcode !== "linear" && op.opcode !== "qlinear") continue;
      const ins = op.operands.map(typeOf);
      const s = gemmShapeOf(
        { op, ins, outs: op.results.map((r) => r.type), cost: opCost(op, ins, env) },
        env,
      );
      if (!s) continue;
      const key = `${s.m} ${s.n} ${s.k} ${s.dtype}`;
      if (!seen.has(key)) seen.set(key, s);
    }
  }
  return { shapes: [...seen.values()], system: systemOf(system), systemName: system.name };
}

const sameTiling = (a: object, b: object): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * `pimc tune` on an UPMEM system (the Target contract's `tune`): the Tile-Selector on every distinct
 * GEMM of the model's phases under the workload, its tiling, estimate and emulated time; with
 * `exhaustive` also the best legal tiling measured on the emulator and the selector's ratio to it.
 */
export async function tuneUpmem(
  model: LoadedModel,
  flags: CompileFlags,
  w: Workload,
  opts: TargetTuneOptions,
): Promise<TuneReport> {
  const phases = opts.phases ?? (["prefill", "decode"] as const);
  const { shapes, system, systemName } = await gemmShapes(model, allFlags(flags), w, phases);
  if (shapes.length === 0)
    throw new UserError(`${model.module.name}: the model has no GEMM with a constant weight`);
  const t0 = performance.now();
  const ex = opts.exhaustive;
  const results = tuneShapes(shapes, system, {
    exhaustive: ex,
    prune: opts.prune,
    onShape: (i, n, s) =>
      opts.onItem?.(i, n, `${ex ? "searching the tilings of" : "timing"} ${s.m}x${s.n}x${s.k} ${s.dtype}`),
  });
  const seconds = (performance.now() - t0) / 1e3;
  const sum = summarize(results);
  const json = {
    model: model.module.name,
    system: systemName,
    workload: w,
    shapes: results,
    ...(sum.geomean_ratio !== undefined
      ? {
          geomean_ratio: sum.geomean_ratio,
          within_5pct_fraction: sum.within_5pct_fraction,
          space_size: sum.space_size,
        }
      : {}),
    mean_select_ms: sum.mean_select_ms,
    max_select_ms: sum.max_select_ms,
  };
  const t = table(
    [
      "M",
      "N",
      "K",
      "dtype",
      "selector tiling",
      "estimate",
      "emulated",
      ...(ex ? ["oracle tiling", "oracle", "ratio", "timed / space"] : []),
      "select ms",
    ],
    [
      "right",
      "right",
      "right",
      "left",
      "left",
      "right",
      "right",
      ...(ex ? (["left", "right", "right", "right"] as const) : []),
      "right",
    ],
    { drop: ["select ms", "estimate", "dtype", "timed / space"] },
  );
  for (const r of results)
    t.push([
      String(r.m),
      String(r.n),
      String(r.k),
      r.dtype,
      tilingName(r.selector.tiling),
      ms(r.selector.estimate_s),
      ms(r.selector.emulated_s),
      ...(ex && r.oracle
        ? [
            sameTiling(r.oracle.tiling, r.selector.tiling) ? "(same)" : tilingName(r.oracle.tiling),
            ms(r.oracle.emulated_s),
            r.ratio!.toFixed(4),
            `${int(r.oracle.timed)} / ${int(r.oracle.candidates)}`,
          ]
        : ex
          ? ["", "", "", ""]
          : []),
      r.selector.select_ms.toFixed(3),
    ]);
  const lines = [
    `model     ${model.module.name} on ${systemName}: ${system.dpus} DPUs at ${system.frequency / 1e6} MHz`,
    `workload  ${describeWorkload(w)}; ${phases.join(" and ")} GEMMs (every GEMM on the DPUs)`,
    t.toString(),
    `selector  ${results.length} shapes: ${sum.mean_select_ms.toFixed(3)} ms mean, ${sum.max_select_ms.toFixed(3)} ms max per shape (median of 7 runs after warm-up)`,
  ];
  if (ex) {
    const timed = results.reduce((s, r) => s + (r.oracle?.timed ?? 0), 0);
    const cands = results.reduce((s, r) => s + (r.oracle?.candidates ?? 0), 0);
    lines.push(
      `oracle    ${int(timed)} of ${int(cands)} legal tilings (the full space: docs/upmem.md) timed on the emulator${opts.prune ? " (branch-and-bound)" : ""}, ${seconds.toFixed(1)} s`,
      `accuracy  geomean ratio ${sum.geomean_ratio!.toFixed(4)}, within 5% of the best: ${(100 * sum.within_5pct_fraction!).toFixed(1)}% of shapes`,
    );
  }
  return { lines, json };
}
