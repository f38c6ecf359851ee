/**
 * What an op costs on the AiM target, in seconds and joules (docs/aim.md, docs/energy.md):
 *
 * - a linear layer with a constant 16-bit weight on the units: a GEMV per row of activations, timed
 *   at command level on every device's channels (device.ts) and priced from the commands it issued
 *   (energy.ts, CENT's power model), plus its share of the CXL network between CENT's devices;
 * - attention over a KV cache in the banks: per (batch, kv head) and query row, a GEMV of the scores
 *   (K [T, D] as the weight) and one of the context (V^T [Dv, T]), each over every channel; the
 *   softmax on the host; the new tokens' K and V written into the banks over the pins;
 * - the host: its roofline's time; its bytes as bursts through the channels' pins and its
 *   multiply-adds at AttAcc's ALU energy (the host's own memory, where a system gives it one, priced
 *   as the channels' bursts: no source prices it; the CPU's static power is not modelled).
 *
 * Every channel not running a kernel waits in precharge standby meanwhile: the call's background.
 */
import type { Energy } from "../index.js";
import { dimEval } from "../../src/ir/dim.js";
import { weightGemm } from "../../src/ir/registry.js";
import type { OpView } from "../../src/pipeline/cost-model.js";
import { MAC_ENERGY } from "../../src/pipeline/energy.js";
import { scaleEnergy, sumEnergies } from "../../src/report/energy.js";
import { hostRoofline } from "../cpu/index.js";
import { runChannel } from "./device.js";
import { aimEnergy, CENT_POWER, pinEnergy, standbyEnergy } from "./energy.js";
import { expand, gemvFits, gemvPlan } from "./kernels.js";
import { cxlSeconds, poolOf, type AimSystem } from "./standard.js";

export interface AimCost {
  readonly seconds: number;
  readonly energy: Energy;
}

const plus = (...cs: readonly AimCost[]): AimCost => ({
  seconds: cs.reduce((s, c) => s + c.seconds, 0),
  energy: sumEnergies(cs.map((c) => c.energy)),
});

const times = (c: AimCost, n: number): AimCost => ({
  seconds: c.seconds * n,
  energy: scaleEnergy(c.energy, n),
});

/** Costs of one system, GEMVs memoized by shape (a model's layers repeat a few shapes). */
export class AimCosts {
  private readonly gemvs = new Map<string, AimCost | undefined>();
  private readonly pool: AimSystem;

  constructor(readonly sys: AimSystem) {
    this.pool = poolOf(sys);
  }

  /** Work on the host: its roofline's time, its bytes through the pins, its multiply-adds; the channels wait. */
  host(flops: number, bytes: number): AimCost {
    const seconds = hostRoofline(this.sys.host, flops, bytes);
    const bursts = Math.ceil(bytes / this.sys.burst_bytes);
    const alu = (MAC_ENERGY * flops) / 2;
    const energy = sumEnergies([
      pinEnergy(this.sys, bursts, 0),
      standbyEnergy(this.pool, seconds),
      { joules: alu, breakdown: { host: alu } },
    ]);
    return { seconds, energy };
  }

  /** One GEMV of W [n, k] on every device's channels; undefined when W does not fit. */
  gemv(n: number, k: number): AimCost | undefined {
    const key = `${n} ${k}`;
    if (!this.gemvs.has(key)) {
      const pool = this.pool;
      let cost: AimCost | undefined;
      if (gemvFits(pool, n, k)) {
        const plan = gemvPlan(pool, n, k);
        const run = runChannel(pool, expand(plan.instrs));
        cost = { seconds: run.cycles * pool.timing.tCK, energy: aimEnergy(pool, run, plan.channels) };
      }
      this.gemvs.set(key, cost);
    }
    return this.gemvs.get(key);
  }

  /**
   * Sharing a GEMV of W [n, k] over CENT's devices: the input broadcast to the others and their
   * outputs gathered (cxlSeconds), each value's 16 bits over a link at CENT's PCIe energy.
   */
  cxl(n: number, k: number): AimCost {
    const d = this.sys.devices;
    if (d === 1) return { seconds: 0, energy: { joules: 0, breakdown: {} } };
    const seconds = cxlSeconds(this.sys, n, k);
    const bits = 16 * (k * (d - 1) + Math.ceil(n / d) * (d - 1));
    const link = CENT_POWER.pciePerBit * bits;
    return {
      seconds,
      energy: sumEnergies([standbyEnergy(this.pool, seconds), { joules: link, breakdown: { cxl: link } }]),
    };
  }

  /** A linear layer with a constant weight on the units (undefined: not one, or its weight does not fit). */
  linear(v: OpView, env: Record<string, number>): AimCost | undefined {
    if (v.op.opcode !== "linear" || !weightGemm(v.op)) return undefined;
    const [n, k] = v.ins[1]!.shape.map((d) => dimEval(d, env)) as [number, number];
    const rows = v.ins[0]!.shape.reduce<number>((a, d) => a * dimEval(d, env), 1) / k;
    const one = this.gemv(n, k);
    if (one === undefined) return undefined;
    // A bias is added by the host.
    const bias = v.op.operands.length > 2 ? [this.host(rows * n, 12 * rows * n)] : [];
    return plus(times(plus(one, this.cxl(n, k)), rows), ...bias);
  }

  /** Attention with its KV cache in the banks (undefined: K or V^T does not fit). */
  attention(v: OpView, env: Record<string, number>): AimCost | undefined {
    const [b, h, s, d] = v.ins[0]!.shape.map((x) => dimEval(x, env)) as [number, number, number, number];
    const kvh = dimEval(v.ins[1]!.shape[1]!, env);
    const t = dimEval(v.ins[1]!.shape[2]!, env);
    const dv = dimEval(v.ins[2]!.shape[3]!, env);
    const scores = this.gemv(t, d);
    const context = this.gemv(dv, t);
    if (scores === undefined || context === undefined) return undefined;
    const rows = b * h * s;
    const perRow = plus(scores, context, this.cxl(t, d), this.cxl(dv, t));
    const softmax = this.host(5 * rows * t, 8 * rows * t);
    // The new tokens' K and V written over the pins, spread over every channel.
    const bursts = Math.ceil((b * kvh * s * (d + dv) * 2) / this.sys.burst_bytes);
    const t0 = this.sys.timing;
    const writeSeconds = Math.ceil(bursts / this.pool.channels) * t0.nBL * t0.tCK;
    const writes: AimCost = {
      seconds: writeSeconds,
      energy: sumEnergies([pinEnergy(this.sys, 0, bursts), standbyEnergy(this.pool, writeSeconds)]),
    };
    return plus(times(perRow, rows), softmax, writes);
  }
}
