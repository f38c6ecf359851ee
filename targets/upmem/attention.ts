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
 * instead (Tile.ks), leaving ks partial tiles side by side in each Y row. They are added either
 *  - on the host: the pull brings all ks x dd columns of a row and the host's reduce_sum adds them;
 *  - on the DPUs: a third kernel (the reduce kernel) reads each row's ks partials into WRAM, adds
 *    partials 1..ks-1 onto partial 0 (vadd) and writes the sums over partial 0; the pull then brings
 *    dd columns per row. The adds run in the host's order, (p0 + p1) + p2 ..., so both give the same
 *    bits (reduce_sum starts from +0, and a partial is never -0: it starts at +0 and x + (-x) = +0).
 * tileAttention picks the cheaper per call: the reduce kernel (reduceModel), its launch and the
 * smaller pull against the bigger pull and the host's reduce_sum (AttentionTiling.reduce), and it
 * chooses ks with that cost included. The tokens are split only where a DPU has little work, so on
 * the default system the launch makes the host the cheaper for the models tried (docs/upmem.md).
 */
import {
  dmaN,
  gemmKernel,
  kernelModel,
  roundUp,
  attentionTiles,
  weightBlock,
  type Distribution,
  type GemmShape,
  type Tiling,
} from "./gemm.js";
import { hostTime } from "./base.js";
import type { BlockMap, IntExpr, Kernel, MramAddr } from "./program.js";
import { wramNeeded, type UpmemSystem } from "./system.js";
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

/** A call: sequences B, query rows per group (rep x S), new tokens S, cache length T. */
export interface AttentionCall {
  readonly b: number;
  readonly rows: number;
  readonly s: number;
  readonly t: number;
}

/** Where the context kernel's partial tiles (ks > 1) are added: the host, or the DPUs (reduce kernel). */
export type ReduceSite = "host" | "pim";

/** The reduce kernel's tiling: tasklets, and the columns `cw` (dividing nbPad) one work item adds. */
export interface ReduceTile {
  readonly tasklets: number;
  readonly cw: number;
}

export interface AttentionTiling {
  readonly scores: Tiling;
  readonly context: Tiling;
  /** With a K split in the context kernel (ks > 1): where its partials are added. */
  readonly reduce?: ReduceSite;
  /** The reduce kernel's tile, when the DPUs add them. */
  readonly reduceTile?: ReduceTile;
  /**
   * Estimated seconds of the call: transfers, kernels, launches and the host's reduce_sum of the
   * partials (the other host work, softmax and the V window, excluded).
   */
  readonly seconds: number;
}

// ---------------------------------------------------------------------------------------------
// The reduce kernel: Y rows of ks partial tiles of nbPad f32 columns each, summed into partial 0.

/**
 * The reduce kernel over `rows` Y rows (an expression) from MRAM offset `yOff`. Work item (i, j)
 * reads columns [j*cw, (j+1)*cw) of the ks partials of row i (ks DMA rows nbPad*4 bytes apart,
 * merged by the engine when cw = nbPad), adds partials 1..ks-1 in order onto partial 0 and writes the
 * cw sums over partial 0's columns.
 */
export function reduceKernel(ks: number, nbPad: number, t: ReduceTile, rows: IntExpr, yOff: number): Kernel {
  const split = t.cw < nbPad;
  const addr: MramAddr = {
    base: yOff,
    terms: [["i", ks * nbPad * 4], ...(split ? ([["j", t.cw * 4]] as const) : [])],
  };
  return {
    name: "",
    summary: `reduce.f32 ks${ks} x ${nbPad} cols${split ? ` (${t.cw} per item)` : ""}`,
    tasklets: t.tasklets,
    wram: [{ name: "part", dtype: "f32", elems: ks * t.cw }],
    grid: [["i", rows], ...(split ? ([["j", nbPad / t.cw]] as const) : [])],
    body: [
      { op: "dma_read", buf: "part", at: 0, addr, rows: ks, rowBytes: t.cw * 4, stride: nbPad * 4 },
      {
        op: "loop",
        var: "q",
        count: ks - 1,
        body: [{ op: "vadd", dst: "part", dstAt: 0, src: "part", srcAt: `${t.cw}+q*${t.cw}`, count: t.cw }],
      },
      { op: "dma_write", buf: "part", at: 0, addr, rows: 1, rowBytes: t.cw * 4, stride: t.cw * 4 },
    ],
  };
}

