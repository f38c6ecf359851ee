/**
 * Executes a partitioned model on the HBM-PIM device model: ops placed on `pim` run as kernels on the
 * emulated pseudo-channels (DRAM commands stepping the PIM units, FP16), the others on the host (the
 * fp32 reference interpreter), with every call's time from the command-level timing and the host
 * roofline.
 *
 * - `linear` with a constant weight: one GEMV kernel per activation row (weights resident in the banks
 *   in the GEMV layout, stored once in FP16; the input goes to GRF_A; the host reads the 16 lane partial
 *   sums and adds them and the bias).
 * - `add`, `mul` (operands of one shape) and `relu`: the element-wise kernel, the host writing the
 *   operands into the banks before it and reading the result after it.
 * - `attention`: per batch and kv head, the KV cache lives in the banks as GEMV weights: K as [T, D]
 *   (one output per token) and V^T as [D, T]; each call writes the new tokens' bursts, then per query
 *   row a GEMV gives the scores, the host's masked softmax the probabilities, and a GEMV over the
 *   first T tokens the context.
 */
import { f16round as f16 } from "@petamoriken/float16";
import { UserError } from "../../src/errors.js";
import { evalOp, Interpreter } from "../../src/exec/interpreter.js";
import type { DimEnv } from "../../src/ir/dim.js";
import { refName, type Func, type Module, type Op } from "../../src/ir/module.js";
import { getOp, weightGemm } from "../../src/ir/registry.js";
import type { Tensor } from "../../src/ir/tensor.js";
import { f32 } from "../../src/ir/tensor.js";
import type { TensorType } from "../../src/ir/types.js";
import type { WeightStore } from "../../src/ir/weights.js";
import type { FunctionalRunner } from "../index.js";
import { deviceFor } from "../../src/ir/placement.js";
import { runChannel, WR, type Request } from "./controller.js";
import {
  gemvBurst,
  readEltwise,
  readGemvResult,
  replay,
  runPimKernel,
  storeGemvWeights,
  type KernelResult,
} from "./device.js";
import {
  eltwiseKernel,
  eltwiseLayout,
  gemvKernel,
  gemvLayout,
  type EltwiseLayout,
  type EltwiseOp,
  type GemvLayout,
  type PimKernel,
} from "./kernels.js";
import { PimChannel } from "./pim.js";
import { ATTN_PIM, groupsPerRound, hostSeconds, linearSplit, PIM, syntheticView } from "./cost.js";
import { attnSystem, reservedRows, type HbmPimSystem } from "./standard.js";

export interface Limits {
  readonly B: number;
  readonly S: number;
  readonly T: number;
}

/** Where one call's time went. */
export interface CallReport {
  readonly func: string;
  env: DimEnv;
  /** Seconds on the host, in PIM kernels (their register and host data writes and read-backs included), and writing the KV cache into the banks. */
  host: number;
  pim: number;
  cache: number;
  kernels: number;
  commands: number;
}

/** A kernel whose request stream is fixed (only its data changes): timed once, replayed after. */
class Resident {
  private timing: KernelResult | undefined;
  constructor(
    private readonly sys: HbmPimSystem,
    private readonly devs: readonly PimChannel[],
    readonly kernel: PimKernel,
    /** Time every pseudo-channel's controller at every run (nothing replayed). */
    private readonly detailed = false,
  ) {}
  run(): KernelResult {
    if (this.detailed) return runPimKernel(this.sys, this.kernel, { channels: this.devs, detailed: true });
    if (!this.timing) {
      this.timing = runPimKernel(this.sys, this.kernel, { channels: this.devs });
      return this.timing;
    }
    for (const ch of this.kernel.active) {
      const d = this.devs[ch]!;
      d.payload = (req) => this.kernel.payload(ch, req);
      replay(d, this.timing.log);
    }
    return this.timing;
  }
}

