/**
 * PGEMMlib: the GEMM kernels of the UPMEM target and their analytical cost model (the Tile-Selector).
 *
 * Y[M, N] = X[M, K] . W[N, K]^T with W a constant resident in MRAM. The DPUs of a GEMM form a grid
 * dm x dn x dk (DPU d = (im * dn + in) * dk + ik): DPU (im, in, ik) holds rows im of X, rows in of W
 * and columns ik of both, and computes a partial Y block [mb, nb] that the host pulls, adding the
 * dk partial sums (KtileGEMM). The PIM-LLM variants are points of this space: NtileGEMM (dn only),
 * KtileGEMM (dk only), MixedGEMM (dn x dk), BatchedGEMM (dm: row blocks of X on replicated weights),
 * BaseGEMM (dm = DPUs, W sent to every DPU at run time: the naive mapping kept as a baseline).
 *
 * Inside a DPU, work items are [tm x tn] output tiles dealt round-robin to `tasklets`; each walks K
 * in chunks of tk, DMAs an X tile [tm, tk] and a W tile [tn, tk] into WRAM (double-buffered when
 * `double`) and multiply-accumulates into an int32 (i8) or fp32 tile, written back to MRAM at the end.
 */
import { dimEval, dimProd } from "../../src/ir/dim.js";
import { weightGemm } from "../../src/ir/registry.js";
import type { OpView } from "../../src/pipeline/cost-model.js";
import type { IntExpr, Kernel, KernelStmt, MramAddr, WramBuffer } from "./program.js";
import { taskletsThatFit, wramNeeded, type UpmemSystem } from "./system.js";
import { broadcastTime, hostTime, pullTime, pushTime } from "./transfer.js";

export type GemmDtype = "i8" | "f32";

export interface GemmShape {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly dtype: GemmDtype;
}

/** How a GEMM is spread over DPUs (fixes the layout of W in MRAM). */
export interface Distribution {
  readonly dm: number;
  readonly dn: number;
  readonly dk: number;
}

/** The kernel's tiling inside one DPU. */
export interface Tile {
  readonly tasklets: number;
  readonly tm: number;
  readonly tn: number;
  readonly tk: number;
  readonly double: boolean;
  /**
   * K split inside the DPU (default 1): each output tile becomes `ks` work items over consecutive
   * ranges of K chunks, whose partial tiles are stored side by side (Y rows of ks x nbPad) for the
   * host to add. Gives the tasklets work when a DPU has few output tiles; no double buffering.
   */
  readonly ks?: number;
}

export type Tiling = Distribution & Tile;

export const cdiv = (a: number, b: number): number => Math.ceil(a / b);
export const roundUp = (a: number, b: number): number => cdiv(a, b) * b;
export const elemBytesOf = (d: GemmDtype): number => (d === "i8" ? 1 : 4);

/** The PIM-LLM name of a distribution. */
export function variantName(d: Distribution, base = false): string {
  if (base) return "BaseGEMM";
  if (d.dm > 1) return "BatchedGEMM";
  if (d.dn > 1 && d.dk > 1) return "MixedGEMM";
  if (d.dk > 1) return "KtileGEMM";
  return "NtileGEMM";
}

/** Per-DPU block sizes of W (fixed by the distribution): rows nb (padded to nbPad) and columns kb. */
export interface WeightBlock {
  readonly nb: number;
  readonly nbPad: number;
  readonly kb: number;
}

export function weightBlock(shape: GemmShape, d: Distribution): WeightBlock {
  const nb = cdiv(shape.n, d.dn);
  const kl = cdiv(shape.k, d.dk);
  const e = elemBytesOf(shape.dtype);
  return {
    nb,
    nbPad: roundUp(nb, nb >= 32 ? 16 : 2),
    kb: roundUp(kl, kl >= 256 ? 64 : 8 / e),
  };
}

/** Per-DPU bytes of the W block, the X block and the Y block for `m` rows. */
export function blockBytes(shape: GemmShape, t: Tiling, m = shape.m): { w: number; x: number; y: number } {
  const { nbPad, kb } = weightBlock(shape, t);
  const e = elemBytesOf(shape.dtype);
  const mbPad = roundUp(cdiv(m, t.dm), t.tm);
  return { w: nbPad * kb * e, x: mbPad * kb * e, y: mbPad * (t.ks ?? 1) * nbPad * 4 };
}

/** WRAM bytes the kernel takes (buffers of every tasklet and their stacks). */
export function wramBytes(shape: GemmShape, t: Tile, sys: UpmemSystem): number {
  const e = elemBytesOf(shape.dtype);
  return wramNeeded(sys, t.tasklets, (t.double ? 2 : 1) * (t.tm + t.tn) * t.tk * e + t.tm * t.tn * 4);
}

/** Whether `bytes` is a legal DMA row: a multiple of dma.align, from dma.min_bytes to dma.max_bytes. */
export const dmaRowOk = (bytes: number, sys: UpmemSystem): boolean =>
  bytes % sys.dma.align === 0 && bytes >= sys.dma.min_bytes && bytes <= sys.dma.max_bytes;

/** Chunk widths of K a block allows: the divisors of kb whose rows (tk x e bytes) are legal DMAs. */
export function legalTks(kb: number, e: number, sys: UpmemSystem): number[] {
  return divisors(kb).filter((x) => dmaRowOk(x * e, sys));
}

/** Column tile widths: the divisors of nbPad whose Y rows (tn x 4 bytes) are legal DMAs. */
export function legalTns(nbPad: number, sys: UpmemSystem): number[] {
  return divisors(nbPad).filter((x) => dmaRowOk(x * 4, sys));
}

/** The most tasklets (up to the system's) whose buffers and stacks fit WRAM; 0 when none does. */
export function maxTasklets(
  e: number,
  tm: number,
  tn: number,
  tk: number,
  double: boolean,
  sys: UpmemSystem,
): number {
  return taskletsThatFit(sys, (double ? 2 : 1) * (tm + tn) * tk * e + tm * tn * 4);
}

