/**
 * Reads the textual IR written by `printModule` (hand-written lexer and recursive descent). Result
 * types come from the text (nothing is re-inferred; run the verifier for that). Errors are
 * `SourceError`s pointing at the offending token. `// comments` run to the end of the line.
 */
import { SourceError, UserError, type Loc } from "../errors.js";
import { DepthGuard } from "../guards.js";
import { dimAdd, dimMul, dimNeg, dimSub, sym, SYMBOL_RE, type Dim } from "./dim.js";
import { isDType } from "./dtype.js";
import type { Attr, Attrs, ConstDecl, Func, Module, Op, StateDecl, Value } from "./module.js";
import { typeEq, typeToString, type TensorType } from "./types.js";

type Kind = "ident" | "number" | "string" | "ssa" | "global" | "punct" | "eof";

interface Token {
  readonly kind: Kind;
  /** Source text of the token (punctuation: the symbol itself). */
  readonly text: string;
  /** Decoded name or string contents for ssa, global and string tokens. */
  readonly value: string;
  readonly line: number;
  readonly col: number;
}

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isIdentStart = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
const isIdentChar = (c: number): boolean => isIdentStart(c) || isDigit(c) || c === 46;
/** Bare `@name` characters: `[A-Za-z0-9_.\-:/]`. */
const isGlobalChar = (c: number): boolean => isIdentChar(c) || c === 45 || c === 58 || c === 47;
const PUNCT = new Set(["(", ")", "{", "}", "[", "]", ",", ":", "=", "+", "*", "?"]);

/** Produces tokens on demand (the parser looks at most three tokens ahead). */
class Lexer {
  private pos = 0;
  private line = 1;
  private lineStart = 0;

  constructor(
    private readonly src: string,
    private readonly file: string,
  ) {}

  private fail(at: number, msg: string): never {
    throw new SourceError({ file: this.file, line: this.line, col: at - this.lineStart + 1 }, msg);
  }

  private tok(kind: Kind, start: number, end: number, value = ""): Token {
    this.pos = end;
    return {
      kind,
      text: this.src.slice(start, end),
      value,
      line: this.line,
      col: start - this.lineStart + 1,
    };
  }

  /** Scans a JSON string literal starting at `start` (a `"`); returns its end and decoded value. */
  private str(start: number): [number, string] {
    const { src } = this;
    const n = src.length;
    let p = start + 1;
    for (;;) {
      if (p >= n || src.charCodeAt(p) === 10) return this.fail(start, "unterminated string literal");
      const c = src.charCodeAt(p);
      if (c === 34) break;
      p += c === 92 && p + 1 < n && src.charCodeAt(p + 1) !== 10 ? 2 : 1;
    }
    const raw = src.slice(start, p + 1);
    try {
      return [p + 1, JSON.parse(raw) as string];
    } catch {
      const shown = raw.length > 40 ? `${raw.slice(0, 37)}...` : raw;
      return this.fail(start, `invalid string literal ${shown} (JSON escapes only)`);
    }
  }

  next(): Token {
    const { src } = this;
    const n = src.length;
    let pos = this.pos;
    for (;;) {
      const c = src.charCodeAt(pos);
      if (c === 10) {
        this.line++;
        this.lineStart = ++pos;
      } else if (c === 32 || c === 9 || c === 13) pos++;
      else if (c === 47 && src.charCodeAt(pos + 1) === 47) {
        const e = src.indexOf("\n", pos);
        pos = e < 0 ? n : e;
      } else break;
    }
    this.pos = pos;
    if (pos >= n) return this.tok("eof", n, n);
    const c = src.charCodeAt(pos);
    if (isIdentStart(c)) {
      let p = pos + 1;
      while (p < n && isIdentChar(src.charCodeAt(p))) p++;
      return this.tok("ident", pos, p);
    }
    if (isDigit(c)) {
      let p = pos + 1;
      while (p < n && isDigit(src.charCodeAt(p))) p++;
      if (src.charCodeAt(p) === 46 && isDigit(src.charCodeAt(p + 1))) {
        p += 2;
        while (p < n && isDigit(src.charCodeAt(p))) p++;
      }
      const e = src.charCodeAt(p);
      if (e === 101 || e === 69) {
        let q = p + 1;
        const sign = src.charCodeAt(q);
        if (sign === 43 || sign === 45) q++;
        if (isDigit(src.charCodeAt(q))) {
          while (q < n && isDigit(src.charCodeAt(q))) q++;
          p = q;
        }
      }
      return this.tok("number", pos, p);
    }
    if (c === 34) {
      const [end, value] = this.str(pos);
      return this.tok("string", pos, end, value);
    }
    if (c === 37 || c === 64) {
      const kind = c === 37 ? "ssa" : "global";
      if (src.charCodeAt(pos + 1) === 34) {
        const [end, value] = this.str(pos + 1);
        return this.tok(kind, pos, end, value);
      }
      const ok = c === 37 ? isIdentChar : isGlobalChar;
      let p = pos + 1;
      while (p < n && ok(src.charCodeAt(p))) p++;
      if (p === pos + 1) this.fail(pos, `expected a name after '${src[pos]}'`);
      return this.tok(kind, pos, p, src.slice(pos + 1, p));
    }
    if (c === 45) return this.tok("punct", pos, src.charCodeAt(pos + 1) === 62 ? pos + 2 : pos + 1);
    if (PUNCT.has(src[pos]!)) return this.tok("punct", pos, pos + 1);
    const ch = String.fromCodePoint(src.codePointAt(pos)!);
    return this.fail(
      pos,
      `unexpected character ${/^[\x21-\x7e]$/.test(ch) ? `'${ch}'` : JSON.stringify(ch)}`,
    );
  }
}

