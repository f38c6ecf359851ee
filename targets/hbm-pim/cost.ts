/**
 * The cost model of the HBM-PIM target for the partition pass: the host by its roofline (it reads the
 * same HBM), the PIM kernels by the device model itself (each distinct kernel timed once at DRAM
 * command level; their time does not depend on the data).
 */
import { hostRoofline } from "../cpu/index.js";
import { xpuSeconds } from "../xpu/model.js";
import type { DimEnv } from "../../src/ir/dim.js";
import { dimEval } from "../../src/ir/dim.js";
import type { Cost } from "../../src/ir/registry.js";
import { hostAndPim, type CostModel, type OpView } from "../../src/pipeline/cost-model.js";
import type { SystemOptions } from "../index.js";
import { runPimKernel } from "./device.js";
import { eltwiseKernel, eltwiseLayout, gemvKernel, gemvLayout, type EltwiseOp } from "./kernels.js";
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

/**
 * Kernel times by system, shared by equal systems (every compile validates its own copy of the
 * description: bench compiles once per batch size and reference).
 */
const memo = new WeakMap<HbmPimSystem, Map<string, number>>();
const byContent = new Map<string, Map<string, number>>();

function remember(sys: HbmPimSystem, key: string, f: () => number): number {
  let m = memo.get(sys);
  if (!m) {
    const id = JSON.stringify(sys);
    if (byContent.size >= 64 && !byContent.has(id)) byContent.clear(); // bounded in a long-lived process
    m = byContent.get(id) ?? new Map<string, number>();
    byContent.set(id, m);
    memo.set(sys, m);
  }
  let v = m.get(key);
  if (v === undefined) m.set(key, (v = f()));
  return v;
}

/**
 * Seconds of one GEMV kernel of an [n, k] FP16 weight, or of `groups` of them side by side (input
 * register writes and result read-back included).
 */
export function gemvSeconds(sys: HbmPimSystem, n: number, k: number, groups = 1, vectors = 1): number {
  return remember(sys, `gemv ${n} ${k} ${groups} ${vectors}`, () => {
    const l = gemvLayout(sys, n, k, 0, groups);
    return runPimKernel(sys, gemvKernel(sys, l, undefined, { readback: true, vectors })).seconds;
  });
}

/** Seconds of `rows` GEMVs of one weight, in passes of as many rows as the units have input vectors. */
export function gemvRowsSeconds(sys: HbmPimSystem, rows: number, n: number, k: number, groups = 1): number {
  const v = sys.pim.vectors;
  const full = Math.floor(rows / v);
  const left = rows - full * v;
  return (
    (full > 0 ? full * gemvSeconds(sys, n, k, groups, v) : 0) +
    (left > 0 ? gemvSeconds(sys, n, k, groups, left) : 0)
  );
}

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

/** Seconds of a linear layer over `rows` rows on the PIM units, K split as linearSplit says. */
export function linearSeconds(sys: HbmPimSystem, rows: number, n: number, k: number, env: DimEnv): number {
  const split = linearSplit(sys, n, k);
  const kernels = gemvRowsSeconds(sys, rows, n, Math.ceil(k / split), split);
  if (split === 1) return kernels;
  const adds = rows * n * (split - 1);
  return kernels + hostSeconds(sys, syntheticView("add", [rows, n], { flops: adds, bytes: 8 * adds }), env);
}

/** Seconds of an element-wise kernel over n elements, the host writing the operands and reading the result. */
export function eltwiseSeconds(sys: HbmPimSystem, op: EltwiseOp, n: number): number {
  return remember(sys, `${op} ${n}`, () => {
    const zero = new Float32Array(sys.pim.lanes);
    const k = eltwiseKernel(sys, op, eltwiseLayout(sys, n), { operand: () => zero });
    return runPimKernel(sys, k).seconds;
  });
}

const numel = (shape: readonly (number | object)[], env: Record<string, number>): number =>
  shape.reduce<number>((a, d) => a * dimEval(d as never, env), 1);

