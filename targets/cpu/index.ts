/**
 * The host CPU target: one device modelled by its roofline (cores x SIMD lanes x FMA at its clock;
 * DRAM bandwidth), executed by the fp32 reference interpreter.
 */
import { z } from "zod";
import { Interpreter } from "../../src/exec/interpreter.js";
import { validateSystem } from "../../src/frontend/system.js";
import type { CostModel } from "../../src/pipeline/cost-model.js";
import type { Target } from "../index.js";
import { ROW_MAJOR_WEIGHTS } from "../../src/ir/layout.js";
import { singleMemory } from "../../src/pipeline/capacity.js";

const pos = z.number().positive();
const posInt = z.number().int().positive();

/** Achieved throughput of large GEMMs per data type (ops/s: a multiply-add is 2). */
const zGemmRates = z.strictObject({ f32: pos, f16: pos, bf16: pos, i8: pos });

/** The keys a named (measured) CPU must give: each is a published measurement or a datasheet fact. */
const MEASURED = [
  "cores",
  "threads",
  "frequency",
  "memory_bandwidth",
  "core_bandwidth",
  "overhead",
  "gemm",
] as const;

/**
 * A host CPU. Two models:
 *  - a roofline (default): cores x SIMD lanes x FMA units at the clock, at an achieved `efficiency`,
 *    and the DRAM bandwidth;
 *  - a named CPU (`cpu = "..."`): measured figures only -- the bandwidth a STREAM-class benchmark
 *    reaches (`memory_bandwidth`) and one core reaches (`core_bandwidth`), the throughput large GEMMs
 *    reach per data type (`gemm`), the threads the runtime uses, and the fixed cost of a parallel op
 *    (`overhead`: fork/join and dispatch). Every one of them is required.
 */
export const zHost = z
  .strictObject({
    /** A named CPU: its figures are measured (see MEASURED). */
    cpu: z.string().min(1).max(200).optional(),
    cores: posInt.max(1 << 16).optional(),
    /** Threads the host's runtime uses (named CPU; the roofline uses every core). */
    threads: posInt.max(1 << 16).optional(),
    frequency: pos.optional(),
    memory_bandwidth: pos.optional(),
    /** Bytes of DRAM (capacity): what the data of host ops must fit. Absent: not checked. */
    memory: pos.optional(),
    /** Bytes/s one thread streams from DRAM (named CPU: caps the bandwidth of few threads). */
    core_bandwidth: pos.optional(),
    /** Bits per vector register. */
    simd_width: posInt.max(1 << 16).optional(),
    /** Vector FMA units per core. */
    fma_units: posInt.max(64).optional(),
    /**
     * Roofline only: the fraction of the peak FLOP/s the host's kernels reach (1: the roofline).
     * PIM-LLM's TVM-CPU baseline reached far less (see examples/systems/upmem-2048-pimllm.pim).
     */
    efficiency: pos.max(1).optional(),
    /** Bytes/s of transposes (strided copies); default: the streaming bandwidth. */
    transpose_bandwidth: pos.optional(),
    /** Seconds per op (dispatch; a named CPU's fork/join of a parallel op). */
    overhead: z.number().nonnegative().optional(),
    /** Named CPU: the throughput large GEMMs reach per data type. */
    gemm: zGemmRates.partial().optional(),
  })
  .superRefine((h, ctx) => {
    if (h.cpu === undefined) {
      for (const k of ["gemm", "core_bandwidth", "threads"] as const)
        if (h[k] !== undefined)
          ctx.addIssue({
            code: "custom",
            path: [k],
            message: 'a measured figure: give the host a name (cpu = "...") and every measured figure',
          });
      return;
    }
    if (h.efficiency !== undefined)
      ctx.addIssue({
        code: "custom",
        path: ["efficiency"],
        message: "a roofline's fitted efficiency; a named CPU's GEMM rates are measured (gemm = {...})",
      });
    for (const k of MEASURED)
      if (h[k] === undefined)
        ctx.addIssue({
          code: "custom",
          path: [k],
          message: `missing: a named CPU (cpu = "${h.cpu}") needs it`,
        });
    for (const k of ["f32", "f16", "bf16", "i8"] as const)
      if (h.gemm !== undefined && h.gemm[k] === undefined)
        ctx.addIssue({
          code: "custom",
          path: ["gemm", k],
          message: `missing: a named CPU needs the ${k} GEMM rate`,
        });
  })
  .transform((h) => ({
    ...h,
    cores: h.cores ?? 16,
    frequency: h.frequency ?? 2.4e9,
    memory_bandwidth: h.memory_bandwidth ?? 51.2e9,
    simd_width: h.simd_width ?? 512,
    fma_units: h.fma_units ?? 2,
    // A named CPU has no efficiency (its rates are measured): none is written back into programs.
    ...(h.cpu === undefined ? { efficiency: h.efficiency ?? 1 } : {}),
    overhead: h.overhead ?? 1e-6,
    gemm: h.gemm as z.infer<typeof zGemmRates> | undefined,
  }));
export type HostConfig = z.infer<typeof zHost>;

