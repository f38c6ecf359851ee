/**
 * The xPU device model: a GPU or NPU as a roofline with utilization caps, the occupancy of its
 * parallel units in waves, and a fixed launch overhead per kernel; an NPU may compute GEMMs on
 * weight-stationary systolic arrays (NeuPIMs' 8 x 128 x 128 at 1 GHz) instead.
 *
 *   time = max(flops / (peak x compute cap), bytes / bandwidth reached) / occupancy + overhead
 *   bandwidth reached = min(bandwidth x memory cap, blocks x block bandwidth)
 *
 * Ops are kernels of thread blocks over the device's `units` (SMs): occupancy = blocks / (waves x
 * units) with waves = ceil(blocks / units), so a kernel of 32 blocks on 132 SMs uses a quarter of
 * the machine and a kernel of 133 blocks pays a second, nearly empty wave. Blocks per op:
 *  - GEMM (linear, matmul): output tiles of tile_m x tile_n, times ceil(K / split_k) K slices;
 *  - attention: one block per (sequence, query head) per query_tile query rows (FlashAttention-2,
 *    no split of the keys);
 *  - anything else: one block per `elements_per_block` output elements.
 * The caps are per class (gemm, attention, other): what the device's libraries reach, and how much
 * a block of the class streams at most (`block_bandwidth`, where given).
 *
 * A device with `kernels` (its library's GEMM tile configurations) times each GEMM as the fastest
 * of them instead (kernelSeconds): whole tiles in waves at the kernel's fraction of a unit's peak,
 * so a GEMM's rate depends on its shape (tiles per wave), not on its flops and bytes alone.
 */
import { z } from "zod";
import { dimEval, type DimEnv } from "../../src/ir/dim.js";
import type { OpView } from "../../src/pipeline/cost-model.js";

const pos = z.number().positive();
const posInt = z.number().int().positive();
const cap = z.number().positive().max(1);

const zCaps = z.strictObject({
  compute: cap.default(1),
  memory: cap.default(1),
  /**
   * Bytes/s one of the class's thread blocks streams at most (the loads it keeps in flight over the
   * memory's latency: Little's law), so a kernel of few blocks cannot reach the bandwidth. Absent:
   * no limit.
   */
  block_bandwidth: pos.optional(),
});

/**
 * One GEMM kernel of the device's library (a tile configuration, as CUTLASS and cuBLAS build them):
 * blocks of tile_m x tile_n outputs over K slices of split_k, each block at a fraction of its
 * unit's peak and streaming at most block_bandwidth.
 */
const zKernel = z.strictObject({
  tile_m: posInt,
  tile_n: posInt,
  /** K per block: a GEMM's K is cut into ceil(K / split_k) slices, one block each. Absent: whole K. */
  split_k: posInt.optional(),
  /** Fraction of its unit's peak FLOP/s a block sustains (tensor cores on a GPU). */
  compute: cap,
  /** Bytes/s one block streams at most (Little's law). Absent: no limit. */
  block_bandwidth: pos.optional(),
  /** The smallest M (rows of the activations) the library runs the kernel at. */
  min_m: posInt.default(1),
});

export type Kernel = z.infer<typeof zKernel>;

