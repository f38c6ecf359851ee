/**
 * Symbolic dimensions: polynomials with integer coefficients over named symbols (B = batch,
 * S = tokens in this call, P = tokens already in the KV cache, ...). A dimension that is a known
 * integer is a plain `number`; anything else is a `SymDim` in canonical form, so structural equality
 * of two dims is equality of their data.
 */

import { UserError } from "../errors.js";
import { MAX_DIM_TERMS } from "../guards.js";

export interface Term {
  /** Non-zero integer coefficient. */
  readonly coef: number;
  /** Symbols of the monomial, sorted; repeated for powers; empty for the constant term. */
  readonly syms: readonly string[];
}

export interface SymDim {
  /** Canonical: sorted by (degree desc, symbols asc), no zero coefficients, at least one symbol. */
  readonly terms: readonly Term[];
}

export type Dim = number | SymDim;

export const SYMBOL_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

function monoKey(syms: readonly string[]): string {
  return syms.join("*");
}

function cmpTerms(a: Term, b: Term): number {
  if (a.syms.length !== b.syms.length) return b.syms.length - a.syms.length;
  const ka = monoKey(a.syms);
  const kb = monoKey(b.syms);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function fromTerms(terms: Iterable<Term>): Dim {
  const acc = new Map<string, Term>();
  for (const t of terms) {
    const k = monoKey(t.syms);
    const prev = acc.get(k);
    acc.set(k, { coef: (prev?.coef ?? 0) + t.coef, syms: t.syms });
  }
  const out = [...acc.values()].filter((t) => t.coef !== 0).sort(cmpTerms);
  // Dims come from files (IR text, descriptions, programs): products of sums grow combinatorially.
  if (out.length > MAX_DIM_TERMS || out.some((t) => t.syms.length > MAX_DIM_TERMS))
    throw new UserError(
      `dimension ${out.length > MAX_DIM_TERMS ? `with ${out.length} terms` : "of too high a degree"}: at most ${MAX_DIM_TERMS} terms of degree ${MAX_DIM_TERMS} (MAX_DIM_TERMS)`,
    );
  if (out.length === 0) return 0;
  if (out.length === 1 && out[0]!.syms.length === 0) return out[0]!.coef + 0;
  return { terms: out };
}

function termsOf(d: Dim): readonly Term[] {
  if (typeof d === "number") return d === 0 ? [] : [{ coef: d, syms: [] }];
  return d.terms;
}

export function sym(name: string): Dim {
  return { terms: [{ coef: 1, syms: [name] }] };
}

export function isConst(d: Dim): d is number {
  return typeof d === "number";
}

export function dimAdd(a: Dim, b: Dim): Dim {
  if (typeof a === "number" && typeof b === "number") return a + b;
  return fromTerms([...termsOf(a), ...termsOf(b)]);
}

export function dimNeg(a: Dim): Dim {
  if (typeof a === "number") return -a + 0;
  return fromTerms(a.terms.map((t) => ({ coef: -t.coef, syms: t.syms })));
}

export function dimSub(a: Dim, b: Dim): Dim {
  return dimAdd(a, dimNeg(b));
}

export function dimMul(a: Dim, b: Dim): Dim {
  if (typeof a === "number" && typeof b === "number") return a * b + 0;
  const out: Term[] = [];
  for (const x of termsOf(a))
    for (const y of termsOf(b)) out.push({ coef: x.coef * y.coef, syms: [...x.syms, ...y.syms].sort() });
  return fromTerms(out);
}

export function dimProd(ds: readonly Dim[]): Dim {
  let p: Dim = 1;
  for (const d of ds) p = dimMul(p, d);
  return p;
}

/**
 * Exact division by a dim; returns undefined when the quotient is not a polynomial with integer
 * coefficients (e.g. B/2, or (B+1)/B). Division by a monomial or by a constant is supported.
 */
export function dimDiv(a: Dim, b: Dim): Dim | undefined {
  if (typeof b === "number") {
    if (b === 0) return undefined;
    if (typeof a === "number") return a % b === 0 ? a / b + 0 : undefined;
    const out: Term[] = [];
    for (const t of a.terms) {
      if (t.coef % b !== 0) return undefined;
      out.push({ coef: t.coef / b, syms: t.syms });
    }
    return fromTerms(out);
  }
  if (b.terms.length !== 1) return dimEq(a, b) ? 1 : undefined;
  const div = b.terms[0]!;
  const out: Term[] = [];
  for (const t of termsOf(a)) {
    if (t.coef % div.coef !== 0) return undefined;
    const rest = [...t.syms];
    for (const s of div.syms) {
      const i = rest.indexOf(s);
      if (i < 0) return undefined;
      rest.splice(i, 1);
    }
    out.push({ coef: t.coef / div.coef, syms: rest });
  }
  return fromTerms(out);
}

export function dimEq(a: Dim, b: Dim): boolean {
  if (typeof a === "number" || typeof b === "number") return a === b;
  if (a.terms.length !== b.terms.length) return false;
  return a.terms.every((t, i) => {
    const u = b.terms[i]!;
    return t.coef === u.coef && monoKey(t.syms) === monoKey(u.syms);
  });
}

export function dimsEq(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => dimEq(d, b[i]!));
}

