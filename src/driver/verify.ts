/**
 * Verification (`pimc verify <hf-dir>`): runs a HuggingFace model on a target and compares with the
 * reference logits that HF transformers produced (reference.json): prefill of the prompt, the greedy
 * decode steps through the KV cache, and the whole sequence at once.
 */
import { join } from "node:path";
import { z } from "zod";
import { UserError } from "../errors.js";
import { readTextFile } from "../fsutil.js";
import { parseJson } from "../guards.js";
import { greedyNext, Interpreter, tokenTensor } from "../exec/interpreter.js";
import type { Module } from "../ir/module.js";
import type { WeightStore } from "../ir/weights.js";
import type { Instrument } from "../pipeline/pass.js";
import { importHf } from "../frontend/hf/import.js";
import { zodMessage } from "../ir/attrs.js";
import type { Tensor } from "../ir/tensor.js";
import { defaultWorkload } from "../frontend/workload.js";
import { compileModel, type CompileFlags } from "./compile.js";
import type { Progress } from "../report/progress.js";

const ids2 = z.array(z.array(z.number().int().nonnegative()).min(1)).min(1);
const zReference = z.object({
  prompt: ids2,
  prefill_logits: z.array(z.array(z.array(z.number()))),
  decode: z.array(
    z.object({
      input_ids: z.array(z.array(z.number().int().nonnegative()).length(1)),
      logits: z.array(z.array(z.number())),
    }),
  ),
  full_sequence: ids2,
  full_logits_last: z.array(z.array(z.number())),
});
export type Reference = z.infer<typeof zReference>;

export interface VerifyResult {
  model: string;
  target: string;
  prefill_max_abs_err: number;
  decode_max_abs_err: number;
  full_max_abs_err: number;
  tokens_match: boolean;
  /**
   * Every logit error within the tolerance, and every greedy decision the reference's but near ties
   * (decisions such errors can flip: `near_ties`).
   */
  passed: boolean;
  /** The largest accepted logit error (given, or the default for the target and weights). */
  tolerance: number;
  /**
   * INT4 / INT2 weights without a --tolerance: the errors and token agreement are reported, nothing is
   * checked (passed is then true).
   */
  report_only: boolean;
  /** Greedy decisions (one per sequence per generated token) where our argmax equals the reference's. */
  tokens_agreed: number;
  tokens_total: number;
  /** Reference decisions whose top-2 logit margin is below twice our largest logit error. */
  near_ties: number;
  /** Disagreements on decisions that were not near-ties: these would be real errors. */
  disagreements_beyond_near_ties: number;
  /** --verify-each: the prompt's logits interpreted on the IR before the passes and after each one. */
  passes?: PassError[];
}

/** The reference interpreter's prefill logits on the IR after a pass, against the reference's. */
export interface PassError {
  readonly pass: string;
  readonly prefill_max_abs_err: number;
}

const argmax = (row: readonly number[]): number => row.indexOf(Math.max(...row));

/** Best minus second-best logit. */
function margin(row: readonly number[]): number {
  let a = -Infinity;
  let b = -Infinity;
  for (const x of row)
    if (x > a) {
      b = a;
      a = x;
    } else if (x > b) b = x;
  return a - b;
}

export function readReference(path: string): Reference {
  const raw = parseJson(readTextFile(path, "reference logits (JSON)"), path);
  const r = zReference.safeParse(raw);
  if (!r.success) throw new UserError(`${path}: ${zodMessage(r.error, "field")}`);
  return r.data;
}

