/**
 * The UPMEM machine: runs a program's command stream functionally (real values in every DPU's MRAM
 * and in host buffers) and in time. Commands are scheduled in program order on their engine (host
 * CPU, host<->DPU link, DPUs), each starting when its engine is free and its dependencies are done.
 *
 * Kernel times come from the DPU model (dpu.ts). All DPUs of a launch run the same kernel on blocks of
 * the same size, so by default one DPU is timed and the others fast-forwarded; `detailed` times every
 * DPU (tests check the two agree). Shape-only programs (no weight data) run in time only.
 */
import { UserError } from "../../src/errors.js";
import { concretizeAttrs } from "../../src/ir/attrs.js";
import { evalOp } from "../../src/exec/interpreter.js";
import type { DimEnv } from "../../src/ir/dim.js";
import { checkOp, getOp } from "../../src/ir/registry.js";
import type { Tensor } from "../../src/ir/tensor.js";
import { zeros } from "../../src/ir/tensor.js";
import { tensor as ttype, type TensorType } from "../../src/ir/types.js";
import "../../src/ir/ops/index.js";
import { hostTime } from "./base.js";
import { hostWork } from "../cpu/index.js";
import {
  checkKernel,
  elemBytes,
  gridItems,
  kernelRunner,
  kernelTimer,
  timeKernel,
  type KernelTiming,
} from "./dpu.js";
import { ProgramError } from "./errors.js";
import { evalExpr, type Env } from "./expr.js";
import type { BlockMap, Command, Engine, IntExpr, Kernel, KernelStmt, Program } from "./program.js";
import { engineOf } from "./program.js";
import { broadcastTime, dpusPerRank, pullTime, pushTime } from "./transfer.js";

export interface CommandRecord {
  readonly id: number;
  readonly kind: Command["kind"];
  readonly engine: Engine;
  readonly start: number;
  readonly end: number;
  /** What it did, for tables and traces (`launch gemm3`, `host rms_norm`). */
  readonly label: string;
  /** Bytes moved (transfers) or touched (host ops); flops (host ops, kernels). */
  readonly bytes: number;
  readonly flops: number;
  readonly dpus?: number;
  /** The first DPU of the command's range (transfers, launches, loads). */
  readonly firstDpu?: number;
  readonly kernel?: KernelTiming;
}

export interface RunReport {
  readonly phase: string;
  readonly env: Env;
  /** Seconds from the first command's start to the last one's end. */
  readonly seconds: number;
  readonly commands: readonly CommandRecord[];
}

export interface MachineOptions {
  /** Time every DPU of a launch instead of one (the results must agree). */
  readonly detailed?: boolean;
  /** Compute values (default: when the program has weight data). */
  readonly functional?: boolean;
  /** Called after each command of a run (for a progress bar). */
  readonly onCommand?: (done: number, total: number) => void;
}

interface HostValue {
  readonly t: Tensor;
}

/**
 * Arithmetic of one DPU's kernel run: 2 per multiply-accumulate (a LUT lookup counts as its vector's
 * multiply-accumulates), 1 per vector add (padding included:
 * what the DPU computes). Loop counts are evaluated with grid and loop variables at 0.
 */
export function kernelFlops(k: Kernel, env: Env): number {
  const scope: Record<string, number> = { ...env };
  for (const [v] of k.grid) scope[v] = 0;
  const walk = (body: readonly KernelStmt[]): number =>
    body.reduce((sum, s) => {
      switch (s.op) {
        case "loop":
          scope[s.var] = 0;
          return sum + evalExpr(s.count, scope) * walk(s.body);
        case "mac":
          return sum + 2 * evalExpr(s.m, scope) * evalExpr(s.n, scope) * evalExpr(s.k, scope);
        case "vadd":
          return sum + evalExpr(s.count, scope);
        case "lut_mac":
          // Each lookup stands for `width` multiply-accumulates.
          return sum + 2 * evalExpr(s.m, scope) * evalExpr(s.n, scope) * evalExpr(s.vectors, scope) * s.width;
        default:
          return sum;
      }
    }, 0);
  return gridItems(k, env) * walk(k.body);
}

