/**
 * The description language (docs/language.md): parsing `.pim` files into model, system and workload
 * declarations, and building models from them (family configs, HF folders, custom graphs).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { z } from "zod";
import { didYouMean, SourceError, UserError, type Loc } from "../../errors.js";
import type { DType } from "../../ir/dtype.js";
import type { Attrs } from "../../ir/module.js";
import { WeightStore } from "../../ir/weights.js";
import { readTextFile } from "../../fsutil.js";
import { MODEL_LIMITS } from "../../limits.js";
import {
  ACTIVATIONS,
  FAMILIES,
  familyDefaults,
  zModelConfig,
  type Family,
  type ModelConfig,
  type RopeConfig,
} from "../config.js";
import { buildDecoderModule } from "../families/decoder.js";
import { buildFamilyModule } from "../families/index.js";
import { bindCheckpoint, importHf, readHfConfig, type LoadedModel } from "../hf/import.js";
import { SafetensorsFile } from "../hf/safetensors.js";
import type { BlockNode, EntryNode, GraphNode, ValueNode } from "./ast.js";
import { checkGraph, graphFunction, GRAPH_PREDEFINED } from "./graph.js";
import { tokenize } from "./lexer.js";
import { parseTokens } from "./parser.js";
import { toAst } from "./visitor.js";

export type { GraphNode, ValueNode } from "./ast.js";

/** A value of a block entry: identifiers and strings are both strings; `{...}` blocks are records. */
export type DslValue = number | string | boolean | readonly DslValue[] | DslRecord;
export interface DslRecord {
  readonly [key: string]: DslEntry;
}
export interface DslEntry {
  readonly value: DslValue;
  /** The key's location; `node.loc` is the value's. */
  readonly loc: Loc;
  readonly node: ValueNode;
}
/** A DslValue without locations (what target schemas validate). */
export type PlainValue =
  number | string | boolean | readonly PlainValue[] | { readonly [key: string]: PlainValue };

interface Decl {
  readonly name: string;
  /** The block's name token. */
  readonly loc: Loc;
  readonly file: string;
  readonly entries: Readonly<Record<string, DslEntry>>;
}
export interface ModelDecl extends Decl {
  readonly graph?: GraphNode;
}
export interface SystemDecl extends Decl {
  readonly target: string;
  readonly targetLoc: Loc;
}
export interface WorkloadDecl extends Decl {
  /** The `phase` entry as written (validated by workloadFromDecl). */
  readonly phase?: string;
}
/** A `sweep` block: the axes of a design-space sweep (validated by src/sweep/spec.ts). */
export type SweepDecl = Decl;

export interface DescriptionFile {
  readonly file: string;
  readonly models: readonly ModelDecl[];
  readonly systems: readonly SystemDecl[];
  readonly workloads: readonly WorkloadDecl[];
  readonly sweeps: readonly SweepDecl[];
}

export function dslValue(v: ValueNode): DslValue {
  switch (v.kind) {
    case "number":
    case "string":
    case "bool":
      return v.value;
    case "ident":
      return v.name;
    case "list":
      return v.items.map(dslValue);
    case "block":
      return entryRecord(v.entries);
  }
}

function entryRecord(entries: readonly EntryNode[]): Record<string, DslEntry> {
  const out: Record<string, DslEntry> = {};
  for (const e of entries) out[e.key] = { value: dslValue(e.value), loc: e.loc, node: e.value };
  return out;
}

export function plainValue(v: DslValue): PlainValue {
  if (typeof v !== "object") return v;
  if (Array.isArray(v)) return (v as readonly DslValue[]).map(plainValue);
  return plainEntries(v as DslRecord);
}

export function plainEntries(entries: Readonly<Record<string, DslEntry>>): Record<string, PlainValue> {
  return Object.fromEntries(Object.entries(entries).map(([k, e]) => [k, plainValue(e.value)]));
}

