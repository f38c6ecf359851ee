/**
 * Folding of shape arithmetic: chains of reshapes become one reshape, transposes compose, and
 * reshapes/transposes that change nothing disappear. With `bind` options (e.g. S = 1 for plain decode)
 * dimension symbols are replaced by their values everywhere first, so the chains fold further.
 */
import { produce } from "immer";
import { match, P } from "ts-pattern";
import { isSymDim } from "../src/ir/attrs.js";
import { dimSubst, dimsEq, type Dim } from "../src/ir/dim.js";
import type { Attr, Func, Module, Op } from "../src/ir/module.js";
import type { Pass } from "../src/pipeline/pass.js";
import { mapFuncs, rewriteFunc, type Rule } from "../src/pipeline/rewrite.js";

const same = (op: Op, to: string) => ({ ops: [], results: { [op.results[0]!.name]: to } });

const rules: Rule[] = [
  // reshape(x) to x's own shape -> x
  (op, g) =>
    match(op)
      .with({ opcode: "reshape", operands: [P.string] }, (o) =>
        dimsEq(g.typeOf(o.operands[0]!).shape, o.results[0]!.type.shape)
          ? same(o, o.operands[0]!)
          : undefined,
      )
      .otherwise(() => undefined),
  // reshape(reshape(x)) -> reshape(x)
  (op, g) =>
    match(op)
      .with({ opcode: "reshape" }, (o) => {
        const src = g.def(o.operands[0]!);
        return src?.opcode === "reshape"
          ? {
              ops: [{ ...o, operands: src.operands }],
              results: { [o.results[0]!.name]: `%${o.results[0]!.name}` },
            }
          : undefined;
      })
      .otherwise(() => undefined),
  // transpose with the identity permutation -> x; transpose(transpose(x)) -> one transpose (or x)
  (op, g) =>
    match(op)
      .with({ opcode: "transpose", attrs: { perm: P.array(P.number) } }, (o) => {
        const perm = o.attrs.perm as number[];
        if (perm.every((p, i) => p === i)) return same(o, o.operands[0]!);
        const src = g.def(o.operands[0]!);
        if (src?.opcode !== "transpose") return undefined;
        const inner = src.attrs.perm as number[];
        const composed = perm.map((p) => inner[p]!);
        if (composed.every((p, i) => p === i)) return same(o, src.operands[0]!);
        return {
          ops: [{ ...o, operands: src.operands, attrs: { ...o.attrs, perm: composed } }],
          results: { [o.results[0]!.name]: `%${o.results[0]!.name}` },
        };
      })
      .otherwise(() => undefined),
];

function substAttr(a: Attr, env: Readonly<Record<string, Dim>>): Attr {
  if (Array.isArray(a)) return a.map((x) => substAttr(x, env));
  return isSymDim(a as Attr) ? (dimSubst(a as Dim, env) as Attr) : a;
}

/** Replaces dimension symbols by values in every type and attribute of `f`. */
export function bindDims(f: Func, env: Readonly<Record<string, Dim>>): Func {
  const ty = <T extends { type: { shape: readonly Dim[] } }>(v: T): T => ({
    ...v,
    type: { ...v.type, shape: v.type.shape.map((d) => dimSubst(d, env)) },
  });
  return {
    ...f,
    params: f.params.map(ty),
    body: f.body.map((op) => ({
      ...op,
      results: op.results.map(ty),
      attrs: Object.fromEntries(Object.entries(op.attrs).map(([k, v]) => [k, substAttr(v, env)])),
    })),
  };
}

export const simplifyShapes: Pass = {
  name: "simplify-shapes",
  optLevel: 1,
  summary: "fold reshape/transpose chains and no-op shape changes; bind dimension symbols given in options",
  run(m: Module, ctx) {
    const bind = (
      ctx.options["simplify-shapes"] as { bind?: Record<string, Record<string, number>> } | undefined
    )?.bind;
    const bound = bind
      ? produce(m, (d) => {
          m.funcs.forEach((f, i) => {
            if (bind[f.name]) d.funcs[i] = bindDims(f, bind[f.name]!) as never;
          });
        })
      : m;
    return mapFuncs(bound, (f) =>
      rewriteFunc(bound, f, rules, (op) => ctx.count("simplify-shapes", `${op.opcode} folded`)),
    );
  },
};
