/**
 * Attention on the DPUs over a KV cache resident in MRAM: two GEMMs around a host softmax (AttAcc's
 * split on a DIMM-PIM).
 *
 *   scores[g] = Q[g] . K[g]^T      Q[g]: [rep * S, D], K[g]: [T, D]   (D split dt ways, summed on pull)
 *   probs     = masked_softmax(scores * scale)                          (host)
 *   out[g]    = probs[g] . V[g]   = probs[g] . (V[g]^T)^T               (D split dt ways)
 *
 * for every group g = (batch, kv head), rep = query heads per kv head (GQA). DPU g * dt + j holds
 * columns [j * dd, (j + 1) * dd) of the head dim of every cached token of group g: K as a [T, dd]
 * block (token-major) and V as a [dd, T] block (V^T), both laid out for the largest cache. Splitting
 * the head dim rather than the tokens lets every append land in every DPU of a group at an offset
 * that only depends on P, so the cache never leaves MRAM:
 *  - K: the new tokens' rows go to row P of the K block;
 *  - V: V^T gains columns; the host sends the transposed newest tokens from the last even position
 *    (`kv_window`), since DPU transfers move whole 8-byte words.
 * The host keeps its own copy (kv_append) for that window and for ops that stay on the host. Without
 * resource pooling the DPUs do not outlive a call, and each call sends the whole cache instead.
 * The kernels run over the first T tokens only (their N and K extents are run-time expressions).
 * A DPU holds few output columns of the context GEMM (dd), so its tasklets may split the tokens
 * instead (Tile.ks), leaving ks partial rows that the host adds (reduce_sum).
 */
import {
  gemmKernel,
  kernelModel,
  roundUp,
  tiles,
  weightBlock,
  type Distribution,
  type GemmShape,
  type Tiling,
} from "./gemm.js";
import type { BlockMap, IntExpr, Kernel } from "./program.js";
import type { UpmemSystem } from "./system.js";
import { dpusPerRank, pullTime, pushTime } from "./transfer.js";

export interface AttentionDims {
  /** Query heads, kv heads, head dim. */
  readonly h: number;
  readonly kvh: number;
  readonly d: number;
}

/** Tokens of V^T beyond the largest cache that an append's window may touch (S + 3 at most). */
const V_SLACK = 3;

/** How one layer's KV cache and attention GEMMs are laid out over the DPUs. */
export interface AttentionLayout {
  readonly dims: AttentionDims;
  /** Groups laid out (largest batch x kv heads) and DPUs per group. */
  readonly groups: number;
  readonly dt: number;
  /** Head-dim columns per DPU. */
  readonly dd: number;
  /** Largest cache length. */
  readonly tmax: number;
  /** The GEMMs at one query row: K block [tmax, dd] (K split dt ways), V^T block [dd, tmax] (N split). */
  readonly scores: GemmShape;
  readonly context: GemmShape;
  readonly scoresDist: Distribution;
  readonly contextDist: Distribution;
}

export const layoutDpus = (l: AttentionLayout): number => l.groups * l.dt;

/** The layout with dt DPUs per group, or undefined when the head dim does not split into dt blocks. */
export function attentionLayout(
  dims: AttentionDims,
  limits: { B: number; T: number },
  dt: number,
  sys: UpmemSystem,
): AttentionLayout | undefined {
  const groups = limits.B * dims.kvh;
  const rep = dims.h / dims.kvh;
  if (!Number.isInteger(rep) || dims.d % dt !== 0 || groups * dt > sys.dpus) return undefined;
  const dd = dims.d / dt;
  const scores: GemmShape = { m: 1, n: limits.T, k: dims.d, dtype: "f32" };
  const context: GemmShape = { m: 1, n: dims.d, k: limits.T + V_SLACK, dtype: "f32" };
  const scoresDist = { dm: 1, dn: 1, dk: dt };
  const contextDist = { dm: 1, dn: dt, dk: 1 };
  // The blocks must be exactly dd columns of K and dd rows of V^T (groups are D apart on the host).
  if (weightBlock(scores, scoresDist).kb !== dd || weightBlock(context, contextDist).nb !== dd)
    return undefined;
  return { dims, groups, dt, dd, tmax: limits.T, scores, context, scoresDist, contextDist };
}

