/**
 * Validation of `system` blocks against a target's zod schema, with errors at the entry that is wrong
 * (`file:line:col: key: message`) and did-you-mean for unknown keys.
 */
import type { z } from "zod";
import { didYouMean, SourceError, type Loc } from "../errors.js";
import { plainEntries, type DslEntry, type DslRecord, type SystemDecl } from "./dsl/index.js";

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

export function validateSystem<T>(decl: SystemDecl, schema: z.ZodType<T>): T {
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
