/**
 * What an op costs on the AiM target, in seconds and joules (docs/aim.md, docs/energy.md):
 *
 * - a linear layer with a constant 16-bit weight on the units: a GEMV per row of activations, timed
 *   at command level on every device's channels (device.ts) and priced from the commands it issued
 *   (energy.ts, CENT's power model), plus its share of the CXL network between CENT's devices;
 * - attention over a KV cache in the banks: per (batch, head) and query row, a GEMV of the scores
 *   (K [T, D] as the weight) and one of the context (V^T [Dv, T]) on one device's channels, CENT's
 *   devices each taking their share of the heads (exchanged with them once per layer); the softmax
 *   on the host; the new tokens' K and V written into the banks over the pins;
 * - the host (CENT's near-memory units for RMSNorm, RoPE and softmax where the system gives `pnm`:
 *   CENT's latencies, standard.ts pnmCycles): its roofline's time; its bytes as bursts through the channels' pins and its
 *   multiply-adds at AttAcc's ALU energy (the host's own memory, where a system gives it one, priced
 *   as the channels' bursts: no source prices it; the CPU's static power is not modelled).
 *
 * Every channel not running a kernel waits in precharge standby meanwhile: the call's background.
 *
 * Under CENT's pipeline mapping (`pipeline`), a block's GEMVs and attention run on its own channels
 * of one device (no CXL per GEMV: CENT's one hop of the hidden vector per block, 0.1 % of its token
 * time, is left out), and the host's work takes `blocks_per_device` times as long: the device's
 * near-memory units are shared by its blocks, as CENT's run_sim.py charges them.
 */
import type { Energy } from "../index.js";
import { dimEval } from "../../src/ir/dim.js";
import { weightGemm } from "../../src/ir/registry.js";
import type { OpView } from "../../src/pipeline/cost-model.js";
import { MAC_ENERGY } from "../../src/pipeline/energy.js";
import { scaleEnergy, sumEnergies } from "../../src/report/energy.js";
import { hostRoofline } from "../cpu/index.js";
import { runChannel } from "./device.js";
import { aimEnergy, CENT_POWER, pinEnergy, standbyEnergy, traceEnergy } from "./energy.js";
import { expand, gemvFits, gemvPlan } from "./kernels.js";
import { banksOf, cxlSeconds, pnmCycles, poolOf, type AimSystem } from "./standard.js";
import { runAimTrace, type TraceStep } from "./trace.js";
import {
  kvAppendProgram,
  rmsNormProgram,
  ropeProgram,
  softmaxFits,
  softmaxProgram,
  swigluProgram,
  vectorFits,
  type VectorBlock,
} from "./vectors.js";

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

/** The ops CENT's mapping runs on the units (vectors.ts). */
const ELEMENTWISE: ReadonlySet<string> = new Set(["rms_norm", "rope", "silu", "mul"]);

/** Costs of one system, GEMVs memoized by channels and shape (a model's layers repeat a few shapes). */
export class AimCosts {
  private readonly gemvs = new Map<string, AimCost | undefined>();
  /** Every channel of the system. */
  readonly pool: AimSystem;
  /** The channels a linear layer's GEMV runs on: every device's, or a pipeline block's. */
  readonly units: AimSystem;
  /** The channels an attention head's GEMVs run on, and how many run at once (heads dealt to devices). */
  readonly heads: { readonly units: AimSystem; readonly copies: number };
  /** How many blocks share the host's work (the pipeline's blocks per device; 1 otherwise). */
  private readonly hostShare: number;
  /**
   * Where CENT's element-wise programs run (vectors.ts): a block's channels and the blocks sharing
   * its device (the pipeline's), or a whole device, and how many devices run one at once (tensor
   * parallel: each device on the whole vector, as CENT's traces do).
   */
  readonly vectors: { readonly block: VectorBlock; readonly devices: number };
  private readonly programs = new Map<string, AimCost>();

