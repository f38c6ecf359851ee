/**
 * LUT-GEMV on the DPUs (SAIL, T-MAC, PIM-DL's lookup idea): W4A8 / W2A8 linear layers (`lowbit_linear`
 * with act_bits 8) without multiplications.
 *
 * The weight [N, K] of `bits`-bit weights with one scale per `group` inputs is spread over a grid of
 * DPUs dm x dn x dk as PGEMMlib's (gemm.ts), with K blocks of kb = K / dk inputs cut at group
 * boundaries: a DPU holds whole groups (kb a multiple of the group) or a part of one (the group a
 * multiple of kb). Its MRAM block is segment-major, [S][nbPad][gk x bits / 8] packed bytes with
 * gk = min(kb, group) and S = kb / gk segments, so one output tile of a segment is contiguous.
 *
 * The host quantizes the activations per row to INT8 (as `qlinear`) and pushes them. A work item
 * (row tile i, segment s, column tile j) walks its segment in chunks of tk = tv x width inputs: it
 * DMAs the chunk of X, builds one table per vector of `width` activations (2^(bits x width) i32
 * entries: the vector's dot products with every weight pattern), DMAs the tile's packed weights and
 * adds the entries their bit fields index. It writes the segment's integer dot products, one per
 * output and segment, which the host pulls (adding the parts of a group split over DPUs) and folds
 * with the scales in group order (`group_dequantize`): bit-identical to the reference
 * `lowbit_linear` (the integer dot products are exact; the float fold is the reference's own loop).
 * The scales stay on the host: on the DPU each fold would be two software-float operations (~250
 * instructions, isa.mac_f32) per output and group.
 */
import { lowbitRange, type LowbitShape } from "../../src/ir/ops/quant.js";
import type { Tensor } from "../../src/ir/tensor.js";
import { lutBuildInstr, lutEntries, lutLookupInstr } from "./dpu.js";
import { cdiv, dmaN, mbExpr, roundUp, type Distribution, type GemmEstimate } from "./gemm.js";
import type { IntExpr, Kernel, KernelStmt } from "./program.js";
import { wramNeeded, type UpmemSystem } from "./system.js";
import { bestLayout, byLayout, layoutFloor } from "./selector.js";
import { broadcastTime, pullTime, pushTime } from "./transfer.js";

export type LutShape = LowbitShape;

/** A LUT kernel's tiling inside a DPU: `width` activations per table, tv tables per chunk. */
export interface LutTile {
  readonly tasklets: number;
  readonly tm: number;
  readonly tn: number;
  readonly width: number;
  readonly tv: number;
}

export type LutTiling = Distribution & LutTile;

/** The per-DPU block of a distribution. */
export interface LutBlock {
  readonly nb: number;
  readonly nbPad: number;
  /** Inputs per DPU, inputs per segment, segments per DPU, packed bytes per segment row. */
  readonly kb: number;
  readonly gk: number;
  readonly segments: number;
  readonly gkBytes: number;
  /** DPUs sharing one group (1 when a DPU holds whole groups): their pulls add up. */
  readonly split: number;
}

export function lutBlock(shape: Omit<LutShape, "m">, d: Distribution): LutBlock {
  const nb = cdiv(shape.n, d.dn);
  const kb = shape.k / d.dk;
  const gk = Math.min(kb, shape.group);
  return {
    nb,
    nbPad: roundUp(nb, nb >= 32 ? 16 : 2),
    kb,
    gk,
    segments: kb / gk,
    gkBytes: (gk * shape.bits) / 8,
    split: Math.max(1, shape.group / kb),
  };
}

/** Why a K split is not legal for LUT kernels (K blocks at group boundaries, 8-byte DMA rows). */
function splitError(shape: Omit<LutShape, "m">, dk: number, sys: UpmemSystem): string | undefined {
  if (shape.k % dk !== 0) return `K = ${shape.k} does not split in ${dk}`;
  const kb = shape.k / dk;
  if (kb % shape.group !== 0 && shape.group % kb !== 0)
    return `K blocks of ${kb} cut groups of ${shape.group}`;
  const gk = Math.min(kb, shape.group);
  const a = sys.dma.align;
  if (gk % a !== 0 || ((gk * shape.bits) / 8) % a !== 0)
    return `segments of ${gk} inputs (${(gk * shape.bits) / 8} B of weights) are not ${a}-byte DMA rows`;
  return undefined;
}

