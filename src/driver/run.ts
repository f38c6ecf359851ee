/**
 * Running what the compiler made: one step of a workload on a compiled model (the program emulated,
 * for targets that emit one, or the ops timed by the target's device model) and a program file run on
 * the emulator. The CLI's bench and sim and the library API (src/index.ts) call it.
 */
import { UserError } from "../errors.js";
import { readInputFile } from "../fsutil.js";
import type { LoadedModel } from "../frontend/hf/import.js";
import { defaultWorkload, phaseEnvs, phaseMix, workloadEnv, type Workload } from "../frontend/workload.js";
import { capacityProblem } from "../pipeline/capacity.js";
import type { DimEnv } from "../ir/dim.js";
import {
  getTarget,
  type CallTiming,
  type PrepareOptions,
  type SystemModel,
  type SystemOptions,
  type Target,
} from "../../targets/index.js";
import { decodeIrProgram, encodeIrProgram, isIrProgram, type IrProgram } from "../exec/ir-program.js";
import { parseDescription, selectSystem } from "../frontend/dsl/index.js";
import type { Module } from "../ir/module.js";
import { operandTyper } from "../ir/cost.js";
import { viewOf } from "../pipeline/cost-model.js";
import { deviceFor } from "../ir/placement.js";
import { layerGroupName } from "../report/format.js";
import { decodeProgram } from "../../targets/upmem/codec.js";
import { UpmemMachine, type RunReport } from "../../targets/upmem/machine.js";
import type { Program } from "../../targets/upmem/program.js";
import type { Compiled } from "./compile.js";

/** A program file written by `pimc compile -o` (or `emit`), decoded and validated. */
export function readProgram(path: string): Program {
  const file = readProgramFile(path);
  if (file.kind !== "upmem")
    throw new UserError(`${path}: a ${file.ir.target} program (the compiled IR), not an UPMEM program`);
  return file.program;
}

/** A program file of any target: UPMEM's lowered program, or the compiled IR of the others. */
export type ProgramFile = { kind: "upmem"; program: Program } | { kind: "ir"; ir: IrProgram };

export function readProgramFile(path: string): ProgramFile {
  const raw = readInputFile(path, "a program file (pimc compile -o)", Infinity);
  const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  return isIrProgram(bytes)
    ? { kind: "ir", ir: decodeIrProgram(bytes, path) }
    : { kind: "upmem", program: decodeProgram(bytes, path) };
}

/** The largest batch, tokens per call and cached tokens of a workload's two phases. */
export function workloadLimits(w: Workload): { B: number; S: number; T: number } {
  const envs = Object.values(phaseEnvs(w));
  const max = (f: (e: DimEnv) => number): number => Math.max(1, ...envs.map(f));
  return { B: max((e) => e.B ?? 1), S: max((e) => e.S ?? 1), T: max((e) => (e.P ?? 0) + (e.S ?? 1)) };
}

/**
 * The program file of a compiled model for workload `w`: the target's own (code generation), or
 * the compiled IR with its system for the targets without one (src/exec/ir-program.ts). `lines`
 * describe it as `pimc compile` prints them.
 */
export function emitProgram(
  model: LoadedModel,
  c: Pick<Compiled, "module" | "ctx" | "target" | "system">,
  w: Workload,
  opts: { readonly shapeOnly?: boolean } = {},
): { bytes: Uint8Array; lines: string[] } {
  const { module, ctx, target, system } = c;
  if (target.emit)
    return target.emit({ ...model, module, weights: ctx.weights }, system, {
      envs: phaseEnvs(w),
      mix: phaseMix(w),
      shapeOnly: opts.shapeOnly === true || model.weights.names().length === 0,
    });
  const limits = workloadLimits(w);
  const bytes = encodeIrProgram({
    target: target.name,
    model: module.name,
    ...(system.source ? { system: system.source } : {}),
    options: { ...(system.options ?? {}) },
    limits,
    module,
  });
  return {
    bytes,
    lines: [
      `program   ${target.name}, the compiled IR (${module.funcs.map((f) => `${f.name} ${f.body.length} ops`).join(", ")}) on ${system.name}; limits B <= ${limits.B}, S <= ${limits.S}, P+S <= ${limits.T}; timed by the target's ${target.timeCall ? "device" : "cost"} model`,
    ],
  };
}

/**
 * Times calls of an IR program (`pimc sim` of a target without code generation): the system it
 * carries rebuilt, each call timed by the target's device model or its cost model.
 */
