/**
 * Sweep descriptions: a `sweep NAME { ... }` block of a description file (docs/sweeps.md) names the
 * axes of a design-space sweep, and `expandSweep` makes its points: the cross product of the axes,
 * zipped groups advancing together, named configurations, and exclusions. Every value is checked
 * where it is written (file:line:col), and the grid is bounded before it is made.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { splitSpec } from "../driver/compile.js";
import { didYouMean, SourceError, UserError, type Loc } from "../errors.js";
import type { ValueNode } from "../frontend/dsl/ast.js";
import { loadDescription, selectSweep, type DslEntry, type SweepDecl } from "../frontend/dsl/index.js";
import { SWEEP_LIMITS, WORKLOAD_LIMITS } from "../limits.js";

/** A system parameter set by a sweep: its path in the system block and the value as written. */
export interface SystemSetting {
  readonly path: readonly string[];
  readonly node: ValueNode;
}

/** The axes a point has a value for (null: not given, the default applies; or not of its phase). */
export interface Point {
  readonly config: string | null;
  readonly model: string;
  readonly system: string;
  readonly phase: "prefill" | "decode";
  readonly batch: number;
  readonly prompt: number | null;
  readonly context: number | null;
  readonly speculation: number | null;
  readonly output: number | null;
  readonly compile_batch: number | null;
  /** NeuPIMs' sub-batch interleaving: the step timed as this many sub-batches. */
  readonly sub_batches: number | null;
  readonly weights: string | null;
  readonly activations: string | null;
  readonly group_size: number | null;
  readonly attention: string | null;
  readonly cooperation: boolean | null;
  readonly dynamic_placement: boolean | null;
  readonly capacity_check: boolean | null;
  /** System parameters by dotted path (`pim.banks_per_unit`), in base units. */
  readonly set: Readonly<Record<string, number | string | boolean>>;
}

export interface Sweep {
  readonly name: string;
  /** The description file it was read from (paths in it are relative to its folder). */
  readonly file: string;
  /** Dotted paths of the system parameters it sets, in the order written (the table's columns). */
  readonly params: readonly string[];
  /** Whether per-op rows are recorded (`record = ["ops"]`, the default). */
  readonly ops: boolean;
  /** The points, in the grid's order (duplicates removed). */
  readonly points: readonly Point[];
  /** The system settings of each point (what `set` gave it), by index into `points`. */
  readonly settings: readonly (readonly SystemSetting[])[];
}

type Kind = "int" | "bool" | "path" | readonly string[];

/** The axes a sweep may name, their kind, and the column they fill. */
const AXES: Readonly<
  Record<string, { readonly kind: Kind; readonly column: keyof Point; readonly max?: number }>
> = {
  models: { kind: "path", column: "model" },
  systems: { kind: "path", column: "system" },
  phase: { kind: ["prefill", "decode"], column: "phase" },
  batch: { kind: "int", column: "batch", max: WORKLOAD_LIMITS.batch },
  prompt: { kind: "int", column: "prompt", max: WORKLOAD_LIMITS.prompt },
  context: { kind: "int", column: "context", max: WORKLOAD_LIMITS.context },
  speculation: { kind: "int", column: "speculation", max: WORKLOAD_LIMITS.speculation },
  output: { kind: "int", column: "output", max: WORKLOAD_LIMITS.output },
  compile_batch: { kind: "int", column: "compile_batch", max: WORKLOAD_LIMITS.batch },
  sub_batches: { kind: "int", column: "sub_batches", max: WORKLOAD_LIMITS.batch },
  weights: { kind: ["f32", "int8", "int4", "int2"], column: "weights" },
  activations: { kind: ["f32", "int8", "int16"], column: "activations" },
  group_size: { kind: "int", column: "group_size", max: 1 << 20 },
  attention: { kind: ["auto", "pim", "host"], column: "attention" },
  cooperation: { kind: "bool", column: "cooperation" },
  dynamic_placement: { kind: "bool", column: "dynamic_placement" },
  capacity_check: { kind: "bool", column: "capacity_check" },
};
/** Keys of a sweep block that are not axes. */
const OTHER = ["configs", "set", "zip", "exclude", "record"] as const;

