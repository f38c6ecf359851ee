/**
 * IntExprs: integers, or expressions over run-time dimensions (B, S, P) with + - * / (exact
 * division), // (floor division), %, and the functions cdiv(a, b), min(a, b), max(a, b). Parsed once,
 * cached, and evaluated per launch.
 */
import type { IntExpr } from "./program.js";

export type Env = Readonly<Record<string, number>>;

type Node = number | string | { op: string; args: Node[] };

/** Parsed expressions by text, emptied at CACHE_LIMIT (programs differ in their constants). */
const cache = new Map<string, Node>();
const CACHE_LIMIT = 50_000;

function parsed(e: string): Node {
  let n = cache.get(e);
  if (n === undefined) {
    if (cache.size >= CACHE_LIMIT) cache.clear();
    n = parse(e);
    cache.set(e, n);
  }
  return n;
}

export class ExprError extends Error {}

function parse(text: string): Node {
  const toks = text.match(/\s*(\d+|[A-Za-z_]\w*|\/\/|[-+*/%(),])\s*/gy);
  if (!toks || toks.join("").length !== text.length) throw new ExprError(`bad integer expression "${text}"`);
  const ts = toks.map((t) => t.trim());
  let i = 0;
  const expect = (t: string): void => {
    if (ts[i++] !== t) throw new ExprError(`expected '${t}' in "${text}"`);
  };
  const atom = (): Node => {
    const t = ts[i++];
    if (t === undefined) throw new ExprError(`unexpected end of "${text}"`);
    if (/^\d+$/.test(t)) return Number(t);
    if (t === "(") {
      const e = sum();
      expect(")");
      return e;
    }
    if (t === "-") return { op: "neg", args: [atom()] };
    if (/^[A-Za-z_]/.test(t)) {
      if (ts[i] !== "(") return t;
      i++;
      const args = [sum()];
      while (ts[i] === ",") {
        i++;
        args.push(sum());
      }
      expect(")");
      if (!["cdiv", "min", "max"].includes(t) || args.length !== 2)
        throw new ExprError(`unknown function ${t}/${args.length} in "${text}"`);
      return { op: t, args };
    }
    throw new ExprError(`unexpected '${t}' in "${text}"`);
  };
  const product = (): Node => {
    let l = atom();
    while (ts[i] === "*" || ts[i] === "/" || ts[i] === "//" || ts[i] === "%")
      l = { op: ts[i++]!, args: [l, atom()] };
    return l;
  };
  const sum = (): Node => {
    let l = product();
    while (ts[i] === "+" || ts[i] === "-") l = { op: ts[i++]!, args: [l, product()] };
    return l;
  };
  const n = sum();
  if (i !== ts.length) throw new ExprError(`unexpected '${ts[i]}' in "${text}"`);
  return n;
}

function run(n: Node, env: Env, text: string): number {
  if (typeof n === "number") return n;
  if (typeof n === "string") {
    const v = env[n];
    if (v === undefined) throw new ExprError(`unbound variable ${n} in "${text}"`);
    return v;
  }
  const [a, b] = n.args.map((x) => run(x, env, text)) as [number, number];
  switch (n.op) {
    case "+":
      return a + b;
    case "-":
      return a - b;
    case "*":
      return a * b;
    case "neg":
      return -a;
    case "/":
      if (b === 0 || a % b !== 0) throw new ExprError(`${a} / ${b} is not exact in "${text}"`);
      return a / b;
    case "//":
      return Math.floor(a / b);
    case "%":
      return a % b;
    case "cdiv":
      return Math.ceil(a / b);
    case "min":
      return Math.min(a, b);
    case "max":
      return Math.max(a, b);
  }
  throw new ExprError(`internal: op ${n.op}`);
}

/** Checks that `e` parses (without evaluating it). */
export function checkExpr(e: IntExpr): void {
  if (typeof e === "string") parsed(e);
}

export function evalExpr(e: IntExpr, env: Env): number {
  if (typeof e === "number") return e;
  return run(parsed(e), env, e);
}

/** The variables an expression reads. */
export function exprVars(e: IntExpr): string[] {
  if (typeof e === "number") return [];
  const out = new Set<string>();
  const walk = (n: Node): void => {
    if (typeof n === "string") out.add(n);
    else if (typeof n === "object") n.args.forEach(walk);
  };
  walk(parsed(e));
  return [...out];
}
