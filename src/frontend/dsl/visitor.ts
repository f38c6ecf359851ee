/** CST -> AST: builds the syntax tree of a description file, normalising units and decoding strings. */
import type { CstElement, CstNode, IToken } from "chevrotain";
import { SourceError, type Loc } from "../../errors.js";
import type {
  BinOp,
  BlockKind,
  BlockNode,
  EntryNode,
  Expr,
  FileNode,
  GraphNode,
  NamedArg,
  Stmt,
  StrPart,
  ValueNode,
} from "./ast.js";
import { MAX_NESTING_DEPTH, oneLine } from "../../guards.js";
import { tokenize } from "./lexer.js";
import { parseTokens, tokLoc } from "./parser.js";

/** Units and their factor to base units (bytes, bytes/s, Hz, seconds, FLOP/s or op/s). */
export const UNITS: Readonly<Record<string, number>> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  "B/s": 1,
  "KB/s": 1e3,
  "MB/s": 1e6,
  "GB/s": 1e9,
  "TB/s": 1e12,
  Hz: 1,
  kHz: 1e3,
  MHz: 1e6,
  GHz: 1e9,
  s: 1,
  ms: 1e-3,
  us: 1e-6,
  ns: 1e-9,
  FLOPS: 1,
  GFLOPS: 1e9,
  TFLOPS: 1e12,
  OPS: 1,
  GOPS: 1e9,
  TOPS: 1e12,
};

/** `value * factor`, rounded to 15 significant digits so that `1.2 GHz` is exactly 1200000000. */
export const applyUnit = (value: number, unit: string): number =>
  Number((value * UNITS[unit]!).toPrecision(15));

const isToken = (e: CstElement): e is IToken => "image" in e;

/** A finite number, or one line at `loc` (`1e999` would be Infinity). */
function finite(value: number, text: string, loc: Loc): number {
  if (!Number.isFinite(value))
    throw new SourceError(loc, `${text} is out of range (numbers must be finite, at most about 1.8e308)`);
  return value;
}

class Walker {
  /** The depth of each expression built (leaves 0): evaluating an expression recurses this deep. */
  private readonly depths = new WeakMap<Expr, number>();

  constructor(readonly file: string) {}

  /** The value of a string literal (JSON syntax, checked by the lexer). */
  decode(literal: string, t: IToken): string {
    try {
      return JSON.parse(literal) as string;
    } catch {
      throw new SourceError(this.loc(t), `invalid string ${oneLine(literal, 40)}`);
    }
  }

  /** Records the depth of `e` over its sub-expressions; deeper than MAX_NESTING_DEPTH is an error. */
  deep<E extends Expr>(e: E, kids: readonly (Expr | string)[]): E {
    let d = 0;
    for (const k of kids) if (typeof k !== "string") d = Math.max(d, this.depths.get(k) ?? 0);
    if (d + 1 > MAX_NESTING_DEPTH)
      throw new SourceError(
        e.loc,
        `expression nested deeper than ${MAX_NESTING_DEPTH} levels (MAX_NESTING_DEPTH; long chains of operators count)`,
      );
    this.depths.set(e, d + 1);
    return e;
  }

  loc(t: IToken): Loc {
    return tokLoc(t, this.file);
  }

  tok(n: CstNode, name: string, i = 0): IToken | undefined {
    const e = n.children[name]?.[i];
    return e && isToken(e) ? e : undefined;
  }

  toks(n: CstNode, name: string): IToken[] {
    return (n.children[name] ?? []).filter(isToken);
  }

  node(n: CstNode, name: string, i = 0): CstNode {
    const e = n.children[name]?.[i];
    if (!e || isToken(e)) throw new Error(`internal: CST node ${n.name} has no ${name}[${i}]`);
    return e;
  }

  nodes(n: CstNode, name: string): CstNode[] {
    return (n.children[name] ?? []).filter((e): e is CstNode => !isToken(e));
  }

  /** The first token of a subtree (for source order and locations). */
  first(e: CstElement): IToken {
    const t = this.firstOrNone(e);
    if (!t) throw new Error(`internal: empty CST node ${isToken(e) ? e.image : e.name}`);
    return t;
  }

  firstOrNone(e: CstElement): IToken | undefined {
    if (isToken(e)) return e;
    let best: IToken | undefined;
    for (const xs of Object.values(e.children))
      for (const x of xs) {
        const t = this.firstOrNone(x);
        if (t && (!best || t.startOffset < best.startOffset)) best = t;
      }
    return best;
  }

