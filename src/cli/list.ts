/** `pimc list ops|targets|families`: what this pimc knows about. */
import { table } from "../report/table.js";
import { Argument, Command } from "@commander-js/extra-typings";
import { FAMILIES } from "../frontend/config.js";
import { allOps } from "../ir/registry.js";
import "../ir/ops/index.js";
import { allTargets, flagName } from "../../targets/index.js";

export function listCommand() {
  return new Command("list")
    .description("list the IR ops, targets or model families pimc supports")
    .addArgument(new Argument("<what>", "what to list").choices(["ops", "targets", "families"] as const))
    .action(async (what) => {
      let t;
      if (what === "ops") {
        t = table(["op", "operands", "summary"]);
        for (const d of allOps()) t.push([d.name, d.operands.join(", "), d.summary]);
      } else if (what === "targets") {
        t = table(["target", "summary", "runs programs on", "capabilities", "own flags"], undefined, {
          drop: ["capabilities", "own flags"],
        });
        for (const x of (await allTargets()).values())
          t.push([
            x.name,
            x.summary,
            // What executes a compiled model (the Target contract): its program emulator, its device model, or the cost model.
            x.emit ? "its emulator" : x.timeCall ? "its device model" : "the cost model",
            [
              x.tune ? "own tuner" : "",
              x.kernel ? "kernels" : "",
              x.ablation ? "ablation" : "",
              x.memories ? "capacity checks" : "",
              x.energy ? "energy" : "",
            ]
              .filter(Boolean)
              .join(", "),
            (x.flags ?? []).map(flagName).join(" "),
          ]);
      } else {
        t = table(["family"]);
        for (const f of FAMILIES) t.push([f]);
      }
      process.stdout.write(`${t.toString()}\n`);
    });
}
