/**
 * The UPMEM-class DIMM-PIM target (the system of PIM-LLM, CGO'25): DPUs beside DRAM banks on DIMMs,
 * reached by the host over the memory bus. GEMMs run on the DPUs as PGEMMlib kernels tiled by the
 * Tile-Selector, everything else on the host CPU; each GEMM goes where the two cost models say it is
 * faster (CPU/PIM cooperation). Programs are command streams run by the bundled emulator.
 */
import { tuneUpmem } from "./tune.js";
import { loadUpmem } from "./executable.js";
import { validateSystem } from "../../src/frontend/system.js";
import { dimEval } from "../../src/ir/dim.js";
import type { Tensor } from "../../src/ir/tensor.js";
import { hostAndPim, lowbitA8ShapeOf, type CostModel, type OpView } from "../../src/pipeline/cost-model.js";
import { ROW_MAJOR_WEIGHTS } from "../../src/ir/layout.js";
import type { FunctionalRunner, PrepareOptions, SystemModel, Target } from "../index.js";
import { PIMLLM_ABLATION, UPMEM_FLAGS, upmemOptions, type UpmemOptions } from "./flags.js";
import { PLAN, planFor, planInputs, upmemPlan, type PlanOptions } from "./passes/plan.js";
import { dialectFor, LOWER, upmemLower } from "./passes/lower.js";
import { estimateGemm, gemmShapeOf, variantName, type Distribution, type GemmShape } from "./gemm.js";
import { mramLine } from "./disasm.js";
import { ms } from "../../src/report/format.js";
import { encodeProgram } from "./codec.js";
import { lowerModule, PIM, type AttentionPlan, type LutPlan, type WeightPlan } from "./lower.js";
import { UpmemMachine } from "./machine.js";
import { select, type Choice } from "./selector.js";
import { selectLut, type LutChoice, type LutShape } from "./lut.js";
import { baseTiling, hostTime, perCallFor } from "./base.js";
import { hostWork } from "../cpu/index.js";

export { hostTime, type UpmemOptions };
import { planAttention, type ReduceSite } from "./attention.js";
import type { TensorType } from "../../src/ir/types.js";
import { DEFAULT_SYSTEM, systemOf, zUpmemSystem, type UpmemSystem } from "./system.js";
import type { Memory, MemoryMap } from "../../src/pipeline/capacity.js";

const forcedReduce = (o: UpmemOptions | undefined): ReduceSite | undefined =>
  o?.attentionReduce === "auto" ? undefined : o?.attentionReduce;

/** The host CPU and the DPUs (device "pim"). */
const DEVICES = hostAndPim("DPUs");