/** MRAM bytes per DPU of the K and V^T blocks. */
export function cacheBytes(l: AttentionLayout): { k: number; v: number } {
  const s = weightBlock(l.scores, l.scoresDist);
  const c = weightBlock(l.context, l.contextDist);
  return { k: s.nbPad * s.kb * 4, v: c.nbPad * c.kb * 4 };
}

/** A call: query rows per group (rep x S), new tokens S, cache length T. */
export interface AttentionCall {
  readonly rows: number;
  readonly s: number;
  readonly t: number;
}

export interface AttentionTiling {
  readonly scores: Tiling;
  readonly context: Tiling;
  /** Estimated seconds of the call: transfers, kernels, launches (host work excluded). */
  readonly seconds: number;
}

/**
 * The fastest tile of a GEMM of the layout, rated at the call's run-time extent; `kSplits` are the
 * K splits inside the DPU to try (without double buffering).
 */
function bestTile(
  layoutShape: GemmShape,
  dist: Distribution,
  rows: number,
  atRuntime: (t: Tiling) => GemmShape,
  sys: UpmemSystem,
  kSplits: readonly number[] = [1],
): { t: Tiling; cycles: number } | undefined {
  let best: { t: Tiling; cycles: number } | undefined;
  const { kb } = weightBlock(layoutShape, dist);
  for (const tile of tiles({ ...layoutShape, m: rows }, dist, sys)) {
    if (tile.tm > 1 && tile.tm / 2 >= rows) continue;
    for (const ks of kSplits) {
      if (ks > 1 && (tile.double || ks > kb / tile.tk)) continue;
      const t = { ...dist, ...tile, ...(ks > 1 ? { ks } : {}) };
      const cycles = kernelModel(atRuntime(t), dist, sys, rows)(t);
      if (!best || cycles < best.cycles) best = { t, cycles };
    }
  }
  return best;
}

/**
 * Tiles of the two kernels for a call and the call's estimated seconds. `resident`: the cache stays
 * in MRAM (appends only); otherwise the call allocates the DPUs, loads the kernels and sends it all.
 */
export function tileAttention(
  l: AttentionLayout,
  call: AttentionCall,
  sys: UpmemSystem,
  resident: boolean,
): AttentionTiling | undefined {
  const { rows, s, t } = call;
  const sc = bestTile(
    l.scores,
    l.scoresDist,
    rows,
    (x) => ({ ...l.scores, m: rows, n: roundUp(t, x.tn) }),
    sys,
  );
  // The context kernel has few output tiles per DPU (dd columns): its tasklets split K (the tokens).
  const c = weightBlock(l.context, l.contextDist);
  const cx = bestTile(
    l.context,
    l.contextDist,
    rows,
    (x) => ({ ...l.context, m: rows, k: roundUp(t, x.tk) }),
    sys,
    c.nbPad === l.dd ? [1, 2, 4, 8, 16] : [1],
  );
  if (!sc || !cx) return undefined;
  const range = { first: 0, count: layoutDpus(l) };
  const dd = l.dd;
  const probsCols = roundUp(t, cx.t.tk);
  const ks = cx.t.ks ?? 1;
  let transfers =
    pushTime(sys, range, rows * dd * 4) +
    pullTime(sys, range, rows * t * 4, l.dt) +
    pushTime(sys, range, rows * probsCols * 4) +
    pullTime(sys, range, rows * ks * dd * 4);
  if (resident)
    transfers += pushTime(sys, range, s * dd * 4) + pushTime(sys, range, dd * roundUp(s + 2, 2) * 4);
  else
    transfers +=
      pushTime(sys, range, t * dd * 4) +
      pushTime(sys, range, dd * roundUp(t, 2) * 4) +
      sys.alloc_per_dpu * range.count +
      sys.load_per_rank * dpusPerRank(sys, range).length;
  const seconds = transfers + (sc.cycles + cx.cycles) / sys.frequency + 2 * sys.launch_overhead;
  return { scores: sc.t, context: cx.t, seconds };
}