export function dimSymbols(d: Dim): string[] {
  if (typeof d === "number") return [];
  return [...new Set(d.terms.flatMap((t) => t.syms))].sort();
}

export type DimEnv = Readonly<Record<string, number>>;

/** Evaluates a dim; throws if a symbol is unbound. */
export function dimEval(d: Dim, env: DimEnv): number {
  if (typeof d === "number") return d;
  let v = 0;
  for (const t of d.terms) {
    let m = t.coef;
    for (const s of t.syms) {
      const x = env[s];
      if (x === undefined) throw new Error(`unbound dimension symbol ${s}`);
      m *= x;
    }
    v += m;
  }
  return v + 0; // normalise -0
}

/** Substitutes some symbols by dims (e.g. P -> 0 for prefill). */
export function dimSubst(d: Dim, env: Readonly<Record<string, Dim>>): Dim {
  if (typeof d === "number") return d;
  let acc: Dim = 0;
  for (const t of d.terms) {
    let m: Dim = t.coef;
    for (const s of t.syms) m = dimMul(m, env[s] ?? sym(s));
    acc = dimAdd(acc, m);
  }
  return acc;
}

/** Text form: `64`, `B`, `P+S`, `4*B*S`, `B*S-1`. Parsed back by `parseDim`. */
export function dimToString(d: Dim): string {
  if (typeof d === "number") return String(d);
  let s = "";
  d.terms.forEach((t, i) => {
    const mono = t.syms.join("*");
    const abs = Math.abs(t.coef);
    const body = mono === "" ? String(abs) : abs === 1 ? mono : `${abs}*${mono}`;
    if (i === 0) s = t.coef < 0 ? `-${body}` : body;
    else s += (t.coef < 0 ? "-" : "+") + body;
  });
  return s;
}

/**
 * Parses a dim expression: integers, symbols, + - * and parentheses. Returns an error message
 * string on failure (the caller adds the location).
 */
export function parseDim(text: string): Dim | string {
  const toks = text.match(/\s*([A-Za-z_][A-Za-z0-9_]*|\d+|[-+*()]|\S)/g)?.map((t) => t.trim()) ?? [];
  let i = 0;
  const peek = (): string | undefined => toks[i];
  const fail = (msg: string): never => {
    throw new DimSyntax(msg);
  };
  const atom = (): Dim => {
    const t = toks[i++];
    if (t === undefined) return fail("unexpected end of dimension");
    if (/^\d+$/.test(t)) return Number(t);
    if (SYMBOL_RE.test(t)) return sym(t);
    if (t === "-") return dimNeg(atom());
    if (t === "(") {
      const e = expr();
      if (toks[i++] !== ")") fail("expected ')' in dimension");
      return e;
    }
    return fail(`unexpected '${t}' in dimension`);
  };
  const term = (): Dim => {
    let v = atom();
    while (peek() === "*") {
      i++;
      v = dimMul(v, atom());
    }
    return v;
  };
  const expr = (): Dim => {
    let v = term();
    for (;;) {
      const t = peek();
      if (t === "+") {
        i++;
        v = dimAdd(v, term());
      } else if (t === "-") {
        i++;
        v = dimSub(v, term());
      } else return v;
    }
  };
  try {
    const d = expr();
    if (i !== toks.length) return `unexpected '${toks[i]}' in dimension`;
    return d;
  } catch (e) {
    if (e instanceof DimSyntax) return e.message;
    throw e;
  }
}

class DimSyntax extends Error {}
