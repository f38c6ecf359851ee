/** zod schemas for op attributes, and attribute helpers. */
import { z } from "zod";
import { dimEval, SYMBOL_RE, type Dim, type DimEnv, type SymDim } from "./dim.js";
import type { Attr, Attrs } from "./module.js";

// Dims read from files: non-zero safe-integer coefficients (zod 4's int() is limited to safe integers)
// over symbol names, at least one term.
const zTerm = z.strictObject({
  coef: z
    .number()
    .int()
    .refine((c) => c !== 0, "a zero coefficient"),
  syms: z.array(z.string().regex(SYMBOL_RE, "expected a symbol name")),
});
export const zSymDim = z.strictObject({ terms: z.array(zTerm).min(1) });
export const zDim = z.union([z.number().int(), zSymDim]) as unknown as z.ZodType<Dim>;
export const zDims = z.array(zDim);

export function isSymDim(a: Attr): a is SymDim {
  return typeof a === "object" && !Array.isArray(a) && a !== null && "terms" in a;
}

/** Replaces symbolic dims in attributes by their values under env. */
export function concretizeAttrs(attrs: Attrs, env: DimEnv): Attrs {
  let changed = false;
  const out: Record<string, Attr> = {};
  for (const [k, v] of Object.entries(attrs)) {
    const c = concretize(v, env);
    if (c !== v) changed = true;
    out[k] = c;
  }
  return changed ? out : attrs;
}

function concretize(a: Attr, env: DimEnv): Attr {
  if (Array.isArray(a)) {
    const xs = a.map((x) => concretize(x, env));
    return xs.some((x, i) => x !== a[i]) ? xs : a;
  }
  if (isSymDim(a as Attr)) return dimEval(a as Dim, env);
  return a;
}

/** One-line description of a zod error: `attribute eps: expected number`. */
export function zodMessage(err: z.ZodError, what = "attribute"): string {
  const issue = err.issues[0];
  if (!issue) return "invalid value";
  const path = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") return `unknown ${what} ${issue.keys.join(", ")}`;
  return path ? `${what} ${path}: ${issue.message}` : issue.message;
}
