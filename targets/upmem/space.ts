/**
 * The full tiling space of a GEMM on the UPMEM target: every legal tiling, what `pimc tune
 * --exhaustive` searches (the Tile-Selector searches a subset). A tiling is legal when
 *  - its distribution dm x dn x dk fits the DPUs (dm x dn x dk <= DPUs) and no block is degenerate:
 *    every DPU holds at least one real row of X (dm <= M, (dm - 1) x cdiv(M, dm) < M), one real row
 *    of W ((dn - 1) x nb < N) and one real column of K ((dk - 1) x kb < K: blocks are kb wide);
 *  - its W block fits the MRAM budget (half the MRAM by default: the selector's), and the W, X and Y
 *    blocks fit the MRAM together (Y holds ks partial tiles per output tile);
 *  - tm is 1 to the block's rows mb (X rows are padded to a multiple of tm), tn divides the padded
 *    block nbPad and tk divides kb, with the DMA rules on their rows (X and W rows of tk x e bytes,
 *    Y rows of tn x 4 bytes: multiples of dma.align from dma.min_bytes to dma.max_bytes);
 *  - its tasklets (1 to max_tasklets) with their buffers (doubled when double-buffered) and stacks
 *    fit the WRAM;
 *  - double buffering needs two chunks of K (kb / tk >= 2); a K split inside the DPU (ks >= 2) has
 *    no double buffering, and gives every one of its ks items at least one chunk.
 * The space is counted without materialising it (spaceSize): tilings with the same per-DPU block
 * (rows mb, nbPad, kb) have the same tiles, which are counted once per block in families of equal
 * (tm, tn, tk).
 */
import {
  cdiv,
  elemBytesOf,
  kSplitOk,
  legalTks,
  legalTns,
  maxTasklets,
  roundUp,
  weightBlock,
  type Distribution,
  type GemmShape,
  type Tile,
  type Tiling,
} from "./gemm.js";
import type { UpmemSystem } from "./system.js";

export interface SpaceOptions {
  /** DPUs the GEMM may use (default: all). */
  readonly dpus?: number;
  /** Per-DPU MRAM bytes the W block may take (default: half the MRAM). */
  readonly mramBudget?: number;
}

/** Whether splitting `size` into blocks of `block` over `parts` leaves every part a real element. */
const nonDegenerate = (size: number, parts: number, block: number): boolean => (parts - 1) * block < size;

/** Every legal distribution of a shape, in order of dm, dk, dn. */
export function legalDistributions(
  shape: GemmShape,
  sys: UpmemSystem,
  opts: SpaceOptions = {},
): Distribution[] {
  const dpus = opts.dpus ?? sys.dpus;
  const budget = opts.mramBudget ?? sys.mram / 2;
  const e = elemBytesOf(shape.dtype);
  const out: Distribution[] = [];
  for (let dm = 1; dm <= Math.min(shape.m, dpus); dm++) {
    if (!nonDegenerate(shape.m, dm, cdiv(shape.m, dm))) continue;
    for (let dk = 1; dm * dk <= dpus && dk <= shape.k; dk++) {
      const { kb } = weightBlock(shape, { dm, dn: 1, dk });
      if (!nonDegenerate(shape.k, dk, kb)) continue;
      for (let dn = 1; dm * dn * dk <= dpus && dn <= shape.n; dn++) {
        const w = weightBlock(shape, { dm, dn, dk });
        if (nonDegenerate(shape.n, dn, w.nb) && w.nbPad * w.kb * e <= budget) out.push({ dm, dn, dk });
      }
    }
  }
  return out;
}

/** What the kernel of a DPU depends on: its rows of X, its padded rows of W and its K block. */
export interface Block {
  readonly mb: number;
  readonly nbPad: number;
  readonly kb: number;
}

export const blockOf = (shape: GemmShape, d: Distribution): Block => {
  const { nbPad, kb } = weightBlock(shape, d);
  return { mb: cdiv(shape.m, d.dm), nbPad, kb };
};

export const blockKey = (b: Block): string => `${b.mb} ${b.nbPad} ${b.kb}`;

/**
 * The tiles of one (tm, tn, tk) on a block: single-buffered with 1 to t1 tasklets, double-buffered
 * with 1 to t2 (0: none), and K splits ks of `splits` (each with 1 to t1 tasklets).
 */
export interface TileFamily {
  readonly tm: number;
  readonly tn: number;
  readonly tk: number;
  /** Chunks of K: kb / tk. */
  readonly kc: number;
  readonly t1: number;
  readonly t2: number;
  readonly splits: readonly number[];
}

const splitMemo = new Map<number, number[]>();

/** The legal K splits of kc chunks, in increasing order. */
export function kSplits(kc: number): readonly number[] {
  let s = splitMemo.get(kc);
  if (!s) {
    s = [];
    for (let ks = 2; ks <= kc; ks++) if (kSplitOk(kc, ks)) s.push(ks);
    splitMemo.set(kc, s);
  }
  return s;
}