/** max |a - b| over logits [B, S, V] at positions `pos` (all when undefined) vs expected [B][V] rows. */
function maxErr(
  got: Tensor,
  want: (b: number, s: number) => readonly number[] | undefined,
  positions: readonly number[],
): number {
  const [b, s, v] = got.shape as [number, number, number];
  const d = got.data as Float32Array;
  let m = 0;
  for (let i = 0; i < b; i++)
    for (const p of positions) {
      const row = want(i, p);
      if (!row || row.length !== v)
        throw new UserError(`reference logits have ${row?.length ?? 0} entries per row, the model ${v}`);
      const off = (i * s + p) * v;
      for (let j = 0; j < v; j++) m = Math.max(m, Math.abs(d[off + j]! - row[j]!));
    }
  return m;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

export interface VerifyOptions {
  /** Target, system and pass flags (the target's pipeline runs before execution). */
  flags: CompileFlags;
  /** Default: 0.25 with INT8 weights, else the target's (targets computing in FP16) or 1e-4. */
  tolerance?: number;
  reference?: string;
  /** Receives the importer's warnings. */
  warn?: (message: string) => void;
  /** Shows the steps: the compile, the prefill, each decode step and the full-sequence prefill. */
  progress?: Progress;
}

export async function verify(dir: string, opts: VerifyOptions): Promise<VerifyResult> {
  const model = importHf(dir);
  for (const w of model.warnings ?? []) opts.warn?.(w);
  const ref = readReference(opts.reference ?? join(dir, "reference.json"));
  const bar = opts.progress;
  bar?.start(3 + ref.decode.length);
  bar?.label("compiling");
  const seq = ref.prompt[0]!.length;
  const fullLen = ref.full_sequence[0]!.length;
  const batch = Math.max(ref.prompt.length, ref.full_sequence.length);
  // The runner is prepared for the reference's batch and lengths: the compile plans the lowering for them.
  const prepared = {
    limits: { B: batch, S: Math.max(seq, fullLen), T: Math.max(fullLen, seq + ref.decode.length) },
    envs: { prefill: { B: batch, S: seq, P: 0 }, decode: { B: batch, S: 1, P: seq } },
  };
  // --verify-each: the reference interpreter runs the prompt on the IR before the passes and after
  // each one, its logits against the reference's (which pass moved them, and how far).
  const passes: PassError[] = [];
  const interpret = (name: string, m: Module, weights: WeightStore): void => {
    const out = new Interpreter(m, weights).run("prefill", [tokenTensor(ref.prompt)])[0]!;
    passes.push({
      pass: name,
      prefill_max_abs_err: maxErr(out, (b, s) => ref.prefill_logits[b]?.[s], range(seq)),
    });
  };
  const perPass: Instrument = {
    start: (m, ctx) => interpret("(imported)", m, ctx.weights),
    after: (p, m, ctx) => interpret(p.name, m, ctx.weights),
  };
  const flags = {
    ...opts.flags,
    emitFor: prepared,
    ...(opts.flags.verifyEach ? { instruments: [...(opts.flags.instruments ?? []), perPass] } : {}),
  };
  const { module, target, ctx, system } = await compileModel(model, flags, defaultWorkload("decode"), 2);
  bar?.tick();
  const runner = target.prepare({ ...model, module, weights: ctx.weights }, system, prepared);

  runner.reset();
  bar?.label("prefill");
  const pre = runner.run("prefill", [tokenTensor(ref.prompt)])[0]!;
  bar?.tick();
  bar?.label(`decoding ${ref.decode.length} steps`);
  const prefillErr = maxErr(pre, (b, s) => ref.prefill_logits[b]?.[s], range(seq));
  // Greedy decisions: ours (argmax of our logits) against the token the reference chose next, with
  // the reference's margin between its best and second-best logit.
  const decisions: { ours: number; theirs: number; margin: number }[] = [];
  const decide = (
    ours: readonly number[],
    theirs: readonly number[],
    rows: readonly (readonly number[])[],
  ): void =>
    ours.forEach((t, i) => decisions.push({ ours: t, theirs: theirs[i]!, margin: margin(rows[i]!) }));
  let expected = greedyNext(pre);
  let previous: readonly (readonly number[])[] = ref.prompt.map((_, b) => ref.prefill_logits[b]![seq - 1]!);
  let decodeErr = 0;
  for (const step of ref.decode) {
    decide(
      expected,
      step.input_ids.map((r) => r[0]!),
      previous,
    );
    const out = runner.run("decode", [tokenTensor(step.input_ids)])[0]!;
    decodeErr = Math.max(
      decodeErr,
      maxErr(out, (b) => step.logits[b], [0]),
    );
    expected = greedyNext(out);
    previous = step.logits;
    bar?.tick();
  }
  if (ref.decode.length > 0) decide(expected, previous.map(argmax), previous);

  runner.reset();
  bar?.label("prefill of the full sequence");
  const full = runner.run("prefill", [tokenTensor(ref.full_sequence)])[0]!;
  bar?.tick();
  const fullErr = maxErr(full, (b) => ref.full_logits_last[b], [full.shape[1]! - 1]);

  const lowbit = opts.flags.weights === "int4" || opts.flags.weights === "int2";
  const reportOnly = lowbit && opts.tolerance === undefined;
  const tolerance =
    opts.tolerance ??
    (reportOnly ? Infinity : opts.flags.weights === "int8" ? 0.25 : (target.tolerance ?? 1e-4));
  const within = (e: number): boolean => e <= tolerance;
  const worst = Math.max(prefillErr, decodeErr, fullErr);
  const agreed = decisions.filter((d) => d.ours === d.theirs).length;
  const tokensMatch = agreed === decisions.length;
  // A decision whose reference top-2 margin is below twice our largest error is a near tie: errors
  // that small may flip it. Any other disagreement fails, whatever the logits' error.
  const beyondNearTies = decisions.filter((d) => d.ours !== d.theirs && d.margin >= 2 * worst).length;
  return {
    model: module.name,
    target: target.name,
    prefill_max_abs_err: prefillErr,
    decode_max_abs_err: decodeErr,
    full_max_abs_err: fullErr,
    tokens_match: tokensMatch,
    passed:
      reportOnly || (within(prefillErr) && within(decodeErr) && within(fullErr) && beyondNearTies === 0),
    tolerance,
    report_only: reportOnly,
    tokens_agreed: agreed,
    tokens_total: decisions.length,
    near_ties: decisions.filter((d) => d.margin < 2 * worst).length,
    disagreements_beyond_near_ties: beyondNearTies,
    ...(opts.flags.verifyEach ? { passes } : {}),
  };
}