export function upmemCostModel(sys: UpmemSystem, opts: UpmemOptions = {}): CostModel {
  const cooperation = opts.cooperation ?? true;
  const memo = new Map<string, Choice | undefined>();
  // Without pooling a call also allocates, loads and sends its weight.
  const perCall = (s: GemmShape, d: Distribution): number =>
    perCallFor(s, d, sys, opts.runtimeTranspose === true);
  const choose = (s: GemmShape): Choice | undefined => {
    const key = `${s.m} ${s.n} ${s.k} ${s.dtype}`;
    if (!memo.has(key)) {
      let c: Choice | undefined;
      if (opts.gemm === "base") {
        const t = baseTiling(s, sys);
        c = t && { tiling: t, estimate: estimateGemm(s, t, sys) };
        if (c && opts.pooling === false)
          c = { ...c, estimate: { ...c.estimate, total: c.estimate.total + perCall(s, c.tiling) } };
      } else c = select(s, sys, opts.pooling === false ? { perCall: (d) => perCall(s, d) } : {});
      memo.set(key, c);
    }
    return memo.get(key);
  };
  const lutMemo = new Map<string, LutChoice | undefined>();
  /** LUT kernels need resident weights and the Tile-Selector. */
  const lutOk = opts.pooling !== false && opts.gemm !== "base";
  const chooseLut = (s: LutShape): LutChoice | undefined => {
    const key = `${s.m} ${s.n} ${s.k} ${s.bits} ${s.group}`;
    if (!lutMemo.has(key)) lutMemo.set(key, lutOk ? selectLut(s, sys, [s.m])?.choices[0] : undefined);
    return lutMemo.get(key);
  };
  const attnMemo = new Map<string, number | undefined>();
  /**
   * Attention on the DPUs: the plan's transfers, kernels and reduction of the context's partials plus
   * the host's softmax and V window (or, without pooling, the transpose of the whole V cache).
   */
  const attentionTime = (v: OpView, env: Record<string, number>): number | undefined => {
    const [q, k] = v.ins as [TensorType, TensorType];
    const [b, h, s, d] = q.shape.map((x) => dimEval(x, env)) as [number, number, number, number];
    const kvh = dimEval(k.shape[1]!, env);
    const t = dimEval(k.shape[2]!, env);
    const key = `${b} ${h} ${s} ${d} ${kvh} ${t}`;
    if (!attnMemo.has(key)) {
      const resident = opts.pooling !== false;
      const call = { b, rows: (h / kvh) * s, s, t };
      const plan = planAttention({ h, kvh, d }, { B: b, T: t }, [call], sys, resident, forcedReduce(opts));
      const scores = b * h * s * t;
      const v = resident ? 2 * b * kvh * d * (s + 2) * 4 : 8 * b * kvh * t * d;
      attnMemo.set(
        key,
        plan &&
          plan.seconds +
            hostTime(sys, 5 * scores, 8 * scores, "masked_softmax") +
            hostTime(sys, 0, v, resident ? "kv_window" : "transpose"),
      );
    }
    return attnMemo.get(key);
  };
  return {
    devices: DEVICES,
    home: "host",
    opTime(v, device, env) {
      const shape = gemmShapeOf(v, env);
      const l = lowbitA8ShapeOf(v, env);
      if (device === "host") {
        const attention = v.op.opcode === "attention";
        if (attention && opts.attention === "pim" && attentionTime(v, env) !== undefined) return undefined;
        if (!cooperation && (shape || (l && chooseLut(l)))) return undefined;
        const w = hostWork(v.op.opcode, v.op.attrs, v.ins, v.cost);
        return hostTime(sys, w.flops, w.bytes, w.opcode, w.dtype);
      }
      if (device === PIM && v.op.opcode === "attention")
        return opts.attention === "host" ? undefined : attentionTime(v, env);
      if (device === PIM && l) {
        const c = chooseLut(l);
        if (!c) return undefined;
        // The host quantizes the activation and folds the group dot products with the scales.
        const mk = l.m * l.k;
        const dots = (l.m * l.n * l.k) / l.group;
        return (
          c.estimate.total +
          hostTime(sys, 3 * mk, 5 * mk, "quantize") +
          hostTime(sys, 3 * dots, 4 * dots + 8 * l.m * l.n, "group_dequantize")
        );
      }
      if (device !== PIM || !shape) return undefined;
      const c = choose(shape);
      if (!c) return undefined;
      // INT8: the host quantizes the activation and dequantizes the result; FP32 adds the bias.
      const mk = shape.m * shape.k;
      const mn = shape.m * shape.n;
      const around =
        shape.dtype === "i8"
          ? hostTime(sys, 3 * mk, 5 * mk, "quantize") +
            hostTime(sys, 3 * mn, 8 * mn + 4 * shape.n, "dequantize")
          : v.op.operands.length > 2
            ? hostTime(sys, mn, 8 * mn + 4 * shape.n, "add")
            : 0;
      return c.estimate.total + around;
    },
    // Activations always come back to the host: a GEMM's cost on the DPUs includes its transfers.
    transferTime: () => 0,
  };
}

class UpmemRunner implements FunctionalRunner {
  constructor(private readonly machine: UpmemMachine) {}
  reset(): void {
    this.machine.reset();
  }
  run(func: string, inputs: readonly Tensor[]): Tensor[] {
    return this.machine.run(func, inputs).outputs!;
  }
}

/** The lowering choices a system was created with (pooling, GEMM mapping, attention's reduction). */
const mapping = (s: SystemModel) => loweringOf(s.options as UpmemOptions | undefined);

/** The lowering choices of some options (the plan pass gets them from system(), emit from the system). */
const loweringOf = (
  o: UpmemOptions | undefined,
): {
  pooling: boolean;
  gemm: "selected" | "base";
  runtimeTranspose: boolean;
  attentionReduce?: ReduceSite;
} => {
  const reduce = forcedReduce(o);
  return {
    pooling: o?.pooling ?? true,
    gemm: o?.gemm ?? "selected",
    runtimeTranspose: o?.runtimeTranspose ?? false,
    ...(reduce ? { attentionReduce: reduce } : {}),
  };
};

