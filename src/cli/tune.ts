/**
 * `pimc tune <model>`: the target's tuner, through the Target contract (src/driver/tune.ts): on an
 * UPMEM system the Tile-Selector on the model's GEMM shapes against the emulator (--exhaustive: the
 * best legal tiling as well); on a system with a host and a PIM device and no tuner of its own
 * (hbm-pim, sram-pim, roofline), PAPI's alpha per linear layer.
 */
import { Command } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { progress } from "../report/progress.js";
import { loadForCli } from "./io.js";
import { withPipelineFlags } from "./pipeline.js";
import type { PipelineFlags } from "../driver/compile.js";
import { tuneModel } from "../driver/tune.js";
import { resolveWorkload, withWorkloadFlags, type WorkloadFlags } from "./workload-flags.js";

export function tuneCommand() {
  const cmd = new Command("tune")
    .description(
      "tune a model for the system: on UPMEM the Tile-Selector on its GEMM shapes (--exhaustive: against the best tiling on the emulator); on a system with a host and a PIM device, PAPI's alpha per linear layer",
    )
    .argument("<model>", "description file (.pim), HuggingFace folder or IR file (.pimir)")
    .option("--model <name>", "model block to use when the file has several")
    .option(
      "--exhaustive",
      "also search every legal tiling on the emulator (branch-and-bound over the full space, counted in space_size) and report the selector's ratio to the best",
    )
    .option("--no-prune", "with --exhaustive: time every legal tiling (no branch-and-bound)")
    .option("--json", "print one JSON object");
  return withPipelineFlags(withWorkloadFlags(cmd), 2).action(async (path, o) => {
    const opts = o as typeof o & PipelineFlags & WorkloadFlags;
    if (opts.prune === false && !opts.exhaustive) throw new UserError("--no-prune needs --exhaustive");
    const model = loadForCli(path, opts.model);
    const w = resolveWorkload(path, opts);
    const bar = progress();
    let report;
    try {
      ({ report } = await tuneModel(model, opts, w, {
        exhaustive: opts.exhaustive === true,
        prune: opts.prune !== false,
        ...(opts.phase !== undefined ? { phases: [opts.phase] } : {}),
        onItem: (i, n, label) => {
          if (i === 0) bar.start(n);
          else bar.tick();
          bar.label(label);
        },
      }));
    } finally {
      bar.stop();
    }
    process.stdout.write(opts.json ? `${JSON.stringify(report.json)}\n` : `${report.lines.join("\n")}\n`);
  });
}