const REDUCE_TASKLETS = [1, 2, 4, 8, 11, 12, 16, 24];

/** Legal reduce tiles: cw even divisors of nbPad whose DMAs are legal, buffers within WRAM. */
export function reduceTiles(ks: number, nbPad: number, sys: UpmemSystem): ReduceTile[] {
  const { align, min_bytes, max_bytes } = sys.dma;
  const out: ReduceTile[] = [];
  if ((nbPad * 4) % align !== 0) return out;
  for (let cw = nbPad; cw >= 1; cw--) {
    const bytes = cw * 4;
    if (nbPad % cw !== 0 || bytes % align !== 0 || bytes < min_bytes || bytes > max_bytes) continue;
    for (const tasklets of REDUCE_TASKLETS)
      if (tasklets <= sys.max_tasklets && wramNeeded(sys, tasklets, ks * bytes) <= sys.wram)
        out.push({ tasklets, cw });
  }
  return out;
}

/**
 * Cycles of the reduce kernel on `rows` rows, following the DPU model (dpu.ts). An item costs one
 * dma_overhead per DMA issued (nr reads: ks rows, merged into max-size DMAs when cw = nbPad; one
 * write), (ks - 1) loop iterations of 2 + cw x add_f32 instructions, and engine time alpha + beta x
 * bytes per DMA. The tasklets run identical items, so they start in lock-step:
 *  - the first round of items (one per tasklet) is a wave of reads interleaved on the engine (the
 *    first tasklet gets its last row after nr - 1 waves and a row, the others a row apart), then the
 *    adds share the pipeline (one instruction per cycle, at most one per issue_interval per tasklet;
 *    the tasklets joining and leaving a row apart leave it part idle), then the write;
 *  - a round in steady state takes the largest of the pipeline (its instructions), the engine (its
 *    DMAs) and one tasklet's chain (its instructions at issue_interval, then its DMAs);
 *  - the tasklets drift out of lock-step over the next rounds: the first round's excess over the
 *    steady state recurs for about 1 + 0.6 log2(2 nr) rounds in all (scaled by issue_interval /
 *    tasklets beyond the issue interval, where the computing tasklets hide the waves; fitted to the
 *    emulator).
 */
export function reduceModel(
  ks: number,
  nbPad: number,
  rows: number,
  t: ReduceTile,
  sys: UpmemSystem,
): number {
  const n = rows * (nbPad / t.cw);
  if (n === 0) return 0;
  const { read_alpha: ra, write_alpha: wa, beta } = sys.dma;
  const ii = sys.pipeline.issue_interval;
  const ovh = sys.isa.dma_overhead;
  const nr = dmaN(sys, ks, t.cw * 4, t.cw === nbPad);
  const row = ra + (beta * ks * t.cw * 4) / nr;
  const wc = wa + beta * t.cw * 4;
  // Instructions after the reads (the adds, the write's DMA overhead) and of the whole item.
  const c = (ks - 1) * (2 + t.cw * sys.isa.add_f32) + ovh;
  const instr = c + nr * ovh;
  const steady = (a: number): number =>
    Math.max(Math.max(ii, a) * instr, a * (nr * row + wc), instr * ii + nr * row + wc);
  const lockstep = (a: number): number => {
    const first = ovh * Math.max(ii, a) + (nr - 1) * Math.max(a * row, ovh * ii + row) + row;
    const last = first + (a - 1) * row;
    return Math.max(first + a * c + row * (Math.min(a, ii) - 1), last + c * ii) + wc;
  };
  const rounds = Math.floor(n / t.tasklets);
  const left = n - rounds * t.tasklets;
  const a1 = Math.min(t.tasklets, n);
  const excess = Math.max(0, lockstep(a1) - steady(a1));
  const fading = Math.min(
    Math.max(1, n / t.tasklets),
    1 + 0.6 * Math.log2(2 * nr) * Math.min(1, ii / t.tasklets),
  );
  return rounds * steady(t.tasklets) + (left > 0 ? steady(left) : 0) + excess * fading;
}

