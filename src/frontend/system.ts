/**
 * Validation of `system` blocks against a target's zod schema, with errors at the entry that is wrong
 * (`file:line:col: key: message`) and did-you-mean for unknown keys.
 */
import type { z } from "zod";
import { didYouMean, SourceError, type Loc } from "../errors.js";
import { SYSTEM_KEY_LIMITS, SYSTEM_LIMITS } from "../limits.js";
import { plainEntries, type DslEntry, type DslRecord, type SystemDecl } from "./dsl/index.js";
import type { ValueNode } from "./dsl/ast.js";

/** The location of the entry at `path` (nested blocks), or the closest enclosing one. */
function locAt(
  entries: Readonly<Record<string, DslEntry>>,
  path: readonly PropertyKey[],
  fallback: Loc,
): Loc {
  let loc = fallback;
  let cur: Readonly<Record<string, DslEntry>> | undefined = entries;
  for (const key of path) {
    const e: DslEntry | undefined = cur?.[String(key)];
    if (!e) break;
    loc = e.node.loc;
    cur = typeof e.value === "object" && !Array.isArray(e.value) ? (e.value as DslRecord) : undefined;
  }
  return loc;
}

/** Which range of SYSTEM_LIMITS a number written with `unit` falls under. */
function quantity(unit: string | undefined): keyof typeof SYSTEM_LIMITS {
  if (unit === undefined) return "count";
  if (unit.endsWith("B/s")) return "bandwidth";
  if (unit.endsWith("B")) return "bytes";
  if (unit.endsWith("Hz")) return "frequency";
  if (unit.endsWith("FLOPS") || unit.endsWith("OPS")) return "rate";
  return "seconds";
}

/**
 * Every number of a system block is finite and, unless zero, within the range of its quantity
 * (SYSTEM_LIMITS): a denormal frequency or a bandwidth of 1e300 would make a step take 0 or Infinity
 * seconds. The message names the key and the range in base units.
 */
function checkNumbers(entries: Readonly<Record<string, DslEntry>>): void {
  const visit = (v: ValueNode, where: string, key: string): void => {
    if (v.kind === "list") v.items.forEach((x, i) => visit(x, `${where}[${i}]`, key));
    else if (v.kind === "block") for (const e of v.entries) visit(e.value, `${where}.${e.key}`, e.key);
    else if (v.kind === "number") {
      const cap = SYSTEM_KEY_LIMITS[key];
      if (cap !== undefined && v.value > cap)
        throw new SourceError(v.loc, `${where}: ${v.value} is more than pimc's limit of ${cap}`);
      const q = quantity(v.unit);
      const [lo, hi] = SYSTEM_LIMITS[q];
      const a = Math.abs(v.value);
      if (!Number.isFinite(v.value) || (a !== 0 && (a < lo || a > hi)))
        throw new SourceError(
          v.loc,
          `${where}: ${v.value}${q === "count" ? "" : ` (${q}, in base units)`} is out of range: a ${q === "count" ? "number without a unit" : q} must be 0 or ${lo} to ${hi}`,
        );
    }
  };
  for (const [k, e] of Object.entries(entries)) visit(e.node, k, k);
}

export function validateSystem<T>(decl: SystemDecl, schema: z.ZodType<T>): T {
  checkNumbers(decl.entries);
  const r = schema.safeParse(plainEntries(decl.entries), { reportInput: true });
  if (r.success) return r.data;
  // An unknown key is usually the cause of other issues (a misspelt key is also a missing one).
  const issue = r.error.issues.find((i) => i.code === "unrecognized_keys") ?? r.error.issues[0]!;
  const path = issue.path.map(String);
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0]!;
    const where = [...path, key];
    const missing = r.error.issues
      .filter(
        (i) =>
          i.code === "invalid_type" &&
          i.input === undefined &&
          i.path.slice(0, -1).map(String).join(".") === path.join("."),
      )
      .map((i) => String(i.path[i.path.length - 1]));
    const top =
      path.length === 0
        ? Object.keys((schema as unknown as { shape?: Record<string, unknown> }).shape ?? {})
        : [];
    const known = [...missing, ...top];
    throw new SourceError(
      locAt(decl.entries, where, decl.loc),
      `unknown key '${where.join(".")}' in a ${decl.target} system${didYouMean(key, known)}`,
    );
  }
  const what = path.length > 0 ? path.join(".") : `system ${decl.name}`;
  const msg = issue.code === "invalid_type" && issue.input === undefined ? "missing" : issue.message;
  throw new SourceError(locAt(decl.entries, path, decl.loc), `${what}: ${msg}`);
}
