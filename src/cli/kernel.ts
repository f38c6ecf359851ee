/**
 * `pimc kernel <op> <size> [--system FILE | --target NAME]`: one of a target's PIM kernels run alone
 * on its device model (the Target contract's `kernel`; HBM-PIM: PIMSimulator's benchmark, with PIM
 * and streamed without it). Without --system or --target: the one target that has kernels.
 */
import { Command } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { progress } from "../report/progress.js";
import { writeFileAtomic } from "./io.js";
import { SYSTEM_KEY_LIMITS } from "../limits.js";
import { positiveIntUpTo } from "./options.js";
import { chooseTarget } from "../driver/compile.js";
import { allTargets } from "../../targets/index.js";

export function kernelCommand() {
  return new Command("kernel")
    .description(
      "run one PIM kernel of a target alone on its device model (hbm-pim: gemv NxK, add|mul|relu N at DRAM-command level, with PIM and streamed without it)",
    )
    .argument("<op>", "the kernel (pimc kernel --help --system FILE lists a target's)")
    .argument(
      "<size>",
      "hbm-pim: gemv NxK (outputs x inputs); element-wise: N (e.g. 1M = 2^20); aim: gemv NxK, mul|silu|rmsnorm|rope N, softmax HxT, attention HxTxD, trace FILE",
    )
    .option("--system <file>", "system description FILE.pim[:NAME] (default: its target's default system)")
    .option("--target <name>", "target (default: the system's, else the one target with kernels)")
    .option("--no-baseline", "skip the run without PIM")
    .option(
      "--channels <n>",
      "channels overriding the system's (hbm-pim: pseudo-channels)",
      positiveIntUpTo(SYSTEM_KEY_LIMITS.pseudo_channels!),
    )
    .option(
      "--ranks <n>",
      "ranks overriding the system's (hbm-pim: PIMSimulator's 1- and 16-channel configurations have 1)",
      positiveIntUpTo(SYSTEM_KEY_LIMITS.ranks!),
    )
    .option(
      "--refresh <policy>",
      "the controller's refresh policy overriding the system's (hbm-pim: jedec, deferred as PIMSimulator's controller does it, off)",
    )
    .option("--trace <file>", "write a Chrome/Perfetto trace of the runs' device commands")
    .option(
      "--emit <file>",
      "write the kernel's program in its device's input format (aim: a trace the AiM simulator and pimc kernel trace read)",
    )
    .option("--json", "print one JSON object")
    .action(async (op, size, o) => {
      const withKernels = [...(await allTargets()).values()].filter((t) => t.kernel);
      // Without a system or target: the one target that has this kernel.
      const offering = withKernels.filter((t) => t.kernel!.ops.includes(op));
      const named =
        o.system === undefined && o.target === undefined
          ? offering.length === 1
            ? offering[0]!.name
            : undefined
          : o.target;
      if (o.system === undefined && named === undefined)
        throw new UserError(
          `pimc kernel ${op}: name a system (--system) or target (--target) with kernels: ${withKernels.map((t) => `${t.name} (${t.kernel!.ops.join(", ")})`).join(", ")}`,
        );
      const { target, system } = await chooseTarget({
        ...(o.system !== undefined ? { system: o.system } : {}),
        ...(named !== undefined ? { target: named } : {}),
      });
      if (!target.kernel)
        throw new UserError(
          `target ${target.name} has no kernels to run alone (targets with kernels: ${withKernels.map((t) => t.name).join(", ")})`,
        );
      const bar = progress();
      let r;
      try {
        r = target.kernel.run(system, op, size, {
          baseline: o.baseline !== false,
          ...(o.channels !== undefined ? { channels: o.channels } : {}),
          ...(o.ranks !== undefined ? { ranks: o.ranks } : {}),
          ...(o.refresh !== undefined ? { refresh: o.refresh } : {}),
          progress: bar,
        });
      } finally {
        bar.stop();
      }
      if (o.emit !== undefined && !r.program)
        throw new UserError(`--emit: target ${target.name} writes no kernel programs (aim does)`);
      if (o.trace !== undefined) writeFileAtomic(o.trace, r.trace());
      if (o.emit !== undefined) writeFileAtomic(o.emit, r.program!());
      process.stdout.write(o.json ? `${JSON.stringify(r.json)}\n` : `${r.lines.join("\n")}\n`);
    });
}
