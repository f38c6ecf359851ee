/** The `pimc` command line. Each command lives in its own file; this one wires them to commander. */
import { Command, CommanderError, type Option } from "@commander-js/extra-typings";
import pc from "picocolors";
import { UserError } from "../errors.js";
import { PIMC_VERSION } from "../version.js";
import { checkOutputPath } from "../fsutil.js";
import { setWide } from "../report/table.js";
import { compileCommand } from "./compile.js";
import { dumpCommand } from "./dump.js";
import { generateCommand } from "./generate.js";
import { kernelCommand } from "./kernel.js";
import { serveCommand } from "./serve.js";
import { listCommand } from "./list.js";
import { simCommand } from "./sim.js";
import { benchCommand } from "./bench.js";
import { tuneCommand } from "./tune.js";
import { verifyCommand } from "./verify-cmd.js";
import { sweepCommand } from "./sweep.js";
import { targetFlagValues, useTargetFlags } from "./pipeline.js";
import { allTargets } from "../../targets/index.js";
import type { Command as PlainCommand } from "commander";

export function makeProgram(): Command {
  const program = new Command()
    .name("pimc")
    .description("Compile transformer-decoder LLMs to Processing-In-Memory programs and emulate them")
    .version(PIMC_VERSION)
    .option("--wide", "print tables at full width (default: fit the terminal's, or COLUMNS)")
    .configureHelp({ showGlobalOptions: true })
    .hook("preAction", (root) => setWide(root.opts().wide === true))
    .configureOutput({ outputError: (str, write) => write(`pimc: ${str}`) })
    .exitOverride();
  program.addCommand(dumpCommand());
  program.addCommand(compileCommand());
  program.addCommand(verifyCommand());
  program.addCommand(generateCommand());
  program.addCommand(simCommand());
  program.addCommand(benchCommand());
  program.addCommand(tuneCommand());
  program.addCommand(kernelCommand());
  program.addCommand(serveCommand());
  program.addCommand(sweepCommand());
  program.addCommand(listCommand());
  for (const c of program.commands)
    c.exitOverride().configureOutput({ outputError: (str, write) => write(`pimc: ${str}`) });
  // Output paths are checked before the command loads anything (no work lost to a misspelt folder).
  program.hook("preAction", (_program, cmd) => {
    // The target flags given, by key (PipelineFlags.targetFlags).
    cmd.setOptionValue("targetFlags", targetFlagValues(cmd as unknown as PlainCommand));
    const values = cmd.opts();
    for (const o of outputOptions(cmd)) {
      const v = values[o.attributeName()];
      if (typeof v === "string")
        checkOutputPath(v, o.long ?? o.flags, o.flags.includes("<dir>") ? "folder" : "file");
    }
  });
  return program as unknown as Command;
}

/**
 * The options of a command that name a file or folder it writes: by convention their argument is
 * `<file>` or `<dir>` and their description starts with "write" (test/inputs.test.ts lists them).
 */
export function outputOptions(cmd: { readonly options: readonly Option[] }): Option[] {
  return cmd.options.filter((o) => /<(file|dir)>/.test(o.flags) && /^write\b/.test(o.description ?? ""));
}

export async function main(argv: readonly string[]): Promise<number> {
  setWide(false);
  try {
    useTargetFlags(await allTargets(), argv);
    await makeProgram().parseAsync([...argv], { from: "user" });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return 0;
      // `pimc help` asked for it (0); `pimc` alone printed it for want of a command (2: a usage error).
      if (e.code === "commander.help") return e.exitCode === 0 ? 0 : 2;
      return 2; // commander already printed the one-line message
    }
    if (e instanceof UserError) {
      process.stderr.write(`${pc.red("pimc: error:")} ${e.message.split("\n")[0]}\n`);
      return 2;
    }
    process.stderr.write(`pimc: internal error: ${(e as Error).stack ?? String(e)}\n`);
    return 1;
  }
}
