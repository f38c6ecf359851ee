/** The workload flags (dump, compile): --workload and the per-field overrides. */
import type { Command as PlainCommand } from "commander";
import { Option } from "commander";
import { UserError } from "../errors.js";
import { loadDescription, selectWorkload } from "../frontend/dsl/index.js";
import { defaultWorkload, fitPositions, workloadFromDecl, type Workload } from "../frontend/workload.js";
import { WORKLOAD_LIMITS as W } from "../limits.js";
import { nonNegativeIntUpTo, positiveIntUpTo } from "./options.js";

export function withWorkloadFlags<C>(cmd: C): C {
  return (cmd as unknown as PlainCommand)
    .option("--workload <name>", "a workload block of the model's description file, or FILE.pim[:NAME]")
    .addOption(new Option("--phase <phase>", "prefill or decode").choices(["prefill", "decode"]))
    .option("--batch <n>", "sequences per step", positiveIntUpTo(W.batch))
    .option("--prompt <n>", "prefill: tokens per sequence", positiveIntUpTo(W.prompt))
    .option("--context <n>", "decode: tokens already in the KV cache", nonNegativeIntUpTo(W.context))
    .option("--speculation <n>", "decode: tokens per step", positiveIntUpTo(W.speculation))
    .option(
      "--output-tokens <n>",
      "tokens generated per sequence (the phase mix of a request: 1 prefill, output / speculation decode steps)",
      positiveIntUpTo(W.output),
    ) as unknown as C;
}

export interface WorkloadFlags {
  workload?: string;
  phase?: "prefill" | "decode";
  batch?: number;
  prompt?: number;
  context?: number;
  speculation?: number;
  outputTokens?: number;
}

/**
 * The workload chosen by --workload and the override flags (see `pimc compile --help`). The built-in
 * default (no workload block) is shortened to a model of fewer than its positions (`maxPositions`);
 * explicit values are the caller's to check (checkPositions).
 */
export function resolveWorkload(modelPath: string, o: WorkloadFlags, maxPositions?: number): Workload {
  let w: Workload | undefined;
  if (o.workload !== undefined) {
    const m = /^(.*\.pim)(?::(\w+))?$/.exec(o.workload);
    if (m) w = workloadFromDecl(selectWorkload(loadDescription(m[1]!), m[2]));
    else if (modelPath.endsWith(".pim"))
      w = workloadFromDecl(selectWorkload(loadDescription(modelPath), o.workload));
    else
      throw new UserError(
        `--workload: "${o.workload}" is not a .pim file, and the model is not a description file`,
      );
  } else if (modelPath.endsWith(".pim")) {
    const desc = loadDescription(modelPath);
    const first = desc.workloads.find((x) => o.phase === undefined || x.phase === o.phase);
    if (first) w = workloadFromDecl(first);
  }
  const fit = (d: Workload): Workload => fitPositions(d, maxPositions);
  w ??= fit(defaultWorkload(o.phase ?? "decode"));
  if (o.phase !== undefined && o.phase !== w.phase) w = { ...fit(defaultWorkload(o.phase)), name: w.name };
  return {
    ...w,
    ...(o.batch !== undefined ? { batch: o.batch } : {}),
    ...(o.prompt !== undefined ? { prompt: o.prompt } : {}),
    ...(o.context !== undefined ? { context: o.context } : {}),
    ...(o.speculation !== undefined ? { speculation: o.speculation } : {}),
    ...(o.outputTokens !== undefined ? { output: o.outputTokens } : {}),
  };
}
