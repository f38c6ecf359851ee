/** Output helpers of the commands: warnings, model loading. */
import pc from "picocolors";
import { loadModel } from "../frontend/load.js";
import type { LoadedModel } from "../frontend/hf/import.js";

export { writeFileAtomic } from "../fsutil.js";

/** A warning on stderr (one line). */
export function warn(message: string): void {
  process.stderr.write(`${pc.yellow("pimc: warning:")} ${message}\n`);
}

/** Loads a model named on the command line and prints the importer's warnings. */
export function loadForCli(path: string, model: string | undefined): LoadedModel {
  const m = loadModel(path, model === undefined ? {} : { model });
  for (const w of m.warnings ?? []) warn(w);
  return m;
}
