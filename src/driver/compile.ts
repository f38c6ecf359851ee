/**
 * The compiler driver: choosing the target and system, building the PassContext from the options
 * (opt level, disabled passes, instruments), running the target's pipeline and checking the result
 * against the system's memories. The CLI's commands and the library API (src/index.ts) call it.
 */
import { UserError } from "../errors.js";
import { loadDescription, selectSystem, withSettings, type SystemDecl } from "../frontend/dsl/index.js";
import type { ValueNode } from "../frontend/dsl/ast.js";
import { readTextFile } from "../fsutil.js";
import type { LoadedModel } from "../frontend/hf/import.js";
import { phaseEnvs, phaseMix, type Workload } from "../frontend/workload.js";
import type { Attr, Module } from "../ir/module.js";
import type { Precision, QuantizeOptions } from "../../passes/quantize.js";
import { dumpIr, printAfter, printBefore, timePasses, verifyEach } from "../pipeline/instruments.js";
import { PassContext, type Instrument, type PassOptions } from "../pipeline/pass.js";
import { getPass, pipelineOf } from "../../passes/index.js";
import type { Progress } from "../report/progress.js";
import {
  checkTargetFlags,
  getTarget,
  type PrepareOptions,
  type SystemModel,
  type Target,
  type TargetFlagValues,
} from "../../targets/index.js";
import { capacityProblem, totalCapacityProblem } from "../pipeline/capacity.js";

/** How to compile: the target and system, the pass options and the what-ifs (the CLI's flags). */
export interface PipelineFlags {
  target?: string;
  system?: string;
  optLevel?: number;
  disablePass: string[];
  printBefore: string[];
  printAfter: string[];
  printAfterAll?: boolean;
  dumpIr?: string;
  timePasses?: boolean;
  verifyEach?: boolean;
  dynamicPlacement?: boolean;
  weights?: "f32" | "int8" | "int4" | "int2";
  /** A progress bar to show the passes on (not a command-line flag). */
  progress?: Progress;
  /** More instruments around the passes (not a command-line flag; e.g. verify's per-pass logits). */
  instruments?: readonly Instrument[];
  /**
   * What the program will be emitted or prepared for when it is not the workload (serve: the largest
   * steps and the requests' mix; verify: the reference's batch and lengths): passes that plan the
   * lowering plan for it, and placement still follows the workload (not a command-line flag).
   */
  emitFor?: PrepareOptions;
  /** Weights per scale of int4 / int2. */
  groupSize?: number;
  /** Per-layer precision, `PATTERN=PRECISION` (op names, `*` any text). */
  layerWeights?: string[];
  activations?: "f32" | "int8" | "int16";
  /** false: every op a PIM device can run goes there (no CPU/PIM cost comparison). */
  cooperation?: boolean;
  attention?: "auto" | "pim" | "host";
  /** Values of the target's own flags (Target.flags) by key, e.g. UPMEM's `{ pooling: false }`. */
  targetFlags?: TargetFlagValues;
  /** false (--no-capacity-check): a model or workload that overflows a memory is timed anyway, with a warning. */
  capacityCheck?: boolean;
  /** Where warnings go (one line each; default: stderr, as `pimc: warning: ...`). */
  warn?: (message: string) => void;
  /** Parameters of the --system block replaced at dotted paths (a sweep's `set`; not a command-line flag). */
  systemSettings?: readonly { readonly path: readonly string[]; readonly node: ValueNode }[];
}

export interface Compiled {
  /** The placed module: the pipeline's result. */
  readonly module: Module;
  /** The module in the target's dialect (its lowering passes' result), for targets with some. */
  readonly lowered?: Module;
  readonly ctx: PassContext;
  readonly target: Target;
  readonly system: SystemModel;
}

/** The flags a script gives: the lists of pass names may be left out (none). */
export type CompileFlags = Omit<PipelineFlags, "disablePass" | "printBefore" | "printAfter"> &
  Partial<Pick<PipelineFlags, "disablePass" | "printBefore" | "printAfter">>;

/** Every flag, the lists of pass names defaulting to none. */
export const allFlags = (f: CompileFlags): PipelineFlags => ({
  ...f,
  disablePass: f.disablePass ?? [],
  printBefore: f.printBefore ?? [],
  printAfter: f.printAfter ?? [],
});

/** `FILE[:NAME]` (a file, and optionally one block of it): the file and the block's name. */
export function splitSpec(spec: string): { file: string; name?: string } {
  const m = /^(.*?)(?::(\w+))?$/.exec(spec)!;
  return m[2] === undefined ? { file: m[1]! } : { file: m[1]!, name: m[2] };
}

/** A `--system FILE.pim[:NAME]` argument: its file and the system block it selects. */
export function systemSpec(spec: string): { file: string; decl: SystemDecl } {
  const { file, name } = splitSpec(spec);
  return { file, decl: selectSystem(loadDescription(file), name) };
}