/** Why no LUT kernel can run a shape on the DPUs, or undefined. */
export function lutShapeError(shape: Omit<LutShape, "m">, sys: UpmemSystem): string | undefined {
  if (shape.bits !== 2 && shape.bits !== 4) return `${shape.bits}-bit weights (LUT kernels take 2 or 4)`;
  return splitError(shape, 1, sys);
}

/**
 * K splits at group boundaries: every divisor of the group count (whole groups per DPU: K = 11008 in
 * groups of 128 splits 2, 43 or 86 ways), then each group halved while the DMA rows stay legal. The
 * split matters more than for MAC kernels: every DPU builds the tables of its whole K block, so only
 * splitting K divides the build.
 */
function lutSplits(shape: Omit<LutShape, "m">, sys: UpmemSystem, dpus: number): number[] {
  const groups = shape.k / shape.group;
  const out: number[] = [];
  for (let d = 1; d <= Math.min(groups, dpus); d++) if (groups % d === 0) out.push(d);
  for (let d = groups * 2; d <= dpus && shape.group % (d / groups) === 0; d *= 2) out.push(d);
  return out.filter((d) => splitError(shape, d, sys) === undefined);
}

/** Distributions whose K blocks keep groups whole or split them evenly. */
export function lutDistributions(shape: LutShape, sys: UpmemSystem, dpus = sys.dpus): Distribution[] {
  const out: Distribution[] = [];
  const dnMax = Math.max(1, Math.floor(shape.n / 2));
  const splits = lutSplits(shape, sys, dpus);
  for (let dm = 1; dm <= Math.min(128, shape.m); dm *= 2)
    for (const dk of splits) {
      if (dm * dk > dpus) break;
      let dn = 1;
      for (; dm * dn * dk <= dpus && dn <= dnMax; dn *= 2) out.push({ dm, dn, dk });
      const fill = Math.min(Math.floor(dpus / (dm * dk)), dnMax);
      if (fill > dn / 2 && (fill & (fill - 1)) !== 0) out.push({ dm, dn: fill, dk });
    }
  return out;
}

/** Weights per table for `bits`: fields of bits x width bits that divide a byte. */
export const lutWidths = (bits: number): number[] => (bits === 4 ? [1, 2] : [1, 2, 4]);

/** WRAM bytes of a tile (every tasklet's X chunk, weights, tables, accumulator, stack). */
export function lutWram(shape: Omit<LutShape, "m">, t: LutTile, sys: UpmemSystem): number {
  const tk = t.tv * t.width;
  const per =
    t.tm * tk +
    (t.tn * tk * shape.bits) / 8 +
    t.tm * t.tv * lutEntries(shape.bits, t.width) * 4 +
    t.tm * t.tn * 4;
  return wramNeeded(sys, t.tasklets, per);
}

/** Fewer tasklets than the pipeline's 11 leave it idle, but give big tables (256 entries) WRAM. */
const TASKLETS = [4, 8, 11, 12, 16, 24];

/** Legal tiles of a distribution's block for `m` rows. */
export function lutTiles(shape: LutShape, d: Distribution, sys: UpmemSystem): LutTile[] {
  const b = lutBlock(shape, d);
  const mb = cdiv(shape.m, d.dm);
  const a = sys.dma.align;
  const out: LutTile[] = [];
  // Even column tiles (8-byte result rows) whose result rows fit one DMA.
  const tns = divisors(b.nbPad)
    .filter((x) => x % 2 === 0 && x * 4 <= sys.dma.max_bytes)
    .slice(-5);
  const tms = [1, 2, 4, 8].filter((x) => x === 1 || x / 2 < mb);
  for (const width of lutWidths(shape.bits)) {
    // Chunks of tk inputs dividing the segment, 8-byte DMA rows of activations and of weights.
    const tks = divisors(b.gk).filter(
      (tk) =>
        tk % width === 0 &&
        tk % a === 0 &&
        ((tk * shape.bits) / 8) % a === 0 &&
        tk <= sys.dma.max_bytes &&
        (tk * shape.bits) / 8 <= sys.dma.max_bytes,
    );
    for (const tasklets of TASKLETS.filter((x) => x <= sys.max_tasklets))
      for (const tm of tms)
        for (const tn of tns)
          for (const tk of tks) {
            const t = { tasklets, tm, tn, width, tv: tk / width };
            if (lutWram(shape, t, sys) <= sys.wram) out.push(t);
          }
  }
  return out;
}