/** Peak fp32 FLOP/s of a host: cores x lanes x 2 (FMA) x FMA units x clock. */
export const hostFlops = (h: HostConfig): number =>
  h.cores * (h.simd_width / 32) * 2 * h.fma_units * h.frequency;

/** The data type a host op's multiply-adds run in; undefined for ops that are not products. */
export type HostDtype = keyof z.infer<typeof zGemmRates>;

/** What a host op does: its work, and for products the data type they run in. */
export interface HostWork {
  readonly opcode: string;
  readonly flops: number;
  readonly bytes: number;
  readonly dtype?: HostDtype;
}

const PRODUCTS = new Set(["linear", "qlinear", "lowbit_linear", "matmul", "attention", "moe"]);

/**
 * The work of a host op from its opcode, attributes and operand types: products run in their
 * weights' type (operand 1; attention and matmul in their first operand's), INT8 for qlinear and
 * for W(low-bit)A8 layers; weight-only low-bit layers dequantize and multiply in fp32.
 */
export function hostWork(
  opcode: string,
  attrs: Readonly<Record<string, unknown>>,
  ins: readonly { readonly dtype: string }[],
  cost: { readonly flops: number; readonly bytes: number },
): HostWork {
  const base = { opcode, flops: cost.flops, bytes: cost.bytes };
  if (!PRODUCTS.has(opcode)) return base;
  const dtypeOf = (t: string | undefined): HostDtype =>
    t === "f16" || t === "bf16" ? t : t === "i8" ? "i8" : "f32";
  if (opcode === "qlinear") return { ...base, dtype: "i8" };
  if (opcode === "lowbit_linear") return { ...base, dtype: attrs.act_bits === 8 ? "i8" : "f32" };
  const operand = opcode === "attention" || opcode === "matmul" ? 0 : 1;
  return { ...base, dtype: dtypeOf(ins[operand]?.dtype) };
}

/** The streaming bandwidth a host reaches (a named CPU: capped by its threads x one thread's). */
export function hostBandwidth(h: HostConfig): number {
  return h.cpu === undefined || h.threads === undefined || h.core_bandwidth === undefined
    ? h.memory_bandwidth
    : Math.min(h.memory_bandwidth, h.threads * h.core_bandwidth);
}

/**
 * Seconds of an op on a host. Roofline: max(flops / (peak x efficiency), bytes / bandwidth) + overhead.
 * Named CPU: products at the measured GEMM rate of their data type (other ops at the fp32 one), scaled
 * by the threads used, against the measured streaming bandwidth, plus the fork/join overhead. Transposes
 * stream at `transpose_bandwidth` when given. 0 for an op without work.
 */
export function hostSeconds(h: HostConfig, w: HostWork): number {
  if (w.flops === 0 && w.bytes === 0) return 0;
  const stream = hostBandwidth(h);
  const bw = w.opcode === "transpose" ? (h.transpose_bandwidth ?? stream) : stream;
  const rate = h.gemm
    ? h.gemm[w.dtype ?? "f32"] * Math.min(1, (h.threads ?? h.cores) / h.cores)
    : hostFlops(h) * (h.efficiency ?? 1);
  return Math.max(w.flops / rate, w.bytes / bw) + h.overhead;
}

/**
 * Seconds of an op on a host by its roofline at the host's achieved efficiency (`hostSeconds` of
 * an fp32 op: what targets that know only flops and bytes use).
 */
export function hostRoofline(
  h: HostConfig,
  flops: number,
  bytes: number,
  bandwidth = h.memory_bandwidth,
): number {
  if (flops === 0 && bytes === 0) return 0;
  if (h.gemm) return hostSeconds(h, { opcode: "", flops, bytes, dtype: "f32" });
  return Math.max(flops / (hostFlops(h) * (h.efficiency ?? 1)), bytes / bandwidth) + h.overhead;
}

const cpu: Target = {
  name: "cpu",
  summary: "host CPU (roofline model), fp32 reference execution",
  pipeline: ["simplify-shapes", "fuse-qkv", "fuse-gate-up", "layout", "quantize", "dce", "partition"],
  system(decl) {
    const h = decl ? validateSystem(decl, zHost) : zHost.parse({});
    const costModel: CostModel = {
      devices: [{ name: "host", kind: "host", roof: { flops: hostFlops(h), bandwidth: h.memory_bandwidth } }],
      home: "host",
      opTime: (v, device) =>
        device === "host" ? hostSeconds(h, hostWork(v.op.opcode, v.op.attrs, v.ins, v.cost)) : undefined,
      transferTime: () => 0,
    };
    return {
      name: decl?.name ?? "host_cpu",
      costModel,
      // Dot products over rows: linear weights [out, in] and embedding tables row-major.
      passOptions: { layout: ROW_MAJOR_WEIGHTS },
      config: h,
    };
  },
  memories: (system) => singleMemory("host DRAM", (system.config as HostConfig | undefined)?.memory),
  prepare(model) {
    return new Interpreter(model.module, model.weights);
  },
};

export default cpu;
