/**
 * What the partition pass asks of a target: the devices of a system, how long an op takes on each,
 * and what moving activations between them costs. Targets implement it from their timing tables.
 */
import { dimEval, dimProd, type DimEnv } from "../ir/dim.js";
import type { LowbitShape } from "../ir/ops/quant.js";
import type { Module, Op } from "../ir/module.js";
import { opCost, operandTyper } from "../ir/cost.js";
import { UserError } from "../errors.js";
import { weightGemm, type Cost } from "../ir/registry.js";
import type { TensorType } from "../ir/types.js";
import type { CallTiming, Energy, SystemModel } from "../../targets/index.js";
import { deviceFor } from "../ir/placement.js";
import { sumEnergies } from "../report/energy.js";

export interface Device {
  readonly name: string;
  readonly kind: "host" | "pim" | "xpu";
  /** What reports call it ("DPUs", "PIM units"); default: its name. */
  readonly label?: string;
  /** Its roofline where the target knows it (peak flop/s, bytes/s): bench --plot draws it. */
  readonly roof?: { readonly flops: number; readonly bandwidth: number };
}

/** The name reports give a device of a cost model (its label, else its name). */
export const deviceLabel = (cm: CostModel, name: string): string =>
  cm.devices.find((d) => d.name === name)?.label ?? name;

/** A host and a PIM device named "pim" sharing its work, the PIM device called `label` in reports. */
export const hostAndPim = (label?: string): readonly Device[] => [
  { name: "host", kind: "host" },
  { name: "pim", kind: "pim", ...(label !== undefined ? { label } : {}) },
];

/** A host and a PIM device named "pim" (the SRAM-PIM target). */
export const HOST_AND_PIM: readonly Device[] = hostAndPim();

/** An op with its operand and result types and its registry cost under the workload. */
export interface OpView {
  readonly op: Op;
  readonly ins: readonly TensorType[];
  readonly outs: readonly TensorType[];
  readonly cost: Cost;
}

export interface CostModel {
  readonly devices: readonly Device[];
  /** Where function inputs arrive and results are returned. */
  readonly home: string;
  /** Seconds `op` takes on `device` (undefined: the device cannot run it). */
  opTime(op: OpView, device: string, env: DimEnv): number | undefined;
  /**
   * Joules `op` takes on `device`, where the target models energy (docs/energy.md): what a call timed
   * by the cost model reports beside its seconds (CallTiming `energy`). Absent: no energy.
   */
  opEnergy?(op: OpView, device: string, env: DimEnv): Energy | undefined;
  /** Seconds to move `bytes` of activations between devices. */
  transferTime(bytes: number, from: string, to: string): number;
}

/** A device modelled by its roofline: time = max(flops / peak, bytes / bandwidth) + overhead. */
export interface RooflineDevice extends Device {
  /** Peak FLOP/s. */
  readonly flops: number;
  /** Memory bandwidth, bytes/s. */
  readonly bandwidth: number;
  /** Fixed seconds per op (launch, synchronisation). */
  readonly overhead: number;
}

/** A cost model of roofline devices joined by one link (bytes/s, plus a latency per transfer). */
export function rooflineCostModel(
  devices: readonly RooflineDevice[],
  home: string,
  link: number,
  latency: number,
): CostModel {
  const byName = new Map(devices.map((d) => [d.name, d]));
  return {
    devices,
    home,
    opTime(op, device) {
      const d = byName.get(device);
      if (!d) return undefined;
      if (op.cost.flops === 0 && op.cost.bytes === 0) return 0;
      return Math.max(op.cost.flops / d.flops, op.cost.bytes / d.bandwidth) + d.overhead;
    },
    transferTime: (bytes, from, to) => (from === to ? 0 : latency + bytes / link),
  };
}

/** The views of a function's ops under `env` (transfers left out: they move no data here). */
export function callViews(m: Module, func: string, env: DimEnv): OpView[] {
  const f = m.funcs.find((x) => x.name === func);
  if (!f) throw new UserError(`module has no ${func} function`);
  const typeOf = operandTyper(m, f);
  return f.body.filter((op) => op.opcode !== "transfer").map((op) => viewOf(op, typeOf, env));
}

/** The view of one op of a function under `env` (`typeOf`: the function's operandTyper). */
export function viewOf(op: Op, typeOf: (ref: string) => TensorType, env: DimEnv): OpView {
  const ins = op.operands.map(typeOf);
  return { op, ins, outs: op.results.map((r) => r.type), cost: opCost(op, ins, env) };
}

/**
 * The shape of a W(low-bit) x A8 linear layer with a constant weight (`lowbit_linear` with
 * act_bits 8: what LUT-GEMV kernels run), or undefined for any other op.
 */
export function lowbitA8ShapeOf(v: OpView, env: DimEnv): LowbitShape | undefined {
  const { op, ins } = v;
  if (op.opcode !== "lowbit_linear" || op.attrs.act_bits !== 8 || !weightGemm(op)) return undefined;
  return {
    m: dimEval(dimProd(ins[0]!.shape.slice(0, -1)), env),
    n: dimEval(ins[1]!.shape[0]!, env),
    k: dimEval(ins[1]!.shape[1]!, env),
    bits: op.attrs.bits as number,
    group: op.attrs.group as number,
  };
}

/**
 * A call timed by the system's cost model alone, for targets without a device model of their own
 * (the host CPU, the roofline): the ops one at a time, each on its placed device (else the home
 * device), and the partition's transfers over the link; their energy where the cost model prices it
 * (`opEnergy`). Sub-batches (`opts.subBatches` > 1) are a UserError naming `target`.
 */
export function costModelTiming(
  module: Module,
  system: SystemModel,
  func: string,
  env: DimEnv,
  opts?: { readonly subBatches?: number },
  target = "this target",
): CallTiming {
  if ((opts?.subBatches ?? 1) > 1)
    throw new UserError(
      `sub-batch interleaving needs a device model whose host and PIM work overlap; ${target} times ops one at a time`,
    );
  const cm = system.costModel;
  const f = module.funcs.find((x) => x.name === func);
  if (!f) throw new UserError(`module has no ${func} function`);
  const typeOf = operandTyper(module, f);
  const busy: Record<string, number> = Object.fromEntries(cm.devices.map((d) => [d.name, 0]));
  const energies: Energy[] = [];
  const ops = f.body.map((op) => {
    const view = viewOf(op, typeOf, env);
    let device: string;
    let seconds: number;
    let energy: Energy | undefined;
    if (op.opcode === "transfer") {
      const [from, to] = [String(op.attrs.from), String(op.attrs.to)];
      device = "link";
      seconds = cm.transferTime(view.cost.bytes, from, to);
    } else {
      const placed = deviceFor(op, env) ?? cm.home;
      const there = cm.opTime(view, placed, env);
      // An op its device cannot run at this size runs at home.
      const ran = there === undefined ? cm.home : placed;
      device = placed;
      seconds = there ?? cm.opTime(view, cm.home, env) ?? 0;
      energy = cm.opEnergy?.(view, ran, env);
      if (energy) energies.push(energy);
    }
    busy[device] = (busy[device] ?? 0) + seconds;
    return {
      op,
      device,
      seconds,
      flops: view.cost.flops,
      bytes: view.cost.bytes,
      ...(energy ? { joules: energy.joules } : {}),
    };
  });
  return {
    seconds: ops.reduce((s, o) => s + o.seconds, 0),
    busy,
    ops,
    ...(cm.opEnergy ? { energy: sumEnergies(energies) } : {}),
  };
}
