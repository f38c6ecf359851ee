/** File helpers: atomic writes (no partial output file on failure), checks of output paths. */
import { renameSync, rmSync, statSync, writeFileSync, type Stats } from "node:fs";
import { basename, dirname, join } from "node:path";
import { UserError } from "./errors.js";

/** Writes `data` to `path` through a temporary file in the same folder and a rename. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new UserError(
      `${path}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

const statOrUndefined = (path: string): Stats | undefined => {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
};

/**
 * Checks, before any work, that `path` (given to `flag`) can be written: its folder exists (pimc does
 * not create folders a user may have misspelt) and `path` is a file, or a folder when `kind` is
 * "folder" (the folder itself may be created).
 */
export function checkOutputPath(path: string, flag: string, kind: "file" | "folder" = "file"): void {
  if (path === "") throw new UserError(`${flag}: expected a ${kind} name, got ""`);
  const parent = dirname(path);
  const p = statOrUndefined(parent);
  if (!p) throw new UserError(`${flag} ${path}: folder ${parent} does not exist`);
  if (!p.isDirectory()) throw new UserError(`${flag} ${path}: ${parent} is not a folder`);
  const s = statOrUndefined(path);
  if (s && kind === "file" && s.isDirectory())
    throw new UserError(`${flag} ${path}: is a folder (expected a file name)`);
  if (s && kind === "folder" && !s.isDirectory())
    throw new UserError(`${flag} ${path}: is a file (expected a folder to write into)`);
}