function describe(t: Token): string {
  if (t.kind === "eof") return "end of input";
  const s = t.text.length > 40 ? `${t.text.slice(0, 37)}...` : t.text;
  return t.kind === "string" ? `string ${s}` : `'${s}'`;
}

/** Parses a module printed by `printModule` (or written by hand in the same syntax). */
export function parseModule(text: string, file = "<input>"): Module {
  return new Parser(new Lexer(text, file), file).module();
}

class Parser {
  /** Lookahead tokens (the first is the current one). */
  private readonly ahead: Token[] = [];
  /** One SymDim object per symbol name: dims are immutable data, so sharing them is safe (and lean). */
  private readonly syms = new Map<string, Dim>();
  /** Attribute lists and dimension expressions nest at most MAX_NESTING_DEPTH deep. */
  private readonly depth = new DepthGuard((m) => this.fail(this.peek(), m));

  constructor(
    private readonly lexer: Lexer,
    private readonly file: string,
  ) {}

  private peek(k = 0): Token {
    while (this.ahead.length <= k) this.ahead.push(this.lexer.next());
    return this.ahead[k]!;
  }

  private next(): Token {
    const t = this.peek();
    if (t.kind !== "eof") this.ahead.shift();
    return t;
  }

  private loc(t: Token): Loc {
    return { file: this.file, line: t.line, col: t.col };
  }

  private fail(t: Token, msg: string): never {
    throw new SourceError(this.loc(t), msg);
  }

  private expected(what: string, t = this.peek()): never {
    return this.fail(t, `expected ${what}, found ${describe(t)}`);
  }

  private isPunct(p: string, t = this.peek()): boolean {
    return t.kind === "punct" && t.text === p;
  }

  private isWord(w: string, t = this.peek()): boolean {
    return t.kind === "ident" && t.text === w;
  }

  private eat(p: string): boolean {
    if (!this.isPunct(p)) return false;
    this.next();
    return true;
  }

  private expect(p: string, context: string): Token {
    if (!this.isPunct(p)) this.expected(`'${p}' ${context}`);
    return this.next();
  }

  private global(context: string): Token {
    if (this.peek().kind !== "global") this.expected(`a @name ${context}`);
    return this.next();
  }

  module(): Module {
    if (!this.isWord("module")) this.expected("'module' at the start of the file");
    this.next();
    const name = this.global("after 'module'").value;
    const attrs = this.optAttributes();
    const consts: ConstDecl[] = [];
    const states: StateDecl[] = [];
    const funcs: Func[] = [];
    const globals = new Map<string, string>();
    const funcLocs = new Map<string, Token>();
    for (;;) {
      const t = this.peek();
      if (t.kind === "eof") break;
      if (this.isWord("const") || this.isWord("state")) {
        this.next();
        const nameTok = this.global(`after '${t.text}'`);
        const prev = globals.get(nameTok.value);
        if (prev !== undefined)
          this.fail(nameTok, `${t.text} ${nameTok.text} is already declared (as a ${prev})`);
        globals.set(nameTok.value, t.text);
        if (!this.isPunct(":")) {
          // `:` may occur in bare global names, so `@w:` is the name "w:".
          const hint = nameTok.text.endsWith(":")
            ? ` (${nameTok.text} is read as one name: put a space before ':')`
            : "";
          this.fail(
            this.peek(),
            `expected ':' after ${t.text} ${nameTok.text}, found ${describe(this.peek())}${hint}`,
          );
        }
        this.next();
        const type = this.type();
        const a = this.isPunct("{") ? this.attrDict() : {};
        (t.text === "const" ? consts : states).push({ name: nameTok.value, type, attrs: a });
      } else if (this.isWord("func")) {
        this.next();
        const nameTok = this.global("after 'func'");
        const prev = funcLocs.get(nameTok.value);
        if (prev)
          this.fail(nameTok, `function ${nameTok.text} is defined twice (first at ${prev.line}:${prev.col})`);
        funcLocs.set(nameTok.value, nameTok);
        funcs.push(this.func(nameTok));
      } else this.expected("'const', 'state', 'func' or the end of the file");
    }
    return { name, attrs, consts, states, funcs };
  }