export class UpmemMachine {
  readonly functional: boolean;
  private readonly kernels: Map<string, Kernel>;
  private readonly regions: Map<string, { offset: number; bytes: number }>;
  /** Declarations by name: host buffers, constants, states, images (commands look them up). */
  private readonly buffers: Map<string, Program["buffers"][number]>;
  private readonly constDecls: Map<string, Program["constants"][number]>;
  private readonly stateDecls: Map<string, Program["states"][number]>;
  private readonly images: Map<string, Program["images"][number]>;
  private readonly mram = new Map<number, Uint8Array>();
  private readonly mramSpan: number;
  private readonly states = new Map<string, Tensor>();
  private readonly constants = new Map<string, Tensor>();
  private cached = 0;
  private setupDone = false;
  private readonly timingCache = new Map<string, KernelTiming>();
  /** The setup's report, once the first phase has run. */
  setupReport: RunReport | undefined;

  constructor(
    readonly program: Program,
    private readonly opts: MachineOptions = {},
  ) {
    const p = program;
    this.functional =
      opts.functional ??
      (p.images.every((i) => i.data !== undefined) && p.constants.every((c) => c.data !== undefined));
    if (this.functional && p.images.some((i) => !i.data))
      throw new UserError("the program is shape-only (no weight images): it can only be timed");
    this.kernels = new Map(p.kernels.map((k) => [k.name, k]));
    this.regions = new Map(p.regions.map((r) => [r.name, r]));
    this.buffers = new Map(p.buffers.map((b) => [b.name, b]));
    this.constDecls = new Map(p.constants.map((c) => [c.name, c]));
    this.stateDecls = new Map(p.states.map((x) => [x.name, x]));
    this.images = new Map(p.images.map((i) => [i.name, i]));
    this.mramSpan = Math.max(8, ...p.regions.map((r) => r.offset + r.bytes));
    for (const c of p.constants)
      if (c.data) this.constants.set(c.name, { dtype: c.dtype, shape: c.shape, data: c.data });
  }

  /** Tokens in the KV cache. */
  get cachedTokens(): number {
    return this.cached;
  }

  /** Empties the KV cache. */
  reset(): void {
    this.states.clear();
    this.cached = 0;
  }

  private dpuMram(d: number): Uint8Array {
    let m = this.mram.get(d);
    if (!m) {
      m = new Uint8Array(this.mramSpan);
      this.mram.set(d, m);
    }
    return m;
  }

  private region(name: string): { offset: number; bytes: number } {
    const r = this.regions.get(name);
    if (!r) throw new ProgramError(`unknown MRAM region "${name}"`);
    return r;
  }

  /** Runs the setup commands (alloc, load, weight upload) if not yet run. */
  setup(): RunReport {
    if (!this.setupDone) {
      this.setupReport = this.execute("setup", this.program.setup, { B: 1, S: 1, P: 0 }, new Map());
      this.setupDone = true;
    }
    return this.setupReport!;
  }

  /**
   * Runs one call of `phase`. Functional runs take the phase inputs (token ids [B, S]) and return its
   * outputs; timing-only runs take the dims in `env` (B, S, and P, default the cached tokens).
   */
  run(phase: string, inputs?: readonly Tensor[], env?: DimEnv): { outputs?: Tensor[]; report: RunReport } {
    const p = this.program.phases.find((x) => x.name === phase);
    if (!p)
      throw new UserError(
        `the program has no phase "${phase}" (it has ${this.program.phases.map((x) => x.name).join(", ")})`,
      );
    this.setup();
    const vals = new Map<string, HostValue>();
    let e: Record<string, number>;
    if (inputs) {
      if (!this.functional) throw new UserError("the program is shape-only: it can only be timed");
      if (inputs.length !== p.inputs.length)
        throw new UserError(`phase ${phase} takes ${p.inputs.length} inputs, got ${inputs.length}`);
      const tok = inputs[0]!;
      e = { B: tok.shape[0]!, S: tok.shape[1]!, P: this.cached, ...env };
      p.inputs.forEach((name, i) => vals.set(name, { t: inputs[i]! }));
    } else {
      e = { B: 1, S: 1, P: this.cached, ...env };
      if (this.functional) throw new UserError(`phase ${phase} needs its inputs`);
    }
    const lim = this.program.limits;
    if (e.B! > (lim.B ?? Infinity) || e.S! > (lim.S ?? Infinity) || e.P! + e.S! > (lim.T ?? Infinity))
      throw new UserError(
        `${phase} with B=${e.B} S=${e.S} P=${e.P} exceeds the program's limits (B <= ${lim.B}, S <= ${lim.S}, P+S <= ${lim.T}); compile with larger --batch/--seq/--context`,
      );
    const report = this.execute(phase, p.commands, e, vals);
    this.cached = e.P! + e.S!;
    const outputs = this.functional ? p.outputs.map((o) => vals.get(o)!.t) : undefined;
    return { outputs, report };
  }

