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
import type { IntExpr, Kernel, KernelStmt, MramAddr, WramBuffer } from "./program.js";
import type { UpmemSystem } from "./system.js";
import { broadcastTime, pullTime, pushTime } from "./transfer.js";

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
  return { w: nbPad * kb * e, x: mbPad * kb * e, y: mbPad * nbPad * 4 };
}

/** WRAM bytes the kernel takes (buffers of every tasklet and their stacks). */
export function wramBytes(shape: GemmShape, t: Tile, sys: UpmemSystem): number {
  const e = elemBytesOf(shape.dtype);
  const per = (t.double ? 2 : 1) * (t.tm + t.tn) * t.tk * e + t.tm * t.tn * 4;
  return t.tasklets * (per + sys.stack_per_tasklet);
}

const TASKLETS = [8, 11, 12, 16, 24];

/** Legal tiles of a DPU's block: tk divides kb (8-byte DMA rows <= 2048 B), tn divides nbPad, WRAM fits. */
const tileMemo = new WeakMap<UpmemSystem, Map<string, Tile[]>>();

export function tiles(shape: GemmShape, d: Distribution, sys: UpmemSystem): Tile[] {
  const { nbPad, kb } = weightBlock(shape, d);
  const key = `${shape.dtype} ${nbPad} ${kb} ${Math.min(64, cdiv(shape.m, d.dm))}`;
  let memo = tileMemo.get(sys);
  if (!memo) tileMemo.set(sys, (memo = new Map()));
  const hit = memo.get(key);
  if (hit) return hit;
  const out = tilesOf(shape, d, sys, nbPad, kb);
  memo.set(key, out);
  return out;
}

function tilesOf(shape: GemmShape, d: Distribution, sys: UpmemSystem, nbPad: number, kb: number): Tile[] {
  const e = elemBytesOf(shape.dtype);
  const mb = cdiv(shape.m, d.dm);
  const maxTk = Math.floor(sys.dma.max_bytes / e);
  const tks = divisors(kb)
    .filter((x) => (x * e) % sys.dma.align === 0 && x * e >= sys.dma.min_bytes && x <= maxTk)
    .slice(-3);
  const tns = divisors(nbPad)
    .filter((x) => x % 2 === 0 && x <= 32)
    .slice(-4);
  const tms = [1, 2, 4, 8, 16, 32].filter((x) => x === 1 || x / 2 < mb);
  const out: Tile[] = [];
  for (const tasklets of TASKLETS.filter((x) => x <= sys.max_tasklets))
    for (const tm of tms)
      for (const tn of tns)
        for (const tk of tks)
          for (const double of [false, true]) {
            const t = { tasklets, tm, tn, tk, double };
            if (double && kb / tk < 2) continue;
            if (wramBytes(shape, t, sys) <= sys.wram) out.push(t);
          }
  return out;
}

function divisors(n: number): number[] {
  const out: number[] = [];
  for (let i = 1; i <= n; i++) if (n % i === 0) out.push(i);
  return out;
}

/** Distributions dm x dn x dk in powers of two that fit the DPUs and keep blocks non-degenerate. */
export function distributions(shape: GemmShape, sys: UpmemSystem, dpus = sys.dpus): Distribution[] {
  const out: Distribution[] = [];
  const e = elemBytesOf(shape.dtype);
  for (let dm = 1; dm <= Math.min(16, shape.m); dm *= 2)
    for (let dn = 1; dm * dn <= dpus && dn <= Math.max(1, shape.n / 2); dn *= 2)
      for (let dk = 1; dm * dn * dk <= dpus && dk * 8 <= Math.max(8, (shape.k * e) / 8); dk *= 2)
        out.push({ dm, dn, dk });
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
}

/** Rows of X each DPU holds: cdiv(M, dm). */
export const mbExpr = (mExpr: IntExpr, dm: number): IntExpr =>
  dm === 1 ? mExpr : typeof mExpr === "number" ? cdiv(mExpr, dm) : `cdiv(${mExpr}, ${dm})`;