  constructor(readonly sys: AimSystem) {
    this.pool = poolOf(sys);
    const p = sys.pipeline;
    this.units = p ? { ...this.pool, channels: Math.floor(sys.channels / p.blocks_per_device) } : this.pool;
    this.heads = p
      ? { units: this.units, copies: 1 }
      : { units: { ...this.pool, channels: sys.channels }, copies: sys.devices };
    this.hostShare = p?.blocks_per_device ?? 1;
    const device: AimSystem = { ...sys, devices: 1 };
    this.vectors = p
      ? { block: { sys: device, channels: this.units.channels, copies: p.blocks_per_device }, devices: 1 }
      : { block: { sys: device, channels: sys.channels, copies: 1 }, devices: sys.devices };
  }

  /** The system's channels but `busy` of them wait in standby for `seconds`. */
  private idle(busy: number, seconds: number): Energy {
    return standbyEnergy({ ...this.pool, channels: this.pool.channels - busy }, seconds);
  }

  /**
   * Work on the host: `seconds` (default: its roofline's time), its bytes through the pins, its
   * multiply-adds; the channels wait.
   */
  host(flops: number, bytes: number, seconds0?: number): AimCost {
    const seconds = (seconds0 ?? hostRoofline(this.sys.host, flops, bytes)) * this.hostShare;
    const bursts = Math.ceil(bytes / this.sys.burst_bytes);
    const alu = (MAC_ENERGY * flops) / 2;
    const energy = sumEnergies([
      pinEnergy(this.sys, bursts, 0),
      this.idle(0, seconds),
      { joules: alu, breakdown: { host: alu } },
    ]);
    return { seconds, energy };
  }

  /** An op the units do not run: on CENT's near-memory units (RMSNorm, RoPE) where given, else the host's roofline. */
  other(v: OpView, env: Record<string, number>): AimCost {
    return this.host(v.cost.flops, v.cost.bytes, this.pnmSeconds(v, env));
  }

  /** Seconds of CENT's near-memory units for an RMSNorm or a RoPE (undefined: no `pnm`, another op). */
  private pnmSeconds(v: OpView, env: Record<string, number>): number | undefined {
    const pnm = this.sys.pnm;
    if (!pnm || (v.op.opcode !== "rms_norm" && v.op.opcode !== "rope")) return undefined;
    const c = pnmCycles(pnm, this.sys.channels);
    const numel = v.ins[0]!.shape.reduce<number>((a, d) => a * dimEval(d, env), 1);
    if (v.op.opcode === "rms_norm") {
      const d = dimEval(v.ins[0]!.shape.at(-1)!, env);
      return ((numel / d) * c.rmsNorm(d)) / pnm.frequency;
    }
    if (v.op.opcode === "rope") return c.rope(numel) / pnm.frequency;
    return undefined;
  }

  /**
   * A program of CENT's element-wise instructions (vectors.ts) on every device running it, memoized
   * by `key`: the device's time, its commands' energy (a block's share of the device's, the blocks
   * sharing it sending theirs too) and the other channels' standby.
   */
  program(key: string, make: (b: VectorBlock) => TraceStep[]): AimCost {
    let cost = this.programs.get(key);
    if (!cost) {
      const { block, devices } = this.vectors;
      const run = runAimTrace(block.sys, make(block));
      const seconds = run.cycles * block.sys.timing.tCK;
      cost = {
        seconds,
        energy: sumEnergies([
          scaleEnergy(traceEnergy(block.sys, run), devices / block.copies),
          this.idle(devices * block.sys.channels, seconds),
        ]),
      };
      this.programs.set(key, cost);
    }
    return cost;
  }