  /** Children of several kinds in source order. */
  ordered(n: CstNode, names: readonly string[]): CstNode[] {
    return names
      .flatMap((k) => this.nodes(n, k))
      .sort((a, b) => this.first(a).startOffset - this.first(b).startOffset);
  }

  file_(n: CstNode): FileNode {
    return { file: this.file, blocks: this.nodes(n, "block").map((b) => this.block(b)) };
  }

  block(n: CstNode): BlockNode {
    const kindTok = this.tok(n, "kind")!;
    const kind = kindTok.image as BlockKind;
    const nameTok = this.tok(n, "name")!;
    const graphs = this.nodes(n, "graph").map((g) => this.graph(g));
    if (kind !== "model" && graphs[0])
      throw new SourceError(graphs[0].loc, `a ${kind} block cannot have a graph`);
    if (graphs[1]) throw new SourceError(graphs[1].loc, `model ${nameTok.image} has a second graph`);
    return { kind, name: nameTok.image, loc: this.loc(nameTok), entries: this.entries(n), graphs };
  }

  /** The entries of a block, checking for duplicate keys. */
  entries(n: CstNode): EntryNode[] {
    const seen = new Set<string>();
    return this.nodes(n, "entry").map((e) => {
      const key = this.tok(e, "key")!;
      if (seen.has(key.image)) throw new SourceError(this.loc(key), `duplicate key "${key.image}"`);
      seen.add(key.image);
      return { key: key.image, value: this.value(this.node(e, "value")), loc: this.loc(key) };
    });
  }

  value(n: CstNode): ValueNode {
    const num = n.children.numberValue?.[0];
    if (num && !isToken(num)) return this.number(num);
    const str = this.tok(n, "StringLit");
    if (str) return { kind: "string", value: this.decode(str.image, str), loc: this.loc(str) };
    const id = this.tok(n, "Ident");
    if (id) return { kind: "ident", name: id.image, loc: this.loc(id) };
    const b = this.tok(n, "True") ?? this.tok(n, "False");
    if (b) return { kind: "bool", value: b.image === "true", loc: this.loc(b) };
    const list = n.children.listValue?.[0];
    if (list && !isToken(list))
      return {
        kind: "list",
        items: this.nodes(list, "value").map((v) => this.value(v)),
        loc: this.loc(this.first(list)),
      };
    const block = this.node(n, "blockValue");
    return { kind: "block", entries: this.entries(block), loc: this.loc(this.first(block)) };
  }

  number(n: CstNode): ValueNode {
    const lit = this.tok(n, "NumberLit")!;
    const minus = this.tok(n, "Minus");
    const loc = this.loc(minus ?? lit);
    let value = finite(Number(lit.image), lit.image, loc) * (minus ? -1 : 1);
    const unitTok = this.tok(n, "unit");
    if (!unitTok) return { kind: "number", value, loc };
    const per = this.tok(n, "per");
    const unit = per ? `${unitTok.image}/${per.image}` : unitTok.image;
    if (UNITS[unit] === undefined)
      throw new SourceError(
        this.loc(unitTok),
        `unknown unit '${unit}' (units: ${Object.keys(UNITS).join(", ")})`,
      );
    value = finite(applyUnit(value, unit), `${lit.image} ${unit}`, loc);
    return { kind: "number", value, unit, loc };
  }

  graph(n: CstNode): GraphNode {
    return {
      body: this.stmts(this.node(n, "stmts")),
      loc: this.loc(this.tok(n, "Graph")!),
      end: this.loc(this.tok(n, "RCurly")!),
    };
  }

  stmts(n: CstNode): Stmt[] {
    return this.ordered(n, ["assign", "forStmt", "returnStmt"]).map((s) => this.stmt(s));
  }

  stmt(n: CstNode): Stmt {
    const loc = this.loc(this.first(n));
    switch (n.name) {
      case "assign": {
        const targets = this.toks(n, "Ident").map((t) => ({ name: t.image, loc: this.loc(t) }));
        return { kind: "assign", targets, value: this.expr(this.node(n, "expression")), loc };
      }
      case "forStmt": {
        const v = this.tok(n, "Ident")!;
        return {
          kind: "for",
          var: { name: v.image, loc: this.loc(v) },
          lo: this.expr(this.node(n, "lo")),
          hi: this.expr(this.node(n, "hi")),
          body: this.stmts(this.node(n, "stmts")),
          loc,
        };
      }
      default:
        return { kind: "return", value: this.expr(this.node(n, "expression")), loc };
    }
  }

