/**
 * The GDDR6-AiM target (SK hynix Accelerator-in-Memory, docs/aim.md): a processing unit beside every
 * bank of GDDR6 channels, driven by AiM commands, and a host that runs what the units do not. Linear
 * layers run as GEMVs at command level (targets/aim/device.ts: the AiM simulator's timing rules as
 * data), one per row of activations, and attention as GEMVs over a KV cache in the banks; the
 * partition pass places each op by comparing that time with the host's roofline. Functional runs
 * compute the units' ops with BF16 operands (functional.ts).
 */
import { validateSystem } from "../../src/frontend/system.js";
import { dimEval } from "../../src/ir/dim.js";
import { ROW_MAJOR_WEIGHTS } from "../../src/ir/layout.js";
import { weightGemm } from "../../src/ir/registry.js";
import { hostAndPim, type CostModel, type OpView } from "../../src/pipeline/cost-model.js";
import type { Memory, MemoryMap } from "../../src/pipeline/capacity.js";
import { hostRoofline } from "../cpu/index.js";
import type { SystemOptions, Target } from "../index.js";
import { runChannel } from "./device.js";
import { expand, gemvFits, gemvPlan } from "./kernels.js";
import { aimKernels } from "./kernel-runner.js";
import { banksOf, cxlSeconds, DEFAULT_SYSTEM, poolOf, zAimSystem, type AimSystem } from "./standard.js";
import { systemOf } from "./system.js";
import { aimRunner } from "./functional.js";

const PIM = "pim";
const DEVICES = hostAndPim("AiM units");

/**
 * Seconds of one GEMV of W [n, k] on every device's channels (memoized per system and shape);
 * undefined when W does not fit.
 */
function gemvSeconds(
  system: AimSystem,
  memo: Map<string, number | undefined>,
  n: number,
  k: number,
): number | undefined {
  const sys = poolOf(system);
  const key = `${n} ${k}`;
  if (!memo.has(key))
    memo.set(
      key,
      gemvFits(sys, n, k)
        ? runChannel(sys, expand(gemvPlan(sys, n, k).instrs)).cycles * sys.timing.tCK
        : undefined,
    );
  return memo.get(key);
}

export function aimCostModel(sys: AimSystem, opts: SystemOptions = {}): CostModel {
  const memo = new Map<string, number | undefined>();
  /** A linear layer with a constant 16-bit weight: a GEMV per row of activations. */
  const pimTime = (v: OpView, env: Record<string, number>): number | undefined => {
    if (v.op.opcode !== "linear" || !weightGemm(v.op)) return undefined;
    const [n, k] = v.ins[1]!.shape.map((d) => dimEval(d, env)) as [number, number];
    const rows = v.ins[0]!.shape.reduce<number>((a, d) => a * dimEval(d, env), 1) / k;
    const one = gemvSeconds(sys, memo, n, k);
    const net = cxlSeconds(sys, n, k);
    // A bias is added by the host.
    const bias = v.op.operands.length > 2 ? hostRoofline(sys.host, rows * n, 12 * rows * n) : 0;
    return one === undefined ? undefined : rows * (one + net) + bias;
  };
  /**
   * Attention over a KV cache in the banks: per (batch, kv head) and query row, a GEMV of the scores
   * (K [T, D] as the weight) and one of the context (V^T [Dv, T]), each over every channel; the
   * softmax on the host; the new tokens' K and V written into the banks over the pins.
   */
  const attentionTime = (v: OpView, env: Record<string, number>): number | undefined => {
    const [b, h, s, d] = v.ins[0]!.shape.map((x) => dimEval(x, env)) as [number, number, number, number];
    const kvh = dimEval(v.ins[1]!.shape[1]!, env);
    const t = dimEval(v.ins[1]!.shape[2]!, env);
    const dv = dimEval(v.ins[2]!.shape[3]!, env);
    const scores = gemvSeconds(sys, memo, t, d);
    const context = gemvSeconds(sys, memo, dv, t);
    const net = cxlSeconds(sys, t, d) + cxlSeconds(sys, dv, t);
    if (scores === undefined || context === undefined) return undefined;
    const rows = b * h * s;
    const softmax = hostRoofline(sys.host, 5 * rows * t, 8 * rows * t);
    const bursts = Math.ceil((b * kvh * s * (d + dv) * 2) / sys.burst_bytes);
    const writes = Math.ceil(bursts / poolOf(sys).channels) * sys.timing.nBL * sys.timing.tCK;
    return rows * (scores + context + net) + softmax + writes;
  };
  return {
    devices: DEVICES,
    home: "host",
    opTime(v, device, env) {
      if (device === PIM)
        return v.op.opcode === "attention"
          ? opts.attention === "host"
            ? undefined
            : attentionTime(v, env)
          : pimTime(v, env);
      if (device !== "host") return undefined;
      const attention = v.op.opcode === "attention";
      if (attention && opts.attention === "pim") return undefined;
      if (opts.cooperation === false && !attention && pimTime(v, env) !== undefined) return undefined;
      return hostRoofline(sys.host, v.cost.flops, v.cost.bytes);
    },
    // The units read the input from the global buffer and the host the results: both in the kernel.
    transferTime: () => 0,
  };
}

/** The channels' memory holds the weights and KV caches of the ops on the units; host DRAM (when given) the rest. */
function memoryMap(sys: AimSystem): MemoryMap {
  const aim: Memory = {
    name: "the AiM channels",
    bytes: sys.devices * sys.channels * banksOf(sys) * sys.rows * sys.columns * sys.burst_bytes,
  };
  const host: Memory | undefined =
    sys.host.memory !== undefined ? { name: "host DRAM", bytes: sys.host.memory } : undefined;
  return {
    memories: [aim, ...(host ? [host] : [])],
    place: (kind, devices) => (devices.has(PIM) && kind !== "activations" ? aim.name : (host ?? aim).name),
    holdsAll: true,
  };
}

const aimTarget: Target = {
  name: "aim",
  summary:
    "GDDR6-AiM (SK hynix Accelerator-in-Memory): a unit per bank driven by AiM commands; GEMVs and attention at command level, BF16 units",
  pipeline: ["simplify-shapes", "fuse-qkv", "fuse-gate-up", "layout", "dce", "partition"],
  kernel: aimKernels,
  system(decl, opts) {
    const sys = decl ? validateSystem(decl, zAimSystem) : DEFAULT_SYSTEM;
    return {
      name: decl?.name ?? "aim_default",
      costModel: aimCostModel(sys, opts),
      ...(opts ? { options: opts } : {}),
      passOptions: { layout: ROW_MAJOR_WEIGHTS },
      config: sys,
    };
  },
  memories: (system) => memoryMap(systemOf(system)),
  // BF16 operands (docs/aim.md): logits within 5e-2 of the fp32 reference.
  tolerance: 5e-2,
  prepare(model, system) {
    return aimRunner(model.module, model.weights, systemOf(system));
  },
};

export default aimTarget;