export async function simulateIr(
  ir: IrProgram,
  calls: readonly { readonly phase: string; readonly env: DimEnv }[],
): Promise<{ target: Target; system: SystemModel; calls: CallTiming[] }> {
  const target = await getTarget(ir.target);
  if (target.emit)
    throw new UserError(`a ${ir.target} program is its lowered program file, not the compiled IR`);
  const decl = ir.system && selectSystem(parseDescription(ir.system.text, ir.system.file), ir.system.name);
  if (decl && decl.target !== ir.target)
    throw new UserError(
      `${ir.system!.file}: system ${decl.name} is for target ${decl.target}, not ${ir.target}`,
    );
  const system = target.system(decl, ir.options as SystemOptions);
  // Each call against the system's memories (the program has no memory plan of its own).
  const map = target.memories?.(system);
  for (const { phase, env } of calls) {
    const w = { ...defaultWorkload(phase === "prefill" ? "prefill" : "decode"), batch: env.B ?? 1 };
    const call =
      phase === "prefill"
        ? { ...w, prompt: env.S ?? 1 }
        : { ...w, speculation: env.S ?? 1, context: env.P ?? 0 };
    const problem = map && capacityProblem(system.name, ir.module, map, call);
    if (problem !== undefined) throw new UserError(problem);
  }
  const timeCall = callTimer(target);
  return { target, system, calls: calls.map(({ phase, env }) => timeCall(ir.module, system, phase, env)) };
}

/** A program's bytes (target.emit's), decoded and validated; `name` names it in errors. */
export function decodeProgramBytes(bytes: Uint8Array, name: string): Program {
  return decodeProgram(bytes, name);
}

export interface SimulateOptions {
  /** Time every DPU of every launch instead of one per launch (slower; the same result for uniform kernels). */
  readonly detailed?: boolean;
  /** Called after each command of the calls (not the setup's) the emulator runs (progress). */
  readonly onCommand?: () => void;
  /** Called before each call. */
  readonly onCall?: (phase: string) => void;
}

/**
 * Runs a program's phases on the emulator (timing only, no data): the setup's report and one report
 * per call, each call at `env` (B sequences of S tokens with P already cached).
 */
export function simulate(
  program: Program,
  calls: readonly { readonly phase: string; readonly env: DimEnv }[],
  opts: SimulateOptions = {},
): { setup: RunReport; calls: RunReport[] } {
  let counting = false;
  const machine = new UpmemMachine(program, {
    functional: false,
    detailed: opts.detailed === true,
    onCommand: () => void (counting && opts.onCommand?.()),
  });
  const setup = machine.setup();
  counting = true;
  const reports = calls.map(({ phase, env }) => {
    opts.onCall?.(phase);
    machine.reset();
    return machine.run(phase, undefined, env).report;
  });
  return { setup, calls: reports };
}

/** Busy seconds per category of command. */
export function breakdown(r: RunReport): Record<string, number> {
  const out: Record<string, number> = { host: 0, to_pim: 0, from_pim: 0, kernels: 0, setup: 0 };
  for (const c of r.commands) {
    const d = c.end - c.start;
    const k =
      c.kind === "host"
        ? "host"
        : c.kind === "push" || c.kind === "broadcast"
          ? "to_pim"
          : c.kind === "pull"
            ? "from_pim"
            : c.kind === "launch"
              ? "kernels"
              : "setup";
    out[k]! += d;
  }
  return out;
}

/**
 * A call timed by the system's cost model alone, for targets without a device model of their own
 * (the host CPU, the roofline): the ops one at a time, each on its placed device (else the home
 * device), and the partition's transfers over the link.
 */
export function costModelTiming(module: Module, system: SystemModel, func: string, env: DimEnv): CallTiming {
  const cm = system.costModel;
  const f = module.funcs.find((x) => x.name === func);
  if (!f) throw new UserError(`module has no ${func} function`);
  const typeOf = operandTyper(module, f);
  const busy: Record<string, number> = Object.fromEntries(cm.devices.map((d) => [d.name, 0]));
  const ops = f.body.map((op) => {
    const view = viewOf(op, typeOf, env);
    let device: string;
    let seconds: number;
    if (op.opcode === "transfer") {
      const [from, to] = [String(op.attrs.from), String(op.attrs.to)];
      device = "link";
      seconds = cm.transferTime(view.cost.bytes, from, to);
    } else {
      device = deviceFor(op, env) ?? cm.home;
      seconds = cm.opTime(view, device, env) ?? cm.opTime(view, cm.home, env) ?? 0;
    }
    busy[device] = (busy[device] ?? 0) + seconds;
    return { op, device, seconds, flops: view.cost.flops, bytes: view.cost.bytes };
  });
  return { seconds: ops.reduce((s, o) => s + o.seconds, 0), busy, ops };
}

