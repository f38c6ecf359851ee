/**
 * `pimc serve <model> --system S (--requests FILE | --rate R --count N ...)`: a request trace served
 * with static or continuous batching on a target's device model: throughput, and TTFT / TBT
 * percentiles. The model is compiled once per phase with dynamic placement (each linear layer moves
 * between its devices with the tokens per step, the PAPI rule); every distinct step (batch, tokens,
 * context rounded up to 16) is timed once.
 */
import { Command, Option } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { metrics, simulate, type Request, type StepTiming } from "../exec/serve.js";
import { checkTrace, parseRange, poissonRequests, readRequests } from "../frontend/requests.js";
import { defaultWorkload, workloadEnv, type Workload } from "../frontend/workload.js";
import type { LoadedModel } from "../frontend/hf/import.js";
import { progress, type Progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { int } from "../report/format.js";
import { loadForCli, warn } from "./io.js";
import { TRACE_LIMITS, WORKLOAD_LIMITS } from "../limits.js";
import { positiveInt, positiveIntUpTo, positiveNumber } from "./options.js";
import { withPipelineFlags } from "./pipeline.js";
import { checkFits, compileModel, type PipelineFlags } from "../driver/compile.js";
import { ms } from "./sim.js";
import { capacityProblem, kvTokenBudget } from "../pipeline/capacity.js";

/** Context lengths are timed at multiples of this (attention grows slowly with it). */
const CONTEXT_STEP = 16;

/**
 * Step times from a target's device model (each phase compiled once, each distinct step timed once),
 * and the cached tokens the system's memories leave room for (admission control; Infinity when they
 * are not checked: --no-capacity-check, or a target without memories).
 */
export async function stepTiming(
  model: LoadedModel,
  flags: PipelineFlags,
  trace: readonly Request[],
  maxBatch = 32,
  bar?: Progress,
): Promise<StepTiming & { readonly kvTokens: number }> {
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
  bar?.label("compiling prefill");
  const prefill = await compileModel(model, { ...flags, dynamicPlacement: true }, phases.prefill, 2, true);
  bar?.tick();
  bar?.label("compiling decode");
  const decode = await compileModel(model, { ...flags, dynamicPlacement: true }, phases.decode, 2, true);
  bar?.tick();
  const compiled = { prefill, decode };
  const target = compiled.decode.target;
  for (const phase of ["prefill", "decode"] as const)
    checkFits(model, compiled[phase], phases[phase], { ...flags, warn });
  if (!target.timeCall)
    throw new UserError(
      `pimc serve needs a target that times calls from its device model (hbm-pim, xpu); ${target.name} has none`,
    );
  const memo = new Map<string, number>();
  const time = (phase: "prefill" | "decode", B: number, S: number, P: number): number => {
    const key = `${phase} ${B} ${S} ${P}`;
    let v = memo.get(key);
    if (v === undefined) {
      const c = compiled[phase];
      v = target.timeCall!(
        c.module,
        c.system,
        phase,
        workloadEnv({ ...phases[phase], batch: B, prompt: S, context: P }),
      ).seconds;
      memo.set(key, v);
    }
    return v;
  };
  // Room for the KV cache beside the weights and the activations of a full decode step and of the
  // longest prompt's prefill.
  const map = flags.capacityCheck === false ? undefined : target.memories?.(compiled.decode.system);
  if (flags.capacityCheck === false)
    warn("--no-capacity-check: requests are admitted without reserving KV-cache memory");
  const longest = served.reduce((m, r) => Math.max(m, r.prompt), 1);
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
  };
}