  private optAttributes(): Attrs {
    if (!this.isWord("attributes")) return {};
    this.next();
    if (!this.isPunct("{")) this.expected("'{' after 'attributes'");
    return this.attrDict();
  }

  private func(nameTok: Token): Func {
    const fname = nameTok.text;
    this.expect("(", `after func ${fname}`);
    const params: Value[] = [];
    if (!this.isPunct(")"))
      do {
        const p = this.peek();
        if (p.kind !== "ssa") this.expected("a parameter %name");
        this.next();
        this.expect(":", `after parameter ${p.text}`);
        const type = this.type();
        params.push({ name: p.value, type });
      } while (this.eat(","));
    this.expect(")", "after the parameters");
    let declared: (TensorType | undefined)[] | undefined;
    if (this.eat("->")) {
      this.expect("(", "before the result types");
      declared = [];
      if (!this.isPunct(")"))
        do declared.push(this.eat("?") ? undefined : this.type());
        while (this.eat(","));
      this.expect(")", "after the result types");
    }
    const attrs = this.optAttributes();
    this.expect("{", `to open the body of function ${fname}`);
    const body: Op[] = [];
    for (;;) {
      const t = this.peek();
      if (this.isWord("return")) break;
      if (this.isPunct("}") || t.kind === "eof") this.expected(`'return' to end function ${fname}`);
      body.push(this.op());
    }
    const retTok = this.next();
    const refs: Token[] = [];
    if (this.peek().kind === "ssa" || this.peek().kind === "global")
      do refs.push(this.ref());
      while (this.eat(","));
    this.expect("}", `after the return statement of function ${fname}`);
    if (declared) {
      // Types of the returned values (the last definition of each name; duplicates are the verifier's).
      const types = new Map<string, TensorType | undefined>();
      for (const r of refs) if (r.kind === "ssa") types.set(r.value, undefined);
      for (const p of params) if (types.has(p.name)) types.set(p.name, p.type);
      for (const op of body) for (const v of op.results) if (types.has(v.name)) types.set(v.name, v.type);
      if (declared.length !== refs.length)
        this.fail(
          retTok,
          `function ${fname} declares ${declared.length} result(s) but returns ${refs.length}`,
        );
      refs.forEach((r, k) => {
        const want = declared[k];
        const have = r.kind === "ssa" ? types.get(r.value) : undefined;
        if (want && have && !typeEq(want, have))
          this.fail(
            r,
            `${r.text} has type ${typeToString(have)} but result ${k} of ${fname} is declared ${typeToString(want)}`,
          );
      });
    }
    return { name: nameTok.value, params, body, results: refs.map(refOf), attrs };
  }

  private ref(): Token {
    const t = this.peek();
    if (t.kind !== "ssa" && t.kind !== "global") this.expected("an operand (%value or @global)");
    return this.next();
  }

  private op(): Op {
    const first = this.peek();
    const names: Token[] = [];
    if (first.kind === "ssa") {
      do {
        if (this.peek().kind !== "ssa") this.expected("a result %name");
        names.push(this.next());
      } while (this.eat(","));
      this.expect("=", "after the result names");
    }
    const oc = this.peek();
    if (oc.kind !== "ident" && oc.kind !== "string")
      this.expected(names.length > 0 ? "an opcode" : "an op (%result = opcode(...)) or 'return'");
    this.next();
    const opcode = oc.kind === "string" ? oc.value : oc.text;
    this.expect("(", `after the opcode ${oc.text}`);
    const operands: string[] = [];
    if (!this.isPunct(")")) {
      do operands.push(refOf(this.ref()));
      while (this.eat(","));
      if (!this.isPunct(")")) this.expected("',' or ')' in the operand list");
    }
    this.next();
    const hadAttrs = this.isPunct("{");
    const attrs = hadAttrs ? this.attrDict() : {};
    const results: Value[] = [];
    if (names.length > 0) {
      this.expect(":", hadAttrs ? "after the attributes" : "after the operand list");
      names.forEach((nt, k) => {
        if (k > 0 && !this.eat(","))
          this.expected(`',' and another result type (the op has ${names.length} results)`);
        results.push({ name: nt.value, type: this.type() });
      });
      if (this.isPunct(","))
        this.fail(this.peek(), `more result types than the ${names.length} result name(s)`);
    }
    return { opcode, operands, results, attrs, loc: this.loc(first) };
  }