/** A GEMV (or `groups` side by side) with resident weights; `xs` are the current input vectors. */
interface Gemv {
  readonly layout: GemvLayout;
  readonly xs: Float32Array[];
  /** The kernel per number of input tiles used (attention's context runs over the first T tokens). */
  readonly kernels: Map<number, Resident>;
}

/**
 * One round of a layer's KV cache: up to `groups` (batch, kv head) pairs, each in its own
 * pseudo-channels, K as [T, D] and V^T as [D, T] GEMV weights.
 */
interface CacheRound {
  readonly k: Gemv;
  readonly vt: Gemv;
}

interface LayerCache {
  readonly rounds: CacheRound[];
  /** Groups per round (a divisor of the pseudo-channels). */
  readonly perRound: number;
  /** Tokens already written into the banks. */
  stored: number;
}

const sumCommands = (r: KernelResult): number => Object.values(r.counts).reduce((a, b) => a + b, 0);

/** One set of PIM stacks as the runner uses them: its pseudo-channels, rows and resident data. */
class PimMemory {
  readonly devs: PimChannel[];
  nextRow = 0;
  readonly gemvs = new Map<string, Gemv>();
  readonly caches = new Map<string, LayerCache>();
  readonly reserved: Set<number>;
  constructor(readonly sys: HbmPimSystem) {
    this.devs = Array.from({ length: sys.pseudo_channels }, () => new PimChannel(sys));
    this.reserved = new Set(reservedRows(sys));
  }
}

export class HbmPimRunner implements FunctionalRunner {
  readonly reports: CallReport[] = [];
  private readonly interp: Interpreter;
  /** The stacks in use: the main ones, or the attention stacks (PAPI's Attn-PIM) while attention runs there. */
  private m: PimMemory;
  private readonly main: PimMemory;
  private readonly attnMem: PimMemory | undefined;
  private readonly eltwise = new Map<
    string,
    { layout: EltwiseLayout; cur: Float32Array[]; kernel: Resident }
  >();
  /** The KV-cache state each PIM attention op reads ("func/idx" -> state). */
  private readonly cacheOf = new Map<string, string>();
  private report: CallReport | undefined;

  constructor(
    readonly module: Module,
    weights: WeightStore,
    readonly sys: HbmPimSystem,
    readonly limits: Limits,
    /** Detailed mode: every kernel's controllers timed on every pseudo-channel at every run. */
    private readonly detailed = false,
  ) {
    this.main = new PimMemory(sys);
    const attn = attnSystem(sys);
    this.attnMem = attn ? new PimMemory(attn) : undefined;
    this.m = this.main;
    for (const f of module.funcs) this.findCaches(f);
    this.interp = new Interpreter(module, weights, (op, ins, env, func, idx) =>
      this.hook(op, ins, env, func, idx),
    );
  }

  /** The main stacks' functional pseudo-channels. */
  get devs(): readonly PimChannel[] {
    return this.main.devs;
  }

  reset(): void {
    this.interp.reset();
    for (const mem of [this.main, this.attnMem]) for (const c of mem?.caches.values() ?? []) c.stored = 0;
    this.reports.length = 0;
  }

  run(func: string, inputs: readonly Tensor[]): Tensor[] {
    const r: CallReport = { func, env: {}, host: 0, pim: 0, cache: 0, kernels: 0, commands: 0 };
    this.report = r;
    try {
      return this.interp.run(func, inputs);
    } finally {
      this.reports.push(r);
      this.report = undefined;
    }
  }

  /** Seconds of the last call. */
  get lastSeconds(): number {
    const r = this.reports[this.reports.length - 1];
    return r ? r.host + r.pim + r.cache : 0;
  }