  private execute(
    phase: string,
    commands: readonly Command[],
    env: Env,
    vals: Map<string, HostValue>,
  ): RunReport {
    const free: Record<Engine, number> = { host: 0, link: 0, dpus: 0 };
    const ends: number[] = [];
    const records: CommandRecord[] = [];
    for (const c of commands) {
      const engine = engineOf(c);
      // A sync is a barrier: it waits for every command before it.
      const ready =
        c.kind === "sync"
          ? ends.reduce((t, x) => Math.max(t, x), 0)
          : c.deps.reduce((t, d) => Math.max(t, ends[d] ?? 0), 0);
      const start = Math.max(free[engine], ready);
      const r = this.command(c, env, vals);
      const end = start + r.seconds;
      free[engine] = end;
      ends[c.id] = end;
      records.push({
        id: c.id,
        kind: c.kind,
        engine,
        start,
        end,
        label: r.label,
        bytes: r.bytes,
        flops: r.flops,
        ...(r.dpus ? { dpus: r.dpus } : {}),
        ...("range" in c ? { firstDpu: c.range.first } : {}),
        ...(r.kernel ? { kernel: r.kernel } : {}),
      });
      this.opts.onCommand?.(records.length, commands.length);
    }
    const seconds = records.reduce((t, r) => Math.max(t, r.end), 0);
    return { phase, env, seconds, commands: records };
  }

  private command(
    c: Command,
    env: Env,
    vals: Map<string, HostValue>,
  ): { seconds: number; label: string; bytes: number; flops: number; dpus?: number; kernel?: KernelTiming } {
    const sys = this.program.system;
    switch (c.kind) {
      case "alloc":
        return {
          seconds: sys.alloc_per_dpu * c.dpus,
          label: `alloc ${c.dpus} DPUs`,
          bytes: 0,
          flops: 0,
          dpus: c.dpus,
        };
      case "load": {
        for (const k of c.kernels)
          if (!this.kernels.has(k)) throw new ProgramError(`load: unknown kernel "${k}"`);
        const ranks = dpusPerRank(sys, c.range).length;
        return {
          seconds: sys.load_per_rank * ranks,
          label: `load ${c.kernels.length} kernels`,
          bytes: 0,
          flops: 0,
          dpus: c.range.count,
        };
      }
      case "upload": {
        const img = this.images.get(c.image);
        if (!img) throw new ProgramError(`upload: unknown image "${c.image}"`);
        const r = this.region(img.region);
        if (img.bytesPerDpu > r.bytes)
          throw new ProgramError(`image ${img.name} is larger than region ${img.region}`);
        if (this.functional && img.data)
          for (let d = 0; d < img.range.count; d++)
            this.dpuMram(img.range.first + d).set(
              img.data.subarray(d * img.bytesPerDpu, (d + 1) * img.bytesPerDpu),
              r.offset,
            );
        return {
          seconds: pushTime(sys, img.range, img.bytesPerDpu),
          label: `upload ${img.name}`,
          bytes: img.bytesPerDpu * img.range.count,
          flops: 0,
          dpus: img.range.count,
        };
      }
      case "push":
      case "broadcast": {
        const buf = this.buffer(c.buffer);
        const m = this.mapOf(c.map, env);
        const e = elemBytes(buf.dtype);
        const per = m.blockRows * m.blockCols * e;
        if (this.functional) this.copyBlocks(c, m, vals, env, "in");
        const seconds = c.kind === "push" ? pushTime(sys, c.range, per) : broadcastTime(sys, c.range, per);
        return {
          seconds,
          label: `${c.kind} ${c.buffer}`,
          bytes: c.kind === "push" ? per * c.range.count : per,
          flops: 0,
          dpus: c.range.count,
        };
      }
      case "pull": {
        const buf = this.buffer(c.buffer);
        const m = this.mapOf(c.map, env);
        const per = m.blockRows * m.blockCols * elemBytes(buf.dtype);
        if (this.functional) this.copyBlocks(c, m, vals, env, "out");
        const groups = c.reduce ? c.range.count / Math.min(c.range.count, m.rowBlocks * m.colBlocks) : 1;
        return {
          seconds: pullTime(sys, c.range, per, groups),
          label: `pull ${c.buffer}${c.reduce ? " (reduce)" : ""}`,
          bytes: per * c.range.count,
          flops: c.reduce ? m.rows * m.cols * (groups - 1) : 0,
          dpus: c.range.count,
        };
      }
      case "launch": {
        const k = this.kernels.get(c.kernel);
        if (!k) throw new ProgramError(`launch: unknown kernel "${c.kernel}"`);
        for (const p of k.params ?? [])
          if (c.args?.[p] === undefined)
            throw new ProgramError(`launch ${c.kernel}: parameter ${p} not bound`);
        const kenv = { ...env, ...c.args };
        checkKernel(k, sys, kenv);
        if (c.range.first + c.range.count > sys.dpus)
          throw new ProgramError(`launch ${c.kernel}: DPUs beyond the system's ${sys.dpus}`);
        if (this.functional) {
          const run = kernelRunner(k, sys, this.dpuMram(c.range.first).length, kenv);
          for (let d = 0; d < c.range.count; d++) run(this.dpuMram(c.range.first + d));
        }
        const t = this.kernelTiming(k, kenv, c.range.count);
        return {
          seconds: t.seconds + sys.launch_overhead,
          label: `launch ${k.name} (${k.summary})`,
          bytes: t.dmaBytes * c.range.count,
          flops: kernelFlops(k, kenv) * c.range.count,
          dpus: c.range.count,
          kernel: t,
        };
      }
      case "host":
        return this.hostOp(c, env, vals);
      case "sync":
        return { seconds: 0, label: "sync", bytes: 0, flops: 0 };
    }
  }