function divisors(n: number): number[] {
  const out: number[] = [];
  for (let i = 1; i <= n; i++) if (n % i === 0) out.push(i);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The kernel.

export interface LutKernelArgs {
  readonly shape: LutShape;
  readonly tiling: LutTiling;
  /** M as an expression of the run-time dims. */
  readonly mExpr: IntExpr;
  readonly xOff: number;
  readonly yOff: number;
}

export function lutKernel(a: LutKernelArgs): Kernel {
  const { shape, tiling: t } = a;
  const b = lutBlock(shape, t);
  const tk = t.tv * t.width;
  const tkB = (tk * shape.bits) / 8;
  const E = lutEntries(shape.bits, t.width);
  const S = b.segments;
  const body: KernelStmt[] = [
    { op: "fill", buf: "acc", at: 0, count: t.tm * t.tn, value: 0 },
    {
      op: "loop",
      var: "c",
      count: b.gk / tk,
      body: [
        {
          op: "dma_read",
          buf: "x",
          at: 0,
          addr: {
            base: a.xOff,
            terms: [
              ["i", t.tm * b.kb],
              ["s", b.gk],
              ["c", tk],
            ],
          },
          rows: t.tm,
          rowBytes: tk,
          stride: b.kb,
        },
        {
          op: "lut_build",
          table: "table",
          tableAt: 0,
          x: "x",
          xAt: 0,
          m: t.tm,
          vectors: t.tv,
          width: t.width,
          bits: shape.bits,
        },
        {
          op: "dma_read",
          buf: "w",
          at: 0,
          addr: {
            base: "w",
            terms: [
              ["s", b.nbPad * b.gkBytes],
              ["j", t.tn * b.gkBytes],
              ["c", tkB],
            ],
          },
          rows: t.tn,
          rowBytes: tkB,
          stride: b.gkBytes,
        },
        {
          op: "lut_mac",
          acc: "acc",
          accAt: 0,
          table: "table",
          tableAt: 0,
          w: "w",
          wAt: 0,
          wLd: tkB,
          m: t.tm,
          n: t.tn,
          vectors: t.tv,
          width: t.width,
          bits: shape.bits,
        },
      ],
    },
    {
      op: "dma_write",
      buf: "acc",
      at: 0,
      addr: {
        base: a.yOff,
        terms: [
          ["i", t.tm * S * b.nbPad * 4],
          ["s", b.nbPad * 4],
          ["j", t.tn * 4],
        ],
      },
      rows: t.tm,
      rowBytes: t.tn * 4,
      stride: S * b.nbPad * 4,
    },
  ];
  const mb = mbExpr(a.mExpr, t.dm);
  return {
    name: "",
    summary: `lut.w${shape.bits}a8 ${t.dm}x${t.dn}x${t.dk} tile ${t.tm}x${t.tn} width ${t.width} x ${t.tv}`,
    params: ["w"],
    tasklets: t.tasklets,
    wram: [
      { name: "x", dtype: "i8", elems: t.tm * tk },
      { name: "w", dtype: "i8", elems: t.tn * tkB },
      { name: "table", dtype: "i32", elems: t.tm * t.tv * E },
      { name: "acc", dtype: "i32", elems: t.tm * t.tn },
    ],
    grid: [
      ["i", typeof mb === "number" ? cdiv(mb, t.tm) : `cdiv(${mb}, ${t.tm})`],
      ["s", S],
      ["j", b.nbPad / t.tn],
    ],
    body,
  };
}

/**
 * The per-DPU MRAM image of quantized weights q [N, K] (logical, one i8 per weight) for a
 * distribution: segment-major packed offset-binary digits, field v of a row's bytes = weights
 * v x width .. (v + 1) x width - 1, weight u of a field in its bits u x bits...
 */
export function lutWeightImage(q: Tensor, shape: Omit<LutShape, "m">, d: Distribution): Uint8Array {
  const b = lutBlock(shape, d);
  const count = d.dm * d.dn * d.dk;
  const per = b.segments * b.nbPad * b.gkBytes;
  const out = new Uint8Array(count * per);
  const src = q.data as Int8Array;
  const [lo] = lowbitRange(shape.bits);
  const perByte = 8 / shape.bits;
  for (let dpu = 0; dpu < count; dpu++) {
    const ik = dpu % d.dk;
    const inn = Math.floor(dpu / d.dk) % d.dn;
    for (let s = 0; s < b.segments; s++)
      for (let r = 0; r < b.nb; r++) {
        const row = inn * b.nb + r;
        if (row >= shape.n) break;
        const at = dpu * per + (s * b.nbPad + r) * b.gkBytes;
        const k0 = ik * b.kb + s * b.gk;
        for (let t = 0; t < b.gk; t++) {
          const digit = (src[row * shape.k + k0 + t] as number) - lo;
          out[at + Math.floor(t / perByte)]! |= digit << ((t % perByte) * shape.bits);
        }
      }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The analytical model (the Tile-Selector's).

/**
 * Cycles of the kernel on one DPU for `m` rows: the largest of the pipeline (every instruction, at
 * one per cycle once `issue_interval` tasklets compute, fewer below), the busiest tasklet's chain
 * (its instructions at one per issue_interval plus its synchronous DMAs' service) and the DMA engine.
 */
export function lutKernelCycles(shape: LutShape, t: LutTiling, sys: UpmemSystem, m = shape.m): number {
  const b = lutBlock(shape, t);
  const { read_alpha: ra, write_alpha: wa, beta } = sys.dma;
  const ovh = sys.isa.dma_overhead;
  const ii = sys.pipeline.issue_interval;
  const tk = t.tv * t.width;
  const tkB = (tk * shape.bits) / 8;
  const items = cdiv(cdiv(m, t.dm), t.tm) * b.segments * (b.nbPad / t.tn);
  const chunks = b.gk / tk;
  const nx = dmaN(sys, t.tm, tk, tk === b.kb);
  const nw = dmaN(sys, t.tn, tkB, tk === b.gk);
  const ny = dmaN(sys, t.tm, t.tn * 4, b.segments === 1 && t.tn === b.nbPad);
  const chunk =
    2 +
    (nx + nw) * ovh +
    t.tm * t.tv * lutBuildInstr(sys.isa, shape.bits, t.width) +
    t.tm * t.tn * (t.tv * lutLookupInstr(sys.isa, shape.bits, t.width) + sys.isa.dot_overhead);
  const instr = Math.ceil((t.tm * t.tn * 4) / 8) + chunks * chunk + ny * ovh;
  const dma = chunks * ((nx + nw) * ra + beta * (t.tm * tk + t.tn * tkB)) + ny * wa + beta * t.tm * t.tn * 4;
  const active = Math.min(t.tasklets, items);
  const pipeline = items * instr * Math.max(1, ii / active);
  const chain = Math.ceil(items / t.tasklets) * (instr * ii + dma);
  const engine = items * dma;
  // A busy DMA engine keeps tasklets waiting that would otherwise compute: the shorter of the two
  // overlaps the longer only in the proportion the engine is idle.
  return Math.max(pipeline, chain, engine) + (Math.min(pipeline, engine) * engine) / (pipeline + engine);
}

/** Transfers of a call: the INT8 activations in, the segments' dot products out. */
export function lutTransfers(
  shape: LutShape,
  d: Distribution,
  sys: UpmemSystem,
  m = shape.m,
): { push: number; pull: number } {
  const b = lutBlock(shape, d);
  const range = { first: 0, count: d.dm * d.dn * d.dk };
  const mb = cdiv(m, d.dm);
  const push =
    d.dm === 1 && d.dk === 1 ? broadcastTime(sys, range, mb * b.kb) : pushTime(sys, range, mb * b.kb);
  return { push, pull: pullTime(sys, range, mb * b.segments * b.nbPad * 4, b.split) };
}

export function estimateLut(shape: LutShape, t: LutTiling, sys: UpmemSystem, m = shape.m): GemmEstimate {
  const kernel = lutKernelCycles(shape, t, sys, m) / sys.frequency;
  const { push, pull } = lutTransfers(shape, t, sys, m);
  const launch = sys.launch_overhead;
  return { kernel, push, pull, launch, total: kernel + push + pull + launch };
}

export interface LutChoice {
  readonly tiling: LutTiling;
  readonly estimate: GemmEstimate;
}

/**
 * The Tile-Selector for LUT kernels: the layout dn x dk minimising the summed estimate over the row
 * counts `ms` (one resident weight layout serves every phase), each row count with its own dm and
 * tile. Undefined when no tiling is legal.
 */
export function selectLut(
  shape: Omit<LutShape, "m">,
  sys: UpmemSystem,
  ms: readonly number[],
  opts: { readonly mramBudget?: number; readonly weights?: readonly number[] } = {},
): { distribution: Distribution; choices: LutChoice[] } | undefined {
  const mramBudget = opts.mramBudget ?? sys.mram / 2;
  if (lutShapeError(shape, sys) !== undefined) return undefined;
  const mMax = Math.max(...ms);
  const all = lutDistributions({ ...shape, m: mMax }, sys).filter((d) => {
    const b = lutBlock(shape, d);
    return b.segments * b.nbPad * b.gkBytes <= mramBudget;
  });
  // Layouts in order of a floor (transfers, launch, and every lookup at one instruction per cycle
  // with the widest table), the search stopping when no remaining layout can beat the best.
  const perWeight = Math.min(...lutWidths(shape.bits).map((w) => lutLookupInstr(sys.isa, shape.bits, w) / w));
  const floors = new Map<Distribution, Map<number, number>>();
  const floorOf = (d: Distribution, m: number): number => {
    let f = floors.get(d);
    if (!f) floors.set(d, (f = new Map()));
    let x = f.get(m);
    if (x === undefined) {
      const s = { ...shape, m };
      const { push, pull } = lutTransfers(s, d, sys);
      const b = lutBlock(s, d);
      const kernel = (cdiv(m, d.dm) * b.nb * b.kb * perWeight) / sys.frequency;
      f.set(m, (x = push + pull + sys.launch_overhead + kernel));
    }
    return x;
  };
  const layouts = byLayout(all)
    .map((ds) => ({ ds, lb: layoutFloor(ds, ms, floorOf, opts.weights) }))
    .sort((a, b) => a.lb - b.lb);
  return bestLayout(
    layouts,
    ms,
    (ds, m) => {
      let pick: LutChoice | undefined;
      const cands = ds
        .filter((d) => d.dm <= m)
        .map((d) => ({ d, lb: floorOf(d, m) }))
        .sort((a, b) => a.lb - b.lb);
      for (const { d, lb } of cands) {
        if (pick && lb >= pick.estimate.total) break;
        const s = { ...shape, m };
        const { push, pull } = lutTransfers(s, d, sys);
        const fixed = push + pull + sys.launch_overhead;
        for (const t of lutTiles(s, d, sys)) {
          const tiling = { ...d, ...t };
          const kernel = lutKernelCycles(s, tiling, sys) / sys.frequency;
          if (!pick || kernel + fixed < pick.estimate.total)
            pick = {
              tiling,
              estimate: { kernel, push, pull, launch: sys.launch_overhead, total: kernel + fixed },
            };
        }
      }
      return pick;
    },
    opts.weights,
  );
}

/** A LUT-GEMV tiling as people read it: `LUT 1x64x32 t16 1x4 w2 tv8` (grid, tasklets, tm x tn, table width, tables per chunk). */
export const lutTilingName = (t: LutTiling): string =>
  `LUT ${t.dm}x${t.dn}x${t.dk} t${t.tasklets} ${t.tm}x${t.tn} w${t.width} tv${t.tv}`;
