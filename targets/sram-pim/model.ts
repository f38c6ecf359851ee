/**
 * The timing of a LUT-GEMV on the SRAM-PIM arrays (SAIL's batched LUT-GEMV), and the cost model the
 * partition pass places ops with. A `lowbit_linear` with INT8 activations, M rows, N outputs, K
 * inputs, `bits`-bit weights in groups of `group`, run with tables of `width` activations:
 *
 * - V = K / width activation vectors per row, each with a table of E = 2^(bits x width) entries
 *   (one per row of an array; the tables of `batch` rows side by side in it: one table slot);
 * - weights streamed from DRAM into the arrays at `bits` bits each (plus the group scales), once,
 *   or again for every set of row chunks whose tables do not fit the arrays at once;
 * - table build: E row writes per slot, the slots spread over the arrays;
 * - lookups: one weight-index read per (output, vector, chunk of `batch` rows), which reads the
 *   entry of every table of the chunk and accumulates it (the column adders); spread over arrays
 *   (tables replicated when there are fewer slots than arrays);
 * - type conversion: the activations fp32 -> INT8 and every group's int32 sum -> fp32, scaled and
 *   accumulated, in the arrays (or on the host's vector units without in-memory conversion);
 * - the weight stream overlaps the arrays' work (double-buffered), so an op takes
 *   overhead + max(stream, build + lookups + conversion).
 *
 * The width is chosen per layer: the fastest whose table fits an array's rows, whose entries fit
 * `entry_bits`, and that divides the group. Everything else runs on the host by its roofline.
 */
import { HOST_AND_PIM, lowbitA8ShapeOf, type CostModel, type OpView } from "../../src/pipeline/cost-model.js";
import type { DimEnv } from "../../src/ir/dim.js";
import type { LowbitShape } from "../../src/ir/ops/quant.js";
import { hostRoofline } from "../cpu/index.js";
import type { SystemOptions } from "../index.js";
import { streamBandwidth, type SramPimSystem } from "./system.js";

export const HOST = "host";
export const PIM = "pim";

/** The sizes of a low-bit linear layer under a workload. */
export interface LutShape extends LowbitShape {
  /** Whether the layer has a bias (streamed with the weights). */
  readonly bias?: boolean;
}

/** A LUT-GEMV's time and where it goes (seconds, except counts). */
export interface LutTiming {
  readonly width: number;
  /** Entries per table. */
  readonly entries: number;
  /** Times the weights are streamed from DRAM (1 unless the batch's tables do not fit at once). */
  readonly streams: number;
  /** Bytes streamed from DRAM (packed weights, scales, bias) over all streams. */
  readonly bytes: number;
  /** Weight-index reads (each serves up to `batch` rows). */
  readonly reads: number;
  readonly stream: number;
  readonly build: number;
  readonly lookup: number;
  /** In-memory type conversion (0 when the host converts: see `host`). */
  readonly convert: number;
  /** Host vector-unit time for the conversions without in-memory conversion. */
  readonly host: number;
  readonly seconds: number;
}

/** Tables of one weight-index read: the `batch` rows side by side in an array's row. */
export const tablesPerRead = (s: SramPimSystem): number =>
  Math.min(s.arrays.batch, Math.floor(s.arrays.columns / s.arrays.entry_bits));

/** Whether tables of `width` fit: the group divides, E rows fit an array, an entry fits entry_bits. */
export function widthFits(s: SramPimSystem, bits: number, group: number, width: number): boolean {
  if (group % width !== 0) return false;
  if (2 ** (bits * width) > s.arrays.rows) return false;
  // Largest |entry|: width products of |x| <= 127 with |w| <= 2^(bits-1).
  return 127 * 2 ** (bits - 1) * width < 2 ** (s.arrays.entry_bits - 1);
}

/** The widths a layer may use (ascending). */
export function candidateWidths(s: SramPimSystem, bits: number, group: number): number[] {
  const out: number[] = [];
  for (let w = 1; w <= group && 2 ** (bits * w) <= s.arrays.rows; w++)
    if (widthFits(s, bits, group, w)) out.push(w);
  return out;
}