/**
 * A line on attention on the DPUs: layers, DPUs per group, and per phase the context kernel's K
 * split and where its partials are added (the host's reduce_sum or the DPUs' reduce kernel).
 */
function attentionLines(plans: readonly AttentionPlan[]): string[] {
  if (plans.length === 0) return [];
  const phases = new Map<string, { layers: number; what: Set<string> }>();
  for (const a of plans) {
    const ks = a.tiling.context.ks ?? 1;
    const what =
      ks === 1
        ? "no K split"
        : `ks ${ks}, partials added ${a.tiling.reduce === "pim" ? "on the DPUs (reduce kernel)" : "by the host"}`;
    const p = phases.get(a.phase) ?? { layers: 0, what: new Set<string>() };
    p.layers++;
    p.what.add(what);
    phases.set(a.phase, p);
  }
  const layers = Math.max(...[...phases.values()].map((p) => p.layers));
  const dts = [...new Set(plans.map((a) => a.layout.dt))].join("/");
  const each = [...phases].map(([name, p]) => `${name} ${[...p.what].join(" or ")}`).join("; ");
  return [`attention ${layers} layers on the DPUs (${dts} per group); context kernel: ${each}`];
}

/**
 * Lines on the resident weights' layouts: per phase the PGEMMlib variants of its calls, how many
 * weights keep a layout per phase and, when MRAM could not hold them, which weights share one and
 * what each phase pays per step.
 */
function layoutLines(
  plans: readonly WeightPlan<unknown, Distribution>[],
  mix: Readonly<Record<string, number>> | undefined,
): string[] {
  if (plans.length === 0) return [];
  const variants = new Map<string, Map<string, number>>();
  let split = 0;
  let one = 0;
  let sharedForMram = 0;
  const paid = new Map<string, number>();
  for (const p of plans) {
    for (const [phase, ph] of p.phases) {
      const v = variants.get(phase) ?? new Map<string, number>();
      const name = `${"width" in (ph.tiling as object) ? "LUT " : ""}${variantName(ph.tiling)}`;
      v.set(name, (v.get(name) ?? 0) + 1);
      variants.set(phase, v);
    }
    if (p.layouts.length > 1) split++;
    else if (p.phases.size > 1) one++;
    if (p.paid) {
      sharedForMram++;
      for (const [phase, s] of Object.entries(p.paid)) paid.set(phase, (paid.get(phase) ?? 0) + s);
    }
  }
  const each = [...variants]
    .map(([phase, v]) => `${phase} ${[...v].map(([name, n]) => `${n} ${name}`).join(", ")}`)
    .join("; ");
  const lines = [
    `layouts   ${each}; ${split} weights with a layout per phase, ${one} with one for every phase`,
  ];
  if (sharedForMram > 0) {
    const calls = Object.entries(mix ?? {})
      .map(([f, n]) => `${n} ${f}`)
      .join(" + ");
    const costs = [...paid]
      .map(([phase, s]) => (s > 0 ? `${phase} pays +${ms(s)} per step` : `${phase} keeps its best layouts`))
      .join(", ");
    lines.push(
      `          MRAM cannot hold every phase's best layout: ${sharedForMram} weights take smaller ones, chosen for ${calls || "1 call of each phase"} call(s) per request; ${costs}`,
    );
  }
  return lines;
}

/** A line on the LUT-GEMV layers: how many, their formats and tables. */
function lutLines(plans: readonly LutPlan[]): string[] {
  if (plans.length === 0) return [];
  const what = new Set<string>();
  for (const p of plans)
    for (const [phase, ph] of p.phases)
      what.add(`${phase} width ${ph.tiling.width} (${2 ** (p.shape.bits * ph.tiling.width)}-entry tables)`);
  const formats = [...new Set(plans.map((p) => `W${p.shape.bits}A8 groups of ${p.shape.group}`))].join(", ");
  return [`lut-gemv  ${plans.length} weights (${formats}); ${[...what].join(", ")}`];
}

/**
 * MRAM (every DPU's together) holds the weights of GEMMs on the DPUs while they stay resident
 * (resource pooling) and the KV caches of attention on the DPUs; host DRAM (when its size is given)
 * the rest and the activations. lowerModule checks each DPU's MRAM plan in detail; this is the
 * whole-system bound that holds before any layout is chosen.
 */