/** How many of the increasing `xs` are <= limit. */
function countUpTo(xs: readonly number[], limit: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! <= limit) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The largest prefix of the increasing `xs` whose values are <= limit. */
function upTo(xs: readonly number[], limit: number): readonly number[] {
  const n = countUpTo(xs, limit);
  return n === xs.length ? xs : xs.slice(0, n);
}

/** The tile families of a block with at least one legal tile, in order of tm, tn, tk. */
export function tileFamilies(dtype: GemmShape["dtype"], b: Block, sys: UpmemSystem): TileFamily[] {
  const e = elemBytesOf(dtype);
  const w = b.nbPad * b.kb * e;
  const tns = legalTns(b.nbPad, sys);
  const tks = legalTks(b.kb, e, sys);
  const out: TileFamily[] = [];
  for (let tm = 1; tm <= b.mb; tm++) {
    const mbPad = roundUp(b.mb, tm);
    const x = mbPad * b.kb * e;
    // Y blocks of the partial tiles that fit beside W and X (every block size is a multiple of 8).
    const yFit = Math.floor((sys.mram - w - x) / (mbPad * b.nbPad * 4));
    if (yFit < 1) continue;
    for (const tn of tns)
      for (const tk of tks) {
        const t1 = maxTasklets(e, tm, tn, tk, false, sys);
        if (t1 < 1) continue;
        const kc = b.kb / tk;
        const t2 = kc >= 2 ? maxTasklets(e, tm, tn, tk, true, sys) : 0;
        out.push({ tm, tn, tk, kc, t1, t2, splits: upTo(kSplits(kc), yFit) });
      }
  }
  return out;
}

/** Tiles of a family. */
export const familySize = (f: TileFamily): number => f.t1 * (1 + f.splits.length) + f.t2;

/** Tiles of a family in order of tasklets, then single-buffered, double-buffered, K splits. */
export function familyTiles(f: TileFamily): Tile[] {
  const out: Tile[] = [];
  const { tm, tn, tk } = f;
  for (let tasklets = 1; tasklets <= Math.max(f.t1, f.t2); tasklets++) {
    if (tasklets <= f.t1) out.push({ tasklets, tm, tn, tk, double: false });
    if (tasklets <= f.t2) out.push({ tasklets, tm, tn, tk, double: true });
    if (tasklets <= f.t1) for (const ks of f.splits) out.push({ tasklets, tm, tn, tk, double: false, ks });
  }
  return out;
}

/** Distributions grouped by their block, in order of first appearance. */
export function byBlock(
  shape: GemmShape,
  ds: readonly Distribution[],
): { block: Block; dists: Distribution[] }[] {
  const groups = new Map<string, { block: Block; dists: Distribution[] }>();
  for (const d of ds) {
    const block = blockOf(shape, d);
    const key = blockKey(block);
    const g = groups.get(key);
    if (g) g.dists.push(d);
    else groups.set(key, { block, dists: [d] });
  }
  return [...groups.values()];
}

/**
 * Sums over tm = 1..mb of a family's single- and double-buffered tile counts (t1, t2) for one
 * (tn, tk): WRAM alone decides them. Memoized per system and element size, grown as needed.
 */
const taskletSums = new WeakMap<UpmemSystem, Map<number, { p1: number[]; p2: number[] }>>();

function taskletSum(
  sys: UpmemSystem,
  e: number,
  tn: number,
  tk: number,
  mb: number,
  kc: number,
): { s1: number; s2: number } {
  let memo = taskletSums.get(sys);
  if (!memo) taskletSums.set(sys, (memo = new Map()));
  // tn and tk are at most max_bytes / 4 and max_bytes.
  const key = (e * (sys.dma.max_bytes + 1) + tn) * (sys.dma.max_bytes + 1) + tk;
  let p = memo.get(key);
  if (!p) memo.set(key, (p = { p1: [0], p2: [0] }));
  for (let tm = p.p1.length; tm <= mb; tm++) {
    p.p1.push(p.p1[tm - 1]! + maxTasklets(e, tm, tn, tk, false, sys));
    p.p2.push(p.p2[tm - 1]! + maxTasklets(e, tm, tn, tk, true, sys));
  }
  return { s1: p.p1[mb]!, s2: kc >= 2 ? p.p2[mb]! : 0 };
}

