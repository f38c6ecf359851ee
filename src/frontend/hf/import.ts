/**
 * Import of a HuggingFace model folder: config.json + model.safetensors (or a sharded
 * model.safetensors.index.json). Builds the family's decoder module and binds every constant to a
 * tensor of the checkpoint, checking that none is missing, none is left over and all shapes agree.
 */
import { readTextFile } from "../../fsutil.js";
import { parseJson } from "../../guards.js";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../../errors.js";
import type { DType } from "../../ir/dtype.js";
import type { Module } from "../../ir/module.js";
import { shapeSize, type Tensor } from "../../ir/tensor.js";
import { shapeToString } from "../../ir/types.js";
import { WeightStore } from "../../ir/weights.js";
import type { ModelConfig } from "../config.js";
import { buildFamilyModule } from "../families/index.js";
import { parseHfConfig } from "./config.js";
import { SafetensorsFile } from "./safetensors.js";

export interface LoadedModel {
  readonly module: Module;
  readonly weights: WeightStore;
  /** The family configuration; absent for custom graphs. */
  readonly config?: ModelConfig;
  /** Where it came from (folder or description file), for messages. */
  readonly source: string;
  /** Things the user should know (printed on stderr by the CLI). */
  readonly warnings?: readonly string[];
}

/** The tensors of a checkpoint, possibly spread over shards. */
class Checkpoint {
  constructor(private readonly where: Map<string, SafetensorsFile>) {}

  static open(dir: string): Checkpoint {
    const single = join(dir, "model.safetensors");
    const index = join(dir, "model.safetensors.index.json");
    const where = new Map<string, SafetensorsFile>();
    if (existsSync(single)) {
      const f = SafetensorsFile.open(single);
      for (const name of f.entries.keys()) where.set(name, f);
    } else if (existsSync(index)) {
      const raw = parseJson(readTextFile(index, "a shard index (JSON)"), index);
      const map =
        typeof raw === "object" && raw !== null ? (raw as { weight_map?: unknown }).weight_map : undefined;
      if (typeof map !== "object" || map === null)
        throw new UserError(`${index}: field weight_map: expected an object`);
      const shards = new Map<string, SafetensorsFile>();
      for (const [name, file] of Object.entries(map)) {
        if (typeof file !== "string")
          throw new UserError(`${index}: field weight_map.${name}: expected a file name`);
        let f = shards.get(file);
        if (!f) {
          f = SafetensorsFile.open(join(dir, file));
          shards.set(file, f);
        }
        if (!f.has(name))
          throw new UserError(`${join(dir, file)}: tensor "${name}" listed in ${index} is not in the file`);
        where.set(name, f);
      }
    } else throw new UserError(`${dir}: no model.safetensors or model.safetensors.index.json`);
    return new Checkpoint(where);
  }

  has(name: string): boolean {
    return this.where.has(name);
  }
  names(): string[] {
    return [...this.where.keys()];
  }
  shape(name: string): readonly number[] {
    return this.where.get(name)!.entries.get(name)!.shape;
  }
  dtype(name: string): DType {
    return this.where.get(name)!.entries.get(name)!.dtype;
  }
  /** The dtype string of the file ("F32", "I32", ...). */
  fileDtype(name: string): string {
    return this.where.get(name)!.entries.get(name)!.fileDtype;
  }
  file(name: string): string {
    return this.where.get(name)!.path;
  }
  read(name: string): Tensor {
    return this.where.get(name)!.readF32(name);
  }
}

/** How a constant is made from checkpoint tensors. */
interface Recipe {
  readonly uses: readonly string[];
  /** Shape of the constant this recipe produces. */
  readonly shape: readonly number[];
  load(): Tensor;
}

/** Stacks same-shaped tensors on a new leading axis. */
function stack(ck: Checkpoint, names: readonly string[]): Recipe {
  const inner = ck.shape(names[0]!);
  for (const n of names)
    if (ck.shape(n).join() !== inner.join())
      throw new UserError(
        `${ck.file(n)}: tensor "${n}" has shape ${shapeToString(ck.shape(n))}, expected ${shapeToString(inner)}`,
      );
  return {
    uses: names,
    shape: [names.length, ...inner],
    load() {
      const size = shapeSize(inner);
      const out = new Float32Array(names.length * size);
      names.forEach((n, i) => out.set(ck.read(n).data as Float32Array, i * size));
      return { dtype: "f32", shape: [names.length, ...inner], data: out };
    },
  };
}