  private findCaches(f: Func): void {
    const def = new Map<string, Op>();
    for (const op of f.body) for (const r of op.results) def.set(r.name, op);
    const source = (ref: string): string | undefined => {
      let cur = ref;
      for (;;) {
        if (cur.startsWith("@")) return refName(cur);
        const op = def.get(refName(cur));
        if (!op) return undefined;
        if (op.opcode === "kv_append") return refName(op.operands[0]!);
        if (op.opcode !== "transfer") return undefined;
        cur = op.operands[0]!;
      }
    };
    f.body.forEach((op, idx) => {
      const onPim = [op.attrs.device, op.attrs.alt_device].some((d) => d === PIM || d === ATTN_PIM);
      if (op.opcode !== "attention" || !onPim) return;
      const s = source(op.operands[1]!);
      if (s) this.cacheOf.set(`${f.name}/${idx}`, s);
    });
  }

  /** Rows [start, start + n) of every bank, clear of the reserved rows, start even. */
  private alloc(n: number): number {
    let start = this.m.nextRow + (this.m.nextRow % 2);
    for (;;) {
      let clash = -1;
      for (const r of this.m.reserved) if (r >= start && r < start + n) clash = Math.max(clash, r);
      if (clash < 0) break;
      start = clash + 1 + ((clash + 1) % 2);
    }
    if (start + n > this.m.sys.rows)
      throw new UserError(
        `hbm-pim: the model's weights and KV cache need more than the ${this.m.sys.rows} rows of each bank (${this.m.sys.pseudo_channels} pseudo-channels)`,
      );
    this.m.nextRow = start + n;
    return start;
  }

  private gemv(key: string, n: number, k: number, w?: Float32Array, groups = 1): Gemv {
    let g = this.m.gemvs.get(key);
    if (!g) {
      const size = gemvLayout(this.m.sys, n, k, 0, groups);
      const layout = gemvLayout(this.m.sys, n, k, this.alloc(size.rows), groups);
      if (w) storeGemvWeights(this.m.sys, this.m.devs, layout, w);
      const xs = Array.from({ length: groups * this.m.sys.pim.vectors }, () => new Float32Array(k));
      g = { layout, xs, kernels: new Map() };
      this.m.gemvs.set(key, g);
    }
    return g;
  }

  /**
   * Runs the GEMV: every group on its first `used` input vectors (xs[group x vectors + k]), over the
   * first `inputs` inputs.
   */
  private runGemv(g: Gemv, inputs = g.layout.k, used = 1): void {
    const tiles = Math.ceil(inputs / (this.m.sys.pim.lanes * this.m.sys.pim.grf));
    const key = tiles * 64 + used;
    let r = g.kernels.get(key);
    if (!r) {
      const l = { ...g.layout, k: inputs, inTiles: tiles };
      const per = l.channelsPerGroup;
      const v = this.m.sys.pim.vectors;
      r = new Resident(
        this.m.sys,
        this.m.devs,
        gemvKernel(this.m.sys, l, (ch, k) => g.xs[Math.floor(ch / per) * v + k]!, {
          readback: true,
          vectors: used,
        }),
        this.detailed,
      );
      g.kernels.set(key, r);
    }
    this.account(r.run());
  }

  private account(t: KernelResult): void {
    const rep = this.report!;
    rep.pim += t.seconds;
    rep.kernels++;
    rep.commands += sumCommands(t);
  }

  private hook(op: Op, ins: readonly Tensor[], env: DimEnv, func: string, idx: number): Tensor[] | undefined {
    const rep = this.report!;
    rep.env = env;
    const device = deviceFor(op, env);
    if (device === PIM) {
      const out = this.onPim(op, ins, env, `${func}/${idx}`);
      if (out) return out;
    }
    if (device === ATTN_PIM && op.opcode === "attention" && this.attnMem) {
      this.m = this.attnMem;
      try {
        return [this.attention(op, ins, env, `${func}/${idx}`)];
      } finally {
        this.m = this.main;
      }
    }
    const def = getOp(op.opcode);
    if (def && op.opcode !== "transfer") {
      const types = (ts: readonly Tensor[]): TensorType[] =>
        ts.map((t) => ({ dtype: t.dtype, shape: t.shape }));
      const outs = evalOp(op.opcode, op.attrs, ins, env);
      const ti = types(ins);
      const to = types(outs);
      const cost = def.cost(ti, to, op.attrs as never, env);
      rep.host += hostSeconds(this.m.sys, { op, ins: ti, outs: to, cost }, env);
      return outs;
    }
    return undefined;
  }