  private kernelTiming(k: Kernel, env: Env, dpus: number): KernelTiming {
    if (this.opts.detailed) {
      let slowest: KernelTiming | undefined;
      const time = kernelTimer(k, this.program.system, env);
      for (let d = 0; d < dpus; d++) {
        const t = time();
        if (!slowest || t.cycles > slowest.cycles) slowest = t;
      }
      return slowest!;
    }
    const key = `${k.name} ${JSON.stringify(env)}`;
    let t = this.timingCache.get(key);
    if (!t) {
      t = timeKernel(k, this.program.system, env);
      this.timingCache.set(key, t);
    }
    return t;
  }

  /** A host buffer's declaration, or a constant's (pushes may send constants). */
  private buffer(name: string): { dtype: "f32" | "i32" | "i8"; shape: readonly IntExpr[] } {
    const b = this.buffers.get(name) ?? this.constDecls.get(name);
    if (!b) throw new ProgramError(`unknown host buffer "${name}"`);
    return b;
  }

  private mapOf(map: BlockMap, env: Env) {
    const ev = (x: IntExpr): number => evalExpr(x, env);
    return {
      rows: ev(map.rows),
      cols: ev(map.cols),
      blockRows: ev(map.blockRows),
      blockCols: ev(map.blockCols),
      ld: ev(map.ld),
      rowEvery: map.rowEvery,
      rowBlocks: map.rowBlocks,
      colEvery: map.colEvery,
      colBlocks: map.colBlocks,
    };
  }

  /** Functional push/broadcast ("in") or pull ("out") of blocks between a host buffer and MRAM. */
  private copyBlocks(
    c: Extract<Command, { kind: "push" | "broadcast" | "pull" }>,
    m: ReturnType<UpmemMachine["mapOf"]>,
    vals: Map<string, HostValue>,
    env: Env,
    dir: "in" | "out",
  ): void {
    const decl = this.buffer(c.buffer);
    const r = this.region(c.region);
    const e = elemBytes(decl.dtype);
    const at = evalExpr(c.at, env);
    if (m.blockCols > m.ld)
      throw new ProgramError(`${c.kind} ${c.buffer}: block of ${m.blockCols} columns in rows of ${m.ld}`);
    const span = at + ((m.blockRows - 1) * m.ld + m.blockCols) * e;
    if (m.blockRows > 0 && (at % 8 !== 0 || span > r.bytes))
      throw new ProgramError(
        `${c.kind} ${c.buffer}: ${span} B from offset ${at} overflow region ${c.region} (${r.bytes} B)`,
      );
    let host: Tensor;
    if (dir === "in") {
      const v = vals.get(c.buffer)?.t ?? this.constants.get(c.buffer);
      if (!v) throw new ProgramError(`${c.kind}: host buffer ${c.buffer} has no value yet`);
      host = v;
    } else {
      const shape = decl.shape.map((s) => evalExpr(s, env));
      host = zeros(decl.dtype, shape);
      vals.set(c.buffer, { t: host });
    }
    if (host.data.length < m.rows * m.cols)
      throw new ProgramError(
        `${c.kind} ${c.buffer}: buffer holds ${host.data.length} elements, the map needs ${m.rows}x${m.cols}`,
      );
    const hd = host.data as Float32Array | Int32Array | Int8Array;
    for (let d = 0; d < c.range.count; d++) {
      const rb = c.kind === "broadcast" ? 0 : Math.floor(d / m.rowEvery) % m.rowBlocks;
      const cb = c.kind === "broadcast" ? 0 : Math.floor(d / m.colEvery) % m.colBlocks;
      const mem = this.dpuMram(c.range.first + d);
      const base = r.offset + at;
      const view =
        decl.dtype === "f32"
          ? new Float32Array(mem.buffer, mem.byteOffset + base, m.blockRows * m.ld)
          : decl.dtype === "i32"
            ? new Int32Array(mem.buffer, mem.byteOffset + base, m.blockRows * m.ld)
            : new Int8Array(mem.buffer, mem.byteOffset + base, m.blockRows * m.ld);
      for (let i = 0; i < m.blockRows; i++) {
        const row = rb * m.blockRows + i;
        for (let j = 0; j < m.blockCols; j++) {
          const col = cb * m.blockCols + j;
          const inside = row < m.rows && col < m.cols;
          if (dir === "in") view[i * m.ld + j] = inside ? hd[row * m.cols + col]! : 0;
          else if (inside) {
            const v = view[i * m.ld + j]!;
            const h = row * m.cols + col;
            if (decl.dtype === "f32") hd[h] = Math.fround(hd[h]! + v);
            else hd[h] = (hd[h]! + v) | 0;
          }
        }
      }
    }
  }