/** A timed call's ops grouped as `pimc bench` shows them: identical layers together, per device, slowest first. */
export function timingRows(
  timing: CallTiming,
): { name: string; device: string; calls: number; seconds: number; bytes: number; flops: number }[] {
  const rows = new Map<
    string,
    { name: string; device: string; calls: number; seconds: number; bytes: number; flops: number }
  >();
  for (const o of timing.ops) {
    const name = layerGroupName(o.op);
    const key = `${o.device}\u0000${name}`;
    const r = rows.get(key) ?? { name, device: o.device, calls: 0, seconds: 0, bytes: 0, flops: 0 };
    r.calls++;
    r.seconds += o.seconds;
    r.bytes += o.bytes;
    r.flops += o.flops;
    rows.set(key, r);
  }
  return [...rows.values()].sort((a, b) => b.seconds - a.seconds);
}

/** How a target times a call without data: its device model (`timeCall`), else its cost model. */
export function callTimer(target: Target): NonNullable<Target["timeCall"]> {
  if (target.timeCall) return target.timeCall.bind(target);
  return (module, system, func, env, opts) => {
    if ((opts?.subBatches ?? 1) > 1)
      throw new UserError(
        `sub-batch interleaving needs a host beside PIM units that work at once (target hbm-pim); ${target.name} times ops one at a time`,
      );
    return costModelTiming(module, system, func, env);
  };
}

/**
 * Times calls of one compiled model at many sizes without compiling again: targets that emit a
 * program emit it once, laid out for `limits` (the largest batch, tokens per call and cached tokens)
 * and `envs` (the sizes to choose tiles for), and emulate each call on it; the others time each call
 * with their device or cost model (callTimer). Returns the seconds of a call of `func` under `env`.
 */
export function preparedTimer(
  model: LoadedModel,
  c: Pick<Compiled, "module" | "ctx" | "target" | "system">,
  opts: PrepareOptions,
): (func: string, env: DimEnv) => number {
  const { module, ctx, target, system } = c;
  if (!target.emit) {
    const timeCall = callTimer(target);
    return (func, env) => timeCall(module, system, func, env).seconds;
  }
  const out = target.emit({ ...model, module, weights: ctx.weights }, system, { ...opts, shapeOnly: true });
  const machine = new UpmemMachine(decodeProgram(out.bytes, `${model.module.name} (compiled)`), {
    functional: false,
  });
  machine.setup();
  return (func, env) => {
    machine.reset();
    return machine.run(func, undefined, env).report.seconds;
  };
}

/** One step of a workload: its latency and, by kind of target, the emulator's report or the ops' times. */
export interface Step {
  readonly seconds: number;
  /** Targets that emit a program: the program and the emulator's report of the step. */
  readonly program?: Program;
  readonly report?: RunReport;
  /** Targets timed by a device model: the step op by op. */
  readonly timing?: CallTiming;
}

/**
 * One step of the workload's phase on a compiled model: the program emulated (targets that emit
 * one) or the ops timed by the target's device model. `subBatches` > 1: NeuPIMs' sub-batch
 * interleaving (device-model targets that support it). `source` names the model in errors.
 */
export function timeStep(
  model: LoadedModel,
  c: Pick<Compiled, "module" | "ctx" | "target" | "system">,
  w: Workload,
  opts: { readonly subBatches?: number; readonly source?: string } = {},
): Step {
  const { module, ctx, target, system } = c;
  if (target.emit) {
    const out = target.emit({ ...model, module, weights: ctx.weights }, system, {
      envs: phaseEnvs(w),
      mix: phaseMix(w),
      shapeOnly: true,
    });
    const program = decodeProgram(out.bytes, `${opts.source ?? model.module.name} (compiled)`);
    const report = simulate(program, [{ phase: w.phase, env: workloadEnv(w) }]).calls[0]!;
    return { seconds: report.seconds, program, report };
  }
  const timing = callTimer(target)(module, system, w.phase, workloadEnv(w), {
    subBatches: opts.subBatches ?? 1,
  });
  return { seconds: timing.seconds, timing };
}
