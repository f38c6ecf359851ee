/** The `pimc` command line. Each command lives in its own file; this one wires them to commander. */
import { Command, CommanderError } from "@commander-js/extra-typings";
import pc from "picocolors";
import { UserError } from "../errors.js";
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

export function makeProgram(): Command {
  const program = new Command()
    .name("pimc")
    .description("Compile transformer-decoder LLMs to Processing-In-Memory programs and emulate them")
    .version("0.1.0")
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
  program.addCommand(listCommand());
  for (const c of program.commands)
    c.exitOverride().configureOutput({ outputError: (str, write) => write(`pimc: ${str}`) });
  return program as unknown as Command;
}

export async function main(argv: readonly string[]): Promise<number> {
  setWide(false);
  try {
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