export const zXpu = z.strictObject({
  kind: z.enum(["gpu", "npu"]).default("gpu"),
  /** Peak FLOP/s of the precision the model runs in (FP16 tensor cores on a GPU). */
  flops: pos,
  /** Memory bandwidth, bytes/s. */
  bandwidth: pos,
  /**
   * Bytes of the device's own memory (a GPU's HBM): what its weights, KV cache and activations must
   * fit. Absent: the device reads another's memory (an NPU or host beside PIM stacks) or is unchecked.
   */
  memory: pos.optional(),
  /** Parallel units thread blocks are spread over (SMs). */
  units: posInt.default(1),
  /**
   * Bytes of a unit's L1 / shared memory (an SM's): what a GEMM's thread-block tile must fit in the
   * energy model's tiling (onChipTraffic). Absent: 192 KiB, an A100 SM's.
   */
  l1: pos.max(2 ** 30).optional(),
  /** Seconds per kernel launch. */
  overhead: z.number().nonnegative().default(0),

  utilization: z
    .strictObject({
      gemm: zCaps.default({ compute: 1, memory: 1 }),
      attention: zCaps.default({ compute: 1, memory: 1 }),
      other: zCaps.default({ compute: 1, memory: 1 }),
    })
    .default({
      gemm: { compute: 1, memory: 1 },
      attention: { compute: 1, memory: 1 },
      other: { compute: 1, memory: 1 },
    }),
  blocks: z
    .strictObject({
      tile_m: posInt.default(64),
      tile_n: posInt.default(64),
      split_k: posInt.default(4096),
      query_tile: posInt.default(64),
      elements_per_block: posInt.default(4096),
    })
    .default({ tile_m: 64, tile_n: 64, split_k: 4096, query_tile: 64, elements_per_block: 4096 }),
  /**
   * The GEMM kernels of the device's library. Present: each GEMM takes the fastest that applies
   * (kernelSeconds; the library's heuristic is taken to find it), under the gemm memory cap, and
   * the gemm class's compute cap, block bandwidth and the `blocks` tile no longer apply to GEMMs.
   * Absent: a GEMM is one kernel of the `blocks` tile at the gemm class's caps.
   */
  kernels: z
    .array(zKernel)
    .min(1)
    .max(64)
    .refine((ks) => ks.some((k) => k.min_m === 1), "one kernel needs min_m = 1: every GEMM must have one")
    .optional(),
  /** An NPU's GEMM engine: weight-stationary systolic arrays of rows x cols PEs at `frequency`. */
  systolic: z.strictObject({ arrays: posInt, rows: posInt, cols: posInt, frequency: pos }).optional(),
});

export type Xpu = z.infer<typeof zXpu>;

const GEMMS = new Set(["linear", "qlinear", "matmul"]);

const numel = (shape: readonly Parameters<typeof dimEval>[0][], env: DimEnv): number =>
  shape.reduce<number>((a, d) => a * dimEval(d, env), 1);

/** M, N, K of a GEMM op (x [.., K] by weight [N, K]; matmul a [.., M, K] x b [.., K, N]). */
function gemmDims(v: OpView, env: DimEnv): { m: number; n: number; k: number; batch: number } {
  const x = v.ins[0]!;
  const k = dimEval(x.shape[x.shape.length - 1]!, env);
  if (v.op.opcode === "matmul") {
    const o = v.outs[0]!;
    const n = dimEval(o.shape[o.shape.length - 1]!, env);
    const m = dimEval(o.shape[o.shape.length - 2]!, env);
    return { m, n, k, batch: numel(o.shape, env) / (m * n) };
  }
  const n = dimEval(v.ins[1]!.shape[0]!, env);
  return { m: numel(x.shape, env) / k, n, k, batch: 1 };
}

export type OpClass = "gemm" | "attention" | "other";

export const opClass = (opcode: string): OpClass =>
  GEMMS.has(opcode) ? "gemm" : opcode === "attention" ? "attention" : "other";

/** Thread blocks of an op's kernel. */
export function blocksOf(x: Xpu, v: OpView, env: DimEnv): number {
  const b = x.blocks;
  switch (opClass(v.op.opcode)) {
    case "gemm": {
      const { m, n, k, batch } = gemmDims(v, env);
      return batch * Math.ceil(m / b.tile_m) * Math.ceil(n / b.tile_n) * Math.ceil(k / b.split_k);
    }
    case "attention": {
      const [bs, h, s] = v.ins[0]!.shape.map((d) => dimEval(d, env)) as [number, number, number];
      return bs * h * Math.ceil(s / b.query_tile);
    }
    default:
      return Math.ceil(numel(v.outs[0]?.shape ?? [], env) / b.elements_per_block);
  }
}