  private onPim(op: Op, ins: readonly Tensor[], env: DimEnv, site: string): Tensor[] | undefined {
    switch (op.opcode) {
      case "linear":
        return weightGemm(op) ? [this.linear(op, ins)] : undefined;
      case "add":
      case "mul":
        return sameShape(ins[0]!, ins[1]!) ? [this.elementwise(op.opcode, ins)] : undefined;
      case "relu":
        return [this.elementwise("relu", ins)];
      case "attention":
        return [this.attention(op, ins, env, site)];
      default:
        return undefined;
    }
  }

  private linear(op: Op, [x, w, b]: readonly Tensor[]): Tensor {
    const [n, k] = w!.shape as [number, number];
    const sys = this.m.sys;
    // K split over groups of pseudo-channels (cost.ts): group j holds columns [j ks, (j + 1) ks).
    const split = linearSplit(sys, n, k);
    const ks = Math.ceil(k / split);
    const name = refName(op.operands[1]!);
    let g = this.m.gemvs.get(name);
    if (!g) {
      const wd = w!.data as Float32Array;
      g = this.gemv(name, n, ks, undefined, split);
      const slice = new Float32Array(n * ks);
      for (let j = 0; j < split; j++) {
        slice.fill(0);
        for (let o = 0; o < n; o++)
          for (let c = 0; c < ks && j * ks + c < k; c++) slice[o * ks + c] = wd[o * k + j * ks + c]!;
        storeGemvWeights(sys, this.m.devs, g.layout, slice, j);
      }
    }
    const xs = x!.data as Float32Array;
    const rows = xs.length / k;
    const out = f32([...x!.shape.slice(0, -1), n]);
    const y = out.data as Float32Array;
    const bias = b?.data as Float32Array | undefined;
    // Rows in passes of as many as the units have input vectors.
    const v = sys.pim.vectors;
    for (let m0 = 0; m0 < rows; m0 += v) {
      const used = Math.min(v, rows - m0);
      for (let k0 = 0; k0 < used; k0++)
        for (let j = 0; j < split; j++) {
          const xj = g.xs[j * v + k0]!;
          const from = (m0 + k0) * k + j * ks;
          xj.fill(0);
          xj.set(xs.subarray(from, Math.min(from + ks, (m0 + k0 + 1) * k)));
        }
      this.runGemv(g, ks, used);
      for (let k0 = 0; k0 < used; k0++) {
        const m = m0 + k0;
        // The host adds the groups' partial outputs, in order.
        for (let j = 0; j < split; j++) {
          const r = readGemvResult(sys, this.m.devs, g.layout, j, k0);
          for (let o = 0; o < n; o++) y[m * n + o] = j === 0 ? r[o]! : Math.fround(y[m * n + o]! + r[o]!);
        }
        if (bias) for (let o = 0; o < n; o++) y[m * n + o] = Math.fround(y[m * n + o]! + bias[o]!);
      }
    }
    return out;
  }

  private elementwise(op: EltwiseOp, ins: readonly Tensor[]): Tensor {
    const n = ins[0]!.data.length;
    const key = `${op} ${n}`;
    let e = this.eltwise.get(key);
    if (!e) {
      const size = eltwiseLayout(this.m.sys, n);
      const layout = eltwiseLayout(this.m.sys, n, this.alloc(size.rows[2] + size.rowsPerOperand));
      const cur = [new Float32Array(n), new Float32Array(n)];
      const s = this.m.sys;
      const banks = s.bank_groups * s.banks_per_group;
      const lanes = s.pim.lanes;
      const g = s.pim.grf;
      const kernel = eltwiseKernel(s, op, layout, {
        operand: (which, ch, bank, flat) => {
          const t = Math.floor(flat / g);
          const c = flat % g;
          const e0 = (((t * s.pseudo_channels + ch) * banks + bank) * g + c) * lanes;
          const v = new Float32Array(lanes);
          for (let l = 0; l < lanes && e0 + l < n; l++) v[l] = cur[which]![e0 + l]!;
          return v;
        },
      });
      e = { layout, cur, kernel: new Resident(s, this.m.devs, kernel, this.detailed) };
      this.eltwise.set(key, e);
    }
    ins.forEach((t, i) => e.cur[i]!.set(t.data as Float32Array));
    this.account(e.kernel.run());
    const out = f32([...ins[0]!.shape]);
    (out.data as Float32Array).set(readEltwise(this.m.sys, this.m.devs, e.layout));
    return out;
  }

