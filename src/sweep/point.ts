/**
 * One point of a sweep through the library API (compile, then time a step): the row the results
 * database keeps of it, or the error that stopped it.
 */
import { UserError } from "../errors.js";
import { compile, time, type CompileOptions } from "../index.js";
import { loadModel } from "../frontend/load.js";
import { splitSpec } from "../driver/compile.js";
import type { LoadedModel } from "../frontend/hf/import.js";
import type { Workload } from "../frontend/workload.js";
import type { OpRow } from "../driver/run.js";
import { resolvePath, type Point, type Sweep } from "./spec.js";

/** What a point gave: its measurements, or its error (status "error"). */
export interface PointResult {
  readonly status: "ok" | "error";
  readonly error: string | null;
  readonly warnings: string | null;
  readonly target: string | null;
  /** The step's workload as run (defaults filled in). */
  readonly workload: Workload | null;
  readonly latency_s: number | null;
  readonly tokens_per_step: number | null;
  readonly tokens_per_s: number | null;
  readonly energy_j: number | null;
  readonly j_per_token: number | null;
  readonly tokens_per_j: number | null;
  readonly watts: number | null;
  /** Busy seconds per engine. */
  readonly busy: Readonly<Record<string, number>> | null;
  readonly energy_breakdown: Readonly<Record<string, number>> | null;
  /** Op calls per device (where the placement put the step's ops). */
  readonly placement: Readonly<Record<string, number>> | null;
  readonly ops: readonly OpRow[];
}

const FAILED = {
  target: null,
  workload: null,
  latency_s: null,
  tokens_per_step: null,
  tokens_per_s: null,
  energy_j: null,
  j_per_token: null,
  tokens_per_j: null,
  watts: null,
  busy: null,
  energy_breakdown: null,
  placement: null,
  ops: [],
} as const;

/** Models loaded once per thread (a sweep runs many points of few models). */
const models = new Map<string, LoadedModel>();

function modelAt(spec: string): LoadedModel {
  const known = models.get(spec);
  if (known) return known;
  const { file, name } = splitSpec(spec);
  const model = loadModel(file, name !== undefined ? { model: name } : {});
  if (models.size >= 16) models.delete(models.keys().next().value!);
  models.set(spec, model);
  return model;
}

const sorted = <T>(r: Readonly<Record<string, T>>): Record<string, T> =>
  Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/** runPoint, with any other exception (a bug in pimc) recorded as the point's "internal error". */
export async function runPointSafely(sweep: Sweep, i: number): Promise<PointResult> {
  try {
    return await runPoint(sweep, i);
  } catch (e) {
    return { status: "error", error: `internal error: ${(e as Error).message}`, warnings: null, ...FAILED };
  }
}

/**
 * Runs point `i` of `sweep`. A UserError (a model that does not fit, a bad combination of flags) is
 * the point's result, recorded with its message; any other exception is a bug and propagates.
 */
export async function runPoint(sweep: Sweep, i: number): Promise<PointResult> {
  const p: Point = sweep.points[i]!;
  const warnings: string[] = [];
  try {
    const model = modelAt(resolvePath(sweep, p.model));
    const workload: Partial<Workload> = {
      phase: p.phase,
      batch: p.compile_batch ?? p.batch,
      ...(p.prompt !== null ? { prompt: p.prompt } : {}),
      ...(p.context !== null ? { context: p.context } : {}),
      ...(p.speculation !== null ? { speculation: p.speculation } : {}),
      ...(p.output !== null ? { output: p.output } : {}),
    };
    const options: CompileOptions = {
      workload,
      warn: (m) => void warnings.push(m),
      systemSettings: sweep.settings[i]!,
      ...(p.weights !== null ? { weights: p.weights as NonNullable<CompileOptions["weights"]> } : {}),
      ...(p.activations !== null
        ? { activations: p.activations as NonNullable<CompileOptions["activations"]> }
        : {}),
      ...(p.group_size !== null ? { groupSize: p.group_size } : {}),
      ...(p.attention !== null ? { attention: p.attention as NonNullable<CompileOptions["attention"]> } : {}),
      ...(p.cooperation !== null ? { cooperation: p.cooperation } : {}),
      ...(p.dynamic_placement !== null ? { dynamicPlacement: p.dynamic_placement } : {}),
      ...(p.capacity_check !== null ? { capacityCheck: p.capacity_check } : {}),
    };
    const c = await compile(model, resolvePath(sweep, p.system), options);
    const step = time(c, { batch: p.batch }, p.sub_batches !== null ? { subBatches: p.sub_batches } : {});
    const w = { ...c.workload, batch: p.batch };
    const tokens = w.batch * (w.phase === "prefill" ? w.prompt : w.speculation);
    const r = step.report;
    const ops = (r.ops ?? []).map((o) => ({
      name: o.name,
      device: o.device,
      calls: o.calls,
      seconds: o.seconds,
      bytes: o.bytes,
      flops: o.flops,
      ...(o.joules !== undefined ? { joules: o.joules } : {}),
    }));
    const placement: Record<string, number> = {};
    for (const o of ops) placement[o.device] = (placement[o.device] ?? 0) + o.calls;
    const e = r.energy;
    return {
      status: "ok",
      error: null,
      warnings: warnings.length > 0 ? warnings.join("\n") : null,
      target: c.target.name,
      workload: w,
      latency_s: r.seconds,
      tokens_per_step: tokens,
      tokens_per_s: tokens / r.seconds,
      energy_j: e ? e.joules : null,
      j_per_token: e ? e.joules / tokens : null,
      tokens_per_j: e ? tokens / e.joules : null,
      watts: e ? e.joules / r.seconds : null,
      busy: sorted(r.busy),
      energy_breakdown: e ? sorted(e.breakdown) : null,
      placement: sorted(placement),
      ops,
    };
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    return {
      status: "error",
      error: e.message.split("\n")[0]!,
      warnings: warnings.length > 0 ? warnings.join("\n") : null,
      ...FAILED,
    };
  }
}