/** Fraction of the units busy over the kernel's waves. */
export function occupancy(units: number, blocks: number): number {
  if (blocks <= 0) return 1;
  return blocks / (Math.ceil(blocks / units) * units);
}

/** Cycles of a GEMM on weight-stationary systolic arrays: each W tile loaded, then M rows streamed. */
export function systolicSeconds(
  s: NonNullable<Xpu["systolic"]>,
  m: number,
  n: number,
  k: number,
  batch = 1,
): number {
  const tiles = batch * Math.ceil(k / s.rows) * Math.ceil(n / s.cols);
  const perTile = m + s.rows + s.cols;
  return (Math.ceil(tiles / s.arrays) * perTile) / s.frequency;
}

/**
 * Seconds of a GEMM (M x K by K x N, `batch` of them) as one kernel of the library, launch excluded:
 * its blocks run in waves over the units, each block computing its whole tile (rows past M
 * included: the tensor cores work on whole tiles) at the kernel's fraction of a unit's peak, so a
 * kernel of one wave takes one block's time however few blocks it has; the bytes stream at the
 * memory cap or at what the blocks keep in flight, whichever is less. Undefined: the kernel does not
 * run GEMMs of M rows.
 */
export function kernelSeconds(
  x: Xpu,
  k: Kernel,
  g: { m: number; n: number; k: number; batch: number },
  bytes: number,
): number | undefined {
  if (g.m < k.min_m) return undefined;
  const slices = k.split_k === undefined ? 1 : Math.ceil(g.k / k.split_k);
  const blocks = g.batch * Math.ceil(g.m / k.tile_m) * Math.ceil(g.n / k.tile_n) * slices;
  const perBlock = (2 * k.tile_m * k.tile_n * Math.ceil(g.k / slices)) / ((x.flops / x.units) * k.compute);
  const compute = Math.ceil(blocks / x.units) * perBlock;
  const reach = x.bandwidth * x.utilization.gemm.memory;
  const memory =
    bytes / (k.block_bandwidth === undefined ? reach : Math.min(reach, blocks * k.block_bandwidth));
  return Math.max(compute, memory);
}

/** The library kernel a GEMM op takes (the fastest that applies), with its seconds; launch excluded. */
export function gemmKernel(x: Xpu, v: OpView, env: DimEnv): { kernel: Kernel; seconds: number } | undefined {
  if (!x.kernels || opClass(v.op.opcode) !== "gemm") return undefined;
  const g = gemmDims(v, env);
  let best: { kernel: Kernel; seconds: number } | undefined;
  for (const kernel of x.kernels) {
    const seconds = kernelSeconds(x, kernel, g, v.cost.bytes);
    if (seconds !== undefined && (best === undefined || seconds < best.seconds)) best = { kernel, seconds };
  }
  return best;
}

/** Seconds of one op on the xPU. */
export function xpuSeconds(x: Xpu, v: OpView, env: DimEnv): number {
  const { flops, bytes } = v.cost;
  if (flops === 0 && bytes === 0) return 0;
  const cls = opClass(v.op.opcode);
  if (cls === "gemm" && x.kernels && !x.systolic) {
    const k = gemmKernel(x, v, env);
    if (k === undefined) throw new Error("internal: a GEMM with no kernel (the schema asks for min_m = 1)");
    return k.seconds + x.overhead;
  }
  const u = x.utilization[cls];
  const blocks = blocksOf(x, v, env);
  const reach = x.bandwidth * u.memory;
  const memory =
    bytes / (u.block_bandwidth === undefined ? reach : Math.min(reach, blocks * u.block_bandwidth));
  if (cls === "gemm" && x.systolic) {
    const { m, n, k, batch } = gemmDims(v, env);
    return Math.max(systolicSeconds(x.systolic, m, n, k, batch), memory) + x.overhead;
  }
  const compute = flops / (x.flops * u.compute);
  return Math.max(compute, memory) / occupancy(x.units, blocks) + x.overhead;
}

