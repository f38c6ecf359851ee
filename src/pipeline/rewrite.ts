/**
 * Rewriting helpers for passes. A pass is mostly a list of rules (tinygrad style): a rule looks at one
 * op (with ts-pattern) and may return its replacement. `rewriteFunc` sweeps a function forwards,
 * applying the first matching rule to each op, until nothing changes. Passes work function by
 * function and never look at sibling functions.
 */
import { produce } from "immer";
import type { Func, Module, Op, Value } from "../ir/module.js";
import { getOp } from "../ir/registry.js";
import type { TensorType } from "../ir/types.js";

/** What a rule returns: ops replacing the matched one, and where each old result now comes from. */
export interface Rewrite {
  readonly ops: readonly Op[];
  /** Old result name -> new reference (`%x` or `@c`). Every result of the matched op must be mapped. */
  readonly results: Readonly<Record<string, string>>;
}

export type Rule = (op: Op, g: FuncGraph) => Rewrite | undefined;

/** Definitions and types of the values of a function as a sweep sees them. */
export class FuncGraph {
  private readonly defs = new Map<string, Op>();
  private readonly types = new Map<string, TensorType>();
  private readonly names = new Set<string>();

  constructor(
    readonly module: Module,
    f: Func,
  ) {
    for (const p of f.params) this.value(p);
    for (const op of f.body) for (const r of op.results) this.names.add(r.name);
  }

  private value(v: Value): void {
    this.types.set(v.name, v.type);
    this.names.add(v.name);
  }

  define(op: Op): void {
    for (const r of op.results) {
      this.defs.set(r.name, op);
      this.value(r);
    }
  }

  /** The op that defines `%x` (undefined for params, constants and states). */
  def(ref: string): Op | undefined {
    return ref.startsWith("%") ? this.defs.get(ref.slice(1)) : undefined;
  }

  typeOf(ref: string): TensorType {
    const n = ref.slice(1);
    const t = ref.startsWith("%") ? this.types.get(n) : this.module.consts.find((c) => c.name === n)?.type;
    const s = t ?? this.module.states.find((x) => x.name === n)?.type;
    if (!s) throw new Error(`internal: no type for ${ref}`);
    return s;
  }

  /** A result name not used in the function yet, based on `hint`. */
  fresh(hint: string): string {
    let n = hint;
    for (let i = 1; this.names.has(n); i++) n = `${hint}_${i}`;
    this.names.add(n);
    return n;
  }
}

const substRef = (ref: string, subst: ReadonlyMap<string, string>): string => subst.get(ref) ?? ref;

/** Applies `rules` to `f` until a sweep changes nothing; `onRewrite` sees each applied rewrite. */
export function rewriteFunc(
  m: Module,
  f: Func,
  rules: readonly Rule[],
  onRewrite?: (op: Op, rw: Rewrite) => void,
): Func {
  let cur = f;
  for (let sweep = 0; sweep < 100; sweep++) {
    const g = new FuncGraph(m, cur);
    const subst = new Map<string, string>();
    const body: Op[] = [];
    let changed = false;
    for (const old of cur.body) {
      const op = old.operands.some((r) => subst.has(r))
        ? { ...old, operands: old.operands.map((r) => substRef(r, subst)) }
        : old;
      let rw: Rewrite | undefined;
      for (const rule of rules) if ((rw = rule(op, g))) break;
      if (!rw) {
        g.define(op);
        body.push(op);
        continue;
      }
      changed = true;
      onRewrite?.(op, rw);
      for (const n of rw.ops) g.define(n);
      body.push(...rw.ops);
      for (const r of op.results) {
        const to = rw.results[r.name];
        if (to === undefined)
          throw new Error(`internal: rewrite of ${op.opcode} does not map result %${r.name}`);
        if (to !== `%${r.name}`) subst.set(`%${r.name}`, to);
      }
    }
    if (!changed) return cur;
    cur = { ...cur, body, results: cur.results.map((r) => substRef(r, subst)) };
  }
  throw new Error(`internal: rewriting @${f.name} did not converge`);
}

/** Applies `fn` to every function of a module (immer keeps untouched functions shared). */
export function mapFuncs(m: Module, fn: (f: Func) => Func): Module {
  return produce(m, (d) => {
    m.funcs.forEach((f, i) => {
      const nf = fn(f);
      if (nf !== f) d.funcs[i] = nf as never;
    });
  });
}

/** Ops with a side effect (they update a state) are never dead. */
export function hasEffect(op: Op): boolean {
  return getOp(op.opcode)?.stateOperand !== undefined;
}

/** Uses of every SSA value of a function: value name -> ops that read it. */
export function usersOf(f: Func): Map<string, Op[]> {
  const users = new Map<string, Op[]>();
  for (const op of f.body)
    for (const r of op.operands)
      if (r.startsWith("%")) {
        const l = users.get(r.slice(1));
        if (l) l.push(op);
        else users.set(r.slice(1), [op]);
      }
  return users;
}