/** Parses the text of a description file; `file` names it in messages. */
export function parseDescription(text: string, file: string): DescriptionFile {
  const ast = toAst(parseTokens(tokenize(text, file), "file", text, file), file);
  const seen = new Map<string, Loc>();
  const models: ModelDecl[] = [];
  const systems: SystemDecl[] = [];
  const workloads: WorkloadDecl[] = [];
  const sweeps: SweepDecl[] = [];
  for (const b of ast.blocks) {
    const first = seen.get(`${b.kind} ${b.name}`);
    if (first) throw new SourceError(b.loc, `duplicate ${b.kind} "${b.name}" (first at line ${first.line})`);
    seen.set(`${b.kind} ${b.name}`, b.loc);
    const base = { name: b.name, loc: b.loc, file, entries: entryRecord(b.entries) };
    if (b.kind === "model") models.push(b.graphs[0] ? { ...base, graph: b.graphs[0] } : base);
    else if (b.kind === "workload") workloads.push(workloadDecl(b, base));
    else if (b.kind === "sweep") sweeps.push(base);
    else systems.push(systemDecl(b, base));
  }
  return { file, models, systems, workloads, sweeps };
}

function workloadDecl(b: BlockNode, base: Decl): WorkloadDecl {
  const p = base.entries.phase?.value;
  return typeof p === "string" ? { ...base, phase: p } : base;
}

function systemDecl(b: BlockNode, base: Decl): SystemDecl {
  const t = base.entries.target;
  if (!t) throw new SourceError(b.loc, `system ${b.name} has no target (add target = NAME)`);
  if (typeof t.value !== "string" || t.value === "")
    throw new SourceError(t.node.loc, "target must be a target name, e.g. target = upmem");
  const { target: _t, ...entries } = base.entries;
  return { ...base, entries, target: t.value, targetLoc: t.node.loc };
}

/**
 * A system block with parameters replaced or added at dotted paths (`pim.banks_per_unit`), each with
 * the value node it was written as (a sweep's: errors then point at the sweep file).
 */
export function withSettings(
  decl: SystemDecl,
  settings: readonly { readonly path: readonly string[]; readonly node: ValueNode }[],
): SystemDecl {
  const setAt = (
    entries: Readonly<Record<string, DslEntry>>,
    path: readonly string[],
    node: ValueNode,
  ): Record<string, DslEntry> => {
    const [key, ...rest] = path as [string, ...string[]];
    if (rest.length === 0) return { ...entries, [key]: { value: dslValue(node), loc: node.loc, node } };
    const cur = entries[key];
    const inner =
      cur && typeof cur.value === "object" && !Array.isArray(cur.value) ? (cur.value as DslRecord) : {};
    const value = setAt(inner, rest, node);
    const old = cur?.node.kind === "block" ? cur.node.entries.filter((e) => e.key !== rest[0]) : [];
    const child = value[rest[0]!]!;
    const block: ValueNode = {
      kind: "block",
      loc: cur?.node.loc ?? node.loc,
      entries: [...old, { key: rest[0]!, value: child.node, loc: child.loc }],
    };
    return { ...entries, [key]: { value, loc: cur?.loc ?? node.loc, node: block } };
  };
  let entries = decl.entries;
  for (const s of settings) {
    if (s.path[0] === "target")
      throw new SourceError(s.node.loc, "set.target: a sweep sets a system's parameters, not its target");
    entries = setAt(entries, s.path, s.node);
  }
  return { ...decl, entries };
}

/** Reads and parses a description file. */
export function loadDescription(path: string): DescriptionFile {
  const text = readTextFile(path, "a description file (.pim)");
  if (text.startsWith("PIMC"))
    throw new UserError(`${path}: a compiled pimc program, not a description file (.pim)`);
  return parseDescription(text, path);
}

/** ` (the file has model blocks: a, b)`: what a file given for the wrong purpose holds instead. */
function blocksOf(d: DescriptionFile): string {
  const kinds = (["model", "system", "workload", "sweep"] as const)
    .map((k) => [k, d[`${k}s`]] as const)
    .filter(([, ds]) => ds.length > 0)
    .map(([k, ds]) => `${k} blocks: ${ds.map((x) => x.name).join(", ")}`);
  return kinds.length > 0 ? ` (the file has ${kinds.join("; ")})` : " (the file is empty)";
}