/** One axis: its values as written (a scalar is a list of one). */
interface Axis {
  readonly name: string;
  readonly loc: Loc;
  readonly values: readonly { readonly value: number | string | boolean; readonly node: ValueNode }[];
}

const items = (e: DslEntry): readonly ValueNode[] => (e.node.kind === "list" ? e.node.items : [e.node]);

/** A value of an axis checked against its kind; paths resolved against the sweep file's folder. */
function axisValue(name: string, node: ValueNode, base: string): number | string | boolean {
  const kind = AXES[name]!.kind;
  const where = `${name}:`;
  if (kind === "int") {
    const max = AXES[name]!.max!;
    if (node.kind !== "number" || !Number.isInteger(node.value) || node.value < 1 || node.value > max)
      throw new SourceError(node.loc, `${where} expected a positive integer up to ${max}`);
    return node.value;
  }
  if (kind === "bool") {
    if (node.kind !== "bool") throw new SourceError(node.loc, `${where} expected true or false`);
    return node.value;
  }
  const text = node.kind === "string" ? node.value : node.kind === "ident" ? node.name : undefined;
  if (text === undefined || text === "")
    throw new SourceError(
      node.loc,
      `${where} expected ${kind === "path" ? "a file path (a string)" : "a name"}`,
    );
  if (kind === "path") {
    const { file } = against(base, text);
    if (!existsSync(file)) throw new SourceError(node.loc, `${where} ${file}: no such file or folder`);
    return text;
  }
  if (!kind.includes(text))
    throw new SourceError(
      node.loc,
      `${where} expected ${kind.join(", ")}, got ${text}${didYouMean(text, kind)}`,
    );
  return text;
}

function axisOf(name: string, e: DslEntry, base: string): Axis {
  const nodes = items(e);
  if (nodes.length === 0) throw new SourceError(e.node.loc, `${name}: an empty list makes an empty grid`);
  if (nodes.length > SWEEP_LIMITS.values)
    throw new SourceError(e.node.loc, `${name}: more than pimc's limit of ${SWEEP_LIMITS.values} values`);
  return { name, loc: e.loc, values: nodes.map((node) => ({ value: axisValue(name, node, base), node })) };
}

/** The leaves of `set = { a = { b = [..] } }`: one axis per dotted path. */
function settingAxes(e: DslEntry): Axis[] {
  const out: Axis[] = [];
  const walk = (node: ValueNode, path: string[], loc: Loc): void => {
    if (node.kind === "block") {
      if (node.entries.length === 0) throw new SourceError(node.loc, `set.${path.join(".")}: an empty block`);
      for (const x of node.entries) walk(x.value, [...path, x.key], x.loc);
      return;
    }
    const name = path.join(".");
    const nodes = node.kind === "list" ? node.items : [node];
    if (nodes.length === 0) throw new SourceError(node.loc, `set.${name}: an empty list makes an empty grid`);
    if (nodes.length > SWEEP_LIMITS.values)
      throw new SourceError(node.loc, `set.${name}: more than pimc's limit of ${SWEEP_LIMITS.values} values`);
    const values = nodes.map((n) => {
      if (n.kind === "number" || n.kind === "string" || n.kind === "bool") return { value: n.value, node: n };
      if (n.kind === "ident") return { value: n.name, node: n };
      throw new SourceError(n.loc, `set.${name}: a list of lists or blocks is not a sweep axis`);
    });
    out.push({ name: `set.${name}`, loc, values });
  };
  if (e.node.kind !== "block")
    throw new SourceError(e.node.loc, "set: expected a block of system parameters");
  walk(e.node, [], e.loc);
  return out;
}