/** Resolves --system and --target. */
export async function chooseTarget(
  f: Pick<
    PipelineFlags,
    "target" | "system" | "cooperation" | "attention" | "targetFlags" | "systemSettings"
  >,
): Promise<{ target: Target; system: SystemModel }> {
  const opts = {
    cooperation: f.cooperation ?? true,
    attention: f.attention ?? ("auto" as const),
    ...(f.targetFlags && Object.keys(f.targetFlags).length > 0 ? { targetFlags: f.targetFlags } : {}),
  };
  if (f.system !== undefined) {
    const spec = systemSpec(f.system);
    const { file } = spec;
    const decl = f.systemSettings?.length ? withSettings(spec.decl, f.systemSettings) : spec.decl;
    // The text too: program files carry the system they were compiled for.
    const text = readTextFile(file, "a description file (.pim)");
    if (f.target !== undefined && f.target !== decl.target)
      throw new UserError(`--target ${f.target} does not match the system's target ${decl.target} (${file})`);
    const target = await getTarget(decl.target);
    await checkTargetFlags(target, f.targetFlags);
    return { target, system: { ...target.system(decl, opts), source: { file, name: decl.name, text } } };
  }
  const target = await getTarget(f.target ?? "cpu");
  await checkTargetFlags(target, f.targetFlags);
  return { target, system: target.system(undefined, opts) };
}

/** Whether any flag asks for the pass pipeline. */
export function wantsPipeline(f: PipelineFlags): boolean {
  return (
    f.optLevel !== undefined ||
    f.printBefore.length > 0 ||
    f.printAfter.length > 0 ||
    f.printAfterAll === true ||
    f.dumpIr !== undefined ||
    f.timePasses === true ||
    f.verifyEach === true ||
    f.dynamicPlacement === true ||
    f.weights !== undefined ||
    f.groupSize !== undefined ||
    (f.layerWeights ?? []).length > 0 ||
    f.cooperation === false ||
    f.attention !== undefined ||
    Object.keys(f.targetFlags ?? {}).length > 0 ||
    f.activations !== undefined ||
    f.disablePass.length > 0
  );
}

/**
 * Runs the target's default pipeline on the model under the flags and the workload. `fits`: the
 * caller checks the result against the system's memories (checkFits); a model that no placement
 * can fit then fails before the partition pass runs the cost models (the bound of
 * totalCapacityProblem), unless --no-capacity-check.
 */
export async function compileModel(
  model: LoadedModel,
  flags: CompileFlags,
  w: Workload,
  defaultOpt: number,
  fits = false,
): Promise<Compiled> {
  const f = allFlags(flags);
  const { target, system } = await chooseTarget(f);
  // Unknown names are errors (the target's own passes count).
  for (const n of [...f.disablePass, ...f.printBefore, ...f.printAfter]) getPass(n, target.passes);
  const lowering = target.lowering ?? [];
  const quantize = quantizeOptions(f, model.module.attrs);
  const quantized = quantize.weights !== "f32" || (quantize.layers ?? []).some((l) => l.weights !== "f32");
  if (quantized && !target.pipeline.includes("quantize"))
    throw new UserError(
      `${f.weights !== undefined ? `--weights ${f.weights}` : `the model's precision ${quantize.weights}`}: target ${target.name} computes with the imported weights (its pipeline does not quantize)`,
    );
  if (f.groupSize !== undefined && quantize.weights === "f32")
    throw new UserError("--group-size needs --weights int8, int4 or int2");
  if (f.activations === "int16" && (quantize.weights !== "int8" || quantize.group !== undefined))
    throw new UserError(
      "--activations int16 needs --weights int8 with per-channel scales (two INT8 planes of a W8A8 layer; no --group-size)",
    );
  if (f.activations !== undefined && !quantized)
    throw new UserError("--activations needs quantized weights (--weights int8, int4 or int2)");
  const out = (s: string): void => void process.stdout.write(s);
  const instruments: Instrument[] = [];
  if (f.verifyEach) instruments.push(verifyEach());
  if (f.printBefore.length > 0) instruments.push(printBefore(new Set(f.printBefore), out));
  if (f.printAfterAll) instruments.push(printAfter(undefined, out));
  else if (f.printAfter.length > 0) instruments.push(printAfter(new Set(f.printAfter), out));
  if (f.dumpIr !== undefined) instruments.push(dumpIr(f.dumpIr));
  if (f.timePasses) instruments.push(timePasses((s) => void process.stderr.write(s)));
  instruments.push(...(f.instruments ?? []));
  if (fits && f.capacityCheck !== false) {
    const map = target.memories?.(system);
    instruments.push({
      before: (p, m) => {
        if (p.name !== "partition" || !map) return;
        const problem = totalCapacityProblem(system.name, m, map, w);
        if (problem !== undefined) throw new UserError(`${problem}${ANYWAY}`);
      },
      // The placed module against each memory before a target's lowering passes plan it.
      after: (p, m) => {
        if (p.name !== "partition" || !map) return;
        const problem = capacityProblem(system.name, m, map, w);
        if (problem !== undefined) throw new UserError(`${problem}${ANYWAY}`);
      },
    });
  }
  const bar = f.progress;
  if (bar) {
    const passes = new Set([...target.pipeline, ...lowering]);
    instruments.push({
      start: () => bar.start(passes.size),
      before: (p) => void (passes.has(p.name) && bar.label(`pass ${p.name}`)),
      after: (p) => void (passes.has(p.name) && bar.tick()),
    });
  }
  const options: PassOptions = {
    ...system.passOptions,
    envs: phaseEnvs(w),
    ...(f.emitFor
      ? {
          ...(f.emitFor.mix ? { mix: f.emitFor.mix } : {}),
          ...(f.emitFor.limits ? { limits: f.emitFor.limits } : {}),
          ...(f.emitFor.envs ? { emitEnvs: f.emitFor.envs } : {}),
        }
      : { mix: phaseMix(w) }),
    placement: f.dynamicPlacement ? "dynamic" : "static",
    quantize,
  };
  const ctx = new PassContext({
    optLevel: f.optLevel ?? defaultOpt,
    disabled: f.disablePass,
    target: target.name,
    costModel: system.costModel,
    weights: model.weights,
    options,
    instruments,
  });
  for (const i of ctx.instruments) i.start?.(model.module, ctx);
  const module = pipelineOf(target.name, target.pipeline, target.passes).run(model.module, ctx);
  const lowered =
    lowering.length > 0
      ? pipelineOf(`${target.name}-lowering`, lowering, target.passes).run(module, ctx)
      : undefined;
  for (const i of ctx.instruments) i.finish?.(lowered ?? module, ctx);
  return { module, ...(lowered ? { lowered } : {}), ctx, target, system };
}

