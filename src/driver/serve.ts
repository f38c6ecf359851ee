/**
 * Serving a request trace (`pimc serve`): the model compiled once per phase with dynamic placement
 * (each linear layer moves between its devices with the tokens per step, the PAPI rule), every
 * distinct step (batch, tokens, context rounded up to 16) timed once by the target's device model,
 * the trace served with static or continuous batching under admission control for the KV cache.
 */
import { UserError } from "../errors.js";
import {
  metrics,
  simulate,
  type Request,
  type ServeMetrics,
  type ServeResult,
  type StepTiming,
} from "../exec/serve.js";
import { defaultWorkload, phaseEnvs, phaseMix, workloadEnv, type Workload } from "../frontend/workload.js";
import type { LoadedModel } from "../frontend/hf/import.js";
import type { Progress } from "../report/progress.js";
import { capacityProblem, kvTokenBudget } from "../pipeline/capacity.js";
import {
  allFlags,
  checkFits,
  chooseTarget,
  compileModel,
  defaultWarn,
  type CompileFlags,
} from "./compile.js";
import { preparedTimer } from "./run.js";
import type { Energy } from "../../targets/index.js";
import { sumEnergies } from "../report/energy.js";

/** Context lengths are timed at multiples of this (attention grows slowly with it). */
const CONTEXT_STEP = 16;

/**
 * Step times from a target's device model (each phase compiled once, each distinct step timed once),
 * and the cached tokens the system's memories leave room for (admission control; Infinity when they
 * are not checked: --no-capacity-check, or a target without memories).
 */
export async function stepTiming(
  model: LoadedModel,
  flags: CompileFlags,
  trace: readonly Request[],
  maxBatch = 32,
  bar?: Progress,
): Promise<
  StepTiming & {
    readonly kvTokens: number;
    /**
     * The energy of the steps timed so far (one per step served) and of the system idle for the
     * rest of `seconds`; undefined where not modeled.
     */
    readonly energy: (seconds: number) => Energy | undefined;
  }
