/** `pimc generate <model> --ids 1,2,3`: greedy generation on a target (the reference CPU by default). */
import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { generate } from "../exec/generate.js";
import { defaultWorkload } from "../frontend/workload.js";
import { withPipelineFlags } from "./pipeline.js";
import { compileModel, type PipelineFlags } from "../driver/compile.js";
import { progress } from "../report/progress.js";
import { loadForCli } from "./io.js";
import { WORKLOAD_LIMITS } from "../limits.js";
import { nonNegativeIntUpTo } from "./options.js";

function idRows(v: string): number[][] {
  const rows = v.split(";").map((r) => r.split(",").map((x) => x.trim()));
  if (rows.some((r) => r.length === 0 || r.some((x) => !/^\d+$/.test(x))))
    throw new InvalidArgumentError("expected token ids like 1,2,3 (sequences separated by ';')");
  if (rows.some((r) => r.length !== rows[0]!.length))
    throw new InvalidArgumentError("all sequences must have the same length");
  return rows.map((r) => r.map(Number));
}

export function generateCommand() {
  const cmd = new Command("generate")
    .description("generate tokens greedily with the KV cache")
    .argument("<model>", "description file (.pim) or HuggingFace folder with weights")
    .requiredOption("--ids <ids>", "prompt token ids, e.g. 1,2,3 or 1,2,3;4,5,6 for a batch", idRows)
    .option("--steps <n>", "tokens to generate", nonNegativeIntUpTo(WORKLOAD_LIMITS.output), 8)
    .option("--model <name>", "model block to use when the file has several")
    .option("--json", "print the sequences as JSON");
  return withPipelineFlags(cmd, 2).action(async (path, o) => {
    const opts = o as typeof o & PipelineFlags;
    const model = loadForCli(path, opts.model);
    const max = model.config?.max_positions;
    const total = (opts.ids[0]?.length ?? 0) + opts.steps;
    if (max !== undefined && total > max)
      throw new UserError(
        `--ids and --steps: ${opts.ids[0]?.length ?? 0} prompt + ${opts.steps} generated tokens exceed the ${max} positions of ${model.module.name}`,
      );
    const { module, target, ctx, system } = await compileModel(model, opts, defaultWorkload("decode"), 2);
    const b = opts.ids.length;
    const s = opts.ids[0]?.length ?? 1;
    const runner = target.prepare({ ...model, module, weights: ctx.weights }, system, {
      limits: { B: b, S: s, T: s + opts.steps },
      envs: { prefill: { B: b, S: s, P: 0 }, decode: { B: b, S: 1, P: s } },
    });
    // One step per call: the prompt's prefill, then a decode per token after the first.
    const bar = progress();
    let token = 0;
    let out;
    try {
      if (opts.steps > 0) bar.start(opts.steps);
      out = generate(
        {
          reset: () => runner.reset(),
          run: (func, inputs) => {
            bar.label(`${func}: token ${++token} of ${opts.steps}`);
            const r = runner.run(func, inputs);
            bar.tick();
            return r;
          },
        },
        opts.ids,
        opts.steps,
      );
    } finally {
      bar.stop();
    }
    process.stdout.write(
      opts.json ? `${JSON.stringify(out)}\n` : `${out.map((s) => s.join(" ")).join("\n")}\n`,
    );
  });
}