  private type(): TensorType {
    const t = this.peek();
    if (t.kind !== "ident") this.expected("a type such as f32[B, S, 64]");
    if (!isDType(t.text)) this.fail(t, `unknown dtype '${t.text}'`);
    this.next();
    this.expect("[", `after the dtype ${t.text}`);
    const shape: Dim[] = [];
    if (!this.isPunct("]")) {
      do shape.push(this.dim("a dimension"));
      while (this.eat(","));
      if (!this.isPunct("]")) this.expected("',' or ']' in the shape");
    }
    this.next();
    return { dtype: t.text, shape };
  }

  private attrDict(): Attrs {
    this.expect("{", "to open the attributes");
    const entries: [string, Attr][] = [];
    const seen = new Set<string>();
    if (!this.isPunct("}")) {
      do {
        const k = this.peek();
        if (k.kind !== "ident" && k.kind !== "string") this.expected("an attribute name");
        this.next();
        const key = k.kind === "string" ? k.value : k.text;
        if (seen.has(key)) this.fail(k, `duplicate attribute ${k.text}`);
        seen.add(key);
        this.expect("=", `after the attribute name ${k.text}`);
        entries.push([key, this.value()]);
      } while (this.eat(","));
      if (!this.isPunct("}")) this.expected("',' or '}' in the attributes");
    }
    this.next();
    return Object.fromEntries(entries);
  }

  /** string | true | false | [list] | number | dimension expression. */
  private value(): Attr {
    const t = this.peek();
    if (t.kind === "string") return this.next().value;
    if (this.isWord("true") || this.isWord("false")) return this.next().text === "true";
    if (this.eat("[")) {
      const xs: Attr[] = [];
      this.depth.enter("attribute lists");
      if (!this.isPunct("]")) {
        do xs.push(this.value());
        while (this.eat(","));
        if (!this.isPunct("]")) this.expected("',' or ']' in the list");
      }
      this.depth.leave();
      this.next();
      return xs;
    }
    // A plain (possibly negative, possibly fractional) number literal.
    const neg = this.isPunct("-") ? 1 : 0;
    const num = this.peek(neg);
    if (num.kind === "number" && !["+", "-", "*"].includes(this.peek(neg + 1).text)) {
      if (neg) this.next();
      this.next();
      return Number((neg ? "-" : "") + num.text);
    }
    return this.dim("an attribute value (number, string, true, false, dimension or [list])");
  }

  /** Dimension expression: integers, symbols, + - * and parentheses. */
  private dim(what: string): Dim {
    const t = this.peek();
    if (!(t.kind === "number" || t.kind === "ident" || this.isPunct("-") || this.isPunct("(")))
      this.expected(what);
    try {
      return this.dimExpr();
    } catch (e) {
      // Dimension arithmetic refuses dims too large to be real (MAX_DIM_TERMS): say where.
      if (e instanceof UserError && !(e instanceof SourceError)) this.fail(t, e.message);
      throw e;
    }
  }

  private dimExpr(): Dim {
    let v = this.dimTerm();
    for (;;) {
      if (this.eat("+")) v = dimAdd(v, this.dimTerm());
      else if (this.eat("-")) v = dimSub(v, this.dimTerm());
      else return v;
    }
  }

  private dimTerm(): Dim {
    let v = this.dimAtom();
    while (this.eat("*")) v = dimMul(v, this.dimAtom());
    return v;
  }

  private dimAtom(): Dim {
    const t = this.next();
    if (t.kind === "number") {
      const x = Number(t.text);
      if (!Number.isSafeInteger(x)) this.fail(t, `dimension expressions take integers, found ${t.text}`);
      return x;
    }
    if (t.kind === "ident") {
      let d = this.syms.get(t.text);
      if (d === undefined) {
        if (!SYMBOL_RE.test(t.text)) this.fail(t, `'${t.text}' is not a dimension symbol`);
        this.syms.set(t.text, (d = sym(t.text)));
      }
      return d;
    }
    if (this.isPunct("-", t)) return this.depth.nest("dimension expressions", () => dimNeg(this.dimAtom()));
    if (this.isPunct("(", t)) {
      const v = this.depth.nest("dimension expressions", () => this.dimExpr());
      this.expect(")", "to close the parenthesis in the dimension");
      return v;
    }
    return this.expected("an integer, a dimension symbol or '('", t);
  }
}

const refOf = (t: Token): string => (t.kind === "ssa" ? "%" : "@") + t.value;