/** The fastest reduce tile by the model, or undefined when none is legal. */
export function bestReduce(
  ks: number,
  nbPad: number,
  rows: number,
  sys: UpmemSystem,
): { tile: ReduceTile; cycles: number } | undefined {
  let best: { tile: ReduceTile; cycles: number } | undefined;
  for (const tile of reduceTiles(ks, nbPad, sys)) {
    const cycles = reduceModel(ks, nbPad, rows, tile, sys);
    if (!best || cycles < best.cycles) best = { tile, cycles };
  }
  return best;
}

/**
 * The fastest tile of a GEMM of the layout, rated at the call's run-time extent; `kSplits` are the
 * K splits inside the DPU to try (without double buffering), `extra` the cycles a K split adds after
 * the kernel (Infinity: not possible). `cycles` are the kernel's.
 */
function bestTile(
  layoutShape: GemmShape,
  dist: Distribution,
  rows: number,
  atRuntime: (t: Tiling) => GemmShape,
  sys: UpmemSystem,
  kSplits: readonly number[] = [1],
  extra: (ks: number) => number = () => 0,
): { t: Tiling; cycles: number } | undefined {
  let best: { t: Tiling; cycles: number; total: number } | undefined;
  const { kb } = weightBlock(layoutShape, dist);
  for (const tile of attentionTiles({ ...layoutShape, m: rows }, dist, sys)) {
    if (tile.tm > 1 && tile.tm / 2 >= rows) continue;
    for (const ks of kSplits) {
      if (ks > 1 && (tile.double || ks > kb / tile.tk)) continue;
      const t = { ...dist, ...tile, ...(ks > 1 ? { ks } : {}) };
      const cycles = kernelModel(atRuntime(t), dist, sys, rows)(t);
      const total = cycles + extra(ks);
      if (total < (best?.total ?? Infinity)) best = { t, cycles, total };
    }
  }
  return best && { t: best.t, cycles: best.cycles };
}

/** How a call's context result comes home with ks partial tiles per row: where they are added, seconds. */
interface Finish {
  readonly reduce?: ReduceSite;
  readonly reduceTile?: ReduceTile;
  /** The pull, and the host's reduce_sum or the reduce kernel with its launch. */
  readonly seconds: number;
}

/**
 * The pull of the context's result and the addition of its ks partials: on the host (reduce_sum of
 * B x H x S x ks x D values after pulling ks x dd columns per row) or on the DPUs (the reduce kernel
 * and its launch, then dd columns per row), the cheaper unless `force`d; undefined when the forced
 * site cannot do it.
 */
export function finishContext(
  l: AttentionLayout,
  call: AttentionCall,
  ks: number,
  sys: UpmemSystem,
  force?: ReduceSite,
): Finish | undefined {
  const range = { first: 0, count: layoutDpus(l) };
  const pulled = pullTime(sys, range, call.rows * l.dd * 4);
  if (ks === 1) return { seconds: pulled };
  const parts = call.b * l.dims.kvh * call.rows * ks * l.dims.d;
  const host: Finish = {
    reduce: "host",
    seconds:
      pullTime(sys, range, call.rows * ks * l.dd * 4) +
      hostTime(sys, parts, 4 * parts + (4 * parts) / ks, "reduce_sum"),
  };
  if (force === "host") return host;
  const r = bestReduce(ks, weightBlock(l.context, l.contextDist).nbPad, call.rows, sys);
  const pim: Finish | undefined = r && {
    reduce: "pim",
    reduceTile: r.tile,
    seconds: pulled + r.cycles / sys.frequency + sys.launch_overhead,
  };
  if (force === "pim") return pim;
  return pim && pim.seconds < host.seconds ? pim : host;
}

/**
 * Tiles of the kernels for a call and the call's estimated seconds. `resident`: the cache stays in
 * MRAM (appends only); otherwise the call allocates the DPUs, loads the kernels and sends it all.
 * The context kernel's K split is chosen with what it costs after the kernel (finishContext);
 * `reduce` forces where its partials are added.
 */
