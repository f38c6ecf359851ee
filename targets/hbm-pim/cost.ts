/**
 * The cost model of the HBM-PIM target for the partition pass: the host by its roofline (it reads the
 * same HBM), the PIM kernels by the device model itself (each distinct kernel timed once at DRAM
 * command level; their time does not depend on the data).
 */
import { hostRoofline } from "../cpu/index.js";
import { gpuOnChipEnergy } from "../xpu/energy.js";
import { xpuSeconds } from "../xpu/model.js";
import type { DimEnv } from "../../src/ir/dim.js";
import { dimEval } from "../../src/ir/dim.js";
import type { Cost } from "../../src/ir/registry.js";
import { hostAndPim, type CostModel, type OpView } from "../../src/pipeline/cost-model.js";
import type { SystemOptions } from "../index.js";
import { runPimKernel } from "./device.js";
import {
  eltwiseKernel,
  eltwiseLayout,
  gemvKernel,
  gemvLayout,
  type EltwiseOp,
  type PimKernel,
} from "./kernels.js";
import { hostEnergy, kernelEnergy, NO_ENERGY, plus, scaled, type Energy } from "./energy.js";
import { attnSystem, type HbmPimSystem } from "./standard.js";

/** Attention groups one kernel serves: the largest divisor of the pseudo-channels up to `groups`. */
export function groupsPerRound(sys: HbmPimSystem, groups: number): number {
  let best = 1;
  for (let x = 1; x <= Math.min(groups, sys.pseudo_channels); x++)
    if (sys.pseudo_channels % x === 0) best = x;
  return best;
}

export const PIM = "pim";
/** The attention stacks of a system with `attn_pim` (PAPI's Attn-PIM). */
export const ATTN_PIM = "attn_pim";

/**
 * Seconds of an op on the host: the xPU's device model when the system has one, else the host's
 * roofline max(flops / achieved peak, bytes / bandwidth) + overhead.
 */
export function hostSeconds(sys: HbmPimSystem, v: OpView, env: DimEnv): number {
  return sys.xpu ? xpuSeconds(sys.xpu, v, env) : hostRoofline(sys.host, v.cost.flops, v.cost.bytes);
}

/** An op view of `opcode` on f32 tensors of `shape` (host work the runner adds, e.g. attention's softmax). */
export function syntheticView(opcode: string, shape: readonly number[], cost: Cost): OpView {
  const t = { dtype: "f32" as const, shape: [...shape] };
  return { op: { opcode, operands: [], results: [], attrs: {} }, ins: [t], outs: [t], cost };
}

/** A kernel's (or an op's) seconds and energy on the device model. */
export interface KernelCost {
  readonly seconds: number;
  readonly energy: Energy;
}

const plusCost = (...cs: readonly KernelCost[]): KernelCost => ({
  seconds: cs.reduce((t, c) => t + c.seconds, 0),
  energy: plus(...cs.map((c) => c.energy)),
});
const timesCost = (c: KernelCost, n: number): KernelCost => ({
  seconds: n * c.seconds,
  energy: scaled(c.energy, n),
});
const NO_COST: KernelCost = { seconds: 0, energy: NO_ENERGY };

/** Seconds and energy of host work (the host's time model; its bytes through the HBM). */
export function hostCost(sys: HbmPimSystem, v: OpView, env: DimEnv): KernelCost {
  const seconds = hostSeconds(sys, v, env);
  const chip = sys.xpu?.kind === "gpu" ? gpuOnChipEnergy(sys.xpu, v, env) : undefined;
  return { seconds, energy: hostEnergy(sys, v.cost.flops, v.cost.bytes, seconds, chip) };
}

/**
 * Kernel costs by system, shared by equal systems (every compile validates its own copy of the
 * description: bench compiles once per batch size and reference).
 */
const memo = new WeakMap<HbmPimSystem, Map<string, unknown>>();
const byContent = new Map<string, Map<string, unknown>>();

function remember<T>(sys: HbmPimSystem, key: string, f: () => T): T {
  let m = memo.get(sys);
  if (!m) {
    const id = JSON.stringify(sys);
    if (byContent.size >= 64 && !byContent.has(id)) byContent.clear(); // bounded in a long-lived process
    m = byContent.get(id) ?? new Map<string, unknown>();
    byContent.set(id, m);
    memo.set(sys, m);
  }
  let v = m.get(key) as T | undefined;
  if (v === undefined) m.set(key, (v = f()));
  return v;
}

