/**
 * Target registry. Every folder here with an `index` module that default-exports a Target is a
 * target, found by name at run time: adding a target touches no core file.
 */
import { readdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { UserError } from "../src/errors.js";
import type { LoadedModel } from "../src/frontend/hf/import.js";
import type { Tensor } from "../src/ir/tensor.js";

/** Runs a compiled model function by function, keeping the KV cache between calls. */
export interface FunctionalRunner {
  reset(): void;
  run(func: string, inputs: readonly Tensor[]): Tensor[];
}

export interface Target {
  readonly name: string;
  readonly summary: string;
  /** Compiles `model` for this target and returns a runner that executes it functionally. */
  prepare(model: LoadedModel): FunctionalRunner;
}

const here = dirname(fileURLToPath(import.meta.url));
let cache: Map<string, Target> | undefined;

export async function allTargets(): Promise<Map<string, Target>> {
  if (cache) return cache;
  const found = new Map<string, Target>();
  const dirs = readdirSync(here, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
  for (const d of dirs) {
    const file = ["index.js", "index.ts"].map((f) => join(here, d, f)).find((f) => existsSync(f));
    if (!file) continue;
    const mod = (await import(pathToFileURL(file).href)) as { default?: Target };
    if (mod.default) found.set(mod.default.name, mod.default);
  }
  cache = found;
  return found;
}

export async function getTarget(name: string): Promise<Target> {
  const all = await allTargets();
  const t = all.get(name);
  if (!t) throw new UserError(`unknown target "${name}" (available: ${[...all.keys()].join(", ")})`);
  return t;
}
