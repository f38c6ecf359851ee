/**
 * `pimc dump <model>`: print the IR of a model (a description file, a HF folder or a .pimir file).
 * Without pass flags it is the front end's IR; any pass flag (-O, --print-after, --dump-ir, ...) runs
 * the target's pipeline and prints the result, or only what the print flags ask for.
 * `--pipeline` lists the target's default pipeline; `--placement` shows where each op runs and why.
 */
import { Command } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { findFunc } from "../ir/module.js";
import { printFunc, printModule } from "../ir/printer.js";
import { bytes, opb, si } from "../report/format.js";
import { table } from "../report/table.js";
import { placementNotes } from "../../passes/partition.js";
import { getPass } from "../../passes/index.js";
import { loadForCli, writeFileAtomic } from "./io.js";
import { withPipelineFlags } from "./pipeline.js";
import { chooseTarget, compileModel, wantsPipeline, type PipelineFlags } from "../driver/compile.js";
import { resolveWorkload, withWorkloadFlags, type WorkloadFlags } from "./workload-flags.js";

export function dumpCommand() {
  const cmd = new Command("dump")
    .description("print the IR of a model (after the target's passes when pass flags are given)")
    .argument("[model]", "description file (.pim), HuggingFace folder or IR file (.pimir)")
    .option("--model <name>", "model block to use when the file has several")
    .option("--func <name>", "print only this function (prefill or decode)")
    .option("-o, --output <file>", "write to a file instead of stdout")
    .option("--pipeline", "list the target's default pass pipeline")
    .option("--placement", "run the pipeline and print each op's device, Op/B and the reason for the choice");
  return withPipelineFlags(withWorkloadFlags(cmd), 2).action(async (path, o) => {
    const opts = o as typeof o & PipelineFlags & WorkloadFlags;
    if (opts.pipeline) {
      const { target } = await chooseTarget(opts);
      const level = opts.optLevel ?? 2;
      const t = table(["pass", "opt level", `runs at -O${level}`, "summary"], undefined, {
        drop: ["opt level"],
      });
      for (const n of [...target.pipeline, ...(target.lowering ?? [])]) {
        const p = getPass(n, target.passes);
        t.push([
          n,
          String(p.optLevel),
          p.optLevel <= level && !opts.disablePass.includes(n) ? "yes" : "no",
          p.summary,
        ]);
      }
      process.stdout.write(`pipeline of target ${target.name}\n${t.toString()}\n`);
      return;
    }
    if (path === undefined) throw new UserError("dump needs a model (or --pipeline)");
    const model = loadForCli(path, opts.model);
    let module = model.module;
    const w = resolveWorkload(path, opts, model.config?.max_positions);
    if (wantsPipeline(opts) || opts.placement) {
      const c = await compileModel(model, opts, w, 2);
      // The IR after every pass the target runs: its dialect when it has lowering passes.
      module = c.lowered ?? c.module;
      if (opts.placement) {
        const notes = placementNotes(c.ctx).filter((n) => n.func === (opts.func ?? w.phase));
        const t = table(
          ["op", "kind", "device", "flops", "bytes", "Op/B", "reason"],
          ["left", "left", "left", "right", "right", "right", "left"],
          { drop: ["flops", "bytes"] },
        );
        for (const n of notes)
          t.push([n.value, n.opcode, n.device, si(n.flops), bytes(n.bytes), opb(n.flops, n.bytes), n.reason]);
        process.stdout.write(
          `placement of @${opts.func ?? w.phase} on ${c.system.name} (${c.target.name}) for ${w.name}\n${t.toString()}\n`,
        );
        return;
      }
      if (
        opts.output === undefined &&
        (opts.printBefore.length > 0 || opts.printAfter.length > 0 || opts.printAfterAll)
      )
        return;
    }
    let text: string;
    if (opts.func !== undefined) {
      const f = findFunc(module, opts.func);
      if (!f)
        throw new UserError(
          `--func: module has no function "${opts.func}" (has ${module.funcs.map((x) => x.name).join(", ")})`,
        );
      text = printFunc(f);
    } else text = printModule(module);
    if (opts.output !== undefined) writeFileAtomic(opts.output, text);
    else process.stdout.write(text);
  });
}
