/**
 * Attention on the DPUs, as two batched GEMMs around a host softmax (AttAcc's split on a DIMM-PIM):
 *
 *   scores[g] = Q[g] . K[g]^T      Q[g]: [rep * S, D], K[g]: [T, D]     (T split over dt DPUs)
 *   probs     = masked_softmax(scores * scale)                             (host)
 *   out[g]    = probs[g] . V[g]    = probs[g] . (V[g]^T)^T, K split dt ways, summed on the host
 *
 * for every group g = (batch, kv head) with rep = query heads per kv head (GQA). DPU g * dt + j holds
 * token block j of group g. The KV cache stays in host memory: each call pushes the K and V^T blocks
 * (the command stream has no data-dependent DPU targets, so an append cannot land in the one DPU that
 * owns the new token). Kernels are laid out for the program's largest batch and context, so their
 * time does not shrink with a shorter cache. The cost model compares all of this with the host.
 */
import { cdiv, gemmKernel, kernelModel, tiles, weightBlock, type GemmShape, type Tiling } from "./gemm.js";
import type { BlockMap, IntExpr, Kernel } from "./program.js";
import type { UpmemSystem } from "./system.js";
import { pullTime, pushTime } from "./transfer.js";

export interface AttentionDims {
  /** Query heads, kv heads, head dim. */
  readonly h: number;
  readonly kvh: number;
  readonly d: number;
}

export interface AttentionPlan {
  readonly dims: AttentionDims;
  /** Groups laid out (largest batch x kv heads) and DPUs per group. */
  readonly groups: number;
  readonly dt: number;
  /** Largest cache length. */
  readonly tmax: number;
  readonly scores: { readonly shape: GemmShape; readonly tiling: Tiling };
  readonly context: { readonly shape: GemmShape; readonly tiling: Tiling };
  /** Estimated seconds of one call (transfers, kernels, launches; host work excluded). */
  readonly seconds: number;
}

/** Token block of the score GEMM (W rows per DPU, padded) and of the context GEMM (K per DPU). */
export function tokenBlocks(p: Pick<AttentionPlan, "scores" | "context">): { ts: number; tc: number } {
  return {
    ts: weightBlock(p.scores.shape, p.scores.tiling).nbPad,
    tc: weightBlock(p.context.shape, p.context.tiling).kb,
  };
}

function bestTile(shape: GemmShape, dist: { dm: number; dn: number; dk: number }, sys: UpmemSystem) {
  const model = kernelModel(shape, dist, sys);
  let best: { t: Tiling; cycles: number } | undefined;
  for (const t of tiles(shape, dist, sys)) {
    if (t.tm > 1 && t.tm / 2 >= shape.m) continue;
    const cycles = model(t);
    if (!best || cycles < best.cycles) best = { t: { ...dist, ...t }, cycles };
  }
  return best;
}

/**
 * The best DPUs-per-group for `rows` = rep x S query rows, or undefined when attention cannot run on
 * the DPUs (head dim not a whole W block, too many groups for the DPUs).
 */
export function planAttention(
  dims: AttentionDims,
  limits: { B: number; T: number },
  rows: number,
  sys: UpmemSystem,
): AttentionPlan | undefined {
  const groups = limits.B * dims.kvh;
  const rep = dims.h / dims.kvh;
  if (!Number.isInteger(rep) || dims.d % 2 !== 0 || groups > sys.dpus) return undefined;
  let best: AttentionPlan | undefined;
  for (let dt = 1; groups * dt <= sys.dpus && dt <= cdiv(limits.T, 2); dt *= 2) {
    const scores: GemmShape = { m: rows, n: limits.T, k: dims.d, dtype: "f32" };
    const context: GemmShape = { m: rows, n: dims.d, k: limits.T, dtype: "f32" };
    const ds = { dm: 1, dn: dt, dk: 1 };
    const dc = { dm: 1, dn: 1, dk: dt };
    // The V^T block must be exactly D rows (groups are D rows apart in the host's V^T).
    if (weightBlock(context, dc).nbPad !== dims.d || weightBlock(scores, ds).kb !== dims.d) continue;
    const s = bestTile(scores, ds, sys);
    const c = bestTile(context, dc, sys);
    if (!s || !c) continue;
    const plan = {
      dims,
      groups,
      dt,
      tmax: limits.T,
      scores: { shape: scores, tiling: s.t },
      context: { shape: context, tiling: c.t },
    };
    const seconds =
      estimateTransfers(plan, sys, rows) + (s.cycles + c.cycles) / sys.frequency + 2 * sys.launch_overhead;
    if (!best || seconds < best.seconds) best = { ...plan, seconds };
  }
  return best;
}

