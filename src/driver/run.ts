/**
 * Running what the compiler made: one step of a workload on a compiled model (the target's program
 * run, for targets that emit one, or the ops timed by the target's device or cost model) and a
 * program file of any target loaded to run (`Executable`, the Target contract). The CLI's bench, sim
 * and serve and the library API (src/index.ts) call it.
 */
import { UserError } from "../errors.js";
import { readInputFile } from "../fsutil.js";
import type { LoadedModel } from "../frontend/hf/import.js";
import {
  defaultWorkload,
  envLimits,
  phaseEnvs,
  phaseMix,
  workloadEnv,
  type Workload,
} from "../frontend/workload.js";
import { capacityProblem } from "../pipeline/capacity.js";
import type { DimEnv } from "../ir/dim.js";
import {
  allTargets,
  checkTargetFlags,
  getTarget,
  type CallReport,
  type CallTiming,
  type Energy,
  type Executable,
  type PrepareOptions,
  type SystemModel,
  type Target,
} from "../../targets/index.js";
import { decodeIrProgram, encodeIrProgram, isIrProgram, type IrProgram } from "../exec/ir-program.js";
import { parseDescription, selectSystem } from "../frontend/dsl/index.js";
import type { Module } from "../ir/module.js";
import { costModelTiming, deviceLabel } from "../pipeline/cost-model.js";
import { layerGroupName } from "../report/format.js";
import { timingTraceJson } from "../report/trace.js";
import type { Compiled } from "./compile.js";
import { printModule } from "../ir/printer.js";

/** A program file of any target (`pimc compile -o`, `writeProgram`) loaded to run. */
export async function loadProgram(path: string): Promise<Executable> {
  const raw = readInputFile(path, "a program file (pimc compile -o)", Infinity);
  return loadProgramBytes(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), path);
}

/** A program's bytes loaded to run: the compiled IR of a target without code generation, or the format of the target that reads them. */
export async function loadProgramBytes(bytes: Uint8Array, file: string): Promise<Executable> {
  if (isIrProgram(bytes)) return irExecutable(decodeIrProgram(bytes, file), file);
  for (const target of (await allTargets()).values()) {
    const exe = target.load?.(bytes, file);
    if (exe) return exe;
  }
  throw new UserError(`${file}: not a pimc program file (pimc compile -o writes them)`);
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
  const limits = envLimits(phaseEnvs(w));
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
 * The compiled IR of a target without code generation, loaded to run: the system it carries
 * rebuilt, each call checked against the system's memories (the program has no memory plan of its
 * own) and timed by the target's device model, or its cost model, as `pimc bench` times a step.
 */
export async function irExecutable(ir: IrProgram, file = "the program"): Promise<Executable> {
  const target = await getTarget(ir.target);
  if (target.emit)
    throw new UserError(`a ${ir.target} program is its lowered program file, not the compiled IR`);
  const decl = ir.system && selectSystem(parseDescription(ir.system.text, ir.system.file), ir.system.name);
  if (decl && decl.target !== ir.target)
    throw new UserError(
      `${ir.system!.file}: system ${decl.name} is for target ${decl.target}, not ${ir.target}`,
    );
  await checkTargetFlags(target, ir.options.targetFlags).catch((e: unknown) => {
    throw e instanceof UserError ? new UserError(`${file}: options: ${e.message}`) : e;
  });
  const system = target.system(decl, ir.options);
  const where = ir.system ? `${ir.system.name} (${ir.system.file})` : "its default system";
  return moduleExecutable(target, system, ir.module, {
    model: ir.model,
    where,
    limits: ir.limits,
    native: ir,
  });
}

/**
 * A compiled module of a target without code generation as an Executable: each call timed by the
 * target's device model, or its cost model, as `pimc bench` times a step. `capacity`: each call is
 * checked against the system's memories first (program files; the compiler driver checks its own).
 */
export function moduleExecutable(
  target: Target,
  system: SystemModel,
  module: Module,
  o: {
    readonly model: string;
    /** Where it runs, for its header: the system's name and file. */
    readonly where: string;
    readonly limits: Executable["limits"];
    readonly capacity?: boolean;
    readonly native?: unknown;
  },
): Executable {
  const map = o.capacity === false ? undefined : target.memories?.(system);
  const timeCall = callTimer(target);
  const cm = system.costModel;
  const devices = [...cm.devices.map((d) => d.name), "link"];
  const roofs = cm.devices.flatMap((d) => (d.roof ? [{ device: d.name, ...d.roof }] : []));
  return {
    target: target.name,
    model: o.model,
    limits: o.limits,
    phases: module.funcs.map((f) => ({ name: f.name, steps: 1 })),
    header: [`program   ${o.model} on ${target.name} (${o.where}): ${target.summary}`],
    title: `${o.model} on ${target.name} (${system.name})`,
    engines: Object.fromEntries(devices.map((d) => [d, deviceLabel(cm, d)])),
    ...(roofs.length > 0 ? { roofs } : {}),
    columns: [
      { key: "name", head: "op", kind: "text" },
      { key: "device", head: "device", kind: "text" },
      { key: "calls", head: "calls", kind: "int", drop: true },
      { key: "seconds", head: "time", kind: "seconds" },
      { key: "flops", head: "flops", kind: "si", drop: true },
      { key: "bytes", head: "bytes", kind: "bytes", drop: true },
    ],
    info: { system: system.name },
    native: o.native ?? module,
    disassemble: () => `// ${o.model} for ${target.name} on ${o.where}\n${printModule(module)}`,
    open(opts = {}) {
      const subBatches = opts.subBatches ?? 1;
      return {
        call(phase, env) {
          const w = { ...defaultWorkload(phase === "prefill" ? "prefill" : "decode"), batch: env.B ?? 1 };
          const call =
            phase === "prefill"
              ? { ...w, prompt: env.S ?? 1 }
              : { ...w, speculation: env.S ?? 1, context: env.P ?? 0 };
          const problem = map && capacityProblem(system.name, module, map, call);
          if (problem !== undefined) throw new UserError(problem);
          const timing = timeCall(module, system, phase, env, { subBatches });
          opts.onStep?.();
          const ops = timingRows(timing);
          return {
            phase,
            env,
            seconds: timing.seconds,
            busy: timing.busy,
            rows: ops,
            ops,
            points: ops,
            ...(timing.energy ? { energy: timing.energy } : {}),
            native: timing,
          };
        },
      };
    },
    trace: (reports) =>
      timingTraceJson(reports.map((r) => ({ phase: r.phase, env: r.env, timing: r.native as CallTiming }))),
  };
}