/**
 * Seconds of attention over a KV cache in the banks of `sys` (runner.ts): the new tokens' bursts
 * written, a GEMV kernel per round of (batch, kv head) groups and pass of query rows for the scores
 * and again for the context, the softmax on the host.
 */
export function attentionSeconds(sys: HbmPimSystem, v: OpView, env: DimEnv): number {
  const [b, h, s, d] = v.ins[0]!.shape.map((x) => dimEval(x, env)) as [number, number, number, number];
  const kvh = dimEval(v.ins[1]!.shape[1]!, env);
  const t = dimEval(v.ins[1]!.shape[2]!, env);
  const dv = dimEval(v.ins[2]!.shape[3]!, env);
  const rows = b * h * s;
  // The new tokens' K and V^T bursts, spread over the pseudo-channels.
  const bursts = b * kvh * s * (Math.ceil(d / sys.pim.lanes) + dv);
  const writes = Math.ceil(bursts / sys.pseudo_channels) * sys.timing.tCCDL * sys.timing.tCK;
  const softmax = hostSeconds(
    sys,
    syntheticView("masked_softmax", [b, h, s, t], { flops: 5 * rows * t, bytes: 8 * rows * t }),
    env,
  );
  // Up to P (batch, kv head) groups per kernel (runner.ts).
  const per = groupsPerRound(sys, b * kvh);
  const rounds = Math.ceil((b * kvh) / per);
  const queries = (h / kvh) * s;
  return (
    rounds * (gemvRowsSeconds(sys, queries, t, d, per) + gemvRowsSeconds(sys, queries, dv, t, per)) +
    softmax +
    writes
  );
}

/** The host (CPU or xPU) and the PIM units of the HBM (device "pim"). */
const DEVICES = hostAndPim("PIM units");

export function hbmPimCostModel(sys: HbmPimSystem, opts: SystemOptions = {}): CostModel {
  const cooperation = opts.cooperation !== false;
  const roles = new Set(sys.pim.ops);
  const pimTime = (v: OpView, env: Record<string, number>): number | undefined => {
    const op = v.op;
    const role = op.opcode === "linear" ? "linear" : op.opcode === "attention" ? "attention" : "elementwise";
    if (!roles.has(role)) return undefined;
    switch (op.opcode) {
      case "linear": {
        if (!op.operands[1]!.startsWith("@")) return undefined;
        const [n, k] = v.ins[1]!.shape.map((d) => dimEval(d, env)) as [number, number];
        const rows = numel(v.ins[0]!.shape, env) / k;
        return linearSeconds(sys, rows, n, k, env);
      }
      case "add":
      case "mul":
      case "relu": {
        const n = numel(v.outs[0]!.shape, env);
        if (v.ins.some((t) => numel(t.shape, env) !== n)) return undefined;
        return eltwiseSeconds(sys, op.opcode, n);
      }
      case "attention":
        return opts.attention === "host" ? undefined : attentionSeconds(sys, v, env);
      default:
        return undefined;
    }
  };
  const attn = attnSystem(sys);
  return {
    devices: attn ? [...DEVICES, { name: ATTN_PIM, kind: "pim", label: "Attn-PIM" }] : DEVICES,
    home: "host",
    opTime(v, device, env) {
      if (device === PIM) return pimTime(v, env);
      if (device === ATTN_PIM)
        return attn && v.op.opcode === "attention" && opts.attention !== "host"
          ? attentionSeconds(attn, v, env)
          : undefined;
      if (device !== "host") return undefined;
      const attention = v.op.opcode === "attention";
      if (attention && opts.attention === "pim") return undefined;
      if (!cooperation && !attention && pimTime(v, env) !== undefined) return undefined;
      return hostSeconds(sys, v, env);
    },
    // The host and the PIM units share the HBM: activations do not move.
    transferTime: () => 0,
  };
}