/** Seconds of the four pushes and two pulls of a call (per DPU bytes at the largest sizes). */
function estimateTransfers(p: Omit<AttentionPlan, "seconds">, sys: UpmemSystem, rows: number): number {
  const { ts, tc } = tokenBlocks(p);
  const range = { first: 0, count: p.groups * p.dt };
  const d = p.dims.d;
  return (
    pushTime(sys, range, rows * d * 4) +
    pushTime(sys, range, ts * d * 4) +
    pullTime(sys, range, rows * ts * 4) +
    pushTime(sys, range, rows * tc * 4) +
    pushTime(sys, range, d * tc * 4) +
    pullTime(sys, range, rows * d * 4, p.dt)
  );
}

/** The two kernels of a plan (W at parameter `w`, X and Y at the given offsets). */
export function attentionKernels(
  p: AttentionPlan,
  rowsExpr: IntExpr,
  xOff: number,
  yOff: number,
): { scores: Kernel; context: Kernel } {
  return {
    scores: gemmKernel({
      name: "",
      shape: p.scores.shape,
      tiling: p.scores.tiling,
      mExpr: rowsExpr,
      xOff,
      yOff,
    }),
    context: gemmKernel({
      name: "",
      shape: p.context.shape,
      tiling: p.context.tiling,
      mExpr: rowsExpr,
      xOff,
      yOff,
    }),
  };
}

/** MRAM bytes per DPU of the X, W and Y blocks of a plan at `rows` query rows. */
export function attentionBytes(p: AttentionPlan, rows: number): { x: number; w: number; y: number } {
  const { ts, tc } = tokenBlocks(p);
  const d = p.dims.d;
  const mr = (t: Tiling) => Math.ceil(rows / t.tm) * t.tm;
  return {
    x: Math.max(mr(p.scores.tiling) * d, mr(p.context.tiling) * tc) * 4,
    w: Math.max(ts * d, d * tc) * 4,
    y: Math.max(mr(p.scores.tiling) * ts, mr(p.context.tiling) * d) * 4,
  };
}

/**
 * The block maps of a call. Host buffers: q [B, H, S, D] and out [B, H, S, D] (group g's rows are
 * rows g*rep*S.. of the [B*H*S, D] view), k [B, KVH, T, D] (viewed [B*KVH, T*D]), scores and probs
 * [B, H, S, T] (viewed [B*H*S, T]), vt [B, KVH, D, T] (viewed [B*KVH*D, T]).
 */
export function attentionMaps(
  p: AttentionPlan,
  e: { B: IntExpr; S: IntExpr; T: IntExpr },
): { q: BlockMap; k: BlockMap; scores: BlockMap; probs: BlockMap; vt: BlockMap; out: BlockMap } {
  const { ts, tc } = tokenBlocks(p);
  const { h, kvh, d } = p.dims;
  const rep = h / kvh;
  const rows = `${e.B}*${h}*${e.S}`;
  const groupRows = rep === 1 ? e.S : `${rep}*${e.S}`;
  const per = { rowEvery: p.dt, rowBlocks: p.groups };
  return {
    q: { rows, cols: d, blockRows: groupRows, blockCols: d, ld: d, ...per, colEvery: 1, colBlocks: 1 },
    k: {
      rows: `${e.B}*${kvh}`,
      cols: `(${e.T})*${d}`,
      blockRows: 1,
      blockCols: ts * d,
      ld: ts * d,
      ...per,
      colEvery: 1,
      colBlocks: p.dt,
    },
    scores: {
      rows,
      cols: e.T,
      blockRows: groupRows,
      blockCols: ts,
      ld: ts,
      ...per,
      colEvery: 1,
      colBlocks: p.dt,
    },
    probs: {
      rows,
      cols: e.T,
      blockRows: groupRows,
      blockCols: tc,
      ld: tc,
      ...per,
      colEvery: 1,
      colBlocks: p.dt,
    },
    vt: {
      rows: `${e.B}*${kvh * d}`,
      cols: e.T,
      blockRows: d,
      blockCols: tc,
      ld: tc,
      ...per,
      colEvery: 1,
      colBlocks: p.dt,
    },
    out: { rows, cols: d, blockRows: groupRows, blockCols: d, ld: d, ...per, colEvery: 1, colBlocks: 1 },
  };
}
