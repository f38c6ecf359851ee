/** Output helpers: atomic file writes (no partial output on failure). */
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, basename } from "node:path";
import pc from "picocolors";
import { UserError } from "../errors.js";
import { loadModel } from "../frontend/load.js";
import type { LoadedModel } from "../frontend/hf/import.js";

/** A warning on stderr (one line). */
export function warn(message: string): void {
  process.stderr.write(`${pc.yellow("pimc: warning:")} ${message}\n`);
}

/** Writes `data` to `path` through a temporary file in the same folder and a rename. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.tmp`);
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new UserError(
      `${path}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

/** Loads a model named on the command line and prints the importer's warnings. */
export function loadForCli(path: string, model: string | undefined): LoadedModel {
  const m = loadModel(path, model === undefined ? {} : { model });
  for (const w of m.warnings ?? []) warn(w);
  return m;
}
