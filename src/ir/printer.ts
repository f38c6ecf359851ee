/**
 * The textual form of the IR (`.pimir`). The output is canonical: attributes sorted by key, fixed
 * spacing, sections in the order consts, states, funcs; `parseModule` reads it back exactly.
 *
 * ```
 * module @llama_tiny attributes {family = "llama", hidden = 64}
 *
 * const @lm_head.weight : f32[128, 64] {layout = "oi"}
 *
 * func @prefill(%tokens: i32[B, S]) -> (f32[B, S, 128]) attributes {phase = "prefill"} {
 *   %x = embedding(%tokens, @model.embed_tokens.weight) : f32[B, S, 64]
 *   return %logits
 * }
 * ```
 */
import { dimToString, type SymDim } from "./dim.js";
import { isSymDim } from "./attrs.js";
import type { Attr, Attrs, Func, Module, Op } from "./module.js";
import type { TensorType } from "./types.js";

const GLOBAL_BARE = /^[A-Za-z0-9_.\-:/]+$/;
const SSA_BARE = /^[A-Za-z0-9_.]+$/;
const REF_BARE = /^(%[A-Za-z0-9_.]+|@[A-Za-z0-9_.\-:/]+)$/;
const KEY_BARE = /^[A-Za-z_][A-Za-z0-9_.]*$/;

/** `@name`, or `@"..."` when the name has characters outside `[A-Za-z0-9_.\-:/]`. */
export function fmtGlobal(name: string): string {
  return GLOBAL_BARE.test(name) ? `@${name}` : `@${JSON.stringify(name)}`;
}

/** `%name`, or `%"..."` when the name has characters outside `[A-Za-z0-9_.]`. */
export function fmtSsa(name: string): string {
  return SSA_BARE.test(name) ? `%${name}` : `%${JSON.stringify(name)}`;
}

/** An operand reference (`%x` or `@w`) with its name quoted when needed. */
export function fmtRef(ref: string): string {
  if (REF_BARE.test(ref)) return ref;
  if (ref.startsWith("%")) return fmtSsa(ref.slice(1));
  if (ref.startsWith("@")) return fmtGlobal(ref.slice(1));
  return `?${JSON.stringify(ref)}`; // not a valid reference: printed visibly, rejected by the parser
}

/** An opcode or attribute key: bare identifier, else a string literal. */
const fmtIdent = (s: string): string => (KEY_BARE.test(s) ? s : JSON.stringify(s));

interface TypeNode {
  readonly next: Map<unknown, TypeNode>;
  str?: string;
}

/**
 * Memo of the strings of numbers, dims and types while printing one module (keyed by value or object
 * identity: dim objects like B and S are shared across a module, so most lookups hit). Building these
 * strings is most of the printer's time otherwise.
 */
class Memo {
  private readonly nums = new Map<number, string>();
  private readonly dims = new Map<SymDim, string>();
  private readonly types: TypeNode = { next: new Map() };

  num(x: number): string {
    let s = this.nums.get(x);
    if (s === undefined) {
      if (!Number.isFinite(x)) throw new Error(`cannot print the non-finite number ${x} in the IR`);
      this.nums.set(x, (s = String(x)));
    }
    return s === "0" && Object.is(x, -0) ? "-0" : s;
  }

  dim(d: SymDim): string {
    let s = this.dims.get(d);
    if (s === undefined) this.dims.set(d, (s = dimToString(d)));
    return s;
  }

  /** `f32[B, S, 64]`, as `typeToString`. */
  type(t: TensorType): string {
    let node = this.child(this.types, t.dtype);
    for (const d of t.shape) node = this.child(node, d);
    if (node.str === undefined) {
      let s = t.dtype + "[";
      t.shape.forEach(
        (d, i) => (s += (i > 0 ? ", " : "") + (typeof d === "number" ? String(d) : this.dim(d))),
      );
      node.str = s + "]";
    }
    return node.str;
  }

  private child(node: TypeNode, key: unknown): TypeNode {
    let c = node.next.get(key);
    if (c === undefined) node.next.set(key, (c = { next: new Map() }));
    return c;
  }
}

/** An attribute value: number, JSON string, true/false, dim expression or `[list]`. */
export const fmtAttr = (a: Attr): string => attrStr(a, new Memo());

/** `{a = 1, b = "x"}` with keys sorted; empty string for no attributes. */
export const fmtAttrs = (attrs: Attrs): string => attrsStr(attrs, new Memo());

/** One op, without indentation: `%q, %k = split(%x) {axis = -1, sizes = [4, 4]} : f32[4], f32[4]`. */
export const printOp = (op: Op): string => opStr(op, new Memo());

