/**
 * Workloads: the phase and sizes a model is compiled and costed for (`workload` blocks of the
 * description language), and the values they give the IR's dimensions B, S and P.
 */
import { z } from "zod";
import { SourceError, UserError } from "../errors.js";
import { WORKLOAD_LIMITS as L } from "../limits.js";
import type { WorkloadDecl } from "./dsl/index.js";

export interface Workload {
  name: string;
  phase: "prefill" | "decode";
  /** Sequences per step. */
  batch: number;
  /** Prefill: tokens per sequence. */
  prompt: number;
  /** Decode: tokens already in the KV cache. */
  context: number;
  /** Decode: tokens per step (speculative decoding). */
  speculation: number;
  /**
   * Tokens generated per sequence: a request is one prefill call and output / speculation decode
   * calls (the phase mix weights are laid out for when MRAM cannot hold a layout per phase).
   */
  output: number;
}

const posInt = z.number().int().positive();
const zWorkload = z.strictObject({
  phase: z.enum(["prefill", "decode"]),
  batch: posInt.max(L.batch).default(1),
  prompt: posInt.max(L.prompt).default(128),
  context: posInt.max(L.context).default(1024),
  speculation: posInt.max(L.speculation).default(1),
  output: posInt.max(L.output).default(128),
});

/** Keys that only make sense in one phase. */
const ONLY: Readonly<Record<string, "prefill" | "decode">> = {
  prompt: "prefill",
  context: "decode",
  speculation: "decode",
};

export function workloadFromDecl(decl: WorkloadDecl): Workload {
  const raw: Record<string, unknown> = {};
  const keys = Object.keys(zWorkload.shape);
  for (const [k, e] of Object.entries(decl.entries)) {
    if (!keys.includes(k))
      throw new SourceError(e.loc, `unknown key '${k}' in a workload (keys: ${keys.join(", ")})`);
    raw[k] = e.value;
  }
  const r = zWorkload.safeParse(raw);
  if (!r.success) {
    const key = String(r.error.issues[0]!.path[0] ?? "");
    const e = decl.entries[key];
    if (!e) throw new SourceError(decl.loc, `workload ${decl.name}: missing key ${key} (prefill or decode)`);
    const got =
      typeof e.value === "object" ? "a list or block" : JSON.stringify(e.value).replace(/^"(.*)"$/, "$1");
    const issue = r.error.issues[0]!;
    const want =
      key === "phase"
        ? "prefill or decode"
        : `a positive integer${issue.code === "too_big" ? ` up to ${String(issue.maximum)} (pimc's limit)` : ""}`;
    throw new SourceError(e.node.loc, `${key} must be ${want}, got ${got}`);
  }
  const w = r.data;
  for (const [k, phase] of Object.entries(ONLY)) {
    const e = decl.entries[k];
    if (e && w.phase !== phase)
      throw new SourceError(e.loc, `${k} is for ${phase} workloads (this one is ${w.phase})`);
  }
  return { name: decl.name, ...w };
}

/** Dimension values of a workload: prefill B, S = prompt, P = 0; decode B, S = speculation, P = context. */
export function workloadEnv(w: Workload): Record<string, number> {
  return w.phase === "prefill"
    ? { B: w.batch, S: w.prompt, P: 0 }
    : { B: w.batch, S: w.speculation, P: w.context };
}

/** The workload used when none is given (the defaults of docs/language.md). */
export function defaultWorkload(phase: "prefill" | "decode"): Workload {
  return { name: "default", phase, batch: 1, prompt: 128, context: 1024, speculation: 1, output: 128 };
}

/**
 * A workload from a script's object (the library API): the phase's defaults under the given fields,
 * each checked against pimc's limits; a bad field is a UserError naming it (`workload.batch ...`).
 * With `maxPositions` the defaults of prompt and context are shortened to a small model's positions
 * (as the CLI does); given values are kept (and checked against the positions by the caller).
 */
export function workloadFrom(input: Readonly<Partial<Workload>>, maxPositions?: number): Workload {
  const { name = "default", ...given } = input;
  const d = fitPositions(defaultWorkload(given.phase ?? "decode"), maxPositions);
  const fields = { prompt: d.prompt, context: d.context, ...given };
  const r = zWorkload.safeParse({ phase: "decode", ...fields });
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const key = issue.path.map(String).join(".") || "(object)";
    const limit = issue.code === "too_big" ? ` up to ${String(issue.maximum)} (pimc's limit)` : "";
    const want = key === "phase" ? "prefill or decode" : `a positive integer${limit}`;
    const detail = issue.code === "unrecognized_keys" ? issue.message : `must be ${want}`;
    throw new UserError(`workload.${key}: ${detail}`);
  }
  return { name: String(name), ...r.data };
}

/** A default workload shortened to a model's positions (the prompt, and the context with its step's tokens). */
export function fitPositions(d: Workload, maxPositions: number | undefined): Workload {
  return maxPositions === undefined
    ? d
    : {
        ...d,
        prompt: Math.min(d.prompt, maxPositions),
        context: Math.max(0, Math.min(d.context, maxPositions - d.speculation)),
      };
}

/** Calls of each function per request: one prefill, then the decode steps that generate `output` tokens. */
export function phaseMix(w: Workload): Record<"prefill" | "decode", number> {
  return { prefill: 1, decode: Math.ceil(w.output / w.speculation) };
}

/** Dimension values of both functions under a workload (its batch and lengths apply to each phase). */
export function phaseEnvs(w: Workload): Record<"prefill" | "decode", Record<string, number>> {
  return {
    prefill: workloadEnv({ ...w, phase: "prefill" }),
    decode: workloadEnv({ ...w, phase: "decode" }),
  };
}

/** One line naming a workload: `decode_b1: decode, batch 1, context 1024, 1 token(s) per step`. */
export function describeWorkload(w: Workload): string {
  return w.phase === "prefill"
    ? `${w.name}: prefill, batch ${w.batch}, prompt ${w.prompt} tokens`
    : `${w.name}: decode, batch ${w.batch}, context ${w.context}, ${w.speculation} token(s) per step`;
}

/** The sizes a program serves for some calls: their largest batch, tokens per call and cached tokens after a call. */
export function envLimits(envs: Readonly<Record<string, Readonly<Record<string, number>>>>): {
  B: number;
  S: number;
  T: number;
} {
  const vs = Object.values(envs);
  const max = (f: (e: Readonly<Record<string, number>>) => number): number => Math.max(1, ...vs.map(f));
  return { B: max((e) => e.B ?? 1), S: max((e) => e.S ?? 1), T: max((e) => (e.P ?? 0) + (e.S ?? 1)) };
}
