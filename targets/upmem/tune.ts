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
import { phaseEnvs, type Workload } from "../../src/frontend/workload.js";
import { compileModel, type PipelineFlags } from "../../src/cli/pipeline.js";
import { timeKernel, type KernelTiming } from "./dpu.js";
import {
  blockBytes,
  cdiv,
  distributions,
  elemBytesOf,
  forgetTiles,
  gemmKernel,
  kernelLowerBound,
  roundUp,
  tiles,
  transferEstimate,
  variantName,
  weightBlock,
  type GemmShape,
  type Tiling,
} from "./gemm.js";
import { gemmShapeOf, systemOf } from "./index.js";
import { select } from "./selector.js";
import type { UpmemSystem } from "./system.js";

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

/**
 * Every legal tiling of a shape: every distribution (whose W block takes at most half the MRAM, as
 * the selector requires) with every legal tile whose W, X and Y blocks fit the MRAM together.
 */
export function candidates(shape: GemmShape, sys: UpmemSystem): Tiling[] {
  const e = elemBytesOf(shape.dtype);
  const out: Tiling[] = [];
  for (const d of distributions(shape, sys)) {
    const { nbPad, kb } = weightBlock(shape, d);
    if (nbPad * kb * e > sys.mram / 2) continue;
    const mb = cdiv(shape.m, d.dm);
    for (const tile of tiles(shape, d, sys)) {
      if (tile.tm > 1 && tile.tm / 2 >= mb) continue;
      const t = { ...d, ...tile };
      if (gemmOffsets(shape, t).end <= sys.mram) out.push(t);
    }
  }
  return out;
}

export interface OracleResult {
  readonly tiling: Tiling;
  readonly emulated_s: number;
  /** Legal candidates. */
  readonly candidates: number;
  /** Candidates timed on the emulator. */
  readonly timed: number;
}

/**
 * The fastest legal tiling on the emulator. With `prune` (default) candidates are timed in order of
 * `gemmLowerBound` and the search stops once the next bound reaches the best time found; without it
 * every candidate is timed. Ties go to the candidate first in `candidates` order either way.
 */
export function oracle(
  shape: GemmShape,
  sys: UpmemSystem,
  opts: { prune?: boolean } = {},
): OracleResult | undefined {
  const cands = candidates(shape, sys);
  const order = cands.map((t, i) => ({ t, i, lb: opts.prune === false ? 0 : gemmLowerBound(shape, t, sys) }));
  if (opts.prune !== false) order.sort((a, b) => a.lb - b.lb || a.i - b.i);
  let best: { t: Tiling; i: number; s: number } | undefined;
  let timed = 0;
  for (const { t, i, lb } of order) {
    if (best && lb > best.s * (1 + 1e-9)) break;
    const s = emulatedGemm(shape, t, sys);
    timed++;
    if (!best || s < best.s || (s === best.s && i < best.i)) best = { t, i, s };
  }
  if (!best) return undefined;
  return { tiling: best.t, emulated_s: best.s, candidates: cands.length, timed };
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
}

export interface TuneOptions {
  /** Also run the oracle. */
  readonly exhaustive?: boolean;
  /** Branch-and-bound in the oracle (default true); false times every candidate. */
  readonly prune?: boolean;
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
  const o = oracle(shape, sys, opts.prune === undefined ? {} : { prune: opts.prune });
  if (!o) return base;
  return { ...base, oracle: o, ratio: o.emulated_s / selector.emulated_s };
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
    ...out,
  };
}

/** Tilings as people read them: `MixedGEMM 1x64x32 t16 1x4x128 db`. */
export function tilingName(t: Tiling): string {
  return `${variantName(t)} ${t.dm}x${t.dn}x${t.dk} t${t.tasklets} ${t.tm}x${t.tn}x${t.tk}${t.double ? " db" : ""}`;
}

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