/** A kernel timed at DRAM-command level, and its energy from the commands it issued. */
function kernelCost(sys: HbmPimSystem, k: PimKernel): KernelCost {
  const r = runPimKernel(sys, k);
  return { seconds: r.seconds, energy: kernelEnergy(sys, r, k) };
}

/**
 * One GEMV kernel of an [n, k] FP16 weight, or `groups` of them side by side (input register writes
 * and result read-back included).
 */
export function gemvCost(sys: HbmPimSystem, n: number, k: number, groups = 1, vectors = 1): KernelCost {
  return remember(sys, `gemv ${n} ${k} ${groups} ${vectors}`, () => {
    const l = gemvLayout(sys, n, k, 0, groups);
    return kernelCost(sys, gemvKernel(sys, l, undefined, { readback: true, vectors }));
  });
}

export const gemvSeconds = (sys: HbmPimSystem, n: number, k: number, groups = 1, vectors = 1): number =>
  gemvCost(sys, n, k, groups, vectors).seconds;

/** `rows` GEMVs of one weight, in passes of as many rows as the units have input vectors. */
export function gemvRowsCost(sys: HbmPimSystem, rows: number, n: number, k: number, groups = 1): KernelCost {
  const v = sys.pim.vectors;
  const full = Math.floor(rows / v);
  const left = rows - full * v;
  return plusCost(
    full > 0 ? timesCost(gemvCost(sys, n, k, groups, v), full) : NO_COST,
    left > 0 ? gemvCost(sys, n, k, groups, left) : NO_COST,
  );
}

export const gemvRowsSeconds = (sys: HbmPimSystem, rows: number, n: number, k: number, groups = 1): number =>
  gemvRowsCost(sys, rows, n, k, groups).seconds;

/**
 * The K split of a linear layer [n, k]: s groups of pseudo-channels (s divides P), group g holding
 * the weights' columns [g x ceil(k / s), (g + 1) x ceil(k / s)) for every output and taking that
 * slice of the input; the host adds the s partial outputs. It lets outputs too few to fill the
 * units use them all. The s of least kernel time, each slice at least one input tile.
 */
export function linearSplit(sys: HbmPimSystem, n: number, k: number): number {
  if (sys.k_split === false) return 1;
  return remember(sys, `split ${n} ${k}`, () => {
    const tile = sys.pim.lanes * sys.pim.grf;
    let best = 1;
    let bestT = gemvSeconds(sys, n, k, 1);
    for (let s = 2; s <= sys.pseudo_channels && Math.ceil(k / s) >= tile; s++) {
      if (sys.pseudo_channels % s !== 0) continue;
      const t = gemvSeconds(sys, n, Math.ceil(k / s), s);
      if (t < bestT) [best, bestT] = [s, t];
    }
    return best;
  });
}

/** A linear layer over `rows` rows on the PIM units, K split as linearSplit says. */
export function linearCost(sys: HbmPimSystem, rows: number, n: number, k: number, env: DimEnv): KernelCost {
  const split = linearSplit(sys, n, k);
  const kernels = gemvRowsCost(sys, rows, n, Math.ceil(k / split), split);
  if (split === 1) return kernels;
  const adds = rows * n * (split - 1);
  return plusCost(
    kernels,
    hostCost(sys, syntheticView("add", [rows, n], { flops: adds, bytes: 8 * adds }), env),
  );
}

export const linearSeconds = (sys: HbmPimSystem, rows: number, n: number, k: number, env: DimEnv): number =>
  linearCost(sys, rows, n, k, env).seconds;

/** An element-wise kernel over n elements, the host writing the operands and reading the result. */
export function eltwiseCost(sys: HbmPimSystem, op: EltwiseOp, n: number): KernelCost {
  return remember(sys, `${op} ${n}`, () => {
    const zero = new Float32Array(sys.pim.lanes);
    return kernelCost(sys, eltwiseKernel(sys, op, eltwiseLayout(sys, n), { operand: () => zero }));
  });
}

export const eltwiseSeconds = (sys: HbmPimSystem, op: EltwiseOp, n: number): number =>
  eltwiseCost(sys, op, n).seconds;

const numel = (shape: readonly (number | object)[], env: Record<string, number>): number =>
  shape.reduce<number>((a, d) => a * dimEval(d as never, env), 1);

/**
 * Attention over a KV cache in the banks of `sys` (runner.ts): the new tokens' bursts written, a GEMV
 * kernel per round of (batch, kv head) groups and pass of query rows for the scores and again for
 * the context, the softmax on the host.
 */