/** Rows [start, start+len) of axis 1 of a rank-3 tensor. */
function slice1(ck: Checkpoint, name: string, start: number, len: number): Recipe {
  const [e, r, c] = ck.shape(name) as [number, number, number];
  return {
    uses: [name],
    shape: [e, len, c],
    load() {
      const src = ck.read(name).data as Float32Array;
      const out = new Float32Array(e * len * c);
      for (let i = 0; i < e; i++)
        out.set(src.subarray((i * r + start) * c, (i * r + start + len) * c), i * len * c);
      return { dtype: "f32", shape: [e, len, c], data: out };
    },
  };
}

const direct = (ck: Checkpoint, name: string): Recipe => ({
  uses: [name],
  shape: ck.shape(name),
  load: () => ck.read(name),
});

/**
 * Finds the checkpoint tensor(s) for a constant: the exact name, the name without the model prefix
 * (checkpoints of the bare base model), and Mixtral's expert layouts (per-expert w1/w3/w2, as
 * transformers writes checkpoints, or fused gate_up_proj/down_proj, the transformers 5 module layout).
 */
function recipeFor(ck: Checkpoint, name: string, cfg: ModelConfig): Recipe | undefined {
  const alias = (n: string): string | undefined =>
    [n, n.replace(/^(model|transformer)\./, ""), n.replace(/^model\.decoder\./, "decoder.")].find((x) =>
      ck.has(x),
    );
  const hit = alias(name);
  if (hit) return direct(ck, hit);
  const m = /^model\.layers\.(\d+)\.block_sparse_moe\.(gate\.weight|experts\.(gate|up|down))$/.exec(name);
  if (!m || cfg.experts === undefined) return undefined;
  const layer = `model.layers.${m[1]}`;
  if (m[2] === "gate.weight") {
    const r = alias(`${layer}.mlp.gate.weight`);
    return r ? direct(ck, r) : undefined;
  }
  const which = m[3]!;
  const legacy = { gate: "w1", up: "w3", down: "w2" }[which]!;
  const perExpert = Array.from({ length: cfg.experts }, (_, e) =>
    alias(`${layer}.block_sparse_moe.experts.${e}.${legacy}.weight`),
  );
  if (perExpert.every((x) => x !== undefined)) return stack(ck, perExpert as string[]);
  if (which === "down") {
    const r = alias(`${layer}.mlp.experts.down_proj`);
    return r ? direct(ck, r) : undefined;
  }
  const fused = alias(`${layer}.mlp.experts.gate_up_proj`);
  if (!fused) return undefined;
  const rows = ck.shape(fused)[1]!;
  return slice1(ck, fused, which === "gate" ? 0 : rows / 2, rows / 2);
}

/** Checkpoint entries that are not parameters (buffers of older exports) or are tied copies. */
function ignorable(name: string, cfg: ModelConfig): boolean {
  if (/rotary_emb\.inv_freq$/.test(name)) return true;
  if (cfg.family === "gpt2" && /\.attn\.(masked_)?bias$/.test(name)) return true;
  return cfg.tie_embeddings && name === "lm_head.weight";
}

/** Element type of a checkpoint: that of its token embedding (norms may be kept in fp32). */
function checkpointDType(ck: Checkpoint): "f32" | "f16" | "bf16" {
  const emb = ck.names().find((n) => /(embed_tokens|wte)\.weight$/.test(n)) ?? ck.names()[0];
  const dt = emb ? ck.dtype(emb) : "f32";
  return dt === "f16" || dt === "bf16" ? dt : "f32";
}

/**
 * Binds every constant of `module` to checkpoint tensors of the HF folder `dir`: reports missing
 * tensors, shape disagreements and tensors the module does not use.
 */
export function bindCheckpoint(dir: string, module: Module, config?: ModelConfig): WeightStore {
  const ck = Checkpoint.open(dir);
  return bind(ck, dir, module, config);
}

/**
 * GPT-2's `_keys_to_ignore_on_load_missing` pattern "attn.bias" (an unescaped dot) also matches
 * `c_attn.bias`: checkpoints written by transformers' save_pretrained can lack it, and transformers
 * then loads them with the bias zero-initialised, silently. We do the same, with a warning.
 */