function attrStr(a: Attr, memo: Memo): string {
  switch (typeof a) {
    case "number":
      return memo.num(a);
    case "string":
      return JSON.stringify(a);
    case "boolean":
      return a ? "true" : "false";
  }
  if (isSymDim(a)) {
    // A dim expression starting with a symbol named true/false is parenthesized: it is not a boolean.
    const s = memo.dim(a);
    return /^(true|false)(?![A-Za-z0-9_])/.test(s) ? `(${s})` : s;
  }
  if (Array.isArray(a)) return `[${a.map((x) => attrStr(x, memo)).join(", ")}]`;
  throw new Error(`cannot print the attribute value ${JSON.stringify(a)}`);
}

function attrsStr(attrs: Attrs, memo: Memo): string {
  const keys = Object.keys(attrs);
  if (keys.length === 0) return "";
  if (keys.length > 1) keys.sort();
  let s = "{";
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    s += (i > 0 ? ", " : "") + fmtIdent(k) + " = " + attrStr(attrs[k]!, memo);
  }
  return s + "}";
}

function opStr(op: Op, memo: Memo): string {
  const { results, operands } = op;
  let s = "";
  for (let i = 0; i < results.length; i++) s += (i > 0 ? ", " : "") + fmtSsa(results[i]!.name);
  if (results.length > 0) s += " = ";
  s += fmtIdent(op.opcode) + "(";
  for (let i = 0; i < operands.length; i++) s += (i > 0 ? ", " : "") + fmtRef(operands[i]!);
  s += ")";
  const attrs = attrsStr(op.attrs, memo);
  if (attrs !== "") s += " " + attrs;
  for (let i = 0; i < results.length; i++) s += (i > 0 ? ", " : " : ") + memo.type(results[i]!.type);
  return s;
}

/**
 * Collects the output in chunks of 64 lines. V8 represents `a + b` as a rope; flattening each chunk
 * while it is young (charCodeAt does) keeps the garbage short-lived and the final join a plain copy,
 * which makes printing large modules about twice as fast as one string per line.
 */
class Writer {
  private readonly parts: string[] = [];
  private chunk = "";
  private lines = 0;

  line(s: string): void {
    this.chunk += s + "\n";
    if (++this.lines === 64) {
      this.chunk.charCodeAt(0);
      this.parts.push(this.chunk);
      this.chunk = "";
      this.lines = 0;
    }
  }

  text(): string {
    this.parts.push(this.chunk);
    return this.parts.join("");
  }
}

function writeFunc(f: Func, out: Writer, memo: Memo): void {
  // Types of the returned values; one that is not defined (an invalid function) prints as `?`.
  const types = new Map<string, TensorType | undefined>();
  for (const ref of f.results) if (ref.startsWith("%")) types.set(ref.slice(1), undefined);
  for (const p of f.params) if (types.has(p.name)) types.set(p.name, p.type);
  for (const op of f.body) for (const r of op.results) if (types.has(r.name)) types.set(r.name, r.type);
  const resTypes = f.results.map((ref) => {
    const t = ref.startsWith("%") ? types.get(ref.slice(1)) : undefined;
    return t ? memo.type(t) : "?";
  });
  const params = f.params.map((p) => `${fmtSsa(p.name)}: ${memo.type(p.type)}`).join(", ");
  const attrs = attrsStr(f.attrs, memo);
  out.line(
    `func ${fmtGlobal(f.name)}(${params}) -> (${resTypes.join(", ")})${attrs === "" ? "" : ` attributes ${attrs}`} {`,
  );
  for (const op of f.body) out.line("  " + opStr(op, memo));
  out.line(f.results.length > 0 ? `  return ${f.results.map(fmtRef).join(", ")}` : "  return");
  out.line("}");
}

/** One function, ending with a newline. */
export function printFunc(f: Func): string {
  const out = new Writer();
  writeFunc(f, out, new Memo());
  return out.text();
}

/** The whole module in canonical form, ending with a newline. */
export function printModule(m: Module): string {
  const memo = new Memo();
  const out = new Writer();
  const attrs = attrsStr(m.attrs, memo);
  out.line(`module ${fmtGlobal(m.name)}${attrs === "" ? "" : ` attributes ${attrs}`}`);
  const decl = (kw: string, d: { name: string; type: TensorType; attrs: Attrs }): void => {
    const a = attrsStr(d.attrs, memo);
    out.line(`${kw} ${fmtGlobal(d.name)} : ${memo.type(d.type)}${a === "" ? "" : ` ${a}`}`);
  };
  if (m.consts.length > 0) out.line("");
  for (const c of m.consts) decl("const", c);
  if (m.states.length > 0) out.line("");
  for (const s of m.states) decl("state", s);
  for (const f of m.funcs) {
    out.line("");
    writeFunc(f, out, memo);
  }
  return out.text();
}