/** Legal tiles of a block (familySize summed over tileFamilies, without materialising them). */
export function blockSize(dtype: GemmShape["dtype"], b: Block, sys: UpmemSystem): number {
  const e = elemBytesOf(dtype);
  const w = b.nbPad * b.kb * e;
  const tns = legalTns(b.nbPad, sys);
  const tks = legalTks(b.kb, e, sys);
  // When the largest padded X block (fewer than 2 mb rows) leaves room for every K split of the
  // smallest chunk, MRAM never binds: the sums over tm come from prefix sums.
  const worst = 2 * b.mb - 1;
  const yFitWorst = Math.floor((sys.mram - w - worst * b.kb * e) / (worst * b.nbPad * 4));
  if (tks.length > 0 && yFitWorst >= b.kb / tks[0]!) {
    let n = 0;
    for (const tn of tns)
      for (const tk of tks) {
        const kc = b.kb / tk;
        const { s1, s2 } = taskletSum(sys, e, tn, tk, b.mb, kc);
        n += s1 * (1 + kSplits(kc).length) + s2;
      }
    return n;
  }
  const yFits: number[] = [];
  for (let tm = 1; tm <= b.mb; tm++) {
    const mbPad = roundUp(b.mb, tm);
    yFits.push(Math.floor((sys.mram - w - mbPad * b.kb * e) / (mbPad * b.nbPad * 4)));
  }
  let n = 0;
  for (const tn of tns)
    for (const tk of tks) {
      const kc = b.kb / tk;
      const splits = kSplits(kc);
      // One tasklet's buffers grow with tm: past the first tm that does not fit, none does.
      for (let tm = 1; tm <= b.mb; tm++) {
        const t1 = maxTasklets(e, tm, tn, tk, false, sys);
        if (t1 < 1) break;
        const yFit = yFits[tm - 1]!;
        if (yFit >= 1)
          n += t1 * (1 + countUpTo(splits, yFit)) + (kc >= 2 ? maxTasklets(e, tm, tn, tk, true, sys) : 0);
      }
    }
  return n;
}

/** Legal tilings of a shape, counted per block (not materialised). */
export function spaceSize(shape: GemmShape, sys: UpmemSystem, opts: SpaceOptions = {}): number {
  let n = 0;
  for (const g of byBlock(shape, legalDistributions(shape, sys, opts)))
    n += blockSize(shape.dtype, g.block, sys) * g.dists.length;
  return n;
}

/** Every legal tiling of a shape, in order of distribution, then tile family, then familyTiles. */
export function* legalTilings(
  shape: GemmShape,
  sys: UpmemSystem,
  opts: SpaceOptions = {},
): Generator<Tiling> {
  const families = new Map<string, TileFamily[]>();
  for (const d of legalDistributions(shape, sys, opts)) {
    const b = blockOf(shape, d);
    const key = blockKey(b);
    let fs = families.get(key);
    if (!fs) families.set(key, (fs = tileFamilies(shape.dtype, b, sys)));
    for (const f of fs) for (const t of familyTiles(f)) yield { ...d, ...t };
  }
}

/** Orders tilings by dm, dn, dk, tasklets, tm, tn, tk, double buffering, ks (ties in the oracle). */
export function compareTilings(a: Tiling, b: Tiling): number {
  return (
    a.dm - b.dm ||
    a.dn - b.dn ||
    a.dk - b.dk ||
    a.tasklets - b.tasklets ||
    a.tm - b.tm ||
    a.tn - b.tn ||
    a.tk - b.tk ||
    Number(a.double) - Number(b.double) ||
    (a.ks ?? 1) - (b.ks ?? 1)
  );
}

/** Whether a distribution is legal (see legalDistributions). */
export function distributionOk(
  shape: GemmShape,
  d: Distribution,
  sys: UpmemSystem,
  opts: SpaceOptions = {},
): boolean {
  const w = weightBlock(shape, d);
  return (
    d.dm >= 1 &&
    d.dn >= 1 &&
    d.dk >= 1 &&
    d.dm * d.dn * d.dk <= (opts.dpus ?? sys.dpus) &&
    d.dm <= shape.m &&
    nonDegenerate(shape.m, d.dm, cdiv(shape.m, d.dm)) &&
    nonDegenerate(shape.n, d.dn, w.nb) &&
    nonDegenerate(shape.k, d.dk, w.kb) &&
    w.nbPad * w.kb * elemBytesOf(shape.dtype) <= (opts.mramBudget ?? sys.mram / 2)
  );
}

/** Whether a tiling is in the space (the selector's picks must be). */
export function isLegal(shape: GemmShape, t: Tiling, sys: UpmemSystem, opts: SpaceOptions = {}): boolean {
  if (!distributionOk(shape, t, sys, opts)) return false;
  const f = tileFamilies(shape.dtype, blockOf(shape, t), sys).find(
    (x) => x.tm === t.tm && x.tn === t.tn && x.tk === t.tk,
  );
  if (f === undefined) return false;
  // The family's tiles (familyTiles) without listing them: 1 to t1 tasklets single-buffered, with or
  // without a K split of `splits`, and 1 to t2 double-buffered.
  const ks = t.ks ?? 1;
  if (Number.isFinite(t.tasklets) && Number.isFinite(ks) && typeof t.double === "boolean") {
    if (!Number.isInteger(t.tasklets) || t.tasklets < 1) return false;
    return t.double
      ? t.tasklets <= f.t2 && ks === 1
      : t.tasklets <= f.t1 && (ks === 1 || f.splits.includes(ks));
  }
  const d = { dm: t.dm, dn: t.dn, dk: t.dk };
  return familyTiles(f).some((x) => compareTilings({ ...d, ...x }, t) === 0);
}
