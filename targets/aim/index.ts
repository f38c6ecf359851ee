/**
 * The GDDR6-AiM target (SK hynix Accelerator-in-Memory, docs/aim.md): a processing unit beside every
 * bank of GDDR6 channels, driven by AiM commands, and a host that runs what the units do not. Linear
 * layers run as GEMVs at command level (targets/aim/device.ts: the AiM simulator's timing rules as
 * data), one per row of activations, and attention as GEMVs over a KV cache in the banks; the
 * partition pass places each op by comparing that time with the host's roofline or CENT's
 * near-memory units (cost.ts: seconds and joules). CENT's devices share layers over CXL (tensor
 * parallel) or hold a pipeline of blocks (timeCall: `pipelined`). Functional runs compute the units'
 * ops with BF16 operands (functional.ts); traces of the AiM simulator's format run on the device
 * model (trace.ts, `pimc kernel trace`).
 */
import { validateSystem } from "../../src/frontend/system.js";
import { ROW_MAJOR_WEIGHTS } from "../../src/ir/layout.js";
import { costModelTiming, hostAndPim, type CostModel, type OpView } from "../../src/pipeline/cost-model.js";
import type { DimEnv } from "../../src/ir/dim.js";
import type { Module } from "../../src/ir/module.js";
import { UserError } from "../../src/errors.js";
import { scaleEnergy, sumEnergies } from "../../src/report/energy.js";
import { standbyEnergy } from "./energy.js";
import type { Memory, MemoryMap } from "../../src/pipeline/capacity.js";
import type { CallTiming, SystemOptions, Target } from "../index.js";
import { AimCosts, type AimCost } from "./cost.js";
import { aimKernels } from "./kernel-runner.js";
import { banksOf, DEFAULT_SYSTEM, poolOf, zAimSystem, type AimSystem } from "./standard.js";
import { systemOf } from "./system.js";
import { aimRunner } from "./functional.js";

const PIM = "pim";
const DEVICES = hostAndPim("AiM units");

export function aimCostModel(sys: AimSystem, opts: SystemOptions = {}): CostModel {
  const costs = new AimCosts(sys);
  const cost = (v: OpView, device: string, env: Record<string, number>): AimCost | undefined => {
    const attention = v.op.opcode === "attention";
    if (device === PIM) {
      if (!attention) return costs.linear(v, env) ?? costs.elementwise(v, env);
      return opts.attention === "host" ? undefined : costs.attention(v, env);
    }
    if (device !== "host") return undefined;
    if (attention && opts.attention === "pim") return undefined;
    // CENT's mapping: element-wise work the units run does not go to the near-memory units.
    if (costs.elementwise(v, env) !== undefined) return undefined;
    if (opts.cooperation === false && !attention && costs.linear(v, env) !== undefined) return undefined;
    return costs.other(v, env);
  };
  return {
    devices: DEVICES,
    home: "host",
    opTime: (v, device, env) => cost(v, device, env)?.seconds,
    opEnergy: (v, device, env) => cost(v, device, env)?.energy,
    // The units read the input from the global buffer and the host the results: both in the kernel.
    transferTime: () => 0,
  };
}

/**
 * A call under CENT's pipeline mapping: every block runs on its own channels at once, one query per
 * block, so a step of B queries takes its ops' time over min(B, blocks) (CENT's run_sim.py:
 * throughput = blocks / token latency with one query per block); the channels' standby is charged
 * over that time, not the ops' sum. More blocks than the pipeline holds is a UserError.
 */
function pipelined(
  t: CallTiming,
  module: Module,
  sys: AimSystem,
  name: string,
  func: string,
  env: DimEnv,
): CallTiming {
  const p = sys.pipeline!;
  const blocks = module.funcs
    .find((f) => f.name === func)!
    .body.filter((op) => op.opcode === "attention").length;
  const stages = sys.devices * p.blocks_per_device;
  if (blocks > stages)
    throw new UserError(
      `system ${name}: its pipeline holds ${stages} blocks (${sys.devices} devices x ${p.blocks_per_device} blocks_per_device), the model has ${blocks}`,
    );
  const m = Math.max(1, Math.min(env.B ?? 1, blocks));
  const pool = poolOf(sys);
  // The standby an op's energy counted over the time the pipeline saves (standby is linear in time).
  let saved = 0;
  const ops = t.ops.map((o) => {
    const seconds = o.seconds / m;
    if (o.joules === undefined) return { ...o, seconds };
    saved += o.seconds - seconds;
    return { ...o, seconds, joules: o.joules - standbyEnergy(pool, o.seconds - seconds).joules };
  });
  return {
    seconds: t.seconds / m,
    busy: Object.fromEntries(Object.entries(t.busy).map(([d, s]) => [d, s / m])),
    ops,
    ...(t.energy ? { energy: sumEnergies([t.energy, scaleEnergy(standbyEnergy(pool, saved), -1)]) } : {}),
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
  energy:
    "CENT's power model: the units' commands, the host's bursts through the pins and its multiply-adds, CXL links, standby",
  // Every channel in precharge standby, its global buffer's static power.
  idlePower: (system) =>
    Object.fromEntries(
      Object.entries(standbyEnergy(poolOf(systemOf(system)), 1).breakdown).filter(([, w]) => w > 0),
    ),
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
  timeCall(module, system, func, env, opts) {
    const t = costModelTiming(module, system, func, env, opts, "aim");
    const sys = systemOf(system);
    return sys.pipeline ? pipelined(t, module, sys, system.name, func, env) : t;
  },
  memories: (system) => memoryMap(systemOf(system)),
  // BF16 operands (docs/aim.md): logits within 5e-2 of the fp32 reference.
  tolerance: 5e-2,
  prepare(model, system) {
    return aimRunner(model.module, model.weights, systemOf(system));
  },
};

export default aimTarget;
