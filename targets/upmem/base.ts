/**
 * The naive mappings PIM-LLM measures its optimizations against: BaseGEMM (rows of X split over the
 * DPUs, all of W on every DPU, one fixed tile) and calls without resource pooling (DPUs allocated,
 * the kernel loaded and the weights sent at every call).
 */
import {
  elemBytesOf,
  weightBlock,
  wramBytes,
  type Distribution,
  type GemmShape,
  type Tiling,
} from "./gemm.js";
import type { UpmemSystem } from "./system.js";
import { broadcastTime, dpusPerRank, hostTime, pushTime } from "./transfer.js";

export { hostTime };

/** BaseGEMM for `shape`: dm = the most DPUs (a power of two) that still get a row each; undefined if W does not fit. */
export function baseTiling(shape: GemmShape, sys: UpmemSystem): Tiling | undefined {
  let dm = 1;
  while (dm * 2 <= Math.min(sys.dpus, shape.m)) dm *= 2;
  const d = { dm, dn: 1, dk: 1 };
  const { nbPad, kb } = weightBlock(shape, d);
  // All of W on each DPU, with room left for the X and Y blocks.
  if (nbPad * kb * elemBytesOf(shape.dtype) > sys.mram * 0.75) return undefined;
  // A fixed tile: 16 tasklets, one row, up to 8 outputs, 256-byte chunks of K, no double buffering.
  const e = elemBytesOf(shape.dtype);
  const largest = (n: number, ok: (x: number) => boolean): number | undefined => {
    for (let x = n; x >= 1; x--) if (n % x === 0 && ok(x)) return x;
    return undefined;
  };
  const tn = largest(nbPad, (x) => x % 2 === 0 && x <= 8);
  const tk = largest(kb, (x) => (x * e) % sys.dma.align === 0 && x * e <= 256 && x * e >= sys.dma.min_bytes);
  if (tn === undefined || tk === undefined) return undefined;
  const t = { ...d, tasklets: Math.min(16, sys.max_tasklets), tm: 1, tn, tk, double: false };
  return wramBytes(shape, t, sys) <= sys.wram ? t : undefined;
}

/** Seconds a call spends without pooling: allocating the DPUs, loading the kernel, sending W. */
export function perCallSeconds(shape: GemmShape, t: Tiling, sys: UpmemSystem): number {
  const count = t.dm * t.dn * t.dk;
  const range = { first: 0, count };
  const { nbPad, kb } = weightBlock(shape, t);
  const bytes = nbPad * kb * elemBytesOf(shape.dtype);
  const w = t.dn === 1 && t.dk === 1 ? broadcastTime(sys, range, bytes) : pushTime(sys, range, bytes);
  return sys.alloc_per_dpu * count + sys.load_per_rank * dpusPerRank(sys, range).length + w;
}

/** What a call costs besides transfers, launch and kernel without pooling, under a distribution. */
export function perCallFor(
  shape: GemmShape,
  d: Distribution,
  sys: UpmemSystem,
  runtimeTranspose: boolean,
): number {
  const tiling = { ...d, tasklets: 1, tm: 1, tn: 2, tk: 8, double: false };
  const transpose = runtimeTranspose
    ? hostTime(sys, 0, 2 * shape.n * shape.k * elemBytesOf(shape.dtype), "transpose")
    : 0;
  return perCallSeconds(shape, tiling, sys) + transpose;
}