/** Where warnings go when the flags name no `warn`: stderr, one line each. */
export const defaultWarn = (message: string): void =>
  void process.stderr.write(`pimc: warning: ${message}\n`);

const ANYWAY = " (--no-capacity-check to time it anyway)";

/** Models that were already warned about (one --no-capacity-check warning per command). */
const warned = new WeakSet<object>();

/**
 * The compiled model under the workload against the system's memories (src/pipeline/capacity.ts):
 * a UserError naming the memory, needed vs available; with --no-capacity-check one warning per model.
 * The commands that time or emit a workload (compile, bench, serve) call it after compileModel.
 */
export function checkFits(
  model: LoadedModel,
  c: Pick<Compiled, "module" | "target" | "system">,
  w: Workload,
  f: Pick<PipelineFlags, "capacityCheck" | "warn">,
): void {
  const map = c.target.memories?.(c.system);
  const problem = map && capacityProblem(c.system.name, c.module, map, w);
  if (problem === undefined) return;
  if (f.capacityCheck !== false) throw new UserError(`${problem}${ANYWAY}`);
  if (warned.has(model)) return;
  warned.add(model);
  (f.warn ?? defaultWarn)(`--no-capacity-check: ${problem}; timed anyway`);
}

const PRECISIONS = ["f32", "int8", "int4", "int2"] as const;
const isPrecision = (x: unknown): x is Precision =>
  typeof x === "string" && (PRECISIONS as readonly string[]).includes(x);

/**
 * The quantize pass's options: the flags first, then the model description's `precision`,
 * `group_size` and `layer_precision` (kept in the module's attributes).
 */
export function quantizeOptions(f: PipelineFlags, attrs: Readonly<Record<string, Attr>>): QuantizeOptions {
  const layers: { pattern: string; weights: Precision }[] = [];
  for (const spec of f.layerWeights ?? []) {
    const m = /^([^=]+)=(\w+)$/.exec(spec.trim());
    if (!m || !isPrecision(m[2]))
      throw new UserError(`--layer-weights: expected PATTERN=${PRECISIONS.join("|")}, got "${spec}"`);
    layers.push({ pattern: m[1]!, weights: m[2] });
  }
  // The flags' patterns first, then the description's.
  const fromModel = attrs.layer_precision;
  if (Array.isArray(fromModel))
    for (const e of fromModel)
      if (Array.isArray(e) && typeof e[0] === "string" && isPrecision(e[1]))
        layers.push({ pattern: e[0], weights: e[1] });
  const group = f.groupSize ?? (typeof attrs.group_size === "number" ? attrs.group_size : undefined);
  return {
    weights: f.weights ?? (isPrecision(attrs.precision) ? attrs.precision : "f32"),
    ...(f.activations !== undefined ? { activations: f.activations } : {}),
    ...(group !== undefined ? { group } : {}),
    ...(layers.length > 0 ? { layers } : {}),
  };
}
