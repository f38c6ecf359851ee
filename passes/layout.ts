/**
 * Build-time layout adjustment. (1) Transposes of constants are folded: `transpose(@w)` becomes a
 * constant whose logical type is transposed and whose stored data is unchanged (its layout flips
 * between row and col), e.g. GPT-2's Conv1D weights. (2) Each constant gets the physical layout its
 * consumers want (the target's `weightLayout` option: e.g. column-major or tiled for PIM transfers);
 * the data is converted once, in the constant table. A constant whose consumers want different
 * layouts is duplicated (one copy per layout), or, with `duplicate: false`, kept once and converted
 * at run time by explicit `relayout` ops. The report counts each kind of change.
 */
import { produce } from "immer";
import { match, P } from "ts-pattern";
import {
  layoutOf,
  layoutProblem,
  layoutToString,
  logicalSource,
  parseLayout,
  toPhysical,
  type Layout,
  type LayoutOptions,
} from "../src/ir/layout.js";
import type { Attrs, ConstDecl, Module, Op } from "../src/ir/module.js";
import type { WeightStore } from "../src/ir/weights.js";
import type { Pass, PassContext } from "../src/pipeline/pass.js";
import { mapFuncs, rewriteFunc, type Rule } from "../src/pipeline/rewrite.js";

export type { LayoutOptions, WeightLayoutFn } from "../src/ir/layout.js";

const NAME = "layout";

function withLayout(attrs: Attrs, l: Layout): Attrs {
  const { layout: _drop, ...rest } = attrs;
  return l.kind === "row" ? rest : { ...rest, layout: layoutToString(l) };
}

/** Redefines the stored data of `to` as `from`'s data converted from layout `a` to layout `b`. */
function convertData(
  w: WeightStore,
  from: string,
  to: string,
  logical: readonly number[],
  a: Layout,
  b: Layout,
): void {
  if (!w.has(from)) return; // shape-only model
  const src = logicalSource(w, from, a, logical);
  w.define(to, () => toPhysical(src(), b));
}

/** (1) Folds `transpose(@w) {perm = [1, 0]}` of row/col constants into constants. */
function foldTransposes(m: Module, ctx: PassContext): Module {
  const isFoldable = (op: Op): boolean =>
    op.opcode === "transpose" &&
    op.operands[0]!.startsWith("@") &&
    (op.attrs.perm as number[]).join() === "1,0" &&
    m.consts.some((c) => `@${c.name}` === op.operands[0] && layoutOf(c.attrs).kind !== "tiled");
  const ops = m.funcs.flatMap((f) => f.body);
  const folded = new Map<string, string>(); // const -> its transposed const
  const consts = [...m.consts];
  for (const op of ops.filter(isFoldable)) {
    const name = op.operands[0]!.slice(1);
    if (folded.has(name)) continue;
    const c = consts.find((x) => x.name === name)!;
    const onlyTransposed = ops.every((o) => !o.operands.includes(`@${name}`) || isFoldable(o));
    const tName = onlyTransposed ? name : `${name}.T`;
    const flipped: Layout = { kind: layoutOf(c.attrs).kind === "row" ? "col" : "row" };
    const decl: ConstDecl = {
      name: tName,
      type: { ...c.type, shape: [c.type.shape[1]!, c.type.shape[0]!] },
      attrs: withLayout(c.attrs, flipped),
    };
    if (onlyTransposed) consts[consts.indexOf(c)] = decl;
    else {
      consts.push(decl);
      if (ctx.weights.has(name)) ctx.weights.define(tName, ctx.weights.source(name)); // same stored data
    }
    folded.set(name, tName);
  }
  if (folded.size === 0) return m;
  const rule: Rule = (op) =>
    match(op)
      .with({ opcode: "transpose", operands: [P.string.startsWith("@")] }, (o) =>
        isFoldable(o)
          ? { ops: [], results: { [o.results[0]!.name]: `@${folded.get(o.operands[0]!.slice(1))!}` } }
          : undefined,
      )
      .otherwise(() => undefined);
  const withConsts = produce(m, (d) => {
    d.consts = consts as never;
  });
  return mapFuncs(withConsts, (f) =>
    rewriteFunc(withConsts, f, [rule], () => ctx.count(NAME, "transposes folded")),
  );
}