  /**
   * An element-wise op as CENT runs it on the units (`elementwise = "units"`): RMSNorm, RoPE, SiLU
   * and a product of two vectors of one shape (the gate's: SiLU's result already in the banks, the
   * other written), a program per row of values (vectors.ts), RMSNorm's and RoPE's scalar work on the
   * near-memory units; undefined for other ops and for rows longer than the programs' layout holds.
   */
  elementwise(v: OpView, env: Record<string, number>): AimCost | undefined {
    if (this.sys.elementwise !== "units" || !ELEMENTWISE.has(v.op.opcode)) return undefined;
    const op = v.op.opcode;
    const shape = v.ins[0]!.shape.map((d) => dimEval(d, env));
    // A row's values: a token's heads for RoPE ([B, S, H, D]), else the last dimension; RoPE's
    // programs hold its rotation beside it. Each must fit a row of each bank.
    const n = op === "rope" ? shape.slice(2).reduce((a, d) => a * d, 1) : shape.at(-1)!;
    if (!vectorFits(this.vectors.block, op === "rope" ? 2 * n : n)) return undefined;
    const rows = shape.reduce((a, d) => a * d, 1) / n;
    const each = (key: string, make: (b: VectorBlock) => TraceStep[]): AimCost =>
      times(this.program(`${op} ${key}`, make), rows);
    const scalar = (): AimCost => this.host(0, 0, this.pnmSeconds(v, env));
    switch (op) {
      case "rms_norm":
        return plus(
          each(`${n}`, (b) => rmsNormProgram(b, n)),
          scalar(),
        );
      case "rope":
        return plus(
          each(`${n}`, (b) => ropeProgram(b, n)),
          scalar(),
        );
      case "silu": {
        // The gate's GEMV holds n outputs over the linear layers' channels: an AF per output a bank holds.
        const af = Math.ceil(n / (this.units.channels * banksOf(this.units)));
        return each(`${n} ${af}`, (b) => swigluProgram(b, n, "silu", af));
      }
      case "mul": {
        const other = v.ins[1]!.shape.map((d) => dimEval(d, env));
        if (other.length !== shape.length || other.some((d, i) => d !== shape[i])) return undefined;
        return each(`${n}`, (b) => swigluProgram(b, n, "mul"));
      }
      default:
        return undefined;
    }
  }

  /**
   * One GEMV of W [n, k] on the channels of `units` (their energy only, standby of those without
   * data included); undefined when W does not fit.
   */
  gemv(n: number, k: number, units: AimSystem = this.units): AimCost | undefined {
    const key = `${units.channels} ${n} ${k}`;
    if (!this.gemvs.has(key)) {
      let cost: AimCost | undefined;
      if (gemvFits(units, n, k)) {
        const plan = gemvPlan(units, n, k);
        const run = runChannel(units, expand(plan.instrs, banksOf(units)));
        cost = { seconds: run.cycles * units.timing.tCK, energy: aimEnergy(units, run, plan.channels) };
      }
      this.gemvs.set(key, cost);
    }
    return this.gemvs.get(key);
  }

  /**
   * Sharing a GEMV of W [n, k] over CENT's devices: the input broadcast to the others and their
   * outputs gathered (cxlSeconds), each value's 16 bits over a link at CENT's PCIe energy; every
   * channel waits meanwhile. Nothing on one device or in a pipeline.
   */
  cxl(n: number, k: number): AimCost {
    const d = this.sys.devices;
    if (d === 1 || this.sys.pipeline) return { seconds: 0, energy: { joules: 0, breakdown: {} } };
    const seconds = cxlSeconds(this.sys, n, k);
    const bits = 16 * (k * (d - 1) + Math.ceil(n / d) * (d - 1));
    const link = CENT_POWER.pciePerBit * bits;
    return {
      seconds,
      energy: sumEnergies([this.idle(0, seconds), { joules: link, breakdown: { cxl: link } }]),
    };
  }