/** `configs = { name = { axis = value, ... }, ... }`: named settings of several axes at once. */
function configsOf(e: DslEntry, base: string): { name: string; loc: Loc; fields: Map<string, Axis> }[] {
  if (e.node.kind !== "block" || e.node.entries.length === 0)
    throw new SourceError(e.node.loc, "configs: expected a block of named configurations");
  return e.node.entries.map((c) => {
    if (c.value.kind !== "block")
      throw new SourceError(c.value.loc, `configs.${c.key}: expected a block of axis values`);
    const fields = new Map<string, Axis>();
    for (const f of c.value.entries) {
      if (f.key === "set") {
        for (const a of settingAxes({ value: 0, loc: f.loc, node: f.value })) {
          if (a.values.length !== 1)
            throw new SourceError(a.loc, `configs.${c.key}.${a.name}: one value per configuration`);
          fields.set(a.name, a);
        }
        continue;
      }
      if (!(f.key in AXES))
        throw new SourceError(
          f.loc,
          `configs.${c.key}: unknown axis '${f.key}'${didYouMean(f.key, [...Object.keys(AXES), "set"])}`,
        );
      if (f.value.kind === "list")
        throw new SourceError(f.value.loc, `configs.${c.key}.${f.key}: one value per configuration`);
      fields.set(f.key, axisOf(f.key, { value: 0, loc: f.loc, node: f.value }, base));
    }
    return { name: c.key, loc: c.loc, fields };
  });
}

const DEFAULTS: Point = {
  config: null,
  model: "",
  system: "",
  phase: "decode",
  batch: 1,
  prompt: null,
  context: null,
  speculation: null,
  output: null,
  compile_batch: null,
  sub_batches: null,
  weights: null,
  activations: null,
  group_size: null,
  attention: null,
  cooperation: null,
  dynamic_placement: null,
  capacity_check: null,
  set: {},
};

/** Reads sweep `name` (or the file's only one) of a description file and makes its points. */
export function loadSweep(file: string, name?: string): Sweep {
  const decl = selectSweep(loadDescription(file), name);
  return expandSweep(decl);
}

export function expandSweep(decl: SweepDecl): Sweep {
  const base = dirname(decl.file);
  const axes = new Map<string, Axis>();
  let configs: ReturnType<typeof configsOf> = [];
  let record = true;
  for (const [key, e] of Object.entries(decl.entries)) {
    if (key in AXES) axes.set(key, axisOf(key, e, base));
    else if (key === "set") for (const a of settingAxes(e)) axes.set(a.name, a);
    else if (key === "configs") configs = configsOf(e, base);
    else if (key === "record") {
      const what = items(e).map((n) => (n.kind === "string" ? n.value : n.kind === "ident" ? n.name : ""));
      const bad = items(e).find((_, i) => what[i] !== "ops");
      if (bad) throw new SourceError(bad.loc, `record: expected "ops" (per-op rows) or an empty list`);
      record = what.length > 0;
    } else if (!(OTHER as readonly string[]).includes(key))
      throw new SourceError(
        e.loc,
        `unknown sweep key '${key}'${didYouMean(key, [...Object.keys(AXES), ...OTHER])} (axes: ${Object.keys(AXES).join(", ")}; and ${OTHER.join(", ")})`,
      );
  }
  for (const c of configs)
    for (const [k, a] of c.fields)
      if (axes.has(k))
        throw new SourceError(a.loc, `configs.${c.name}: '${k}' is also a sweep axis; give it in one place`);
  for (const need of ["models", "systems"])
    if (!axes.has(need) && !configs.some((c) => c.fields.has(need)))
      throw new SourceError(decl.loc, `sweep ${decl.name}: no ${need} (add ${need} = [...])`);
  const groups = zipGroups(decl, axes);
  let size = configs.length || 1;
  for (const g of groups) size *= g[0]!.values.length;
  if (size > SWEEP_LIMITS.points)
    throw new SourceError(
      decl.loc,
      `sweep ${decl.name}: ${size} points, more than pimc's limit of ${SWEEP_LIMITS.points}`,
    );
  const excludes = excludesOf(decl, axes, configs);
  const points: Point[] = [];
  const settings: SystemSetting[][] = [];
  const seen = new Set<string>();
  const params = [
    ...new Set([
      ...[...axes.keys()].filter((k) => k.startsWith("set.")),
      ...configs.flatMap((c) => [...c.fields.keys()].filter((k) => k.startsWith("set."))),
    ]),
  ].map((k) => k.slice(4));
  const each = (
    i: number,
    chosen: Map<string, Axis["values"][number]>,
    config?: (typeof configs)[number],
  ): void => {
    if (i === groups.length) {
      const all = new Map(chosen);
      for (const [k, a] of config?.fields ?? []) all.set(k, a.values[0]!);
      if (
        excludes.some((x) =>
          [...x].every(([k, v]) => (k === "configs" ? config?.name : all.get(k)?.value) === v),
        )
      )
        return;
      const p = pointOf(all, config?.name ?? null);
      const key = JSON.stringify(p);
      if (seen.has(key)) return;
      seen.add(key);
      points.push(p);
      settings.push(
        [...all]
          .filter(([k]) => k.startsWith("set."))
          .map(([k, v]) => ({ path: k.slice(4).split("."), node: v.node })),
      );
      return;
    }
    const g = groups[i]!;
    for (let j = 0; j < g[0]!.values.length; j++) {
      for (const a of g) chosen.set(a.name, a.values[j]!);
      each(i + 1, chosen, config);
    }
    for (const a of g) chosen.delete(a.name);
  };
  if (configs.length === 0) each(0, new Map());
  else for (const c of configs) each(0, new Map(), c);
  if (points.length === 0)
    throw new SourceError(decl.loc, `sweep ${decl.name}: the grid is empty (every point excluded)`);
  return { name: decl.name, file: decl.file, params, ops: record, points, settings };
}