export function tileAttention(
  l: AttentionLayout,
  call: AttentionCall,
  sys: UpmemSystem,
  resident: boolean,
  reduce?: ReduceSite,
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
  const finishes = new Map<number, Finish | undefined>();
  const finish = (ks: number): Finish | undefined => {
    if (!finishes.has(ks)) finishes.set(ks, finishContext(l, call, ks, sys, reduce));
    return finishes.get(ks);
  };
  const cx = bestTile(
    l.context,
    l.contextDist,
    rows,
    (x) => ({ ...l.context, m: rows, k: roundUp(t, x.tk) }),
    sys,
    c.nbPad === l.dd ? [1, 2, 4, 8, 16] : [1],
    (ks) => (finish(ks)?.seconds ?? Infinity) * sys.frequency,
  );
  if (!sc || !cx) return undefined;
  const fin = finish(cx.t.ks ?? 1)!;
  const range = { first: 0, count: layoutDpus(l) };
  const dd = l.dd;
  const probsCols = roundUp(t, cx.t.tk);
  let transfers =
    pushTime(sys, range, rows * dd * 4) +
    pullTime(sys, range, rows * t * 4, l.dt) +
    pushTime(sys, range, rows * probsCols * 4);
  if (resident)
    transfers += pushTime(sys, range, s * dd * 4) + pushTime(sys, range, dd * roundUp(s + 2, 2) * 4);
  else
    transfers +=
      pushTime(sys, range, t * dd * 4) +
      pushTime(sys, range, dd * roundUp(t, 2) * 4) +
      sys.alloc_per_dpu * range.count +
      sys.load_per_rank * dpusPerRank(sys, range).length;
  const seconds = transfers + fin.seconds + (sc.cycles + cx.cycles) / sys.frequency + 2 * sys.launch_overhead;
  return {
    scores: sc.t,
    context: cx.t,
    ...(fin.reduce ? { reduce: fin.reduce } : {}),
    ...(fin.reduceTile ? { reduceTile: fin.reduceTile } : {}),
    seconds,
  };
}

/**
 * The layout (DPUs per group) with the least estimated time summed over `calls` (one per phase that
 * uses the cache), or undefined when attention cannot run on the DPUs. `reduce` forces where the
 * context kernel's partials are added.
 */
export function planAttention(
  dims: AttentionDims,
  limits: { B: number; T: number },
  calls: readonly AttentionCall[],
  sys: UpmemSystem,
  resident: boolean,
  reduce?: ReduceSite,
): { layout: AttentionLayout; tilings: AttentionTiling[]; seconds: number } | undefined {
  let best: { layout: AttentionLayout; tilings: AttentionTiling[]; seconds: number } | undefined;
  for (let dt = 1; dt <= dims.d; dt *= 2) {
    const layout = attentionLayout(dims, limits, dt, sys);
    if (!layout) continue;
    const tilings = calls.map((c) => tileAttention(layout, c, sys, resident, reduce));
    if (tilings.some((x) => !x)) continue;
    const seconds = tilings.reduce((a, x) => a + x!.seconds, 0);
    if (!best || seconds < best.seconds) best = { layout, tilings: tilings as AttentionTiling[], seconds };
  }
  return best;
}

/**
 * The kernels of a call (the cache blocks at parameter `w`, X and Y at the given offsets), and the
 * reduce kernel when the DPUs add the context's partials.
 */
export function attentionKernels(
  l: AttentionLayout,
  tiling: AttentionTiling,
  e: { rows: IntExpr; T: IntExpr },
  xOff: number,
  yOff: number,
): { scores: Kernel; context: Kernel; reduce?: Kernel } {
  const ks = tiling.context.ks ?? 1;
  const nbPad = weightBlock(l.context, l.contextDist).nbPad;
  return {
    ...(tiling.reduce === "pim" && ks > 1
      ? { reduce: reduceKernel(ks, nbPad, tiling.reduceTile!, e.rows, yOff) }
      : {}),
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
    // With a K split inside the DPUs, the partial tiles of a row: [B*H*S, dt * ks * dd] for the
    // host to add, or the sums the reduce kernel left in place of partial 0.
    out:
      ks === 1 || tiling.reduce === "pim"
        ? { ...out, ld: ks * c.nbPad }
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