function select<T extends { name: string }>(
  d: DescriptionFile,
  kind: string,
  decls: readonly T[],
  name?: string,
): T {
  const names = decls.map((x) => x.name).join(", ");
  if (name !== undefined) {
    const x = decls.find((y) => y.name === name);
    if (!x)
      throw new UserError(
        `${d.file}: no ${kind} named "${name}" (${decls.length ? `${kind}s: ${names}` : `no ${kind} blocks`})`,
      );
    return x;
  }
  if (decls.length === 0) throw new UserError(`${d.file}: no ${kind} block${blocksOf(d)}`);
  if (decls.length > 1)
    throw new UserError(`${d.file}: several ${kind} blocks (${names}); choose one by name`);
  return decls[0]!;
}

export const selectModel = (d: DescriptionFile, name?: string): ModelDecl =>
  select(d, "model", d.models, name);
export const selectSystem = (d: DescriptionFile, name?: string): SystemDecl =>
  select(d, "system", d.systems, name);
export const selectWorkload = (d: DescriptionFile, name?: string): WorkloadDecl =>
  select(d, "workload", d.workloads, name);
export const selectSweep = (d: DescriptionFile, name?: string): SweepDecl =>
  select(d, "sweep", d.sweeps, name);

// ---- family models ----

type Kind = "int" | "number" | "bool" | "string" | "pairs" | readonly string[];

/** Keys of family models (docs/language.md table) with their kind and ModelConfig path. */
const MODEL_KEYS: Readonly<Record<string, { kind: Kind; path?: readonly [string, string?] }>> = {
  family: { kind: FAMILIES },
  weights: { kind: "string" },
  vocab: { kind: "int" },
  hidden: { kind: "int" },
  layers: { kind: "int" },
  heads: { kind: "int" },
  ffn: { kind: "int" },
  kv_heads: { kind: "int" },
  head_dim: { kind: "int" },
  max_positions: { kind: "int" },
  norm: { kind: ["rms", "layer"] },
  norm_eps: { kind: "number" },
  act: { kind: ACTIVATIONS },
  rope_theta: { kind: "number", path: ["rope", "theta"] },
  rope_scaling: { kind: ["none", "linear", "llama3"], path: ["rope", "scaling"] },
  rope_factor: { kind: "number", path: ["rope", "factor"] },
  rope_low_freq_factor: { kind: "number", path: ["rope", "low_freq_factor"] },
  rope_high_freq_factor: { kind: "number", path: ["rope", "high_freq_factor"] },
  rope_original_max_position: { kind: "int", path: ["rope", "original_max_position"] },
  rotary_dim: { kind: "int", path: ["rope", "rotary_dim"] },
  tie_embeddings: { kind: "bool" },
  qkv_bias: { kind: "bool" },
  o_bias: { kind: "bool" },
  mlp_bias: { kind: "bool" },
  sliding_window: { kind: "int", path: ["windows"] },
  experts: { kind: "int" },
  top_k: { kind: "int" },
  dtype: { kind: ["f32", "f16", "bf16"] },
  precision: { kind: ["f32", "int8", "int4", "int2"] },
  group_size: { kind: "int" },
  layer_precision: { kind: "pairs" },
};

const PRECISIONS: readonly string[] = ["f32", "int8", "int4", "int2"];
const REQUIRED = ["vocab", "hidden", "layers", "heads", "ffn"] as const;

function show(v: ValueNode): string {
  switch (v.kind) {
    case "number":
      return String(v.value);
    case "string":
      return JSON.stringify(v.value);
    case "ident":
      return v.name;
    case "bool":
      return String(v.value);
    case "list":
      return "a list";
    case "block":
      return "a block";
  }
}