export function attentionCost(sys: HbmPimSystem, v: OpView, env: DimEnv): KernelCost {
  const [b, h, s, d] = v.ins[0]!.shape.map((x) => dimEval(x, env)) as [number, number, number, number];
  const kvh = dimEval(v.ins[1]!.shape[1]!, env);
  const t = dimEval(v.ins[1]!.shape[2]!, env);
  const dv = dimEval(v.ins[2]!.shape[3]!, env);
  const rows = b * h * s;
  // The new tokens' K and V^T bursts, spread over the pseudo-channels, written like host data.
  const bursts = b * kvh * s * (Math.ceil(d / sys.pim.lanes) + dv);
  const writeSeconds = Math.ceil(bursts / sys.pseudo_channels) * sys.timing.tCCDL * sys.timing.tCK;
  const writes = {
    seconds: writeSeconds,
    energy: hostEnergy(sys, 0, bursts * 2 * sys.pim.lanes, writeSeconds),
  };
  const softmax = hostCost(
    sys,
    syntheticView("masked_softmax", [b, h, s, t], { flops: 5 * rows * t, bytes: 8 * rows * t }),
    env,
  );
  // Up to P (batch, kv head) groups per kernel (runner.ts).
  const per = groupsPerRound(sys, b * kvh);
  const rounds = Math.ceil((b * kvh) / per);
  const queries = (h / kvh) * s;
  const round = plusCost(gemvRowsCost(sys, queries, t, d, per), gemvRowsCost(sys, queries, dv, t, per));
  return plusCost(timesCost(round, rounds), softmax, writes);
}

export const attentionSeconds = (sys: HbmPimSystem, v: OpView, env: DimEnv): number =>
  attentionCost(sys, v, env).seconds;

/** The host (CPU or xPU) and the PIM units of the HBM (device "pim"). */
const DEVICES = hostAndPim("PIM units");

/**
 * An op's seconds and energy on `device` (the PIM units, the Attn-PIM stacks or the host), or
 * undefined where it cannot run there: what the cost model's opTime and timeCall's energy read.
 */
export function opCost(
  sys: HbmPimSystem,
  opts: SystemOptions,
  v: OpView,
  device: string,
  env: Record<string, number>,
): KernelCost | undefined {
  const op = v.op;
  if (device === ATTN_PIM) {
    const attn = attnSystem(sys);
    return attn && op.opcode === "attention" && opts.attention !== "host"
      ? attentionCost(attn, v, env)
      : undefined;
  }
  if (device !== PIM) return device === "host" ? hostCost(sys, v, env) : undefined;
  const role = op.opcode === "linear" ? "linear" : op.opcode === "attention" ? "attention" : "elementwise";
  if (!sys.pim.ops.includes(role)) return undefined;
  switch (op.opcode) {
    case "linear": {
      if (!op.operands[1]!.startsWith("@")) return undefined;
      const [n, k] = v.ins[1]!.shape.map((d) => dimEval(d, env)) as [number, number];
      const rows = numel(v.ins[0]!.shape, env) / k;
      return linearCost(sys, rows, n, k, env);
    }
    case "add":
    case "mul":
    case "relu": {
      const n = numel(v.outs[0]!.shape, env);
      if (v.ins.some((t) => numel(t.shape, env) !== n)) return undefined;
      return eltwiseCost(sys, op.opcode, n);
    }
    case "attention":
      return opts.attention === "host" ? undefined : attentionCost(sys, v, env);
    default:
      return undefined;
  }
}

export function hbmPimCostModel(sys: HbmPimSystem, opts: SystemOptions = {}): CostModel {
  const cooperation = opts.cooperation !== false;
  const attn = attnSystem(sys);
  return {
    devices: attn ? [...DEVICES, { name: ATTN_PIM, kind: "pim", label: "Attn-PIM" }] : DEVICES,
    home: "host",
    opTime(v, device, env) {
      if (device === PIM || device === ATTN_PIM) return opCost(sys, opts, v, device, env)?.seconds;
      if (device !== "host") return undefined;
      const attention = v.op.opcode === "attention";
      if (attention && opts.attention === "pim") return undefined;
      if (!cooperation && !attention && opCost(sys, opts, v, PIM, env) !== undefined) return undefined;
      return hostSeconds(sys, v, env);
    },
    // The host and the PIM units share the HBM: activations do not move.
    transferTime: () => 0,
  };
}