export function gemmKernel(a: GemmKernelArgs): Kernel {
  const { shape, tiling: t } = a;
  const { nbPad, kb } = weightBlock(shape, t);
  const e = elemBytesOf(shape.dtype);
  const acc = shape.dtype === "i8" ? "i32" : "f32";
  const kc = kb / t.tk;
  const halves = t.double ? 2 : 1;
  const wram: WramBuffer[] = [
    { name: "x", dtype: shape.dtype, elems: halves * t.tm * t.tk },
    { name: "w", dtype: shape.dtype, elems: halves * t.tn * t.tk },
    { name: "acc", dtype: acc, elems: t.tm * t.tn },
  ];
  const xAddr = (chunk: "kc" | "next" | 0): MramAddr => ({
    base: a.xOff + (chunk === "next" ? t.tk * e : 0),
    terms:
      chunk === 0
        ? [["i", t.tm * kb * e]]
        : [
            ["i", t.tm * kb * e],
            ["kc", t.tk * e],
          ],
  });
  const wAddr = (chunk: "kc" | "next" | 0): MramAddr => ({
    base: chunk === "next" ? `w+${t.tk * e}` : "w",
    terms:
      chunk === 0
        ? [["j", t.tn * kb * e]]
        : [
            ["j", t.tn * kb * e],
            ["kc", t.tk * e],
          ],
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
      count: kc - 1,
      body: [
        { op: "dma_wait" },
        readX(`((kc+1)%2)*${xs}`, xAddr("next"), true),
        readW(`((kc+1)%2)*${ws}`, wAddr("next"), true),
        mac(`(kc%2)*${xs}`, `(kc%2)*${ws}`),
      ],
    });
    body.push({ op: "dma_wait" }, mac(((kc - 1) % 2) * xs, ((kc - 1) % 2) * ws));
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
        ["i", t.tm * nbPad * 4],
        ["j", t.tn * 4],
      ],
    },
    rows: t.tm,
    rowBytes: t.tn * 4,
    stride: nbPad * 4,
  });
  const mb = mbExpr(a.mExpr, t.dm);
  return {
    name: a.name,
    summary: `gemm.${shape.dtype} ${variantName(t)} ${t.dm}x${t.dn}x${t.dk} tile ${t.tm}x${t.tn}x${t.tk}${t.double ? " db" : ""}`,
    params: ["w"],
    tasklets: t.tasklets,
    wram,
    grid: [
      ["i", typeof mb === "number" ? cdiv(mb, t.tm) : `cdiv(${mb}, ${t.tm})`],
      ["j", nbPad / t.tn],
    ],
    body,
  };
}

// ---------------------------------------------------------------------------------------------
// The analytical model.

/** DMA count and engine cycles of moving `rows` rows of `rowBytes` (merged when contiguous). */
function dmaN(sys: UpmemSystem, rows: number, rowBytes: number, contiguous: boolean): number {
  return contiguous ? Math.ceil((rows * rowBytes) / sys.dma.max_bytes) : rows;
}

export interface KernelEstimate {
  readonly cycles: number;
  readonly seconds: number;
}

/**
 * The kernel model of a distribution for `m` rows, as a function of the tile (constants hoisted: the
 * Tile-Selector calls it for every candidate). Cycles on one DPU are the largest of the pipeline
 * bound (every tasklet's instructions at its share of the revolver pipeline), the DMA engine bound
 * (all DMAs in series) and each tasklet's chain of compute and exposed DMA latency (all of it without
 * double buffering; with it, only what the previous chunk's compute does not hide).
 */
