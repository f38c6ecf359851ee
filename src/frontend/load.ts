/**
 * Loads a model from what a user names on the command line: a HuggingFace folder, a description file
 * (`.pim`, optionally choosing a model block by name) or a printed IR module (`.pimir`, shape-only).
 */
import { existsSync, statSync } from "node:fs";
import { UserError } from "../errors.js";
import { readTextFile } from "../fsutil.js";
import { parseModule } from "../ir/parser.js";
import { assertValid } from "../ir/verifier.js";
import { WeightStore } from "../ir/weights.js";
import { buildModel, loadDescription, selectModel } from "./dsl/index.js";
import { importHf, type LoadedModel } from "./hf/import.js";

export function loadModel(path: string, opts: { model?: string } = {}): LoadedModel {
  if (!existsSync(path)) throw new UserError(`${path}: no such file or folder`);
  if (statSync(path).isDirectory()) return importHf(path);
  if (path.endsWith(".pimir")) {
    const text = readTextFile(path, "an IR file");
    const module = parseModule(text, path);
    assertValid(module);
    return { module, weights: new WeightStore(), source: path };
  }
  const desc = loadDescription(path);
  return buildModel(selectModel(desc, opts.model), desc);
}