/** The axes in groups: each `zip` group advances together, every other axis is its own group. */
function zipGroups(decl: SweepDecl, axes: ReadonlyMap<string, Axis>): Axis[][] {
  const e = decl.entries.zip;
  const zipped = new Map<string, number>();
  const groups: Axis[][] = [];
  if (e) {
    const lists =
      e.node.kind === "list" && e.node.items.every((x) => x.kind === "list") ? e.node.items : [e.node];
    for (const l of lists) {
      if (l.kind !== "list" || l.items.length < 2)
        throw new SourceError(
          l.loc,
          'zip: expected lists of two or more axis names, e.g. zip = [["speculation", "context"]]',
        );
      const g: Axis[] = [];
      for (const n of l.items) {
        const name = n.kind === "string" ? n.value : n.kind === "ident" ? n.name : "";
        const key = axes.has(name) ? name : axes.has(`set.${name}`) ? `set.${name}` : undefined;
        if (key === undefined)
          throw new SourceError(
            n.loc,
            `zip: '${name}' is not an axis of this sweep${didYouMean(name, axes.keys())}`,
          );
        if (zipped.has(key)) throw new SourceError(n.loc, `zip: '${name}' is in two groups`);
        const a = axes.get(key)!;
        if (g.length > 0 && a.values.length !== g[0]!.values.length)
          throw new SourceError(
            n.loc,
            `zip: '${name}' has ${a.values.length} values, '${g[0]!.name}' ${g[0]!.values.length}; zipped axes need as many`,
          );
        zipped.set(key, groups.length);
        g.push(a);
      }
      groups.push(g);
    }
  }
  // In the order written; a zipped group where its first axis is.
  const out: Axis[][] = [];
  const placed = new Set<number>();
  for (const [k, a] of axes) {
    const gi = zipped.get(k);
    if (gi === undefined) out.push([a]);
    else if (!placed.has(gi)) {
      placed.add(gi);
      out.push(groups[gi]!);
    }
  }
  return out;
}

