/**
 * The UPMEM system description: DPUs and their memories, the DPU pipeline and DMA engine, instruction
 * costs, host <-> DPU transfer bandwidths and the host CPU. Defaults come from docs/upmem.md
 * (PrIM and PIM-LLM figures); a `system` block of target upmem overrides any of them.
 */
import { z } from "zod";
import type { SystemModel } from "../index.js";
import { zHost } from "../cpu/index.js";
import { XEON_SILVER_4215_X2 } from "../cpu/measured.js";

const pos = z.number().positive();
const posInt = z.number().int().positive();

/** A bandwidth table: [DPUs transferring in parallel, aggregate bytes/s], interpolated log-linearly. */
const zTable = z.array(z.tuple([posInt, pos])).min(1);

export const zUpmemSystem = z.strictObject({
  dpus: posInt.default(2048),
  dpus_per_rank: posInt.default(64),
  frequency: pos.default(450e6),
  /** Tasklets the hardware supports (v1A: 24). Kernels choose how many they use. */
  max_tasklets: posInt.default(24),
  mram: posInt.default(64 * 2 ** 20),
  wram: posInt.default(64 * 2 ** 10),
  iram: posInt.default(24 * 2 ** 10),
  /** WRAM bytes each tasklet's stack takes (not available to kernel buffers). */
  stack_per_tasklet: posInt.default(512),
  pipeline: z
    .strictObject({
      /** Pipeline depth; a tasklet issues at most one instruction every `issue_interval` cycles. */
      stages: posInt.default(14),
      issue_interval: posInt.default(11),
    })
    .default({ stages: 14, issue_interval: 11 }),
  dma: z
    .strictObject({
      /** MRAM -> WRAM latency alpha + beta * bytes (cycles), WRAM -> MRAM alpha_write + beta * bytes. */
      read_alpha: pos.default(77),
      write_alpha: pos.default(61),
      beta: pos.default(0.5),
      min_bytes: posInt.default(8),
      max_bytes: posInt.default(2048),
      align: posInt.default(8),
    })
    .default({ read_alpha: 77, write_alpha: 61, beta: 0.5, min_bytes: 8, max_bytes: 2048, align: 8 }),
  /** Instructions per operation in the kernels' inner loops (see docs/upmem.md). */
  isa: z
    .strictObject({
      mac_i8: pos.default(2.5),
      mac_f32: pos.default(250),
      /** Per element of a vadd, loads and store included (PrIM: 58.6 MOPS int32 add at 350 MHz). */
      add_i32: pos.default(6),
      /** PrIM: 4.9 MOPS float add at 350 MHz, 16 tasklets. */
      add_f32: pos.default(71),
      /** Per dot product of a mac (loop setup, accumulator load/store). */
      dot_overhead: pos.default(8),
      /** Per DMA issued (address computation, call). */
      dma_overhead: pos.default(10),
      /**
       * LUT-GEMV: per table entry built (each entry is a neighbour's plus one activation: add and
       * store), per lookup (load the packed weights' field, scale it to a table offset, load the
       * entry, add), one more per lookup when fields are narrower than a byte (shift and mask), and per
       * activation vector of a build (loads, loop).
       */
      lut_entry: pos.default(2),
      lut_lookup: pos.default(4),
      lut_extract: pos.default(1),
      lut_vector: pos.default(4),
    })
    .default({
      mac_i8: 2.5,
      mac_f32: 250,
      add_i32: 6,
      add_f32: 71,
      dot_overhead: 8,
      dma_overhead: 10,
      lut_entry: 2,
      lut_lookup: 4,
      lut_extract: 1,
      lut_vector: 4,
    }),
  transfer: z
    .strictObject({
      /** Host -> DPU parallel transfers within one rank: aggregate bytes/s by DPU count. */
      to_dpu: zTable.default([
        [1, 0.33e9],
        [64, 6.68e9],
      ]),
      /** DPU -> host. */
      from_dpu: zTable.default([
        [1, 0.12e9],
        [64, 4.74e9],
      ]),
      /** Broadcast of one buffer to the DPUs of a rank. */
      broadcast: pos.default(16.9e9),
      /** Ranks transferring at once share the host's memory channels: aggregate limit, bytes/s. */
      host_limit: pos.default(60e9),
      /** Fixed seconds per transfer call. */
      latency: z.number().nonnegative().default(10e-6),
    })
    .default({
      to_dpu: [
        [1, 0.33e9],
        [64, 6.68e9],
      ],
      from_dpu: [
        [1, 0.12e9],
        [64, 4.74e9],
      ],
      broadcast: 16.9e9,
      host_limit: 60e9,
      latency: 10e-6,
    }),
  /** Seconds of dpu_alloc per DPU and of dpu_load per rank (program load into IRAM). */
  alloc_per_dpu: z.number().nonnegative().default(40e-6),
  /** Seconds per kernel launch (dpu_launch, synchronous wait for the slowest DPU). */
  launch_overhead: z.number().nonnegative().default(20e-6),
  load_per_rank: z.number().nonnegative().default(2e-3),
  /** The host CPU: by default the measured 2 x Xeon Silver 4215 of the UPMEM servers (targets/cpu/measured.ts). */
  host: zHost.default(XEON_SILVER_4215_X2),
});

export type UpmemSystem = z.infer<typeof zUpmemSystem>;

export const DEFAULT_SYSTEM: UpmemSystem = zUpmemSystem.parse({});

/** The UPMEM system of a SystemModel (the target's validated description, else the default). */
export const systemOf = (s: SystemModel): UpmemSystem =>
  (s.config as UpmemSystem | undefined) ?? DEFAULT_SYSTEM;

/**
 * WRAM a kernel of `tasklets` takes: each tasklet's private buffers and its stack, plus the buffers
 * all tasklets share. The one budget every kernel, tile rating and validation checks against
 * `sys.wram`.
 */
export const wramNeeded = (
  sys: UpmemSystem,
  tasklets: number,
  privateBytes: number,
  sharedBytes = 0,
): number => tasklets * (privateBytes + sys.stack_per_tasklet) + sharedBytes;

/** The most tasklets (up to the system's) whose private buffers and stacks fit WRAM; 0 when none does. */
export const taskletsThatFit = (sys: UpmemSystem, privateBytes: number, sharedBytes = 0): number =>
  Math.max(
    0,
    Math.min(sys.max_tasklets, Math.floor((sys.wram - sharedBytes) / (privateBytes + sys.stack_per_tasklet))),
  );