/** The value of a model key after checking its kind. */
function keyValue(e: EntryNode): number | string | boolean | [string, string][] {
  const kind = MODEL_KEYS[e.key]!.kind;
  const v = e.value;
  const bad = (what: string): never => {
    throw new SourceError(v.loc, `${e.key} must be ${what}, got ${show(v)}`);
  };
  if (kind === "pairs") {
    // [["L*.down", int8], ...]: op name patterns and precisions.
    const what = `a list of ["pattern", ${PRECISIONS.join("|")}] pairs`;
    if (v.kind !== "list") return bad(what);
    return v.items.map((item) => {
      if (item.kind !== "list" || item.items.length !== 2) return bad(what);
      const [p, w] = item.items as [ValueNode, ValueNode];
      const prec = w.kind === "ident" ? w.name : w.kind === "string" ? w.value : undefined;
      if (p.kind !== "string" || prec === undefined || !PRECISIONS.includes(prec)) return bad(what);
      return [p.value, prec] as [string, string];
    });
  }
  if (Array.isArray(kind)) {
    const s = v.kind === "ident" || v.kind === "string" ? (v.kind === "ident" ? v.name : v.value) : undefined;
    if (s === undefined || !kind.includes(s)) {
      if (e.key === "family" && s !== undefined)
        throw new SourceError(v.loc, `unknown family '${s}' (families: ${kind.join(", ")})`);
      return bad(`one of ${kind.join(", ")}`);
    }
    return s;
  }
  if (kind === "string") return v.kind === "string" ? v.value : bad("a string in quotes");
  if (kind === "bool") return v.kind === "bool" ? v.value : bad("true or false");
  if (v.kind !== "number") return bad(kind === "int" ? "an integer" : "a number");
  if (kind === "int" && !Number.isInteger(v.value)) bad("an integer");
  return v.value;
}

/** One line for the first zod issue, located at the key it is about. */
function configIssue(err: z.ZodError, decl: ModelDecl, written: ReadonlyMap<string, EntryNode>): SourceError {
  const issue = err.issues[0]!;
  const path = issue.path.map(String).join(".");
  const key = Object.entries(MODEL_KEYS).find(([k, d]) => {
    const p = d.path ? d.path.filter(Boolean).join(".") : k;
    return path === p || path.startsWith(`${p}.`);
  })?.[0];
  const e = key !== undefined ? written.get(key) : undefined;
  if (!e) {
    // A value the block does not write (derived or defaulted): point at a related key or the block.
    const near = path.startsWith("rope")
      ? [...written.values()].find((x) => MODEL_KEYS[x.key]?.path?.[0] === "rope")
      : written.get(key === "top_k" ? "experts" : key === "kv_heads" ? "heads" : "");
    if (issue.code === "custom") return new SourceError(near?.value.loc ?? decl.loc, issue.message);
    const msg = issue.code === "invalid_type" ? "missing" : issue.message;
    return new SourceError(near?.value.loc ?? decl.loc, `model ${decl.name}: ${key ?? path}: ${msg}`);
  }
  if (issue.code === "custom")
    return new SourceError(
      e.value.loc,
      /^(must|needs)/.test(issue.message) ? `${e.key} ${issue.message}` : issue.message,
    );
  if (issue.code === "too_big" && issue.message.startsWith("must"))
    return new SourceError(e.value.loc, `${e.key} ${issue.message}`); // a cap of src/limits.ts
  const msg =
    issue.code === "too_small"
      ? `must be ${issue.inclusive ? `at least ${String(issue.minimum)}` : "positive"}`
      : `: ${issue.message}`;
  return new SourceError(
    e.value.loc,
    `${e.key}${msg.startsWith(":") ? "" : " "}${msg}, got ${show(e.value)}`,
  );
}

const validLayers = (n: number | undefined): number =>
  n !== undefined && Number.isSafeInteger(n) && n > 0 && n <= MODEL_LIMITS.layers ? n : 0;

/** The block's keys as ModelConfig fields (rope_* gathered under `rope`, sliding_window as windows). */
function mapKeys(
  written: ReadonlyMap<string, EntryNode>,
  layers: number | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const rope: Record<string, unknown> = {};
  for (const [k, e] of written) {
    if (k === "weights") continue;
    const v = keyValue(e);
    const p = MODEL_KEYS[k]!.path;
    if (!p) out[k] = v;
    else if (p[0] === "rope") rope[p[1]!] = v;
    // An invalid layer count is reported by the schema; no array of that length is made.
    else if (v !== 0) out.windows = new Array<number>(validLayers(layers)).fill(v as number);
  }
  if (Object.keys(rope).length > 0) out.rope = rope;
  return out;
}