function memoryMap(system: SystemModel): MemoryMap {
  const sys = systemOf(system);
  const mram: Memory = { name: "MRAM", bytes: sys.dpus * sys.mram };
  const dram: Memory | undefined =
    sys.host.memory !== undefined ? { name: "host DRAM", bytes: sys.host.memory } : undefined;
  const pooling = mapping(system).pooling;
  return {
    memories: [mram, ...(dram ? [dram] : [])],
    place: (kind, devices) =>
      devices.has(PIM) && kind !== "activations" && (kind === "kv" || pooling) ? mram.name : dram?.name,
    holdsAll: dram !== undefined,
  };
}

const upmem: Target = {
  name: "upmem",
  summary: "UPMEM-class DIMM-PIM (PIM-LLM): PGEMMlib kernels on DPUs, host CPU for the rest; emulated",
  pipeline: ["simplify-shapes", "fuse-qkv", "fuse-gate-up", "layout", "quantize", "dce", "partition", PLAN],
  passes: [upmemPlan, upmemLower],
  lowering: [LOWER],
  flags: UPMEM_FLAGS,
  ablation: PIMLLM_ABLATION,
  system(decl, given) {
    const sys = decl ? validateSystem(decl, zUpmemSystem) : DEFAULT_SYSTEM;
    const opts = upmemOptions(given);
    return {
      name: decl?.name ?? "upmem_default",
      costModel: upmemCostModel(sys, opts),
      ...(opts ? { options: opts } : {}),
      passOptions: {
        layout: ROW_MAJOR_WEIGHTS,
        [PLAN]: { system: sys, lowering: loweringOf(opts) } satisfies PlanOptions,
      },
      config: sys,
    };
  },
  emit(model, system, opts) {
    const envs = opts.envs ?? { prefill: { B: 1, S: 128, P: 0 }, decode: { B: 1, S: 1, P: 1024 } };
    const sys = systemOf(system);
    // The plan the upmem-plan pass recorded on the module, when it was made for these inputs.
    const inputs = planInputs({ system: sys, lowering: mapping(system) }, envs, opts.mix, opts.limits);
    const { limits } = inputs;
    const { program, gemms, luts, attention } = lowerModule(
      model.module,
      model.weights,
      { ...inputs, shapeOnly: opts.shapeOnly },
      planFor(model.module, inputs),
      dialectFor(model.module, inputs),
    );
    const bytes = encodeProgram(program);
    // DPUs the program launches kernels on (GEMMs and attention).
    const dpus = Math.max(
      0,
      ...program.phases.flatMap((p) =>
        p.commands.map((c) => (c.kind === "launch" ? c.range.first + c.range.count : 0)),
      ),
    );
    return {
      bytes,
      lines: [
        `program   upmem, ${program.kernels.length} kernels, ${gemms.length + luts.length} DPU-resident weights, ${dpus} of ${sys.dpus} DPUs`,
        `          ${program.phases.map((p) => `${p.name} ${p.commands.length} commands`).join(", ")}; limits B <= ${limits.B}, S <= ${limits.S}, P+S <= ${limits.T}${opts.shapeOnly ? "; shape-only (timing)" : ""}`,
        ...layoutLines([...gemms, ...luts], opts.mix),
        `mram      ${mramLine(program)}`,
        ...attentionLines(attention),
        ...lutLines(luts),
      ],
    };
  },
  memories: memoryMap,
  load: loadUpmem,
  tune: (model, flags, w, opts) => tuneUpmem(model, flags, w, opts),
  prepare(model, system, opts?: PrepareOptions) {
    const envs = opts?.envs ?? { prefill: { B: 1, S: 16, P: 0 }, decode: { B: 1, S: 1, P: 16 } };
    // The upmem-plan pass's plan when the compile was told these sizes (verify's emitFor).
    const inputs = planInputs(
      { system: systemOf(system), lowering: mapping(system) },
      envs,
      opts?.mix,
      opts?.limits,
    );
    const { program } = lowerModule(
      model.module,
      model.weights,
      inputs,
      planFor(model.module, inputs),
      dialectFor(model.module, inputs),
    );
    return new UpmemRunner(new UpmemMachine(program));
  },
};

export default upmem;
