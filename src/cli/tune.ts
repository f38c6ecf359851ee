/**
 * `pimc tune <model>`: the UPMEM Tile-Selector on a model's GEMM shapes. For every distinct GEMM
 * (M, N, K, dtype) of the prefill and decode functions under the workload it prints the selector's
 * tiling, its analytical estimate and the emulator's time for it; with --exhaustive also the best
 * legal tiling measured on the emulator (the oracle, over the full space of targets/upmem/space.ts),
 * the ratio of the two times and the size of the space.
 */
import { Command } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { int } from "../report/format.js";
import { gemmShapes, summarize, tilingName, tuneShapes } from "../../targets/upmem/tune.js";
import { loadForCli } from "./io.js";
import { withPipelineFlags } from "./pipeline.js";
import { chooseTarget, type PipelineFlags } from "../driver/compile.js";
import { tuneAlpha } from "./tune-alpha.js";
import { ms } from "./sim.js";
import {
  describeWorkload,
  resolveWorkload,
  withWorkloadFlags,
  type WorkloadFlags,
} from "./workload-flags.js";

const sameTiling = (a: object, b: object): boolean => JSON.stringify(a) === JSON.stringify(b);

export function tuneCommand() {
  const cmd = new Command("tune")
    .description(
      "run the UPMEM Tile-Selector on a model's GEMM shapes (--exhaustive: against the best tiling on the emulator); on an HBM-PIM system, PAPI's alpha per linear layer",
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
    // On an HBM-PIM system: PAPI's alpha (where each linear layer moves from the PIM units to the host).
    const { target } = await chooseTarget(opts);
    if (target.name === "hbm-pim") {
      if (opts.exhaustive)
        throw new UserError("--exhaustive times UPMEM tilings; on hbm-pim, tune reports alpha");
      await tuneAlpha(model, opts, opts.json === true);
      return;
    }
    const w = resolveWorkload(path, opts);
    const phases = opts.phase !== undefined ? [opts.phase] : (["prefill", "decode"] as const);
    const { shapes, system, systemName } = await gemmShapes(model, opts, w, phases);
    if (shapes.length === 0) throw new UserError(`${path}: the model has no GEMM with a constant weight`);
    const t0 = performance.now();
    const bar = progress();
    let results;
    try {
      results = tuneShapes(shapes, system, {
        exhaustive: opts.exhaustive === true,
        prune: opts.prune !== false,
        onShape: (i, n, s) => {
          if (i === 0) bar.start(n);
          else bar.tick();
          bar.label(
            `${opts.exhaustive ? "searching the tilings of" : "timing"} ${s.m}x${s.n}x${s.k} ${s.dtype}`,
          );
        },
      });
    } finally {
      bar.stop();
    }
    const seconds = (performance.now() - t0) / 1e3;
    const sum = summarize(results);
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify({
          model: model.module.name,
          system: systemName,
          workload: w,
          shapes: results,
          ...(sum.geomean_ratio !== undefined
            ? {
                geomean_ratio: sum.geomean_ratio,
                within_5pct_fraction: sum.within_5pct_fraction,
                space_size: sum.space_size,
              }
            : {}),
          mean_select_ms: sum.mean_select_ms,
          max_select_ms: sum.max_select_ms,
        })}\n`,
      );
      return;
    }
    const ex = opts.exhaustive === true;
    const t = table(
      [
        "M",
        "N",
        "K",
        "dtype",
        "selector tiling",
        "estimate",
        "emulated",
        ...(ex ? ["oracle tiling", "oracle", "ratio", "timed / space"] : []),
        "select ms",
      ],
      [
        "right",
        "right",
        "right",
        "left",
        "left",
        "right",
        "right",
        ...(ex ? (["left", "right", "right", "right"] as const) : []),
        "right",
      ],
      { drop: ["select ms", "estimate", "dtype", "timed / space"] },
    );
    for (const r of results)
      t.push([
        String(r.m),
        String(r.n),
        String(r.k),
        r.dtype,
        tilingName(r.selector.tiling),
        ms(r.selector.estimate_s),
        ms(r.selector.emulated_s),
        ...(ex && r.oracle
          ? [
              sameTiling(r.oracle.tiling, r.selector.tiling) ? "(same)" : tilingName(r.oracle.tiling),
              ms(r.oracle.emulated_s),
              r.ratio!.toFixed(4),
              `${int(r.oracle.timed)} / ${int(r.oracle.candidates)}`,
            ]
          : ex
            ? ["", "", "", ""]
            : []),
        r.selector.select_ms.toFixed(3),
      ]);
    const lines = [
      `model     ${model.module.name} on ${systemName}: ${system.dpus} DPUs at ${system.frequency / 1e6} MHz`,
      `workload  ${describeWorkload(w)}; ${phases.join(" and ")} GEMMs (every GEMM on the DPUs)`,
      t.toString(),
      `selector  ${results.length} shapes: ${sum.mean_select_ms.toFixed(3)} ms mean, ${sum.max_select_ms.toFixed(3)} ms max per shape (median of 7 runs after warm-up)`,
    ];
    if (ex) {
      const timed = results.reduce((s, r) => s + (r.oracle?.timed ?? 0), 0);
      const cands = results.reduce((s, r) => s + (r.oracle?.candidates ?? 0), 0);
      lines.push(
        `oracle    ${int(timed)} of ${int(cands)} legal tilings (the full space: docs/upmem.md) timed on the emulator${opts.prune === false ? "" : " (branch-and-bound)"}, ${seconds.toFixed(1)} s`,
        `accuracy  geomean ratio ${sum.geomean_ratio!.toFixed(4)}, within 5% of the best: ${(100 * sum.within_5pct_fraction!).toFixed(1)}% of shapes`,
      );
    }
    process.stdout.write(`${lines.join("\n")}\n`);
  });
}