/** Whether a K split of `kc` chunks into `ks` work items gives every item at least one chunk. */
export const kSplitOk = (kc: number, ks: number): boolean =>
  ks >= 2 && ks <= kc && (ks - 1) * cdiv(kc, ks) < kc;

/**
 * Tasklet counts the Tile-Selector tries: 8, the issue interval and the next (the fewest that fill
 * the pipeline), the even counts above it and the most the DPU runs. (Over the bigger GEMMs of the
 * examples, the best odd count beyond these is within 1.2 % of the best of these on the DPU model.)
 */
const taskletMemo = new WeakMap<UpmemSystem, number[]>();
export function taskletCounts(sys: UpmemSystem): number[] {
  let ts = taskletMemo.get(sys);
  if (!ts) {
    const ii = sys.pipeline.issue_interval;
    const set = new Set([8, ii, ii + 1, sys.max_tasklets]);
    for (let t = ii + 1; t <= sys.max_tasklets; t++) if (t % 2 === 0) set.add(t);
    ts = [...set].filter((t) => t >= 1 && t <= sys.max_tasklets).sort((a, b) => a - b);
    taskletMemo.set(sys, ts);
  }
  return ts;
}

/**
 * A family of the Tile-Selector's tiles: one tm x tn x tk with its buffering or K split, and the
 * tasklet counts tried with it.
 */
export interface SelectorFamily {
  readonly tm: number;
  readonly tn: number;
  readonly tk: number;
  readonly double: boolean;
  readonly ks?: number;
  readonly tasklets: readonly number[];
}

/**
 * The narrowest chunk of K (bytes a row) the selector tries beside the three widest: over the 160
 * GEMMs of the big example models no best tiling on the DPU model had a narrower one (decode's best
 * chunks are 128 to 256 bytes: its DMA waves and tail are shorter with narrow rows).
 */
const MIN_CHUNK = 128;

/**
 * The chunks of K the selector tries among the legal `tks` (ascending): the three widest, and for
 * each power of two from MIN_CHUNK bytes up, the widest not wider (a K block with many divisors
 * would otherwise give dozens).
 */
function selectorChunks(tks: readonly number[], e: number): number[] {
  const out = new Set(tks.slice(-3));
  for (let p = MIN_CHUNK; p < tks[tks.length - 1]! * e; p *= 2) {
    let best: number | undefined;
    for (const x of tks) if (x * e <= p) best = x;
    if (best !== undefined && best * e >= MIN_CHUNK) out.add(best);
  }
  return [...out].sort((a, b) => a - b);
}

/** taskletCounts up to `most`, one array per system and bound (shared by the families). */
const prefixMemo = new WeakMap<UpmemSystem, (readonly number[])[]>();
function taskletsUpTo(sys: UpmemSystem, most: number): readonly number[] {
  let memo = prefixMemo.get(sys);
  if (!memo) prefixMemo.set(sys, (memo = []));
  return (memo[most] ??= taskletCounts(sys).filter((x) => x <= most));
}

/** The selector's tile families of a block, memoized per system and block. */
const familyMemo = new WeakMap<UpmemSystem, Map<string, SelectorFamily[]>>();

/** Forgets the tiles memoized for a system (to time the Tile-Selector as on a first call). */
export function forgetTiles(sys: UpmemSystem): void {
  familyMemo.delete(sys);
}

/**
 * The Tile-Selector's tile families of a DPU's block: tm of 1 to 4 rows (at most the block's), the
 * two narrowest column tiles tn, the chunks tk of selectorChunks; single- and double-buffered with
 * each of taskletCounts whose buffers fit WRAM; and with a K split inside the DPU (ks >= 2,
 * single-buffered), every legal split whose items (output tiles x ks) give each tasklet one, with
 * that many tasklets (over the 160 GEMMs of the examples, every best K split on the DPU model had
 * one item per tasklet).
 */
export function selectorFamilies(shape: GemmShape, d: Distribution, sys: UpmemSystem): SelectorFamily[] {
  const { nbPad, kb } = weightBlock(shape, d);
  const mb = cdiv(shape.m, d.dm);
  const key = `${shape.dtype} ${nbPad} ${kb} ${mb}`;
  let memo = familyMemo.get(sys);
  if (!memo) familyMemo.set(sys, (memo = new Map()));
  let hit = memo.get(key);
  if (!hit) memo.set(key, (hit = familiesOf(shape.dtype, mb, nbPad, kb, sys)));
  return hit;
}

/** The Tile-Selector's tiles without a K split (selectorFamilies, one tile per tasklet count). */
export function tiles(shape: GemmShape, d: Distribution, sys: UpmemSystem): Tile[] {
  return familyTiles(selectorFamilies(shape, d, sys).filter((f) => f.ks === undefined));
}

/** The Tile-Selector's tiles with a K split inside the DPU. */
export function splitTiles(shape: GemmShape, d: Distribution, sys: UpmemSystem): Tile[] {
  return familyTiles(selectorFamilies(shape, d, sys).filter((f) => f.ks !== undefined));
}

const familyTiles = (fs: readonly SelectorFamily[]): Tile[] =>
  fs.flatMap(({ tasklets, ...f }) => tasklets.map((t) => ({ ...f, tasklets: t })));

function familiesOf(
  dtype: GemmDtype,
  mb: number,
  nbPad: number,
  kb: number,
  sys: UpmemSystem,
): SelectorFamily[] {
  const e = elemBytesOf(dtype);
  const tks = selectorChunks(legalTks(kb, e, sys), e);
  const tns = legalTns(nbPad, sys).slice(0, 2);
  const out: SelectorFamily[] = [];
  for (let tm = 1; tm <= Math.min(4, mb); tm++)
    for (const tn of tns)
      for (const tk of tks) {
        const kc = kb / tk;
        const t1 = maxTasklets(e, tm, tn, tk, false, sys);
        const t2 = kc >= 2 ? maxTasklets(e, tm, tn, tk, true, sys) : 0;
        const single = taskletsUpTo(sys, t1);
        const double = taskletsUpTo(sys, t2);
        if (single.length > 0) out.push({ tm, tn, tk, double: false, tasklets: single });
        if (double.length > 0) out.push({ tm, tn, tk, double: true, tasklets: double });
        const outTiles = cdiv(mb, tm) * (nbPad / tn);
        for (let ks = 2; ks <= kc && outTiles * ks <= t1; ks++)
          if (kSplitOk(kc, ks)) out.push({ tm, tn, tk, double: false, ks, tasklets: [outTiles * ks] });
      }
  return out;
}