/** Bytes an op moves through a GPU's L2 and L1 caches, and the register accesses of its ALUs. */
export interface OnChipTraffic {
  readonly l2: number;
  readonly l1: number;
  readonly regs: number;
}

/** AttAcc's register tile (src/devices.py: reg_tm = reg_tn = 16), the L1 level's tile. */
const REGISTER_TILE = 16;
/** The tile sizes AttAcc's search tries, and the K depth of a tile it sizes the L1 for. */
const TILE_SIZES = [8, 16, 32, 64, 128, 192, 256, 320, 384, 448, 512];
const TILE_K = 32;
const A100_L1 = 192 * 1024;

/**
 * A GEMM's thread-block tile as AttAcc's model picks it (src/devices.py, _get_optimal_tile): of the
 * tm x tn that fit the unit's L1 (A and B slices 32 deep and the C tile), the one with the least L2
 * traffic divided by the square of the units' occupancy over the blocks' waves.
 */
export function blockTile(
  x: Xpu,
  m: number,
  n: number,
  traffic: (tm: number, tn: number) => number,
  batch: number,
  perElement: number,
): [number, number] {
  const l1 = x.l1 ?? A100_L1;
  let best: [number, number] = [Math.min(TILE_SIZES[0]!, m), Math.min(TILE_SIZES[0]!, n)];
  let bestCost = Infinity;
  for (const tmTry of TILE_SIZES) {
    for (const tnTry of TILE_SIZES) {
      const tm = Math.min(tmTry, m);
      const tn = Math.min(tnTry, n);
      if (((tm + tn) * TILE_K + tm * tn) * perElement > l1) continue;
      const util = occupancy(x.units, batch * Math.ceil(m / tm) * Math.ceil(n / tn));
      const cost = traffic(tm, tn) / (util * util);
      if (cost < bestCost) {
        bestCost = cost;
        best = [tm, tn];
      }
    }
  }
  return best;
}

/**
 * What an op moves on a GPU's chip, the way AttAcc's GPU model counts it (scale-snu/attacc_simulator,
 * src/devices.py, xPU._get_traffic), at the op's own bytes per element (`cost.bytes` over the elements
 * it streams, so a precision the cost model applies carries through):
 *  - a GEMM of A (M x K) by B (K x N) into C read in output tiles of tm x tn moves
 *    ceil(N / tn) |A| + ceil(M / tm) |B| + |C|: through L2 with the thread-block tile AttAcc's search
 *    picks (blockTile), through L1 with the 16 x 16 register tile; 3 register accesses per
 *    multiply-add;
 *  - attention (FlashAttention-2) streams its keys and values once per query tile through both;
 *    3 register accesses per multiply-add;
 *  - any other op moves its bytes once through each level and a register access per byte.
 */
export function onChipTraffic(x: Xpu, v: OpView, env: DimEnv): OnChipTraffic {
  const { bytes, flops } = v.cost;
  switch (opClass(v.op.opcode)) {
    case "gemm": {
      const { m, n, k, batch } = gemmDims(v, env);
      const a = batch * m * k;
      const b = (v.op.opcode === "matmul" ? batch : 1) * k * n;
      const c = batch * m * n;
      const perElement = bytes / (a + b + c);
      const tiled = (tm: number, tn: number): number =>
        perElement * (Math.ceil(n / tn) * a + Math.ceil(m / tm) * b + c);
      return {
        l2: tiled(...blockTile(x, m, n, tiled, batch, perElement)),
        l1: tiled(REGISTER_TILE, REGISTER_TILE),
        regs: 3 * batch * m * n * k,
      };
    }
    case "attention": {
      const queries = dimEval(v.ins[0]!.shape[2]!, env);
      const passes = Math.ceil(queries / x.blocks.query_tile);
      return { l2: passes * bytes, l1: passes * bytes, regs: (3 * flops) / 2 };
    }
    default:
      return { l2: bytes, l1: bytes, regs: bytes };
  }
}