  /**
   * Attention with the KV cache in the banks. The (batch, kv head) groups are spread over the
   * pseudo-channels (up to P per round, each with P / groups of them), so one kernel computes a
   * query row of every group of a round at once: rep x S kernels per round for the scores, as many
   * for the context.
   */
  private attention(op: Op, [q, k, v]: readonly Tensor[], env: DimEnv, site: string): Tensor {
    const [b, h, s, d] = q!.shape as [number, number, number, number];
    const [, kvh, t] = k!.shape as [number, number, number, number];
    const dv = v!.shape[3]!;
    const tmax = this.limits.T;
    if (t > tmax)
      throw new UserError(
        `hbm-pim: the KV cache holds ${t} tokens, more than the ${tmax} it was laid out for`,
      );
    const state = this.cacheOf.get(site) ?? site;
    const rep = h / kvh;
    const groups = b * kvh;
    const cache = this.layerCache(state, groups, d, dv);
    const per = cache.perRound;
    const lanes = this.m.sys.pim.lanes;
    const kd = k!.data as Float32Array;
    const vd = v!.data as Float32Array;
    // Write the new tokens of every group into the banks (K rows; V^T columns), timed as host writes.
    const writes = new Map<number, Request[]>();
    for (let gi = 0; gi < groups; gi++) {
      const { k: kg, vt } = cache.rounds[Math.floor(gi / per)]!;
      const slot = gi % per;
      for (let tok = cache.stored; tok < t; tok++) {
        const base = (gi * t + tok) * d;
        for (let i = 0; i < d; i += lanes) {
          const at = gemvBurst(this.m.sys, kg.layout, tok, i, slot);
          const burst = this.m.devs[at.ch]!.burst(at.bank, at.row, at.col);
          for (let l = 0; l < lanes; l++) burst[l] = i + l < d ? f16(kd[base + i + l]!) : 0;
          pushWrite(writes, at);
        }
        for (let j = 0; j < dv; j++) {
          const at = gemvBurst(this.m.sys, vt.layout, j, tok, slot);
          this.m.devs[at.ch]!.burst(at.bank, at.row, at.col)[at.lane] = f16(vd[(gi * t + tok) * dv + j]!);
          pushWrite(writes, at);
        }
      }
    }
    cache.stored = t;
    this.report!.cache += this.timeWrites(writes);
    // Query row (b, kv head g * rep + r, s) of group gi = b * kvh + g.
    const qRow = (gi: number, r: number, si: number): number =>
      (Math.floor(gi / kvh) * h + (gi % kvh) * rep + r) * s + si;
    const scores = f32([b, h, s, t]);
    const sd = scores.data as Float32Array;
    const qd = q!.data as Float32Array;
    // The query rows of a group (query heads per kv head x tokens) in passes of the units' vectors.
    const nv = this.m.sys.pim.vectors;
    const pairs: [number, number][] = [];
    for (let r = 0; r < rep; r++) for (let si = 0; si < s; si++) pairs.push([r, si]);
    const each = (f: (round: CacheRound, gis: number[], pass: [number, number][]) => void) =>
      cache.rounds.forEach((round, ri) => {
        const gis = Array.from({ length: Math.min(per, groups - ri * per) }, (_, x) => ri * per + x);
        for (let p0 = 0; p0 < pairs.length; p0 += nv) f(round, gis, pairs.slice(p0, p0 + nv));
      });
    each(({ k: kg }, gis, pass) => {
      gis.forEach((gi, slot) =>
        pass.forEach(([r, si], k0) => {
          const row = qRow(gi, r, si);
          kg.xs[slot * nv + k0]!.set(qd.subarray(row * d, (row + 1) * d));
        }),
      );
      this.runGemv(kg, d, pass.length);
      gis.forEach((gi, slot) =>
        pass.forEach(([r, si], k0) => {
          const y = readGemvResult(this.m.sys, this.m.devs, kg.layout, slot, k0);
          sd.set(y.subarray(0, t), qRow(gi, r, si) * t);
        }),
      );
    });
    const probs = evalOp("masked_softmax", op.attrs, [scores], env)[0]!;
    const def = getOp("masked_softmax")!;
    const st = [{ dtype: "f32" as const, shape: scores.shape }];
    this.report!.host += hostSeconds(
      this.m.sys,
      syntheticView("masked_softmax", scores.shape, def.cost(st, st, op.attrs as never, env)),
      env,
    );
    const pd = probs.data as Float32Array;
    const out = f32([b, h, s, dv]);
    const od = out.data as Float32Array;
    each(({ vt }, gis, pass) => {
      gis.forEach((gi, slot) =>
        pass.forEach(([r, si], k0) => {
          const row = qRow(gi, r, si);
          const x = vt.xs[slot * nv + k0]!;
          x.fill(0);
          x.set(pd.subarray(row * t, (row + 1) * t));
        }),
      );
      this.runGemv(vt, t, pass.length);
      gis.forEach((gi, slot) =>
        pass.forEach(([r, si], k0) => {
          const y = readGemvResult(this.m.sys, this.m.devs, vt.layout, slot, k0);
          od.set(y.subarray(0, dv), qRow(gi, r, si) * dv);
        }),
      );
    });
    return out;
  }