function zeroCAttnBias(
  name: string,
  shape: readonly number[],
  config: ModelConfig | undefined,
): Recipe | undefined {
  if (config?.family !== "gpt2" || !/\.attn\.c_attn\.bias$/.test(name)) return undefined;
  return { uses: [], shape, load: () => ({ dtype: "f32", shape, data: new Float32Array(shapeSize(shape)) }) };
}

/** Our dtypes of the checkpoint tensors a model's weights may be read from (F64 is listed as f32). */
const FLOAT_DTYPES: ReadonlySet<DType> = new Set(["f32", "f16", "bf16"]);

function bind(
  ck: Checkpoint,
  dir: string,
  module: Module,
  config?: ModelConfig,
  warnings: string[] = [],
): WeightStore {
  const weights = new WeightStore();
  const used = new Set<string>();
  const what = config ? `the ${config.family} config` : "the model";
  const zeroed: string[] = [];
  for (const c of module.consts) {
    let r = config ? recipeFor(ck, c.name, config) : ck.has(c.name) ? direct(ck, c.name) : undefined;
    if (!r) {
      r = zeroCAttnBias(c.name, c.type.shape as number[], config);
      if (r) zeroed.push(c.name);
    }
    if (!r)
      throw new UserError(
        `${dir}: missing tensor "${c.name}" ${shapeToString(c.type.shape)} needed by ${what}`,
      );
    if (r.shape.join() !== c.type.shape.join())
      throw new UserError(
        `${ck.file(r.uses[0]!)}: tensor "${r.uses.length === 1 ? r.uses[0] : c.name}" has shape ${shapeToString(r.shape)} but ${what} implies ${shapeToString(c.type.shape)}`,
      );
    for (const u of r.uses) {
      if (!FLOAT_DTYPES.has(ck.dtype(u)))
        throw new UserError(
          `${ck.file(u)}: tensor "${u}" has dtype ${ck.fileDtype(u)}, but ${what} needs floating-point weights (F32, F16, BF16 or F64)`,
        );
      used.add(u);
    }
    weights.define(c.name, () => r.load());
  }
  if (zeroed.length > 0)
    warnings.push(
      `${dir}: checkpoint has no ${zeroed.length === 1 ? zeroed[0] : `${zeroed[0]} (and ${zeroed.length - 1} more attn.c_attn.bias)`}; using zeros, as transformers does when loading it (its save_pretrained drops c_attn.bias because GPT-2's ignore pattern "attn.bias" matches it)`,
    );
  const extra = ck.names().filter((n) => !used.has(n) && !(config && ignorable(n, config)));
  if (extra.length > 0)
    throw new UserError(
      `${ck.file(extra[0]!)}: unexpected tensor "${extra[0]}" not used by ${what}${extra.length > 1 ? ` (and ${extra.length - 1} more)` : ""}`,
    );
  return weights;
}

/** Reads and validates `<dir>/config.json`. */
export function readHfConfig(dir: string): ModelConfig {
  const cfgPath = join(dir, "config.json");
  if (existsSync(dir) && !statSync(dir).isDirectory())
    throw new UserError(`${dir}: not a folder (expected a HuggingFace model folder with config.json)`);
  let text: string;
  try {
    text = readFileSync(cfgPath, "utf8");
  } catch {
    throw new UserError(`${cfgPath}: cannot read the file (is ${dir} a HuggingFace model folder?)`);
  }
  return parseHfConfig(text, cfgPath);
}

/**
 * Imports a HF folder. `overrides` (from a description file) replace config values before the module
 * is built; the checkpoint's dtype is used unless overridden.
 */
export function importHf(
  dir: string,
  opts: { name?: string; overrides?: Partial<ModelConfig> } = {},
): LoadedModel {
  const parsed = readHfConfig(dir);
  const ck = Checkpoint.open(dir);
  const config: ModelConfig = { ...parsed, dtype: checkpointDType(ck), ...opts.overrides };
  const name =
    opts.name ??
    (dir
      .replace(/\/+$/, "")
      .split("/")
      .pop()!
      .replace(/[^A-Za-z0-9_.-]/g, "_") ||
      "model");
  const module = buildFamilyModule(name, config);
  const warnings: string[] = [];
  const weights = bind(ck, dir, module, config, warnings);
  return { module, weights, config, source: dir, warnings };
}