export function serveCommand() {
  const cmd = new Command("serve")
    .description(
      "serve a request trace with static or continuous batching on a target's device model: throughput, TTFT and TBT",
    )
    .argument("<model>", "description file (.pim), HuggingFace folder or IR file (.pimir)")
    .option("--model <name>", "model block to use when the file has several")
    .option("--requests <file>", "request trace: CSV with columns arrival,prompt,output, or a JSON array")
    .option("--rate <r>", "generate Poisson arrivals at r requests per second", positiveNumber)
    .option("--count <n>", "generated requests (default 64)", positiveIntUpTo(TRACE_LIMITS.requests))
    .option("--prompt <n>", "generated prompt lengths: N or N-M (default 128-512)")
    .option("--output <n>", "generated output lengths: N or N-M (default 32-256)")
    .option("--seed <n>", "seed of the generated trace (default 1)", positiveInt)
    .addOption(
      new Option("--batching <policy>", "continuous (iteration-level) or static batches")
        .choices(["continuous", "static"] as const)
        .default("continuous" as const),
    )
    .option(
      "--max-batch <n>",
      "most sequences per step (default 32)",
      positiveIntUpTo(WORKLOAD_LIMITS.batch),
      32,
    )
    .option("--json", "print one JSON object");
  return withPipelineFlags(cmd, 2).action(async (path, o) => {
    const opts = o as typeof o & PipelineFlags;
    const generated = opts.rate !== undefined;
    if (generated === (opts.requests !== undefined))
      throw new UserError("give a request trace (--requests FILE) or a rate to generate one (--rate R)");
    if (!generated)
      for (const [flag, v] of [
        ["--count", opts.count],
        ["--prompt", opts.prompt],
        ["--output", opts.output],
        ["--seed", opts.seed],
      ] as const)
        if (v !== undefined)
          throw new UserError(`${flag} shapes a generated trace; it needs --rate, not --requests`);
    const trace = generated
      ? poissonRequests({
          rate: opts.rate!,
          count: opts.count ?? 64,
          prompt: parseRange(opts.prompt ?? "128-512", "--prompt", TRACE_LIMITS.prompt),
          output: parseRange(opts.output ?? "32-256", "--output", TRACE_LIMITS.output),
          seed: opts.seed ?? 1,
        })
      : readRequests(opts.requests!);
    if (generated) checkTrace(trace, "the generated trace (--rate, --count, --output)");
    const model = loadForCli(path, opts.model);
    const positions = model.config?.max_positions;
    // Two compiles, then one step per request served.
    const bar = progress();
    let result, timing;
    try {
      bar.start(2 + trace.length);
      timing = await stepTiming(model, opts, trace, opts.maxBatch, bar);
      bar.label(`serving ${int(trace.length)} requests (${opts.batching} batching)`);
      result = simulate(trace, timing, {
        batching: opts.batching,
        maxBatch: opts.maxBatch,
        capacity: { tokens: timing.kvTokens, ...(positions !== undefined ? { positions } : {}) },
        onFinish: () => bar.tick(),
      });
    } finally {
      bar.stop();
    }
    const m = metrics(trace, result);
    if (m.requests === 0)
      throw new UserError(
        `${generated ? "the generated trace (--prompt, --output)" : opts.requests!}: none of its ${trace.length} requests can be served: ${m.rejected_positions} past the model's ${positions ?? "?"} positions, ${m.rejected_memory} too long for the memory${Number.isFinite(timing.kvTokens) ? ` (KV cache room for ${int(timing.kvTokens)} tokens)` : ""}`,
      );
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify({ model: model.module.name, batching: opts.batching, max_batch: opts.maxBatch, kv_tokens: Number.isFinite(timing.kvTokens) ? timing.kvTokens : null, ...m, rejected: result.rejected, per_request: result.requests })}\n`,
      );
      return;
    }
    const t = table(["", "p50", "p90", "p99", "mean"], ["left", "right", "right", "right", "right"]);
    t.push(["TTFT", ms(m.ttft.p50), ms(m.ttft.p90), ms(m.ttft.p99), ms(m.ttft.mean)]);
    t.push(["TBT", ms(m.tbt.p50), ms(m.tbt.p90), ms(m.tbt.p99), ms(m.tbt.mean)]);
    process.stdout.write(
      [
        `model     ${model.module.name}; ${opts.batching} batching, at most ${opts.maxBatch} sequences per step`,
        `trace     ${int(trace.length)} requests${m.requests < trace.length ? ` (${int(m.requests)} admitted)` : ""}, ${int(m.tokens)} output tokens${generated ? ` (Poisson, ${opts.rate} req/s, seed ${opts.seed ?? 1})` : ` from ${opts.requests}`}`,
        `served    in ${ms(m.makespan)}: ${m.tokens_per_second.toFixed(1)} tokens/s, ${m.requests_per_second.toFixed(2)} requests/s; ${int(m.prefill_steps)} prefill and ${int(m.decode_steps)} decode steps, ${m.mean_batch.toFixed(1)} sequences per decode step`,
        `admission ${Number.isFinite(timing.kvTokens) ? `KV cache room for ${int(timing.kvTokens)} tokens` : "KV cache not checked"}: ${int(m.waited)} requests waited for memory, ${int(m.rejected_memory)} rejected (too long for the memory), ${int(m.rejected_positions)} rejected (past the model's ${positions ?? "?"} positions)`,
        t.toString(),
        "",
      ].join("\n"),
    );
  });
}
