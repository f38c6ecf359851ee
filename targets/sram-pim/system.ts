/**
 * The description of an SRAM-PIM CPU system in the style of SAIL (Zhang et al., arXiv 2509.25853):
 * a host CPU whose cache has compute-capable SRAM arrays (C-SRAM) beside its slices, running
 * LUT-GEMV for low-bit weights x INT8 activations. Values marked "SAIL" are the paper's; the others
 * are assumptions, said so where they are set (docs/sram-pim.md lists every parameter and source).
 */
import { z } from "zod";
import { zHost } from "../cpu/index.js";

export const zArrays = z
  .strictObject({
    /** The cache level beside whose slices the arrays sit (SAIL: the last-level cache). */
    level: z.enum(["l2", "llc"]).default("llc"),
    /**
     * C-SRAM arrays in the system. Assumption: 8 per slice of a 64-slice mesh (512); SAIL gives the
     * arrays' area (2 % of the chip), not their count.
     */
    count: z.number().int().positive().default(512),
    /** Rows per array: a table's entries, one per row, must fit (assumption: 256, an 8 KiB subarray). */
    rows: z.number().int().positive().default(256),
    /** Bits per row (the column adders' width); a row holds columns / entry_bits table entries. */
    columns: z.number().int().positive().default(256),
    /** Array clock (assumption: the mesh / LLC clock of a Neoverse-N1 part, 2 GHz). */
    frequency: z.number().positive().default(2e9),
    /**
     * Weight-index reads per cycle per array: each reads one row (one entry of `batch` tables side
     * by side) and the column adders accumulate it (assumption: 1, a single-ported subarray).
     */
    lookups_per_cycle: z.number().positive().default(1),
    /** Bits of a table entry (an INT8 x INT4 x 2 dot product needs 12; 16 leaves headroom). */
    entry_bits: z.number().int().positive().default(16),
    /**
     * Tables one weight-index read serves: the tables of that many activation rows (tokens of the
     * batch) sit side by side in a row (SAIL's batched LUT-GEMV). At most columns / entry_bits.
     */
    batch: z.number().int().positive().default(16),
    /** Table rows written per cycle per array while building tables (one entry for `batch` rows). */
    build_rows_per_cycle: z.number().positive().default(1),
    /**
     * Values converted per cycle per array by the in-memory type conversion (fp32 activations to
     * INT8; int32 group sums to fp32, scaled and accumulated). Assumption: 8 (a bit-serial
     * conversion of 32-bit values over 256 columns, ~32 cycles each).
     */
    convert_per_cycle: z.number().positive().default(8),
    /** false: the host's vector units do the conversions (SAIL's ablation of in-memory conversion). */
    in_memory_conversion: z.boolean().default(true),
    /**
     * Fraction of table-build and lookup cycles saved by SAIL's pattern-aware LUT (activation
     * patterns repeated within a batch share entries): 13.8 % on SAIL's workloads.
     */
    pattern_savings: z.number().min(0).max(0.99).default(0.138),
    /** Bytes/s of DRAM streaming weights into the arrays (default: the host's memory bandwidth). */
    memory_bandwidth: z.number().positive().optional(),
    /** Seconds per LUT-GEMV (SAIL's one new instruction issued to every slice, and their barrier). */
    overhead: z.number().nonnegative().default(1e-6),
  })
  .refine((a) => a.batch * a.entry_bits <= a.columns, {
    message: "batch x entry_bits must fit the columns of an array (the batch's tables side by side in a row)",
    path: ["batch"],
  });
export type Arrays = z.infer<typeof zArrays>;

/**
 * The default host: a 64-core Arm Neoverse-N1 server part (AWS Graviton2 class: 2.5 GHz, 2 x 128-bit
 * NEON FMA pipes per core, 8 channels of DDR4-3200), SAIL's CPU baseline.
 */
export const NEOVERSE_N1 = zHost.parse({
  cores: 64,
  frequency: 2.5e9,
  memory_bandwidth: 204.8e9,
  simd_width: 128,
  fma_units: 2,
  // DRAM of the 64-core Graviton2 instance (AWS EC2 m6g.16xlarge: 256 GiB).
  memory: 256 * 2 ** 30,
});

export const zSramPimSystem = z.strictObject({
  /** The CPU: runs everything but the low-bit linear layers (roofline, targets/cpu). */
  host: zHost.default(NEOVERSE_N1),
  arrays: zArrays.default(zArrays.parse({})),
});
export type SramPimSystem = z.infer<typeof zSramPimSystem>;

/** The default system: the Neoverse-N1 host with SAIL's arrays beside its LLC slices. */
export const DEFAULT_SYSTEM: SramPimSystem = zSramPimSystem.parse({});

/** The bandwidth the arrays stream weights at. */
export const streamBandwidth = (s: SramPimSystem): number =>
  s.arrays.memory_bandwidth ?? s.host.memory_bandwidth;