function familyConfig(decl: ModelDecl, written: ReadonlyMap<string, EntryNode>): ModelConfig {
  const fam = written.get("family");
  if (!fam)
    throw new SourceError(
      decl.loc,
      `model ${decl.name} needs a family (${FAMILIES.join(", ")}), weights or a graph`,
    );
  for (const e of written.values()) keyValue(e);
  for (const k of REQUIRED)
    if (!written.has(k)) throw new SourceError(decl.loc, `model ${decl.name}: missing key ${k}`);
  const mapped = mapKeys(written, keyValue(written.get("layers")!) as number);
  const defaults = familyDefaults(mapped.family as Family);
  const hidden = mapped.hidden as number;
  const heads = mapped.heads as number;
  if (mapped.head_dim === undefined && hidden % heads !== 0)
    throw new SourceError(
      written.get("heads")!.value.loc,
      `hidden (${hidden}) is not a multiple of heads (${heads}); give head_dim`,
    );
  const raw = {
    ...defaults,
    kv_heads: heads,
    head_dim: hidden / heads,
    ...mapped,
    ...(mapped.rope || defaults.rope ? { rope: { ...defaults.rope, ...(mapped.rope as object) } } : {}),
  };
  const r = zModelConfig.safeParse(raw);
  if (!r.success) throw configIssue(r.error, decl, written);
  return r.data;
}

/** The value config.json gives for a key, in the block's terms. */
function hfValue(cfg: ModelConfig, key: string): unknown {
  const p = MODEL_KEYS[key]!.path;
  if (!p) return (cfg as Record<string, unknown>)[key];
  if (p[0] === "rope") {
    if (!cfg.rope) return undefined;
    const v = (cfg.rope as Record<string, unknown>)[p[1]!];
    return p[1] === "rotary_dim" ? (v ?? cfg.head_dim) : v;
  }
  const w = cfg.windows ?? [];
  return w.length > 0 && w.every((x) => x === w[0]) ? w[0] : w.some((x) => x !== 0) ? "per-layer windows" : 0;
}

/** `<dir>` of `weights = "..."`, relative to the description file, checked to be a folder. */
function weightsDir(decl: ModelDecl, e: EntryNode): string {
  if (e.value.kind !== "string")
    throw new SourceError(e.value.loc, `weights must be a folder path in quotes, got ${show(e.value)}`);
  const dir = resolve(dirname(decl.file), e.value.value);
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new SourceError(
      e.value.loc,
      `weights folder ${JSON.stringify(e.value.value)} does not exist (${dir})`,
    );
  return dir;
}

/** Re-throws a UserError from the HF loader at `loc` (the weights entry or a weight() call). */
function atLoc<T>(loc: Loc, weightLocs: ReadonlyMap<string, Loc> | undefined, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof UserError) || e instanceof SourceError) throw e;
    const name = /tensor "([^"]+)"/.exec(e.message)?.[1];
    throw new SourceError((name !== undefined && weightLocs?.get(name)) || loc, e.message);
  }
}

function buildWithWeights(decl: ModelDecl, written: ReadonlyMap<string, EntryNode>): LoadedModel {
  const we = written.get("weights")!;
  const dir = weightsDir(decl, we);
  const hf = atLoc(we.value.loc, undefined, () => readHfConfig(dir));
  const overrides: Record<string, unknown> = {};
  const cfgFile = join(dir, "config.json");
  for (const [k, e] of written) {
    if (k === "weights") continue;
    const v = keyValue(e);
    if (k !== "dtype") {
      const want = hfValue(hf, k);
      if (want !== v)
        throw new SourceError(
          e.loc,
          `${k} = ${show(e.value)} disagrees with ${cfgFile}, which gives ${String(want ?? "none")}`,
        );
    }
  }
  Object.assign(overrides, mapKeys(written, hf.layers));
  if (overrides.rope) overrides.rope = { ...hf.rope, ...(overrides.rope as object) } as RopeConfig;
  if ("windows" in overrides || written.has("sliding_window")) overrides.windows = hf.windows;
  const m = atLoc(we.value.loc, undefined, () =>
    importHf(dir, { name: decl.name, overrides: overrides as Partial<ModelConfig> }),
  );
  return { ...m, source: decl.file };
}