/**
 * Runs calls of a loaded program (its setup once first): each call's report, and the setup's.
 * `onCall` before each call.
 */
export function runProgram(
  exe: Executable,
  calls: readonly { readonly phase: string; readonly env: DimEnv }[],
  opts: {
    readonly onStep?: () => void;
    readonly onCall?: (phase: string) => void;
  } = {},
): { setup?: CallReport; calls: CallReport[] } {
  const session = exe.open({
    ...(opts.onStep ? { onStep: opts.onStep } : {}),
  });
  const reports = calls.map(({ phase, env }) => {
    opts.onCall?.(phase);
    return session.call(phase, env);
  });
  return { ...(session.setup ? { setup: session.setup } : {}), calls: reports };
}

/** Ops of identical layers on one device, added up over a step (a row of bench's and sim's tables). */
export type OpRow = {
  name: string;
  device: string;
  calls: number;
  seconds: number;
  bytes: number;
  flops: number;
  /** Its energy, where the target models energy. */
  joules?: number;
};

/** A timed call's ops grouped as `pimc bench` shows them: identical layers together, per device, slowest first. */
export function timingRows(timing: CallTiming): OpRow[] {
  const rows = new Map<string, OpRow>();
  for (const o of timing.ops) {
    const name = layerGroupName(o.op);
    const key = `${o.device}\u0000${name}`;
    const r = rows.get(key) ?? { name, device: o.device, calls: 0, seconds: 0, bytes: 0, flops: 0 };
    r.calls++;
    r.seconds += o.seconds;
    r.bytes += o.bytes;
    r.flops += o.flops;
    if (o.joules !== undefined) r.joules = (r.joules ?? 0) + o.joules;
    rows.set(key, r);
  }
  return [...rows.values()].sort((a, b) => b.seconds - a.seconds);
}

/** How a target times a call without data: its device model (`timeCall`), else its cost model. */
export function callTimer(target: Target): NonNullable<Target["timeCall"]> {
  if (target.timeCall) return target.timeCall.bind(target);
  return (module, system, func, env, opts) => costModelTiming(module, system, func, env, opts, target.name);
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
): (func: string, env: DimEnv) => { readonly seconds: number; readonly energy?: Energy } {
  const { module, ctx, target, system } = c;
  if (!target.emit) {
    const timeCall = callTimer(target);
    return (func, env) => {
      const t = timeCall(module, system, func, env);
      return { seconds: t.seconds, ...(t.energy ? { energy: t.energy } : {}) };
    };
  }
  const out = target.emit({ ...model, module, weights: ctx.weights }, system, { ...opts, shapeOnly: true });
  const session = loadEmitted(target, out.bytes, `${model.module.name} (compiled)`).open();
  return (func, env) => {
    const r = session.call(func, env);
    return { seconds: r.seconds, ...(r.energy ? { energy: r.energy } : {}) };
  };
}

/** The program a target emitted, loaded by the target itself. */
function loadEmitted(target: Target, bytes: Uint8Array, name: string): Executable {
  const exe = target.load?.(bytes, name);
  if (!exe) throw new Error(`internal: target ${target.name} emits programs it does not load`);
  return exe;
}

/** One step of a workload: its latency and, by kind of target, its program's report or the ops' times. */
export interface Step {
  readonly seconds: number;
  /** The program run (the target's own, or the compiled IR timed by its device or cost model). */
  readonly program: Executable;
  /** Its report of the step. */
  readonly report: CallReport;
  /** Targets timed by a device or cost model: the step op by op. */
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
    const program = loadEmitted(target, out.bytes, `${opts.source ?? model.module.name} (compiled)`);
    const report = program.open({ subBatches: opts.subBatches ?? 1 }).call(w.phase, workloadEnv(w));
    return { seconds: report.seconds, program, report };
  }
  const program = moduleExecutable(target, system, module, {
    model: module.name,
    where: system.source ? `${system.name} (${system.source.file})` : system.name,
    limits: envLimits(phaseEnvs(w)),
    capacity: false,
  });
  const report = program.open({ subBatches: opts.subBatches ?? 1 }).call(w.phase, workloadEnv(w));
  return { seconds: report.seconds, program, report, timing: report.native as CallTiming };
}