export function kernelModel(
  shape: GemmShape,
  d: Distribution,
  sys: UpmemSystem,
  m = shape.m,
): (t: Tile) => number {
  const { nbPad, kb } = weightBlock(shape, d);
  const e = elemBytesOf(shape.dtype);
  const isa = sys.isa;
  const mac = shape.dtype === "i8" ? isa.mac_i8 : isa.mac_f32;
  const mb = cdiv(m, d.dm);
  const ii = sys.pipeline.issue_interval;
  const { read_alpha: ra, write_alpha: wa, beta } = sys.dma;
  return (t) => {
    const items = Math.ceil(mb / t.tm) * (nbPad / t.tn);
    const perTasklet = Math.ceil(items / t.tasklets);
    const kc = kb / t.tk;
    const contiguousK = t.tk === kb;
    const xn = dmaN(sys, t.tm, t.tk * e, contiguousK);
    const wn = dmaN(sys, t.tn, t.tk * e, contiguousK);
    const yn = dmaN(sys, t.tm, t.tn * 4, t.tn === nbPad);
    const xc = xn * ra + beta * t.tm * t.tk * e;
    const wc = wn * ra + beta * t.tn * t.tk * e;
    const yc = yn * wa + beta * t.tm * t.tn * 4;
    const chunkI = t.tm * t.tn * (t.tk * mac + isa.dot_overhead) + 2 + (xn + wn) * isa.dma_overhead;
    const itemI = Math.ceil((t.tm * t.tn * 4) / 8) + kc * chunkI + yn * isa.dma_overhead;
    const itemDma = kc * (xc + wc) + yc;
    const active = Math.min(t.tasklets, items);
    const pipeline = perTasklet * itemI * Math.max(ii, active);
    const engine = items * itemDma;
    const exposed = t.double
      ? perTasklet * (xc + wc + yc + (kc - 1) * Math.max(0, xc + wc - chunkI * ii))
      : perTasklet * itemDma;
    return Math.max(pipeline, engine, perTasklet * itemI * ii + exposed);
  };
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
 * A lower bound of the kernel's cycles on the emulator (for branch-and-bound in `pimc tune`): the DMA
 * engine's busy time and the instructions at one per cycle, both counted below the kernel's own.
 */
export function kernelLowerBound(shape: GemmShape, t: Tiling, sys: UpmemSystem, m = shape.m): number {
  const { nbPad, kb } = weightBlock(shape, t);
  const e = elemBytesOf(shape.dtype);
  const items = cdiv(cdiv(m, t.dm), t.tm) * (nbPad / t.tn);
  const kc = kb / t.tk;
  const { read_alpha: ra, write_alpha: wa, beta } = sys.dma;
  const xc = dmaN(sys, t.tm, t.tk * e, t.tk === kb) * ra + beta * t.tm * t.tk * e;
  const wc = dmaN(sys, t.tn, t.tk * e, t.tk === kb) * ra + beta * t.tn * t.tk * e;
  const yc = dmaN(sys, t.tm, t.tn * 4, t.tn === nbPad) * wa + beta * t.tm * t.tn * 4;
  const perItem = kc * t.tm * t.tn * t.tk * (shape.dtype === "i8" ? sys.isa.mac_i8 : sys.isa.mac_f32);
  const perTasklet = cdiv(items, t.tasklets);
  return Math.max(
    items * (kc * (xc + wc) + yc),
    items * perItem,
    perTasklet * perItem * sys.pipeline.issue_interval,
  );
}

/** Transfer seconds of a GEMM call under a distribution (the same functions the emulator uses). */
export function transferEstimate(
  shape: GemmShape,
  d: Distribution,
  sys: UpmemSystem,
  m = shape.m,
): { push: number; pull: number } {
  const { nb, kb } = weightBlock(shape, d);
  const e = elemBytesOf(shape.dtype);
  const range = { first: 0, count: d.dm * d.dn * d.dk };
  const mb = cdiv(m, d.dm);
  const push =
    d.dm === 1 && d.dk === 1 ? broadcastTime(sys, range, mb * kb * e) : pushTime(sys, range, mb * kb * e);
  const pull = pullTime(sys, range, mb * nb * 4, d.dk);
  return { push, pull };
}