/**
 * The layout (DPUs per group) with the least estimated time summed over `calls` (one per phase that
 * uses the cache), or undefined when attention cannot run on the DPUs.
 */
export function planAttention(
  dims: AttentionDims,
  limits: { B: number; T: number },
  calls: readonly AttentionCall[],
  sys: UpmemSystem,
  resident: boolean,
): { layout: AttentionLayout; tilings: AttentionTiling[]; seconds: number } | undefined {
  let best: { layout: AttentionLayout; tilings: AttentionTiling[]; seconds: number } | undefined;
  for (let dt = 1; dt <= dims.d; dt *= 2) {
    const layout = attentionLayout(dims, limits, dt, sys);
    if (!layout) continue;
    const tilings = calls.map((c) => tileAttention(layout, c, sys, resident));
    if (tilings.some((x) => !x)) continue;
    const seconds = tilings.reduce((a, x) => a + x!.seconds, 0);
    if (!best || seconds < best.seconds) best = { layout, tilings: tilings as AttentionTiling[], seconds };
  }
  return best;
}

/** The two kernels of a call (the cache blocks at parameter `w`, X and Y at the given offsets). */
export function attentionKernels(
  l: AttentionLayout,
  tiling: AttentionTiling,
  e: { rows: IntExpr; T: IntExpr },
  xOff: number,
  yOff: number,
): { scores: Kernel; context: Kernel } {
  return {
    scores: gemmKernel({
      name: "",
      shape: l.scores,
      tiling: tiling.scores,
      mExpr: e.rows,
      nExpr: e.T,
      xOff,
      yOff,
    }),
    context: gemmKernel({
      name: "",
      shape: l.context,
      tiling: tiling.context,
      mExpr: e.rows,
      kExpr: e.T,
      xOff,
      yOff,
    }),
  };
}

/** MRAM bytes per DPU of the X and Y blocks of a call with `rows` query rows. */
export function attentionBytes(
  l: AttentionLayout,
  tiling: AttentionTiling,
  rows: number,
): { x: number; y: number } {
  const s = weightBlock(l.scores, l.scoresDist);
  const c = weightBlock(l.context, l.contextDist);
  const mr = (t: Tiling) => roundUp(rows, t.tm);
  return {
    x: Math.max(mr(tiling.scores) * s.kb, mr(tiling.context) * c.kb) * 4,
    y: Math.max(mr(tiling.scores) * s.nbPad, mr(tiling.context) * (tiling.context.ks ?? 1) * c.nbPad) * 4,
  };
}

/** Maps of a layout over groups of dt DPUs (B, S, T: the call's dims as expressions). */
function mapMakers(l: AttentionLayout, e: { B: IntExpr; S: IntExpr }) {
  const { h, kvh, d } = l.dims;
  const { dt, dd, groups } = l;
  const rep = h / kvh;
  const c = weightBlock(l.context, l.contextDist);
  return {
    rows: `${e.B}*${h}*${e.S}`,
    groupRows: rep === 1 ? e.S : `${rep}*${e.S}`,
    /** Rows of a [groups * n, D] buffer: group g's n rows, DPU j of the group its dd columns. */
    split: (rs: IntExpr, n: IntExpr): BlockMap => ({
      rows: rs,
      cols: d,
      blockRows: n,
      blockCols: dd,
      ld: dd,
      rowEvery: dt,
      rowBlocks: groups,
      colEvery: 1,
      colBlocks: dt,
    }),
    /** Rows of V^T: DPU g*dt + j holds rows (g*dt + j)*dd.. of [B*KVH*D, cols], stored ld apart. */
    vRows: (cols: IntExpr, blockCols: IntExpr): BlockMap => ({
      rows: `${e.B}*${kvh * d}`,
      cols,
      blockRows: dd,
      blockCols,
      ld: c.kb,
      rowEvery: 1,
      rowBlocks: groups * dt,
      colEvery: 1,
      colBlocks: 1,
    }),
  };
}