/** `exclude = [{ axis = value, ... }, ...]`: points matching every field of one entry are left out. */
function excludesOf(
  decl: SweepDecl,
  axes: ReadonlyMap<string, Axis>,
  configs: readonly { name: string }[],
): Map<string, number | string | boolean>[] {
  const e = decl.entries.exclude;
  if (!e) return [];
  const base = dirname(decl.file);
  return items(e).map((b) => {
    if (b.kind !== "block" || b.entries.length === 0)
      throw new SourceError(
        b.loc,
        "exclude: expected blocks of axis values, e.g. exclude = [{ batch = 64, speculation = 4 }]",
      );
    const m = new Map<string, number | string | boolean>();
    for (const f of b.entries) {
      if (f.key === "configs") {
        const name = f.value.kind === "string" ? f.value.value : f.value.kind === "ident" ? f.value.name : "";
        if (!configs.some((c) => c.name === name))
          throw new SourceError(
            f.value.loc,
            `exclude: no configuration '${name}'${didYouMean(
              name,
              configs.map((c) => c.name),
            )}`,
          );
        m.set("configs", name);
        continue;
      }
      if (!(f.key in AXES))
        throw new SourceError(
          f.loc,
          `exclude: unknown axis '${f.key}'${didYouMean(f.key, Object.keys(AXES))}`,
        );
      if (!axes.has(f.key) && !configs.length)
        throw new SourceError(f.loc, `exclude: '${f.key}' is not an axis of this sweep`);
      m.set(f.key, axisValue(f.key, f.value, base));
    }
    return m;
  });
}

function pointOf(
  all: ReadonlyMap<string, { value: number | string | boolean }>,
  config: string | null,
): Point {
  const p: Record<string, unknown> = { ...DEFAULTS, config, set: {} };
  const set: Record<string, number | string | boolean> = {};
  for (const [k, v] of all) {
    if (k.startsWith("set.")) set[k.slice(4)] = v.value;
    else p[AXES[k]!.column] = v.value;
  }
  p.set = Object.fromEntries(Object.entries(set).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  // Lengths that do not apply to the phase are left out (the same step either way).
  if (p.phase === "prefill") {
    p.context = null;
    p.speculation = null;
  } else p.prompt = null;
  return p as unknown as Point;
}

/**
 * A point's key: a hash of the point, pimc's version and the contents of the model and system files
 * it reads, so a re-run skips it only while none of them changed.
 */
export function pointKey(sweep: Pick<Sweep, "file">, p: Point, version: string): string {
  const h = createHash("sha256");
  h.update(`pimc ${version}\n${JSON.stringify(p)}\n`);
  for (const f of [p.model, p.system]) h.update(`${contentHash(resolvePath(sweep, f))}\n`);
  return h.digest("hex").slice(0, 32);
}

/** `FILE[:NAME]` against the folder `base`: the file's absolute path, and the spec with it. */
function against(base: string, spec: string): { file: string; spec: string } {
  const { file, name } = splitSpec(spec);
  const abs = resolve(base, file);
  return { file: abs, spec: name === undefined ? abs : `${abs}:${name}` };
}

/** A model or system path of a sweep (`FILE[:NAME]`) against its file's folder. */
export function resolvePath(sweep: Pick<Sweep, "file">, spec: string): string {
  return against(dirname(sweep.file), spec).spec;
}

const hashes = new Map<string, string>();

/** The hash of a file, or of a folder's files (a HuggingFace checkpoint: names, sizes and config.json). */
function contentHash(spec: string): string {
  const { file } = splitSpec(spec);
  const known = hashes.get(file);
  if (known !== undefined) return known;
  const h = createHash("sha256");
  if (!existsSync(file)) throw new UserError(`${file}: no such file or folder`);
  if (statSync(file).isDirectory()) {
    for (const n of readdirSync(file).sort()) {
      const f = join(file, n);
      if (!statSync(f).isFile()) continue;
      h.update(`${n} ${statSync(f).size}\n`);
      if (n.endsWith(".json")) h.update(readFileSync(f));
    }
  } else h.update(readFileSync(file));
  const out = h.digest("hex");
  hashes.set(file, out);
  return out;
}