  /** A linear layer with a constant weight on the units (undefined: not one, or its weight does not fit). */
  linear(v: OpView, env: Record<string, number>): AimCost | undefined {
    if (v.op.opcode !== "linear" || !weightGemm(v.op)) return undefined;
    const [n, k] = v.ins[1]!.shape.map((d) => dimEval(d, env)) as [number, number];
    const rows = v.ins[0]!.shape.reduce<number>((a, d) => a * dimEval(d, env), 1) / k;
    const one = this.gemv(n, k);
    if (one === undefined) return undefined;
    const kernels = times(one, rows);
    const busy: AimCost = {
      seconds: kernels.seconds,
      energy: sumEnergies([kernels.energy, this.idle(this.units.channels, kernels.seconds)]),
    };
    // A bias is added by the host.
    const bias = v.op.operands.length > 2 ? [this.host(rows * n, 12 * rows * n)] : [];
    return plus(busy, times(this.cxl(n, k), rows), ...bias);
  }

  /**
   * Attention with its KV cache in the banks (undefined: K or V^T does not fit): per (batch, head)
   * and query row, a GEMV of the scores and one of the context on a head's channels (a device's,
   * the heads dealt to the devices and exchanged with them once; a pipeline block's), the softmax on
   * the host, the new tokens' K and V written over the pins.
   */
  attention(v: OpView, env: Record<string, number>): AimCost | undefined {
    const [b, h, s, d] = v.ins[0]!.shape.map((x) => dimEval(x, env)) as [number, number, number, number];
    const kvh = dimEval(v.ins[1]!.shape[1]!, env);
    const t = dimEval(v.ins[1]!.shape[2]!, env);
    const dv = dimEval(v.ins[2]!.shape[3]!, env);
    const { units, copies } = this.heads;
    const scores = this.gemv(t, d, units);
    const context = this.gemv(dv, t, units);
    if (scores === undefined || context === undefined) return undefined;
    const rows = b * h * s;
    const perRow = plus(scores, context);
    const seconds = Math.ceil(rows / copies) * perRow.seconds;
    const kernels: AimCost = {
      seconds,
      energy: sumEnergies([
        scaleEnergy(perRow.energy, rows),
        this.idle(Math.min(rows, copies) * units.channels, seconds),
      ]),
    };
    const exchange =
      copies > 1 ? this.cxl(rows * dv, rows * d) : { seconds: 0, energy: { joules: 0, breakdown: {} } };
    const pnm = this.sys.pnm;
    const pnmSoftmax = pnm && (rows * pnmCycles(pnm, this.sys.channels).softmax(t)) / pnm.frequency;
    if (this.sys.elementwise === "units") {
      // CENT's mapping: the scores scaled and normalised on the units (a program per query row over
      // a device's heads: every head of a pipeline block, a device's share in tensor parallel),
      // the exponentials and sums on the near-memory units; the new token's K and V appended.
      const heads = Math.ceil(h / this.vectors.devices);
      const kvDim = Math.ceil(kvh / this.vectors.devices) * d;
      if (!softmaxFits(this.vectors.block, heads, t)) return undefined;
      const scaling = times(
        this.program(`softmax ${heads} ${t}`, (bl) => softmaxProgram(bl, heads, t)),
        b * s,
      );
      const append = times(
        this.program(`kv ${kvDim} ${t}`, (bl) => kvAppendProgram(bl, kvDim, t - 1)),
        b * s,
      );
      return plus(kernels, exchange, scaling, this.host(0, 0, pnmSoftmax), append);
    }
    const softmax = this.host(5 * rows * t, 8 * rows * t, pnmSoftmax);
    // The new tokens' K and V written over the pins, spread over the heads' channels.
    const bursts = Math.ceil((b * kvh * s * (d + dv) * 2) / this.sys.burst_bytes);
    const t0 = this.sys.timing;
    const writeSeconds = Math.ceil(bursts / (copies * units.channels)) * t0.nBL * t0.tCK;
    const writes: AimCost = {
      seconds: writeSeconds,
      energy: sumEnergies([pinEnergy(this.sys, 0, bursts), this.idle(0, writeSeconds)]),
    };
    return plus(kernels, exchange, softmax, writes);
  }
}