/**
 * The tiles attention's GEMMs try (attention.ts): 8, 11, 12, 16 or 24 tasklets, tm a power of two
 * up to 32 (at most twice the rows), the four widest column tiles up to 32 and the three widest
 * chunks, single- and double-buffered. (The linear layers' Tile-Selector tries selectorFamilies.)
 */
export function attentionTiles(shape: GemmShape, d: Distribution, sys: UpmemSystem): Tile[] {
  const { nbPad, kb } = weightBlock(shape, d);
  const e = elemBytesOf(shape.dtype);
  const mb = cdiv(shape.m, d.dm);
  const tks = legalTks(kb, e, sys).slice(-3);
  const tns = legalTns(nbPad, sys)
    .filter((x) => x <= 32)
    .slice(-4);
  const tms = [1, 2, 4, 8, 16, 32].filter((x) => x === 1 || x / 2 < mb);
  const out: Tile[] = [];
  for (const tasklets of [8, 11, 12, 16, 24].filter((x) => x <= sys.max_tasklets))
    for (const tm of tms)
      for (const tn of tns)
        for (const tk of tks)
          for (const double of [false, true])
            if ((!double || kb / tk >= 2) && tasklets <= maxTasklets(e, tm, tn, tk, double, sys))
              out.push({ tasklets, tm, tn, tk, double });
  return out;
}

/** The divisors of n in increasing order. */
function divisors(n: number): number[] {
  const low: number[] = [];
  const high: number[] = [];
  for (let i = 1; i * i <= n; i++)
    if (n % i === 0) {
      low.push(i);
      if (i * i !== n) high.push(n / i);
    }
  return low.concat(high.reverse());
}

/**
 * Distributions dm x dn x dk that fit the DPUs and keep blocks non-degenerate: powers of two, and
 * for each dm x dk the dn that fills the DPUs when that is not a power of two (2556 DPUs: dn 2556
 * beside 2048), so systems whose DPU count is not a power of two use all of them.
 */
