/** Output helpers of the commands: warnings, model loading, plots. */
import pc from "picocolors";
import { loadModel } from "../frontend/load.js";
import type { LoadedModel } from "../frontend/hf/import.js";
import { writeFileAtomic } from "../fsutil.js";
import type * as Plot from "../report/plot.js";
import { plotFormat } from "./options.js";

export { writeFileAtomic };

/** Renders a plot spec (built once the plot module is loaded) to FILE, SVG or PNG by its extension. */
export async function writePlot(file: string, spec: (p: typeof Plot) => Plot.Spec): Promise<void> {
  const p = await import("../report/plot.js");
  const svg = await p.renderSvg(spec(p));
  writeFileAtomic(file, plotFormat(file) === "png" ? await p.renderPng(svg) : svg);
}

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