/**
 * The block maps of a call. Host buffers: q and out [B, H, S, D] (group g's rows are rows
 * g*rep*S.. of the [B*H*S, D] view), scores and probs [B, H, S, T] (viewed [B*H*S, T]).
 */
export function attentionMaps(
  l: AttentionLayout,
  tiling: AttentionTiling,
  e: { B: IntExpr; S: IntExpr; T: IntExpr },
): { q: BlockMap; scores: BlockMap; probs: BlockMap; out: BlockMap } {
  const mk = mapMakers(l, e);
  const s = weightBlock(l.scores, l.scoresDist);
  const c = weightBlock(l.context, l.contextDist);
  /** The same [rep*S, cols] rows of a [B*H*S, cols] buffer on every DPU of a group. */
  const whole = (cols: IntExpr, blockCols: IntExpr, ld: number): BlockMap => ({
    rows: mk.rows,
    cols,
    blockRows: mk.groupRows,
    blockCols,
    ld,
    rowEvery: l.dt,
    rowBlocks: l.groups,
    colEvery: 1,
    colBlocks: 1,
  });
  const tk = tiling.context.tk;
  const ks = tiling.context.ks ?? 1;
  const out = mk.split(mk.rows, mk.groupRows);
  return {
    q: mk.split(mk.rows, mk.groupRows),
    scores: whole(e.T, e.T, s.nbPad),
    // Columns past T up to the last chunk the context kernel reads are sent as zeros.
    probs: whole(e.T, `cdiv(${e.T}, ${tk})*${tk}`, c.kb),
    // With a K split inside the DPUs, the partial tiles of a row: [B*H*S, dt * ks * dd].
    out:
      ks === 1
        ? { ...out, ld: c.nbPad }
        : { ...out, cols: l.dt * ks * l.dd, blockCols: ks * l.dd, ld: ks * c.nbPad },
  };
}

/**
 * The block maps that fill a layer's cache blocks. Host buffers: the new tokens k [B, KVH, S, D]
 * (viewed [B*KVH*S, D]) and the V window [B, KVH, D, S+2] (viewed [B*KVH*D, S+2]) for appends;
 * without residency the whole caches, k [B, KVH, T, D] and v^T [B, KVH, D, T].
 */
export function cacheMaps(
  l: AttentionLayout,
  e: { B: IntExpr; S: IntExpr; T: IntExpr },
): { kNew: BlockMap; vWindow: BlockMap; kAll: BlockMap; vtAll: BlockMap } {
  const mk = mapMakers(l, e);
  return {
    kNew: mk.split(`${e.B}*${l.dims.kvh}*${e.S}`, e.S),
    vWindow: mk.vRows(`${e.S}+2`, `2*cdiv(${e.S}+2, 2)`),
    kAll: mk.split(`${e.B}*${l.dims.kvh}*(${e.T})`, e.T),
    vtAll: mk.vRows(e.T, `2*cdiv(${e.T}, 2)`),
  };
}

/** MRAM offsets (bytes, within the blocks) where an append of the tokens after the first `past` lands. */
export function appendOffsets(l: AttentionLayout, past: IntExpr): { k: IntExpr; v: IntExpr } {
  const p = typeof past === "number" ? past : `(${past})`;
  return {
    k: typeof p === "number" ? p * l.dd * 4 : `${p}*${l.dd * 4}`,
    v: typeof p === "number" ? (p - (p % 2)) * 4 : `(${p}-${p}%2)*4`,
  };
}
