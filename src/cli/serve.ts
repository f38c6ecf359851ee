/**
 * `pimc serve <model> --system S (--requests FILE | --rate R --count N ...)`: a request trace served
 * with static or continuous batching on a target's device model (src/driver/serve.ts): throughput,
 * and TTFT / TBT percentiles.
 */
import { Command, Option } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { checkTrace, parseRange, poissonRequests, readRequests } from "../frontend/requests.js";
import { progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { int } from "../report/format.js";
import { loadForCli, warn } from "./io.js";
import { TRACE_LIMITS, WORKLOAD_LIMITS } from "../limits.js";
import { positiveInt, positiveIntUpTo, positiveNumber } from "./options.js";
import { withPipelineFlags } from "./pipeline.js";
import type { PipelineFlags } from "../driver/compile.js";
import { serveTrace } from "../driver/serve.js";
import { energyJson, energyLine, joules } from "../report/energy.js";
import { ms } from "./sim.js";

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
    const bar = progress();
    let served;
    try {
      served = await serveTrace(model, { ...opts, warn }, trace, {
        batching: opts.batching,
        maxBatch: opts.maxBatch,
        progress: bar,
      });
    } finally {
      bar.stop();
    }
    const { result, metrics: m, kvTokens, energy } = served;
    if (m.requests === 0)
      throw new UserError(
        `${generated ? "the generated trace (--prompt, --output)" : opts.requests!}: none of its ${trace.length} requests can be served: ${m.rejected_positions} past the model's ${positions ?? "?"} positions, ${m.rejected_memory} too long for the memory${Number.isFinite(kvTokens) ? ` (KV cache room for ${int(kvTokens)} tokens)` : ""}`,
      );
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify({ model: model.module.name, batching: opts.batching, max_batch: opts.maxBatch, kv_tokens: Number.isFinite(kvTokens) ? kvTokens : null, ...m, ...(energy ? { energy: energyJson(energy, m.tokens, m.makespan) } : {}), rejected: result.rejected, per_request: result.requests })}\n`,
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
        ...(energy
          ? [`energy    ${joules(energy.joules)} in all: ${energyLine(energy, m.tokens, m.makespan)}`]
          : []),
        `admission ${Number.isFinite(kvTokens) ? `KV cache room for ${int(kvTokens)} tokens` : "KV cache not checked"}: ${int(m.waited)} requests waited for memory, ${int(m.rejected_memory)} rejected (too long for the memory), ${int(m.rejected_positions)} rejected (past the model's ${positions ?? "?"} positions)`,
        t.toString(),
        "",
      ].join("\n"),
    );
  });
}