  private constantOrState(name: string, env: Env): Tensor | undefined {
    const c = this.constants.get(name);
    if (c) return c;
    const s = this.stateDecls.get(name);
    if (!s) return undefined;
    let t = this.states.get(name);
    if (!t) {
      t = zeros(
        "f32",
        s.shape.map((d) => evalExpr(d, { ...env, T: 0 })),
      );
      this.states.set(name, t);
    }
    return t;
  }

  /** The type a host op is timed with: the buffer's shape, in its storage type when it has one. */
  private typeOf(name: string, env: Env, vals: Map<string, HostValue>): TensorType {
    const b = this.buffers.get(name);
    const c = this.constDecls.get(name);
    const s = this.stateDecls.get(name);
    const storage = (b ?? c ?? s)?.storage;
    const v = vals.get(name);
    if (v) return ttype(storage ?? v.t.dtype, v.t.shape);
    if (b)
      return ttype(
        storage ?? b.dtype,
        b.shape.map((x) => evalExpr(x, env)),
      );
    if (c) return ttype(storage ?? c.dtype, c.shape);
    if (s)
      return ttype(
        storage ?? "f32",
        s.shape.map((d) => evalExpr(d, { ...env, T: env.P! })),
      );
    throw new ProgramError(`host op: unknown buffer, constant or state "${name}"`);
  }

  private hostOp(
    c: Extract<Command, { kind: "host" }>,
    env: Env,
    vals: Map<string, HostValue>,
  ): { seconds: number; label: string; bytes: number; flops: number } {
    const def = getOp(c.opcode);
    if (!def) throw new ProgramError(`host op: unknown opcode "${c.opcode}"`);
    const ins = c.inputs.map((n) => this.typeOf(n, env, vals));
    const attrs = concretizeAttrs(c.attrs, env);
    // The op's own checks (arity, attributes, shapes) on what the program file says.
    const checked = checkOp(def, ins, attrs);
    if (!checked.ok)
      throw new ProgramError(`host op ${c.opcode} (${c.outputs.join(", ")}): ${checked.message}`);
    const outs = checked.types;
    const cost = def.cost(ins, outs, attrs as never, env);
    const w = hostWork(c.opcode, attrs as Readonly<Record<string, unknown>>, ins, cost);
    const seconds = hostTime(this.program.system, w.flops, w.bytes, w.opcode, w.dtype);
    if (this.functional) {
      const tensors = c.inputs.map((n) => {
        const v = vals.get(n)?.t ?? this.constantOrState(n, env);
        if (!v) throw new ProgramError(`host ${c.opcode}: "${n}" has no value yet`);
        return v;
      });
      const res = evalOp(c.opcode, c.attrs, tensors, env);
      if (res.length !== c.outputs.length)
        throw new ProgramError(`host ${c.opcode}: ${res.length} results, ${c.outputs.length} outputs named`);
      c.outputs.forEach((o, i) => vals.set(o, { t: res[i]! }));
      if (def.stateOperand !== undefined) this.states.set(c.inputs[def.stateOperand]!, res[0]!);
    }
    return { seconds, label: `host ${c.opcode}`, bytes: cost.bytes, flops: cost.flops };
  }
}
