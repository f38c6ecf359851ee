/** `pimc dump <model>`: print the IR of a model (a description file, a HF folder or a .pimir file). */
import { Command } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { printFunc, printModule } from "../ir/printer.js";
import { findFunc } from "../ir/module.js";
import { loadForCli, writeFileAtomic } from "./io.js";

export function dumpCommand() {
  return new Command("dump")
    .description("print the IR of a model")
    .argument("<model>", "description file (.pim), HuggingFace folder or IR file (.pimir)")
    .option("--model <name>", "model block to use when the file has several")
    .option("--func <name>", "print only this function (prefill or decode)")
    .option("-o, --output <file>", "write to a file instead of stdout")
    .action((path, opts) => {
      const { module } = loadForCli(path, opts.model);
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