// ---- custom models ----

/** Element type of a checkpoint: that of its token embedding, else of its first tensor. */
function checkpointDType(dir: string): DType {
  let file = join(dir, "model.safetensors");
  if (!existsSync(file)) {
    const idx = join(dir, "model.safetensors.index.json");
    try {
      const map = (JSON.parse(readFileSync(idx, "utf8")) as { weight_map: Record<string, string> })
        .weight_map;
      file = join(dir, Object.values(map)[0]!);
    } catch {
      throw new UserError(`${dir}: no model.safetensors or readable model.safetensors.index.json`);
    }
  }
  const entries = [...SafetensorsFile.open(file).entries];
  const [, e] = entries.find(([n]) => /(embed_tokens|wte)\.weight$/.test(n)) ?? entries[0] ?? [];
  return e?.dtype === "f16" || e?.dtype === "bf16" ? e.dtype : "f32";
}

function buildCustom(
  decl: ModelDecl,
  graph: GraphNode,
  written: ReadonlyMap<string, EntryNode>,
): LoadedModel {
  const constants: Record<string, number> = {};
  let dtype: DType | undefined;
  let dir: string | undefined;
  let weightsLoc: Loc | undefined;
  for (const [k, e] of written) {
    if (k === "dtype") dtype = keyValue(e) as DType;
    else if (k === "weights") {
      dir = weightsDir(decl, e);
      weightsLoc = e.value.loc;
    } else if (k === "family")
      throw new SourceError(e.loc, "a model with a graph has no family (the graph replaces the family's)");
    else if (e.value.kind === "number") constants[k] = e.value.value;
    else
      throw new SourceError(
        e.value.loc,
        `${k} must be a number (a constant of the graph); a custom model's other keys are dtype and weights`,
      );
  }
  const predefined = new Set<string>([...GRAPH_PREDEFINED, ...Object.keys(constants)]);
  for (const [k, e] of written)
    if ((GRAPH_PREDEFINED as readonly string[]).includes(k))
      throw new SourceError(e.loc, `'${k}' is predefined in graphs and cannot be a model key`);
  checkGraph(graph, predefined);
  if (dtype === undefined) dtype = dir ? atLoc(weightsLoc!, undefined, () => checkpointDType(dir)) : "f16";
  const weightLocs = new Map<string, Loc>();
  const attrs: Attrs = { ...constants, dtype };
  const module = buildDecoderModule(decl.name, attrs, dtype, graphFunction({ graph, constants }, weightLocs));
  const weights = dir ? atLoc(weightsLoc!, weightLocs, () => bindCheckpoint(dir, module)) : new WeightStore();
  return { module, weights, source: decl.file };
}

/** Builds the module (and binds weights, if any) of a model block. */
export function buildModel(decl: ModelDecl, _desc?: DescriptionFile): LoadedModel {
  const written = new Map<string, EntryNode>();
  for (const [k, e] of Object.entries(decl.entries)) written.set(k, { key: k, value: e.node, loc: e.loc });
  if (decl.graph) return buildCustom(decl, decl.graph, written);
  for (const e of written.values())
    if (!MODEL_KEYS[e.key])
      throw new SourceError(
        e.loc,
        `unknown key '${e.key}' in a family model${didYouMean(e.key, Object.keys(MODEL_KEYS)) || ` (keys: ${Object.keys(MODEL_KEYS).join(", ")})`}`,
      );
  if (written.has("weights")) return buildWithWeights(decl, written);
  const config = familyConfig(decl, written);
  return {
    module: buildFamilyModule(decl.name, config),
    weights: new WeightStore(),
    config,
    source: decl.file,
  };
}
