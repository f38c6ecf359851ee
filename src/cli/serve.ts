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
import { parseRange, poissonRequests, readRequests } from "../frontend/requests.js";
import { defaultWorkload, workloadEnv, type Workload } from "../frontend/workload.js";
import type { LoadedModel } from "../frontend/hf/import.js";
import { progress, type Progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { int } from "../report/format.js";
import { loadForCli } from "./io.js";
import { positiveInt, positiveNumber } from "./options.js";
import { compileModel, withPipelineFlags, type PipelineFlags } from "./pipeline.js";
import { ms } from "./sim.js";

/** Context lengths are timed at multiples of this (attention grows slowly with it). */
const CONTEXT_STEP = 16;

/** Step times from a target's device model: each phase compiled once, each distinct step timed once. */
export async function stepTiming(
  model: LoadedModel,
  flags: PipelineFlags,
  trace: readonly Request[],
  bar?: Progress,
): Promise<StepTiming> {
  const mean = (f: (r: Request) => number) => Math.round(trace.reduce((s, r) => s + f(r), 0) / trace.length);
  const base = defaultWorkload("decode");
  const phases = {
    prefill: { ...base, phase: "prefill", batch: 1, prompt: mean((r) => r.prompt) } as Workload,
    decode: { ...base, phase: "decode", batch: 1, context: mean((r) => r.prompt + r.output / 2) } as Workload,
  };
  bar?.label("compiling prefill");
  const prefill = await compileModel(model, { ...flags, dynamicPlacement: true }, phases.prefill, 2);
  bar?.tick();
  bar?.label("compiling decode");
  const decode = await compileModel(model, { ...flags, dynamicPlacement: true }, phases.decode, 2);
  bar?.tick();
  const compiled = { prefill, decode };
  const target = compiled.decode.target;
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
  return {
    prefill: (b, prompt) => time("prefill", b, prompt, 0),
    decode: (b, context) => time("decode", b, 1, Math.ceil(context / CONTEXT_STEP) * CONTEXT_STEP),
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
    .option("--count <n>", "generated requests (default 64)", positiveInt)
    .option("--prompt <n>", "generated prompt lengths: N or N-M (default 128-512)")
    .option("--output <n>", "generated output lengths: N or N-M (default 32-256)")
    .option("--seed <n>", "seed of the generated trace (default 1)", positiveInt)
    .addOption(
      new Option("--batching <policy>", "continuous (iteration-level) or static batches")
        .choices(["continuous", "static"] as const)
        .default("continuous" as const),
    )
    .option("--max-batch <n>", "most sequences per step (default 32)", positiveInt, 32)
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
          prompt: parseRange(opts.prompt ?? "128-512", "--prompt"),
          output: parseRange(opts.output ?? "32-256", "--output"),
          seed: opts.seed ?? 1,
        })
      : readRequests(opts.requests!);
    const model = loadForCli(path, opts.model);
    // Two compiles, then one step per request served.
    const bar = progress();
    let result;
    try {
      bar.start(2 + trace.length);
      const timing = await stepTiming(model, opts, trace, bar);
      bar.label(`serving ${int(trace.length)} requests (${opts.batching} batching)`);
      result = simulate(trace, timing, {
        batching: opts.batching,
        maxBatch: opts.maxBatch,
        onFinish: () => bar.tick(),
      });
    } finally {
      bar.stop();
    }
    const m = metrics(trace, result);
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify({ model: model.module.name, batching: opts.batching, max_batch: opts.maxBatch, ...m, per_request: result.requests })}\n`,
      );
      return;
    }
    const t = table(["", "p50", "p90", "p99", "mean"], ["left", "right", "right", "right", "right"]);
    t.push(["TTFT", ms(m.ttft.p50), ms(m.ttft.p90), ms(m.ttft.p99), ms(m.ttft.mean)]);
    t.push(["TBT", ms(m.tbt.p50), ms(m.tbt.p90), ms(m.tbt.p99), ms(m.tbt.mean)]);
    process.stdout.write(
      [
        `model     ${model.module.name}; ${opts.batching} batching, at most ${opts.maxBatch} sequences per step`,
        `trace     ${int(m.requests)} requests, ${int(m.tokens)} output tokens${generated ? ` (Poisson, ${opts.rate} req/s, seed ${opts.seed ?? 1})` : ` from ${opts.requests}`}`,
        `served    in ${ms(m.makespan)}: ${m.tokens_per_second.toFixed(1)} tokens/s, ${m.requests_per_second.toFixed(2)} requests/s; ${int(m.prefill_steps)} prefill and ${int(m.decode_steps)} decode steps, ${m.mean_batch.toFixed(1)} sequences per decode step`,
        t.toString(),
        "",
      ].join("\n"),
    );
  });
}