/** The time of a LUT-GEMV of `shape` with tables of `width` activations (which must fit). */
export function lutGemvAt(s: SramPimSystem, shape: LutShape, width: number): LutTiming {
  const a = s.arrays;
  const { m, n, k, bits, group } = shape;
  const f = a.frequency;
  const vectors = k / width;
  const entries = 2 ** (bits * width);
  const batch = tablesPerRead(s);
  const chunks = Math.ceil(m / batch);
  const slotsPerArray = Math.floor(a.rows / entries);
  const slots = a.count * slotsPerArray;
  const tables = vectors * chunks;
  // Passes over slices of K, each with the tables of every row chunk resident: the weights of a
  // slice stream once, for all chunks. Only when the chunks outnumber the table slots are the
  // weights streamed again (per set of chunks that fits).
  const streams = Math.ceil(chunks / slots);
  const once = (n * k * bits) / 8 + n * (k / group) * 4 + (shape.bias ? n * 4 : 0);
  const bytes = streams * once;
  const stream = bytes / streamBandwidth(s);
  // Tables per array (at least one each: with fewer tables than arrays they are replicated and the
  // outputs split over the copies).
  const perArray = Math.ceil(tables / a.count);
  const keep = 1 - a.pattern_savings;
  const build = (keep * perArray * entries) / a.build_rows_per_cycle / f;
  const reads = n * tables;
  const lookup = (keep * Math.ceil(reads / a.count)) / a.lookups_per_cycle / f;
  // Conversions: the activations to INT8, then every group sum to fp32 (scaled, accumulated).
  const values = m * k + m * n * (k / group);
  const convert = a.in_memory_conversion ? Math.ceil(values / a.count) / a.convert_per_cycle / f : 0;
  const host = a.in_memory_conversion
    ? 0
    : hostRoofline(s.host, 3 * m * k + 2 * m * n * (k / group), 4 * (m * k + m * n * (k / group)) + m * k);
  const seconds = a.overhead + Math.max(stream, build + lookup + convert) + host;
  return { width, entries, streams, bytes, reads, stream, build, lookup, convert, host, seconds };
}

/** Seconds the arrays compute (build, lookups, conversion), whether or not the stream hides them. */
export const arrayBusy = (t: LutTiming): number => t.build + t.lookup + t.convert;

/**
 * The fastest LUT-GEMV of `shape` over the widths that fit; among equally fast ones (a layer bound
 * by its weight stream) the one keeping the arrays busy least, then the narrower. Undefined if none fits.
 */
export function lutGemv(s: SramPimSystem, shape: LutShape): LutTiming | undefined {
  let best: LutTiming | undefined;
  for (const w of candidateWidths(s, shape.bits, shape.group)) {
    const t = lutGemvAt(s, shape, w);
    if (!best || t.seconds < best.seconds || (t.seconds === best.seconds && arrayBusy(t) < arrayBusy(best)))
      best = t;
  }
  return best;
}

/** The LUT-GEMV shape of a W(low-bit) x A8 layer (with whether it has a bias), or undefined. */
export function lutShape(v: OpView, env: DimEnv): LutShape | undefined {
  const shape = lowbitA8ShapeOf(v, env);
  return shape && { ...shape, bias: v.ins.length > 3 };
}

/** Seconds of an op on the host CPU (its roofline). */
export const hostSeconds = (s: SramPimSystem, v: OpView): number =>
  hostRoofline(s.host, v.cost.flops, v.cost.bytes);

/**
 * The host and the arrays. Activations move between them through the cache they share: no
 * transfer time (the arrays' table build reads them). Without cooperation every layer the arrays
 * can run goes there.
 */
export function sramPimCostModel(s: SramPimSystem, opts?: SystemOptions): CostModel {
  return {
    devices: HOST_AND_PIM,
    home: HOST,
    opTime(v, device, env) {
      const shape = lutShape(v, env);
      const lut = shape && lutGemv(s, shape);
      if (device === PIM) return lut?.seconds;
      if (device !== HOST) return undefined;
      if (lut && opts?.cooperation === false) return undefined;
      return hostSeconds(s, v);
    },
    transferTime: () => 0,
  };
}