> {
  // The phases are compiled for the mean request of those within the model's positions (the others
  // are rejected at admission).
  const max = model.config?.max_positions ?? Infinity;
  const served = trace.filter((r) => r.prompt + r.output <= max);
  const mean = (f: (r: Request) => number) =>
    Math.max(1, Math.round(served.reduce((s, r) => s + f(r), 0) / Math.max(1, served.length)));
  const base = defaultWorkload("decode");
  const phases = {
    prefill: { ...base, phase: "prefill", batch: 1, prompt: mean((r) => r.prompt) } as Workload,
    decode: { ...base, phase: "decode", batch: 1, context: mean((r) => r.prompt + r.output / 2) } as Workload,
  };
  // Targets that emit programs run them as compiled (static placement: their lowering keeps one
  // device per op); the others move each linear layer with the tokens per step (dynamic placement).
  const { target } = await chooseTarget(allFlags(flags));
  // Programs are laid out for the largest steps: the most sequences, the longest prompt, the longest
  // sequence; their tiles are chosen for the mean request.
  const longest = served.reduce((m, r) => Math.max(m, r.prompt), 1);
  const longestSequence = served.reduce((m, r) => Math.max(m, r.prompt + r.output), 1);
  const limits = { B: maxBatch, S: longest, T: longestSequence + CONTEXT_STEP };
  const placement = {
    ...flags,
    dynamicPlacement: target.emit === undefined,
    emitFor: { limits, mix: phaseMix(base) },
  };
  bar?.label("compiling prefill");
  const prefill = await compileModel(model, placement, phases.prefill, 2, true);
  bar?.tick();
  bar?.label("compiling decode");
  const decode = await compileModel(model, placement, phases.decode, 2, true);
  bar?.tick();
  const compiled = { prefill, decode };
  for (const phase of ["prefill", "decode"] as const) checkFits(model, compiled[phase], phases[phase], flags);
  const timers = {
    prefill: preparedTimer(model, prefill, { limits, envs: phaseEnvs(phases.prefill), mix: phaseMix(base) }),
    decode: preparedTimer(model, decode, { limits, envs: phaseEnvs(phases.decode), mix: phaseMix(base) }),
  };
  const memo = new Map<string, { readonly seconds: number; readonly energy?: Energy }>();
  // The energy of the steps served (each timing call is one step), where the target models it.
  const used: Energy[] = [];
  let modeled = true;
  let busy = 0;
  const time = (phase: "prefill" | "decode", B: number, S: number, P: number): number => {
    const key = `${phase} ${B} ${S} ${P}`;
    let v = memo.get(key);
    if (v === undefined) {
      v = timers[phase](phase, workloadEnv({ ...phases[phase], batch: B, prompt: S, context: P }));
      memo.set(key, v);
    }
    if (v.energy) used.push(v.energy);
    else modeled = false;
    busy += v.seconds;
    return v.seconds;
  };
  // Room for the KV cache beside the weights and the activations of a full decode step and of the
  // longest prompt's prefill.
  const map = flags.capacityCheck === false ? undefined : target.memories?.(compiled.decode.system);
  if (flags.capacityCheck === false)
    (flags.warn ?? defaultWarn)(
      "--no-capacity-check: requests are admitted without reserving KV-cache memory",
    );
  const steps: Workload[] = [
    { ...phases.decode, batch: maxBatch, context: 0 },
    { ...phases.prefill, prompt: longest },
  ];
  const kvTokens = map ? kvTokenBudget(compiled.decode.module, map, steps) : Infinity;
  if (kvTokens === undefined)
    throw new UserError(
      `${capacityProblem(compiled.decode.system.name, compiled.decode.module, map!, { ...phases.decode, context: 0 }) ?? `${compiled.decode.system.name}: no room for the KV cache of one token beside the weights and activations`} (--no-capacity-check to serve it anyway)`,
    );
  return {
    prefill: (b, prompt) => time("prefill", b, prompt, 0),
    decode: (b, context) => time("decode", b, 1, Math.ceil(context / CONTEXT_STEP) * CONTEXT_STEP),
    kvTokens,
    energy: (seconds) => {
      if (!modeled || used.length === 0) return undefined;
      // Between steps (waiting for requests) the system draws its idle power, where modeled.
      const idle = target.idlePower?.(compiled.decode.system) ?? {};
      const wait = Math.max(0, seconds - busy);
      const between = Object.fromEntries(Object.entries(idle).map(([k, w]) => [k, w * wait]));
      return sumEnergies([
        ...used,
        { joules: Object.values(between).reduce((s, j) => s + j, 0), breakdown: between },
      ]);
    },
  };
}

export interface ServeTraceOptions {
  readonly batching: "continuous" | "static";
  /** Most sequences per step. */
  readonly maxBatch: number;
  /** Progress: 2 compiles, then one step per request served. */
  readonly progress?: Progress;
}

/**
 * Serves `trace` on the compiled model's system: each request's times (`result`), the trace's
 * throughput and TTFT / TBT percentiles (`metrics`) and the KV-cache room admission used (`kvTokens`,
 * Infinity when not checked).
 */
export async function serveTrace(
  model: LoadedModel,
  flags: CompileFlags,
  trace: readonly Request[],
  opts: ServeTraceOptions,
): Promise<{ result: ServeResult; metrics: ServeMetrics; kvTokens: number; energy?: Energy }> {
  const bar = opts.progress;
  bar?.start(2 + trace.length);
  const timing = await stepTiming(model, flags, trace, opts.maxBatch, bar);
  bar?.label(`serving ${trace.length} requests (${opts.batching} batching)`);
  const positions = model.config?.max_positions;
  const result = simulate(trace, timing, {
    batching: opts.batching,
    maxBatch: opts.maxBatch,
    capacity: { tokens: timing.kvTokens, ...(positions !== undefined ? { positions } : {}) },
    ...(bar ? { onFinish: () => bar.tick() } : {}),
  });
  const m = metrics(trace, result);
  const energy = timing.energy(m.makespan);
  return {
    result,
    metrics: m,
    kvTokens: timing.kvTokens,
    ...(energy ? { energy } : {}),
  };
}
