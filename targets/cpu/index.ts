/**
 * The host CPU target: one device modelled by its roofline (cores x SIMD lanes x FMA at its clock;
 * DRAM bandwidth), executed by the fp32 reference interpreter.
 */
import { z } from "zod";
import { Interpreter } from "../../src/exec/interpreter.js";
import { validateSystem } from "../../src/frontend/system.js";
import { rooflineCostModel } from "../../src/pipeline/cost-model.js";
import type { Target } from "../index.js";
import type { LayoutOptions } from "../../passes/layout.js";

export const zHost = z.strictObject({
  cores: z.number().int().positive().default(16),
  frequency: z.number().positive().default(2.4e9),
  memory_bandwidth: z.number().positive().default(51.2e9),
  /** Bits per vector register. */
  simd_width: z.number().int().positive().default(512),
  /** Vector FMA units per core. */
  fma_units: z.number().int().positive().default(2),
  /**
   * Fraction of the peak FLOP/s the host's kernels reach (1: the roofline). PIM-LLM's TVM-CPU
   * baseline reached far less than a tuned library (see examples/systems/upmem-2048-pimllm.pim).
   */
  efficiency: z.number().positive().max(1).default(1),
  /** Bytes/s of transposes (strided copies); default: memory_bandwidth, as a streaming copy. */
  transpose_bandwidth: z.number().positive().optional(),
  /** Seconds per op (dispatch). */
  overhead: z.number().nonnegative().default(1e-6),
});
export type HostConfig = z.infer<typeof zHost>;

/** Peak fp32 FLOP/s of a host: cores x lanes x 2 (FMA) x FMA units x clock. */
export const hostFlops = (h: HostConfig): number =>
  h.cores * (h.simd_width / 32) * 2 * h.fma_units * h.frequency;

/**
 * Seconds of an op on a host by its roofline at the host's achieved efficiency:
 * max(flops / (peak x efficiency), bytes / bandwidth) + overhead (0 for an op without work).
 */
export function hostRoofline(
  h: HostConfig,
  flops: number,
  bytes: number,
  bandwidth = h.memory_bandwidth,
): number {
  if (flops === 0 && bytes === 0) return 0;
  return Math.max(flops / (hostFlops(h) * h.efficiency), bytes / bandwidth) + h.overhead;
}

/** Linear weights [out, in] and embedding tables row-major: dot products over contiguous rows. */
export const ROW_WEIGHTS: LayoutOptions = {
  weightLayout: (op, i) =>
    (op.opcode === "linear" || op.opcode === "embedding") && i === 1 ? "row" : undefined,
};

const cpu: Target = {
  name: "cpu",
  summary: "host CPU (roofline model), fp32 reference execution",
  pipeline: ["simplify-shapes", "fuse-qkv", "fuse-gate-up", "layout", "quantize", "dce", "partition"],
  system(decl) {
    const h = decl ? validateSystem(decl, zHost) : zHost.parse({});
    const host = {
      name: "host",
      kind: "host" as const,
      flops: hostFlops(h) * h.efficiency,
      bandwidth: h.memory_bandwidth,
      overhead: h.overhead,
    };
    return {
      name: decl?.name ?? "host_cpu",
      costModel: rooflineCostModel([host], "host", Infinity, 0),
      // Dot products over rows: linear weights [out, in] and embedding tables row-major.
      passOptions: { layout: ROW_WEIGHTS },
    };
  },
  prepare(model) {
    return new Interpreter(model.module, model.weights);
  },
};

export default cpu;