  /** expression and term: operands with left-associative operators between them. */
  expr(n: CstNode): Expr {
    const sub = n.name === "expression" ? "term" : n.name === "term" ? "unary" : undefined;
    if (n.name === "unary") return this.unary(n);
    if (!sub) throw new Error(`internal: unexpected CST node ${n.name}`);
    const operands = this.nodes(n, sub);
    const ops = this.toks(n, "op");
    let acc = this.expr(operands[0]!);
    ops.forEach((op, i) => {
      const rhs = this.expr(operands[i + 1]!);
      acc = this.deep({ kind: "binary", op: op.image as BinOp, lhs: acc, rhs, loc: this.loc(op) }, [
        acc,
        rhs,
      ]);
    });
    return acc;
  }

  unary(n: CstNode): Expr {
    const minus = this.tok(n, "Minus");
    if (minus) {
      const operand = this.unary(this.node(n, "unary"));
      return this.deep({ kind: "neg", operand, loc: this.loc(minus) }, [operand]);
    }
    return this.primary(this.node(n, "primary"));
  }

  primary(n: CstNode): Expr {
    const num = this.tok(n, "NumberLit");
    if (num)
      return { kind: "num", value: finite(Number(num.image), num.image, this.loc(num)), loc: this.loc(num) };
    const str = this.tok(n, "StringLit");
    if (str) {
      const parts = this.interpolate(str);
      return this.deep({ kind: "str", parts, loc: this.loc(str) }, parts);
    }
    const b = this.tok(n, "True") ?? this.tok(n, "False");
    if (b) return { kind: "bool", value: b.image === "true", loc: this.loc(b) };
    const id = this.tok(n, "Ident");
    if (id) {
      const args = n.children.callArgs?.[0];
      if (!args || isToken(args)) return { kind: "name", name: id.image, loc: this.loc(id) };
      const pos: Expr[] = [];
      const named: NamedArg[] = [];
      for (const a of this.nodes(args, "arg")) {
        const name = this.tok(a, "name");
        const value = this.expr(this.node(a, "expression"));
        if (!name) pos.push(value);
        else if (named.some((x) => x.name === name.image))
          throw new SourceError(this.loc(name), `argument ${name.image} given twice`);
        else named.push({ name: name.image, value, loc: this.loc(name) });
      }
      const call: Expr = { kind: "call", callee: id.image, args: pos, named, loc: this.loc(id) };
      return this.deep(call, [...pos, ...named.map((a) => a.value)]);
    }
    const lb = this.tok(n, "LBracket");
    if (lb) {
      const items = this.nodes(n, "expression").map((e) => this.expr(e));
      return this.deep({ kind: "list", items, loc: this.loc(lb) }, items);
    }
    return this.expr(this.node(n, "expression"));
  }

  /** Splits a graph string into text and `{expr}` parts. */
  interpolate(t: IToken): StrPart[] {
    const raw = t.image;
    const parts: StrPart[] = [];
    let text = "";
    const flush = () => {
      if (text !== "") parts.push(this.decode(`"${text}"`, t));
      text = "";
    };
    for (let i = 1; i < raw.length - 1; i++) {
      const c = raw[i]!;
      if (c === "\\") {
        text += c + raw[i + 1]!;
        i++;
      } else if (c === "{") {
        const end = raw.indexOf("}", i);
        const at = { line: t.startLine!, col: t.startColumn! + i };
        if (end < 0 || end === raw.length - 1)
          throw new SourceError({ file: this.file, ...at }, "unclosed '{' in string");
        flush();
        const inner = raw.slice(i + 1, end);
        const base = { line: at.line, col: at.col + 1 };
        const cst = parseTokens(tokenize(inner, this.file, base), "interpolation", inner, this.file, base);
        parts.push(this.expr(this.node(cst, "expression")));
        i = end;
      } else text += c;
    }
    flush();
    return parts;
  }
}

/** Converts the CST of a file to its AST (checks duplicate keys and graphs outside models). */
export function toAst(cst: CstNode, file: string): FileNode {
  return new Walker(file).file_(cst);
}