/** (2) Gives every constant the layout its consumers want. */
function assignLayouts(m: Module, ctx: PassContext, opts: LayoutOptions): Module {
  const want = opts.weightLayout;
  if (!want) return m;
  // Wishes per constant: layout string -> number of consumers.
  const wishes = new Map<string, Map<string, number>>();
  const wished = (op: Op, i: number): string | undefined => {
    const ref = op.operands[i]!;
    if (!ref.startsWith("@") || !m.consts.some((c) => `@${c.name}` === ref)) return undefined;
    return want(op, i);
  };
  for (const f of m.funcs)
    for (const op of f.body)
      op.operands.forEach((ref, i) => {
        const l = wished(op, i);
        if (l === undefined) return;
        const w = wishes.get(ref.slice(1)) ?? new Map<string, number>();
        w.set(l, (w.get(l) ?? 0) + 1);
        wishes.set(ref.slice(1), w);
      });
  const consts: ConstDecl[] = [];
  const copies = new Map<string, Map<string, string>>(); // const -> layout -> const holding it
  for (const c of m.consts) {
    const w = wishes.get(c.name);
    if (!w) {
      consts.push(c);
      continue;
    }
    const cur = layoutOf(c.attrs);
    const logical = c.type.shape as number[];
    const layouts = [...w.entries()].sort((a, b) => b[1] - a[1]).map(([l]) => l);
    const primary =
      layouts.includes(layoutToString(cur)) && w.get(layoutToString(cur)) === w.get(layouts[0]!)
        ? layoutToString(cur)
        : layouts[0]!;
    const byLayout = new Map<string, string>();
    for (const ls of layouts) {
      const l = parseLayout(ls);
      const problem = l ? layoutProblem(l, logical) : `unknown layout "${ls}"`;
      if (problem)
        throw new Error(`internal: target asks for a layout of @${c.name} it cannot have: ${problem}`);
      if (ls !== primary && opts.duplicate === false) continue;
      const name = ls === primary ? c.name : `${c.name}.${ls.replace(/[^A-Za-z0-9]/g, "_")}`;
      if (ls !== layoutToString(cur)) {
        convertData(ctx.weights, c.name, name, logical, cur, l!);
        ctx.count(NAME, ls === primary ? "constants re-laid out" : "constants duplicated");
      }
      consts.push({ ...c, name, attrs: withLayout(c.attrs, l!) });
      byLayout.set(ls, name);
    }
    copies.set(c.name, byLayout);
  }
  const out = produce(m, (d) => {
    d.consts = consts as never;
  });
  // Point each consumer at the copy in its layout, or convert at run time.
  return mapFuncs(out, (f) =>
    rewriteFunc(out, f, [
      (op, g) => {
        let changed = false;
        const pre: Op[] = [];
        const operands = op.operands.map((ref, i) => {
          const l = wished(op, i);
          const byLayout = copies.get(ref.slice(1));
          if (l === undefined || !byLayout) return ref;
          const target = byLayout.get(l);
          if (target !== undefined) {
            changed ||= `@${target}` !== ref;
            return `@${target}`;
          }
          const name = g.fresh(`${ref.slice(1).split(".").slice(-2).join("_")}_${l.replace(/\W/g, "_")}`);
          pre.push({
            opcode: "relayout",
            operands: [ref],
            results: [{ name, type: g.typeOf(ref) }],
            attrs: { layout: l },
          });
          ctx.count(NAME, "run-time conversions");
          changed = true;
          return `%${name}`;
        });
        if (!changed) return undefined;
        return {
          ops: [...pre, { ...op, operands }],
          results: Object.fromEntries(op.results.map((r) => [r.name, `%${r.name}`])),
        };
      },
    ]),
  );
}

export const layout: Pass = {
  name: NAME,
  optLevel: 1,
  summary: "fold transposes of weights; give each weight the layout its consumers want, at build time",
  run(m, ctx) {
    const opts = (ctx.options[NAME] ?? {}) as LayoutOptions;
    return assignLayouts(foldTransposes(m, ctx), ctx, opts);
  },
};
