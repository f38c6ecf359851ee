/**
 * IntExprs: integers, or expressions over run-time dimensions (B, S, P) with + - * / (exact
 * division), // (floor division), %, and the functions cdiv(a, b), min(a, b), max(a, b). Parsed once,
 * cached, and evaluated per launch.
 */
import { MAX_NESTING_DEPTH } from "../../src/guards.js";
import { ProgramError } from "./errors.js";
import type { IntExpr } from "./program.js";

export type Env = Readonly<Record<string, number>>;

/** `d`: the depth of the tree under the node (evaluation recurses this deep). */
type Node = number | string | { op: string; args: Node[]; d: number };

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

/** A malformed expression, or one whose value is not an integer (a ProgramError: the file is wrong). */
export class ExprError extends ProgramError {}

function parse(text: string): Node {
  const toks = text.match(/\s*(\d+|[A-Za-z_]\w*|\/\/|[-+*/%(),])\s*/gy);
  if (!toks || toks.join("").length !== text.length)
    throw new ExprError(`bad integer expression "${short(text)}"`);
  const ts = toks.map((t) => t.trim());
  let i = 0;
  /** Parentheses, negations and calls open around the current token. */
  let open = 0;
  const tooDeep = (): never => {
    throw new ExprError(
      `expression nested deeper than ${MAX_NESTING_DEPTH} levels (MAX_NESTING_DEPTH) in "${short(text)}"`,
    );
  };
  const node = (op: string, args: Node[]): Node => {
    const d = 1 + Math.max(...args.map((a) => (typeof a === "object" ? a.d : 0)));
    if (d > MAX_NESTING_DEPTH) tooDeep();
    return { op, args, d };
  };
  const inner = <T>(f: () => T): T => {
    if (++open > MAX_NESTING_DEPTH) tooDeep();
    const v = f();
    open--;
    return v;
  };
  const expect = (t: string): void => {
    if (ts[i++] !== t) throw new ExprError(`expected '${t}' in "${short(text)}"`);
  };
  const atom = (): Node => {
    const t = ts[i++];
    if (t === undefined) throw new ExprError(`unexpected end of "${short(text)}"`);
    if (/^\d+$/.test(t)) {
      const v = Number(t);
      if (!Number.isSafeInteger(v))
        throw new ExprError(`${short(t)} is not a safe integer in "${short(text)}"`);
      return v;
    }
    if (t === "(") {
      const e = inner(sum);
      expect(")");
      return e;
    }
    if (t === "-") return node("neg", [inner(atom)]);
    if (/^[A-Za-z_]/.test(t)) {
      if (ts[i] !== "(") return t;
      i++;
      const args = [inner(sum)];
      while (ts[i] === ",") {
        i++;
        args.push(inner(sum));
      }
      expect(")");
      if (!["cdiv", "min", "max"].includes(t) || args.length !== 2)
        throw new ExprError(`unknown function ${t}/${args.length} in "${short(text)}"`);
      return node(t, args);
    }
    throw new ExprError(`unexpected '${t}' in "${short(text)}"`);
  };
  const product = (): Node => {
    let l = atom();
    while (ts[i] === "*" || ts[i] === "/" || ts[i] === "//" || ts[i] === "%") {
      const op = ts[i++]!;
      l = node(op, [l, atom()]);
    }
    return l;
  };
  const sum = (): Node => {
    let l = product();
    while (ts[i] === "+" || ts[i] === "-") {
      const op = ts[i++]!;
      l = node(op, [l, product()]);
    }
    return l;
  };
  const n = sum();
  if (i !== ts.length) throw new ExprError(`unexpected '${ts[i]}' in "${short(text)}"`);
  return n;
}

/** An expression quoted in a message (long ones cut). */
const short = (text: string): string => (text.length > 60 ? `${text.slice(0, 57)}...` : text);

function run(n: Node, env: Env, text: string): number {
  if (typeof n === "number") return n;
  if (typeof n === "string") {
    const v = env[n];
    if (v === undefined) throw new ExprError(`unbound variable ${n} in "${short(text)}"`);
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
      if (b === 0 || a % b !== 0) throw new ExprError(`${a} / ${b} is not exact in "${short(text)}"`);
      return a / b;
    case "//":
    case "%":
    case "cdiv":
      if (b === 0) throw new ExprError(`division by zero (${a} ${n.op} 0) in "${short(text)}"`);
      return n.op === "//" ? Math.floor(a / b) : n.op === "%" ? a % b : Math.ceil(a / b);
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
  const v = run(parsed(e), env, e);
  // Overflow (or a huge variable) makes the result inexact: no size or offset is that large.
  if (!Number.isSafeInteger(v)) throw new ExprError(`"${short(e)}" evaluates to ${v}, not a safe integer`);
  return v + 0;
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
