/** `pimc verify <hf-dir>`: compare a target's results with HF reference logits. */
import { Command } from "@commander-js/extra-typings";
import pc from "picocolors";
import { progress } from "../report/progress.js";
import { positiveNumber } from "./options.js";
import { verify } from "../driver/verify.js";
import { withPipelineFlags } from "./pipeline.js";
import { type PipelineFlags } from "../driver/compile.js";
import { warn } from "./io.js";

const e = (x: number): string => x.toExponential(2);

export function verifyCommand() {
  const cmd = new Command("verify")
    .description(
      "compile a HuggingFace model for a target, run it and compare with its reference.json logits",
    )
    .argument("<hf-dir>", "folder with config.json, model.safetensors and reference.json")
    .option(
      "--tolerance <x>",
      "largest accepted absolute logit error (default 1e-4; 0.25 with --weights int8; 2e-2 on FP16 targets such as hbm-pim, 5e-2 on BF16 aim; none with int4 / int2: their errors are reported); the greedy tokens must also match, but for reference near ties (top-2 margin below twice the error, which such an error may flip)",
      positiveNumber,
    )
    .option("--reference <file>", "reference logits (default <hf-dir>/reference.json)")
    .option("--json", "print one JSON object");
  return withPipelineFlags(cmd, 2).action(async (dir, o) => {
    const opts = o as typeof o & PipelineFlags;
    const bar = progress();
    let r;
    try {
      r = await verify(dir, {
        flags: opts,
        ...(opts.tolerance !== undefined ? { tolerance: opts.tolerance } : {}),
        ...(opts.reference !== undefined ? { reference: opts.reference } : {}),
        warn,
        progress: bar,
      });
    } finally {
      bar.stop();
    }
    const tolerance = r.tolerance;
    if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      const mark = (x: number): string => (x <= tolerance ? pc.green(e(x)) : pc.red(e(x)));
      process.stdout.write(
        [
          `model    ${r.model} on ${r.target}`,
          `prefill  max |logit error| ${mark(r.prefill_max_abs_err)}`,
          `decode   max |logit error| ${mark(r.decode_max_abs_err)}`,
          `full     max |logit error| ${mark(r.full_max_abs_err)}`,
          `tokens   ${r.tokens_match ? pc.green("greedy tokens match") : pc.red("greedy tokens differ")}: ${r.tokens_agreed}/${r.tokens_total} agree; ${r.near_ties} reference decision(s) within twice the error, ${r.disagreements_beyond_near_ties} disagreement(s) beyond them`,
          // --verify-each: the IR interpreted after every pass (the reference semantics of each stage).
          ...(r.passes ?? []).map(
            (p, i) =>
              `${i === 0 ? "passes  " : "        "} ${p.pass.padEnd(16)} prefill max |logit error| ${mark(p.prefill_max_abs_err)} (the IR interpreted)`,
          ),
          r.report_only
            ? `REPORTED (${opts.weights} weights: nothing checked; give --tolerance to check)`
            : r.passed
              ? pc.green(
                  `PASSED (tolerance ${tolerance}${r.tokens_match ? "" : `; ${r.tokens_total - r.tokens_agreed} near-tie decision(s) differ`})`,
                )
              : pc.red(`FAILED (tolerance ${tolerance})`),
          "",
        ].join("\n"),
      );
    }
    if (!r.passed) process.exitCode = 1;
  });
}