export function distributions(shape: GemmShape, sys: UpmemSystem, dpus = sys.dpus): Distribution[] {
  const out: Distribution[] = [];
  const e = elemBytesOf(shape.dtype);
  const dnMax = Math.max(1, shape.n / 2);
  const dkOk = (dk: number): boolean => dk * 8 <= Math.max(8, (shape.k * e) / 8);
  for (let dm = 1; dm <= Math.min(128, shape.m); dm *= 2)
    for (let dk = 1; dm * dk <= dpus && dkOk(dk); dk *= 2) {
      let dn = 1;
      for (; dm * dn * dk <= dpus && dn <= dnMax; dn *= 2) out.push({ dm, dn, dk });
      const fill = Math.min(Math.floor(dpus / (dm * dk)), Math.floor(dnMax));
      if (fill > dn / 2 && (fill & (fill - 1)) !== 0) out.push({ dm, dn: fill, dk });
    }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The kernel.

export interface GemmKernelArgs {
  readonly name: string;
  readonly shape: GemmShape;
  readonly tiling: Tiling;
  /** M as an expression of the run-time dims (e.g. "B*S"). */
  readonly mExpr: IntExpr;
  /** MRAM offsets of the X and Y blocks; W's is the kernel parameter `w` (one kernel for every layer). */
  readonly xOff: number;
  readonly yOff: number;
  /**
   * Run-time extents of N and K when the call uses only part of the laid-out block (attention over a
   * KV cache shorter than the largest): the kernel covers cdiv(n, tn) column tiles and cdiv(k, tk)
   * chunks; the block's layout (its padded sizes) is unchanged.
   */
  readonly nExpr?: IntExpr;
  readonly kExpr?: IntExpr;
}

/** Rows of X each DPU holds: cdiv(M, dm). */
export const mbExpr = (mExpr: IntExpr, dm: number): IntExpr =>
  dm === 1 ? mExpr : typeof mExpr === "number" ? cdiv(mExpr, dm) : `cdiv(${mExpr}, ${dm})`;

export function gemmKernel(a: GemmKernelArgs): Kernel {
  const { shape, tiling: t } = a;
  const { nbPad, kb } = weightBlock(shape, t);
  const e = elemBytesOf(shape.dtype);
  const acc = shape.dtype === "i8" ? "i32" : "f32";
  const ks = t.ks ?? 1;
  if (ks > 1 && t.double) throw new Error("internal: a K split inside the DPU has no double buffering");
  const kcAll: IntExpr = a.kExpr === undefined ? kb / t.tk : `cdiv(${a.kExpr}, ${t.tk})`;
  /** Chunks per K-split item, and the chunks item ks runs (the last ones may run fewer, or none). */
  const per: IntExpr = typeof kcAll === "number" ? cdiv(kcAll, ks) : `cdiv(${kcAll}, ${ks})`;
  const kc: IntExpr = ks === 1 ? kcAll : `max(0, min(${per}, ${kcAll}-ks*${per}))`;
  const kTerms: [string, IntExpr][] =
    ks === 1 ? [] : [["ks", typeof per === "number" ? per * t.tk * e : `${per}*${t.tk * e}`]];
  const halves = t.double ? 2 : 1;
  const wram: WramBuffer[] = [
    { name: "x", dtype: shape.dtype, elems: halves * t.tm * t.tk },
    { name: "w", dtype: shape.dtype, elems: halves * t.tn * t.tk },
    { name: "acc", dtype: acc, elems: t.tm * t.tn },
  ];
  const xAddr = (chunk: "kc" | "next" | 0): MramAddr => ({
    base: a.xOff + (chunk === "next" ? t.tk * e : 0),
    terms: chunk === 0 ? [["i", t.tm * kb * e]] : [["i", t.tm * kb * e], ...kTerms, ["kc", t.tk * e]],
  });
  const wAddr = (chunk: "kc" | "next" | 0): MramAddr => ({
    base: chunk === "next" ? `w+${t.tk * e}` : "w",
    terms: chunk === 0 ? [["j", t.tn * kb * e]] : [["j", t.tn * kb * e], ...kTerms, ["kc", t.tk * e]],
  });
  const readX = (at: IntExpr, addr: MramAddr, async: boolean): KernelStmt => ({
    op: "dma_read",
    buf: "x",
    at,
    addr,
    rows: t.tm,
    rowBytes: t.tk * e,
    stride: kb * e,
    ...(async ? { async } : {}),
  });
  const readW = (at: IntExpr, addr: MramAddr, async: boolean): KernelStmt => ({
    op: "dma_read",
    buf: "w",
    at,
    addr,
    rows: t.tn,
    rowBytes: t.tk * e,
    stride: kb * e,
    ...(async ? { async } : {}),
  });
  const mac = (xAt: IntExpr, wAt: IntExpr): KernelStmt => ({
    op: "mac",
    acc: "acc",
    accAt: 0,
    a: "x",
    aAt: xAt,
    b: "w",
    bAt: wAt,
    m: t.tm,
    n: t.tn,
    k: t.tk,
  });
  const body: KernelStmt[] = [{ op: "fill", buf: "acc", at: 0, count: t.tm * t.tn, value: 0 }];
  if (t.double) {
    const xs = t.tm * t.tk;
    const ws = t.tn * t.tk;
    body.push(readX(0, xAddr(0), true), readW(0, wAddr(0), true), {
      op: "loop",
      var: "kc",
      count: typeof kc === "number" ? kc - 1 : `${kc}-1`,
      body: [
        { op: "dma_wait" },
        readX(`((kc+1)%2)*${xs}`, xAddr("next"), true),
        readW(`((kc+1)%2)*${ws}`, wAddr("next"), true),
        mac(`(kc%2)*${xs}`, `(kc%2)*${ws}`),
      ],
    });
    const last = (size: number): IntExpr =>
      typeof kc === "number" ? ((kc - 1) % 2) * size : `((${kc}-1)%2)*${size}`;
    body.push({ op: "dma_wait" }, mac(last(xs), last(ws)));
  } else {
    body.push({
      op: "loop",
      var: "kc",
      count: kc,
      body: [readX(0, xAddr("kc"), false), readW(0, wAddr("kc"), false), mac(0, 0)],
    });
  }
  body.push({
    op: "dma_write",
    buf: "acc",
    at: 0,
    addr: {
      base: a.yOff,
      terms: [
        ["i", t.tm * ks * nbPad * 4],
        ...(ks === 1 ? [] : ([["ks", nbPad * 4]] as [string, number][])),
        ["j", t.tn * 4],
      ],
    },
    rows: t.tm,
    rowBytes: t.tn * 4,
    stride: ks * nbPad * 4,
  });
  const mb = mbExpr(a.mExpr, t.dm);
  return {
    name: a.name,
    summary: `gemm.${shape.dtype} ${variantName(t)} ${t.dm}x${t.dn}x${t.dk} tile ${t.tm}x${t.tn}x${t.tk}${t.double ? " db" : ""}${ks > 1 ? ` ks${ks}` : ""}`,
    params: ["w"],
    tasklets: t.tasklets,
    wram,
    grid: [
      ["i", typeof mb === "number" ? cdiv(mb, t.tm) : `cdiv(${mb}, ${t.tm})`],
      ["j", a.nExpr === undefined ? nbPad / t.tn : `cdiv(${a.nExpr}, ${t.tn})`],
      ...(ks === 1 ? [] : ([["ks", ks]] as [string, number][])),
    ],
    body,
  };
}

// ---------------------------------------------------------------------------------------------
// The analytical model.

/** DMAs the engine serves for `rows` rows of `rowBytes` (merged into max-size chunks when contiguous). */
export function dmaN(sys: UpmemSystem, rows: number, rowBytes: number, contiguous: boolean): number {
  const chunk = Math.max(sys.dma.align, Math.floor(sys.dma.max_bytes / sys.dma.align) * sys.dma.align);
  return contiguous && rows > 1 ? Math.ceil((rows * rowBytes) / chunk) : rows;
}

/**
 * What one work item of a tile costs (instructions and DMA engine cycles, as the DPU model counts
 * them). Mutable: the model fills one per distribution for every tile it rates (no allocation).
 */
interface ItemCosts {
  /** Work items of the DPU's block. */
  items: number;
  /** Chunks of K per item (with a K split: of every item but the last of an output tile). */
  kc: number;
  /** Chunks of K per output tile, and of the last item of an output tile (kc without a K split). */
  kcAll: number;
  kcLast: number;
  /** DMAs of one chunk (rows of X and W), and their engine cycles. */
  nd: number;
  dc: number;
  /** Engine cycles of the Y write. */
  yc: number;
  /** Instructions of one chunk's mac, and of the whole chunk (loop and DMA overheads included). */
  cm: number;
  ic: number;
  /** Instructions of an item, and its engine cycles. */
  instr: number;
  dma: number;
}

const newItemCosts = (): ItemCosts => ({
  items: 0,
  kc: 0,
  kcAll: 0,
  kcLast: 0,
  nd: 0,
  dc: 0,
  yc: 0,
  cm: 0,
  ic: 0,
  instr: 0,
  dma: 0,
});

/** The per-tile constants of a block: rows mb of X, nbPad x kb of W. */
interface BlockConsts {
  readonly mb: number;
  readonly nbPad: number;
  readonly kb: number;
  readonly e: number;
  /** Instructions per multiply-accumulate. */
  readonly mac: number;
}

function blockConsts(shape: GemmShape, d: Distribution, sys: UpmemSystem, m: number): BlockConsts {
  const { nbPad, kb } = weightBlock(shape, d);
  return {
    mb: cdiv(m, d.dm),
    nbPad,
    kb,
    e: elemBytesOf(shape.dtype),
    mac: shape.dtype === "i8" ? sys.isa.mac_i8 : sys.isa.mac_f32,
  };
}

function itemCosts(b: BlockConsts, t: Tile, sys: UpmemSystem, out: ItemCosts): ItemCosts {
  const { read_alpha: ra, write_alpha: wa, beta } = sys.dma;
  const ovh = sys.isa.dma_overhead;
  const ks = t.ks ?? 1;
  const items = Math.ceil(b.mb / t.tm) * (b.nbPad / t.tn) * ks;
  const kcAll = b.kb / t.tk;
  const kc = ks === 1 ? kcAll : Math.ceil(kcAll / ks);
  const contiguousK = t.tk === b.kb;
  const xn = dmaN(sys, t.tm, t.tk * b.e, contiguousK);
  const wn = dmaN(sys, t.tn, t.tk * b.e, contiguousK);
  const yn = dmaN(sys, t.tm, t.tn * 4, t.tn === b.nbPad && ks === 1);
  const nd = xn + wn;
  const dc = nd * ra + beta * (t.tm + t.tn) * t.tk * b.e;
  const yc = yn * wa + beta * t.tm * t.tn * 4;
  const cm = t.tm * t.tn * (t.tk * b.mac + sys.isa.dot_overhead);
  const ic = cm + 2 + nd * ovh;
  // fill, kc chunks (one loop iteration fewer when double-buffered: the last chunk follows the loop), Y write.
  out.items = items;
  out.kc = kc;
  out.kcAll = kcAll;
  out.kcLast = Math.max(0, kcAll - (ks - 1) * kc);
  out.nd = nd;
  out.dc = dc;
  out.yc = yc;
  out.cm = cm;
  out.ic = ic;
  out.instr = Math.ceil((t.tm * t.tn * 4) / 8) + kc * ic - (t.double ? 2 : 0) + yn * ovh;
  out.dma = kc * dc + yc;
  return out;
}

export interface KernelEstimate {
  readonly cycles: number;
  readonly seconds: number;
}

/**
 * The kernel model of a distribution for `m` rows, as a function of the tile (constants hoisted: the
 * Tile-Selector calls it for every candidate). It follows the DPU model's mechanisms: `tasklets`
 * programs over items dealt round-robin, sharing the revolver pipeline (one instruction per cycle,
 * at most one per `issue_interval` per tasklet) and one FIFO DMA engine. Cycles are the largest of:
 *  - the pipeline: a fluid in which every tasklet with work left progresses at 1 / max(ii, tasklets
 *    with work left), over each tasklet's own load (items dealt round-robin, K splits of unequal
 *    length), plus the cycles the pipeline loses in the DMA waves (waves: the tasklets start in
 *    lock-step and their DMA requests meet at the engine until they drift apart) and in the tail
 *    (the last tasklets end one after another, fewer than ii of them left to fill the pipeline);
 *  - the DMA engine: every DMA in series, then the last chunk's multiply-accumulate;
 *  - the chain of the busiest tasklet: its instructions at the per-tasklet rate plus the DMA it
 *    waits for (every chunk's without double buffering, each item's first chunk's and what the
 *    previous chunk's compute does not hide with it; with fewer tasklets than the issue interval,
 *    its waits in the waves).
 */
export function kernelModel(
  shape: GemmShape,
  d: Distribution,
  sys: UpmemSystem,
  m = shape.m,
): (t: Tile) => number {
  return kernelModels(shape, d, sys, m).cycles;
}

/**
 * kernelModel, and a floor of it over the tasklet counts of a tile's family (all but the tasklets
 * equal): a DMA row and every instruction at one per cycle.
 */
export function kernelModels(
  shape: GemmShape,
  d: Distribution,
  sys: UpmemSystem,
  m = shape.m,
): { cycles: (t: Tile) => number; floor: (t: Tile) => number } {
  const b = blockConsts(shape, d, sys, m);
  const ii = sys.pipeline.issue_interval;
  const ovh = sys.isa.dma_overhead;
  const c = newItemCosts();
  const items: number[] = [];
  const chunks: number[] = [];
  const work: number[] = [];
  let last: Tile | undefined;
  /** Tiles of a family share their item costs. */
  const costs = (t: Tile): ItemCosts => {
    if (
      !last ||
      last.tm !== t.tm ||
      last.tn !== t.tn ||
      last.tk !== t.tk ||
      last.double !== t.double ||
      last.ks !== t.ks
    )
      itemCosts(b, t, sys, c);
    last = t;
    return c;
  };
  /** dmaWaves, the last table kept (a family's tiles often share it). */
  let lastKey = -1;
  let lastWaves: Waves | undefined;
  const waves = (A: number, nd: number, gap: number, async: boolean): Waves => {
    const key = wavesKey(A, nd, gap, async);
    if (key !== lastKey || !lastWaves) {
      lastWaves = dmaWaves(sys, A, nd, gap, async);
      lastKey = key;
    }
    return lastWaves;
  };
  const floor = (t: Tile): number => {
    costs(t);
    const ks = t.ks ?? 1;
    return c.dc / c.nd + c.items * (c.instr - c.kc * c.ic) + (c.items / ks) * c.kcAll * c.ic;
  };
  const cycles = (t: Tile): number => {
    costs(t);
    const n = c.items;
    const T = t.tasklets;
    const A = Math.min(T, n);
    const ks = t.ks ?? 1;
    const fixed = c.instr - c.kc * c.ic;
    // Each tasklet's items and chunks (items dealt round-robin; with a K split the last item of an
    // output tile runs kcLast chunks): the pipeline's fluid and the busiest tasklet's chain, its
    // instructions at the per-tasklet rate and the DMA latency it cannot hide: items x perItem +
    // chunks x perChunk (with double buffering, each item's first chunk waits and later ones what
    // the previous chunk's compute does not hide; below ii tasklets the waits are the waves').
    const waits = A < ii ? 0 : c.dc;
    const hidden = Math.max(0, c.dc - c.ic * ii);
    const perItem = fixed * ii + c.yc + (t.double ? waits - hidden : 0);
    const perChunk = c.ic * ii + (t.double ? hidden : waits);
    let fluid = 0;
    let busyItems = 0;
    let busyChunks = 0;
    let chainMax = 0;
    if (ks === 1) {
      const rounds = Math.ceil(n / T);
      const full = n - (rounds - 1) * T;
      fluid = (rounds - 1) * c.instr * Math.max(ii, A) + c.instr * Math.max(ii, full);
      busyItems = rounds;
      busyChunks = rounds * c.kc;
      chainMax = rounds * perItem + rounds * c.kc * perChunk;
    } else {
      taskletLoads(c, t, items, chunks);
      work.length = items.length;
      for (let j = 0; j < items.length; j++) {
        work[j] = items[j]! * fixed + chunks[j]! * c.ic;
        busyItems = Math.max(busyItems, items[j]!);
        busyChunks = Math.max(busyChunks, chunks[j]!);
        chainMax = Math.max(chainMax, items[j]! * perItem + chunks[j]! * perChunk);
      }
      work.sort((x, y) => x - y);
      for (let j = 0, prev = 0; j < work.length; j++) {
        fluid += (work[j]! - prev) * Math.max(ii, work.length - j);
        prev = work[j]!;
      }
    }
    // The DMA waves: one per chunk without double buffering, one per item's first chunk with it.
    const row = c.dc / c.nd;
    const w = waves(A, c.nd, (ovh * (t.double ? Math.max(ii, A) : ii)) / row, t.double);
    const k = t.double ? busyItems : busyChunks;
    let pipeline = fluid;
    let chain = chainMax;
    if (A >= ii) {
      // The tail: the tasklets end `gap` apart (their spread, at most a chunk's instructions at the
      // full pipeline); the last ii - 1 leave it part idle.
      const gap = Math.min((w.spread[Math.min(Math.max(k, 1), WAVES)]! * row) / Math.max(1, A - 1), c.ic);
      const tail = (gap / A) * ((ii * (ii - 1)) / 2);
      // The tasklets' DMA overheads of the first wave run while the pipeline would idle.
      pipeline += wavesAt(w.lost, k) * row - (c.nd - 1) * A * ovh + tail;
    } else chain += wavesAt(w.lastWait, k) * row;
    const engine = (n / ks) * (c.kcAll * c.dc + ks * c.yc) + c.cm * ii;
    return Math.max(pipeline, engine, chain);
  };
  return { cycles, floor };
}

/** Waves computed (beyond, each costs as the last). */
const WAVES = 16;

/**
 * The DMA waves of a group of tasklets, per wave count k = 0..WAVES (in DMA rows): pipeline cycles
 * lost in the first k waves, the tasklets' spread (first to last) after k waves, and the last
 * tasklet's waits in the first k waves. Beyond WAVES each wave costs as the last.
 */
interface Waves {
  readonly lost: Float64Array;
  readonly spread: Float64Array;
  readonly lastWait: Float64Array;
}

/** dmaWaves' memo key (`gap` in tenths of a row). */
const wavesKey = (A: number, nd: number, gap: number, async: boolean): number =>
  ((A * 64 + nd) * 4096 + Math.min(Math.round(gap * 10), 4095)) * 2 + (async ? 1 : 0);

/** `a` (cumulative per wave) after k waves, extrapolated beyond WAVES. */
const wavesAt = (a: Float64Array, k: number): number =>
  k <= WAVES ? a[k]! : a[WAVES]! + (k - WAVES) * (a[WAVES]! - a[WAVES - 1]!);

/**
 * dmaWaves' tables by issue interval (all they depend on besides their arguments), shared by every
 * system with that interval: each compile validates its own copy of the system description, and a
 * bench or an ablation compiles many times. Bounded: the key ranges over tasklets x rows x gaps.
 */
const waveMemo = new Map<number, Map<number, Waves>>();

/**
 * The DMA waves of `A` identical tasklets, in DMA rows (one row of service each): every tasklet
 * requests its nd rows (`async`: all at once, `gap` rows apart; otherwise each after the previous
 * one completes and `gap` rows of overheads), the engine serves them in order of request. The first
 * wave starts in lock-step (everyone requests at once); between waves the tasklets compute their
 * chunk together in the revolver pipeline, where the j-th to start runs at 1 / max(ii, j) while
 * the others start and the j-th to end at 1 / max(ii, A - j + 1) while the others end, which
 * stretches the gaps between them by max(ii, A - j + 1) / max(ii, j). The pipeline loses, while w
 * tasklets wait, max(0, w - (A - ii)) / ii of each cycle. Depends only on the system's issue
 * interval and the arguments: memoized per issue interval, kept across calls (`gap` rounded to 0.1 row).
 */
function dmaWaves(sys: UpmemSystem, A: number, nd: number, gap: number, async: boolean): Waves {
  const o = Math.round(gap * 10);
  const key = wavesKey(A, nd, gap, async);
  const ii = sys.pipeline.issue_interval;
  let memo = waveMemo.get(ii);
  if (!memo) waveMemo.set(ii, (memo = new Map()));
  const hit = memo.get(key);
  if (hit) return hit;
  const w: Waves = {
    lost: new Float64Array(WAVES + 1),
    spread: new Float64Array(WAVES + 1),
    lastWait: new Float64Array(WAVES + 1),
  };
  let arrive = new Float64Array(A);
  const depart = new Float64Array(A);
  for (let k = 1; k <= WAVES; k++) {
    waveService(arrive, depart, nd, o / 10, async);
    w.lost[k] = w.lost[k - 1]! + waveLoss(arrive, depart, A - ii, ii);
    w.spread[k] = depart[A - 1]! - depart[0]!;
    w.lastWait[k] = w.lastWait[k - 1]! + depart[A - 1]! - arrive[A - 1]!;
    const next = new Float64Array(A);
    for (let j = 1; j < A; j++)
      next[j] =
        next[j - 1]! + ((depart[j]! - depart[j - 1]!) * Math.max(ii, A - j + 1)) / Math.max(ii, j + 1);
    arrive = next;
  }
  w.spread[0] = 0;
  memo.set(key, w);
  return w;
}

/** One wave at the FIFO engine: tasklets arriving at `arrive` (ascending) leave at `depart`. */
function waveService(
  arrive: Float64Array,
  depart: Float64Array,
  nd: number,
  o: number,
  async: boolean,
): void {
  const A = arrive.length;
  // Requests in order of time: the arrivals' first rows (all rows with `async`), and the later rows
  // of blocking tasklets, each requested `o` after its previous row ends (never before the rows
  // already queued, so a FIFO of its own).
  const reqT: number[] = [];
  const reqJ: number[] = [];
  if (async) {
    for (let j = 0; j < A; j++)
      for (let r = 0; r < nd; r++) {
        reqT.push(arrive[j]! + r * o);
        reqJ.push(j);
      }
    const order = [...reqT.keys()].sort((x, y) => reqT[x]! - reqT[y]! || reqJ[x]! - reqJ[y]!);
    const left = new Array<number>(A).fill(nd);
    let t = 0;
    for (const i of order) {
      t = Math.max(t, reqT[i]!) + 1;
      const j = reqJ[i]!;
      if (--left[j]! === 0) depart[j] = t;
    }
    return;
  }
  const left = new Array<number>(A).fill(nd);
  let t = 0;
  let next = 0;
  let head = 0;
  for (let served = 0; served < A * nd; served++) {
    let j: number;
    if (next < A && (head >= reqT.length || arrive[next]! <= reqT[head]!)) {
      j = next;
      t = Math.max(t, arrive[next++]!) + 1;
    } else {
      j = reqJ[head]!;
      t = Math.max(t, reqT[head++]!) + 1;
    }
    if (--left[j]! === 0) depart[j] = t;
    else {
      reqT.push(t + o);
      reqJ.push(j);
    }
  }
}

/** Rows of pipeline time lost while more than `slack` tasklets wait: max(0, w - slack) / ii. */
function waveLoss(arrive: Float64Array, depart: Float64Array, slack: number, ii: number): number {
  const A = arrive.length;
  const ends = Array.from(depart).sort((x, y) => x - y);
  let lost = 0;
  let waiting = 0;
  let t = arrive[0]!;
  for (let a = 0, d = 0; d < A;) {
    const next = a < A && arrive[a]! <= ends[d]! ? arrive[a]! : ends[d]!;
    lost += ((next - t) * Math.max(0, waiting - slack)) / ii;
    t = next;
    if (a < A && arrive[a]! <= ends[d]!) {
      waiting++;
      a++;
    } else {
      waiting--;
      d++;
    }
  }
  return lost;
}

/**
 * The items and chunks of K of each tasklet with work (items dealt round-robin: tasklet j runs items
 * j, j + tasklets, ...), into `items` and `chunks`. Without a K split every item runs kc chunks;
 * with one, the last item of each output tile (item index = ks - 1 mod ks) runs kcLast.
 */
function taskletLoads(c: ItemCosts, t: Tile, items: number[], chunks: number[]): void {
  const T = t.tasklets;
  const ks = t.ks ?? 1;
  const rounds = Math.ceil(c.items / T);
  const full = c.items - (rounds - 1) * T;
  const active = Math.min(T, c.items);
  items.length = active;
  chunks.length = active;
  for (let j = 0; j < active; j++) {
    const nj = j < full ? rounds : rounds - 1;
    let k = nj * c.kc;
    if (ks > 1) for (let q = 0; q < nj; q++) if ((j + q * T) % ks === ks - 1) k -= c.kc - c.kcLast;
    items[j] = nj;
    chunks[j] = k;
  }
}

export function estimateKernel(shape: GemmShape, t: Tiling, sys: UpmemSystem, m = shape.m): KernelEstimate {
  const cycles = kernelModel(shape, t, sys, m)(t);
  return { cycles, seconds: cycles / sys.frequency };
}

export interface GemmEstimate {
  readonly kernel: number;
  readonly push: number;
  readonly pull: number;
  readonly launch: number;
  readonly total: number;
}

/** Seconds of one GEMM call: input transfer, kernel, output pull (with the dk-way reduction). */
export function estimateGemm(shape: GemmShape, t: Tiling, sys: UpmemSystem, m = shape.m): GemmEstimate {
  const kernel = estimateKernel(shape, t, sys, m).seconds;
  const { push, pull } = transferEstimate(shape, t, sys, m);
  const launch = sys.launch_overhead;
  return { kernel, push, pull, launch, total: kernel + push + pull + launch };
}

/**
 * A lower bound of the kernel's cycles on the DPU model (for branch-and-bound in `pimc tune`): the
 * largest of the DMA engine's busy time (every DMA in series), all instructions at one per cycle, and
 * the busiest tasklet's chain: its instructions at one per `issue_interval` plus the DMA service it
 * must wait for (every DMA without double buffering; with it, each item's first chunk, less the
 * instructions it runs meanwhile: its other rows' overheads and the loop's, and the synchronous Y
 * writes). With a K split the items of an output tile differ (the last runs the chunks left), so
 * the totals count each item's chunks and the busiest tasklet's chain is at least the mean
 * tasklet's and at least its items' at the shortest item's length.
 */
export function kernelLowerBound(shape: GemmShape, t: Tiling, sys: UpmemSystem, m = shape.m): number {
  const c = itemCosts(blockConsts(shape, t, sys, m), t, sys, newItemCosts());
  const ii = sys.pipeline.issue_interval;
  const rounds = Math.ceil(c.items / t.tasklets);
  if ((t.ks ?? 1) === 1) {
    const chain = t.double
      ? (c.instr - (c.nd - 1) * sys.isa.dma_overhead - 2) * ii + c.dc + c.yc
      : c.instr * ii + c.dma;
    return Math.max(c.items * c.dma, c.items * c.instr, rounds * chain);
  }
  const ks = t.ks!;
  const outTiles = c.items / ks;
  // Per item: the fill and the Y write's overheads, then each chunk's instructions.
  const fixed = c.instr - c.kc * c.ic;
  const chainOf = (kc: number): number => (fixed + kc * c.ic) * ii + kc * c.dc + c.yc;
  const instr = outTiles * (ks * fixed + c.kcAll * c.ic);
  const dma = outTiles * (c.kcAll * c.dc + ks * c.yc);
  const mean = (outTiles * (ks * chainOf(0) + c.kcAll * (c.ic * ii + c.dc))) / t.tasklets;
  return Math.max(dma, instr, mean, rounds * chainOf(c.kcLast));
}

/**
 * A lower bound of kernelLowerBound for every K split ks >= 2 of a tile with at most `t.tasklets`
 * tasklets: its DMA engine and instruction totals at ks = 2 (both grow with ks) and the mean
 * tasklet's chain (every item's chain summed, which also grows with ks, over the tasklets).
 */
export function kSplitFloor(shape: GemmShape, t: Tiling, sys: UpmemSystem, m = shape.m): number {
  const c = itemCosts(blockConsts(shape, t, sys, m), { ...t, double: false, ks: 1 }, sys, newItemCosts());
  const ii = sys.pipeline.issue_interval;
  // Without a split, kc = kcAll: the fill and the Y write's overheads are what is left of instr.
  const fixed = c.instr - c.kc * c.ic;
  const instr = c.items * (2 * fixed + c.kcAll * c.ic);
  const dma = c.items * (c.kcAll * c.dc + 2 * c.yc);
  const mean = (c.items * (2 * (fixed * ii + c.yc) + c.kcAll * (c.ic * ii + c.dc))) / t.tasklets;
  return Math.max(dma, instr, mean);
}

/**
 * A floor of the kernel's cycles on a block of mb rows of X, nbPad x kb of W, for every tile: all
 * multiply-accumulate instructions at one per cycle (each output element pays a dot product's
 * overhead at least once), or the DMA engine reading W and X and writing Y at least once each, in
 * DMAs of at most max_bytes.
 */
export function kernelFloor(
  dtype: GemmDtype,
  mb: number,
  nbPad: number,
  kb: number,
  sys: UpmemSystem,
): number {
  const e = elemBytesOf(dtype);
  const mac = dtype === "i8" ? sys.isa.mac_i8 : sys.isa.mac_f32;
  const { read_alpha: ra, write_alpha: wa, beta, max_bytes: max } = sys.dma;
  const w = nbPad * kb * e;
  const x = mb * kb * e;
  const y = mb * nbPad * 4;
  const engine =
    beta * (w + x + y) + ra * (Math.ceil(w / max) + Math.ceil(x / max)) + wa * Math.ceil(y / max);
  return Math.max(mb * nbPad * (kb * mac + sys.isa.dot_overhead), engine);
}

/**
 * Host seconds to add the `ks` partial tiles of a K split inside the DPUs: reduce_sum over the ks
 * axis of the pulled [m, ks, n] partials (4-byte values), as the lowering emits it.
 */
export function partialsTime(sys: UpmemSystem, m: number, n: number, ks: number): number {
  if (ks <= 1) return 0;
  const parts = m * ks * n;
  return hostTime(sys, parts, 4 * parts + 4 * m * n, "reduce_sum");
}

/**
 * Transfer seconds of a GEMM call under a distribution (the same functions the emulator uses): X
 * broadcast or pushed, Y pulled with the host adding the dk partial blocks, and with a K split
 * inside the DPUs (`ks`) its ks partial tiles pulled too and added by the host (partialsTime).
 */
export function transferEstimate(
  shape: GemmShape,
  d: Distribution & { readonly ks?: number },
  sys: UpmemSystem,
  m = shape.m,
): { push: number; pull: number } {
  return transfersByKs(shape, d, sys, m)(d.ks ?? 1);
}

/**
 * transferEstimate as a function of the K split: a pull's time past its latency is linear in its
 * bytes (ranks in parallel, the host's limit, the reduction), so it is computed once (the selector
 * rates many splits of a distribution).
 */
export function transfersByKs(
  shape: GemmShape,
  d: Distribution,
  sys: UpmemSystem,
  m = shape.m,
): (ks: number) => { push: number; pull: number } {
  const { nb, kb } = weightBlock(shape, d);
  const e = elemBytesOf(shape.dtype);
  const range = { first: 0, count: d.dm * d.dn * d.dk };
  const mb = cdiv(m, d.dm);
  const push =
    d.dm === 1 && d.dk === 1 ? broadcastTime(sys, range, mb * kb * e) : pushTime(sys, range, mb * kb * e);
  const pull = pullTime(sys, range, mb * nb * 4, d.dk);
  const latency = pull > 0 ? sys.transfer.latency : 0;
  return (ks) => ({
    push,
    pull: ks === 1 ? pull : latency + ks * (pull - latency) + partialsTime(sys, m, shape.n, ks),
  });
}

/** Tilings as people read them: `MixedGEMM 1x64x32 t16 1x4x128 db`, `NtileGEMM 1x2048x1 t12 1x2x128 ks4`. */
export function tilingName(t: Tiling): string {
  return `${variantName(t)} ${t.dm}x${t.dn}x${t.dk} t${t.tasklets} ${t.tm}x${t.tn}x${t.tk}${t.double ? " db" : ""}${(t.ks ?? 1) > 1 ? ` ks${t.ks}` : ""}`;
}

/** The GEMM shape of a linear layer with a constant weight, or undefined. */
export function gemmShapeOf(v: OpView, env: Record<string, number>): GemmShape | undefined {
  const { op } = v;
  // Dense and INT8 weight GEMMs (low-bit ones are LUT kernels: lowbitA8ShapeOf).
  if (op.opcode === "lowbit_linear" || !weightGemm(op)) return undefined;
  const x = v.ins[0]!;
  const w = v.ins[1]!;
  return {
    m: (op.attrs.act_bits === 16 ? 2 : 1) * dimEval(dimProd(x.shape.slice(0, -1)), env),
    n: dimEval(w.shape[0]!, env),
    k: dimEval(w.shape[1]!, env),
    dtype: op.opcode === "qlinear" ? "i8" : "f32",
  };
}