  /** A layer's cache in the banks: its (batch, kv head) groups in rounds of up to P. */
  private layerCache(state: string, groups: number, d: number, dv: number): LayerCache {
    // A batch of another size (after a reset) gets its own layout.
    const key = `${state}/${groups}`;
    let c = this.m.caches.get(key);
    if (!c) {
      const perRound = groupsPerRound(this.m.sys, groups);
      const rounds = Array.from({ length: Math.ceil(groups / perRound) }, (_, r) => ({
        k: this.gemv(`${key}/${r}/k`, this.limits.T, d, undefined, perRound),
        vt: this.gemv(`${key}/${r}/vt`, dv, this.limits.T, undefined, perRound),
      }));
      c = { rounds, perRound, stored: 0 };
      this.m.caches.set(key, c);
    }
    return c;
  }

  /** Seconds the host's writes take: per pseudo-channel through its controller, channels in parallel. */
  private timeWrites(writes: Map<number, Request[]>): number {
    let worst = 0;
    for (const reqs of writes.values()) worst = Math.max(worst, runChannel(this.m.sys, reqs).cycles);
    return worst * this.m.sys.timing.tCK;
  }
}

function pushWrite(
  writes: Map<number, Request[]>,
  at: { ch: number; bg: number; bankInGroup: number; row: number; col: number },
): void {
  let list = writes.get(at.ch);
  if (!list) writes.set(at.ch, (list = []));
  const last = list[list.length - 1];
  // Lanes of one burst written back to back go out as one write.
  if (last && last.bg === at.bg && last.bank === at.bankInGroup && last.row === at.row && last.col === at.col)
    return;
  list.push({ kind: WR, rank: 0, bg: at.bg, bank: at.bankInGroup, row: at.row, col: at.col });
}

const sameShape = (a: Tensor, b: Tensor): boolean =>
  a.shape.length === b.shape.length && a.shape.every((x, i) => x === b.shape[i]);
