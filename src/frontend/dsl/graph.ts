/**
 * Evaluation of a custom `graph { ... }` as a DecoderGraph: statements run once per function
 * (prefill, decode), tensor expressions emit IR ops through the FuncBuilder, numbers and dimensions
 * are computed on the spot.
 */
import { MAX_GRAPH_STEPS, MAX_LOOP_TRIPS } from "../../guards.js";
import { didYouMean, SourceError, type Loc } from "../../errors.js";
import type { Val } from "../../ir/builder.js";
import {
  dimAdd,
  dimDiv,
  dimEq,
  dimMul,
  dimNeg,
  dimSub,
  dimToString,
  type Dim,
  type SymDim,
} from "../../ir/dim.js";
import { DTYPES, isDType, type DType } from "../../ir/dtype.js";
import type { Attr, Attrs } from "../../ir/module.js";
import { allOps, getOp, type OpDef } from "../../ir/registry.js";
import { typeToString } from "../../ir/types.js";
import { GRAPH_LIMITS } from "../../limits.js";
import { defaultRope, type RopeConfig } from "../config.js";
import { selfAttention } from "../families/blocks.js";
import type { DecoderCtx, DecoderGraph } from "../families/decoder.js";
import type { Expr, GraphNode, NamedArg, Stmt } from "./ast.js";

/** Functions of the graph language that are not IR ops. */
const BUILTINS = ["weight", "positions", "cache", "self_attention"];

/** Values of graph expressions. Dimensions that are known integers are numbers. */
export type GVal =
  | { readonly kind: "tensor"; readonly val: Val }
  | { readonly kind: "number"; readonly value: number }
  | { readonly kind: "dim"; readonly dim: SymDim }
  | { readonly kind: "string"; readonly value: string }
  | { readonly kind: "bool"; readonly value: boolean }
  | { readonly kind: "list"; readonly items: readonly GVal[] };

const KIND_NAME: Record<GVal["kind"], string> = {
  tensor: "a tensor",
  number: "a number",
  dim: "a dimension",
  string: "a string",
  bool: "a boolean",
  list: "a list",
};

const num = (value: number): GVal => ({ kind: "number", value });
const fromDim = (d: Dim): GVal => (typeof d === "number" ? num(d) : { kind: "dim", dim: d });

/** Names every graph can use besides the model's constants (`tokens` and B, S, P come from the ctx). */
export const GRAPH_PREDEFINED = ["tokens", "B", "S", "P", ...DTYPES] as const;

export interface GraphSpec {
  readonly graph: GraphNode;
  /** The model block's numeric entries. */
  readonly constants: Readonly<Record<string, number>>;
}

/** Structural checks done once before evaluation: `return` exactly once, at the end. */
export function checkGraph(g: GraphNode, predefined: ReadonlySet<string>): void {
  const walk = (body: readonly Stmt[], top: boolean): void =>
    body.forEach((s, i) => {
      if (s.kind === "return" && !(top && i === body.length - 1))
        throw new SourceError(s.loc, "'return' must be the last statement of the graph");
      if (s.kind === "for") {
        if (predefined.has(s.var.name))
          throw new SourceError(s.var.loc, `cannot assign to '${s.var.name}' (predefined)`);
        walk(s.body, false);
      }
      if (s.kind === "assign")
        for (const t of s.targets)
          if (predefined.has(t.name))
            throw new SourceError(t.loc, `cannot assign to '${t.name}' (predefined)`);
    });
  walk(g.body, true);
  if (g.body[g.body.length - 1]?.kind !== "return")
    throw new SourceError(g.end, "the graph must end with 'return <logits>'");
}

/** Every name assigned somewhere in the graph (to tell "used before assigned" from "unknown"). */
function assignedNames(body: readonly Stmt[], out = new Set<string>()): Set<string> {
  for (const s of body) {
    if (s.kind === "assign") s.targets.forEach((t) => out.add(t.name));
    if (s.kind === "for") {
      out.add(s.var.name);
      assignedNames(s.body, out);
    }
  }
  return out;
}

/** The DecoderGraph of a custom model; `weightLocs` collects where each weight was declared. */
export function graphFunction(spec: GraphSpec, weightLocs: Map<string, Loc>): DecoderGraph {
  const assigned = assignedNames(spec.graph.body);
  return (ctx) => new Evaluator(ctx, spec, assigned, weightLocs).run();
}

interface Bound {
  readonly value: GVal;
  readonly loc: Loc;
}

class Evaluator {
  private readonly vars = new Map<string, GVal>();
  private readonly predefined = new Map<string, GVal>();
  private slot = 0;
  private readonly loops: number[] = [];
  /** Loop iterations run so far (capped: the graph is unrolled). */
  private iterations = 0;
  /** Statements run so far (loop bodies once per iteration). */
  private steps = 0;

  constructor(
    private readonly ctx: DecoderCtx,
    private readonly spec: GraphSpec,
    private readonly assigned: ReadonlySet<string>,
    private readonly weightLocs: Map<string, Loc>,
  ) {
    for (const [k, v] of Object.entries(spec.constants)) this.predefined.set(k, num(v));
    for (const d of DTYPES) this.predefined.set(d, { kind: "string", value: d });
    this.predefined.set("tokens", { kind: "tensor", val: ctx.tokens });
    this.predefined.set("B", fromDim(ctx.B));
    this.predefined.set("S", fromDim(ctx.S));
    this.predefined.set("P", fromDim(ctx.past));
  }

  run(): Val {
    const body = this.spec.graph.body;
    for (const s of body.slice(0, -1)) this.stmt(s);
    const ret = body[body.length - 1]!;
    if (ret.kind !== "return") throw new Error("internal: graph not checked");
    const v = this.tensor(this.expr(ret.value, "logits"), ret.value.loc, "the graph's result");
    const sh = v.type.shape;
    const vocab = this.spec.constants.vocab;
    if (
      sh.length !== 3 ||
      !dimEq(sh[0]!, this.ctx.B) ||
      !dimEq(sh[1]!, this.ctx.S) ||
      (vocab !== undefined && sh[2] !== vocab)
    )
      throw new SourceError(
        ret.loc,
        `the graph must return logits [B, S, ${vocab ?? "vocab"}], got ${typeToString(v.type)}`,
      );
    return v;
  }

  private stmt(s: Stmt): void {
    if (++this.steps > MAX_GRAPH_STEPS)
      throw new SourceError(
        s.loc,
        `the graph runs more than ${MAX_GRAPH_STEPS} statements (MAX_GRAPH_STEPS; check the bounds of its for loops)`,
      );
    switch (s.kind) {
      case "assign": {
        const hint = s.targets[0]!.name + this.loops.map((i) => `.${i}`).join("");
        const v = this.expr(s.value, hint);
        if (s.targets.length === 1) {
          this.vars.set(s.targets[0]!.name, v);
          return;
        }
        if (v.kind !== "list" || v.items.length !== s.targets.length) {
          const what = v.kind === "list" ? `a list of ${v.items.length}` : KIND_NAME[v.kind];
          throw new SourceError(s.loc, `${s.targets.length} names on the left but the value is ${what}`);
        }
        s.targets.forEach((t, i) => this.vars.set(t.name, v.items[i]!));
        return;
      }
      case "for": {
        const lo = this.int(this.expr(s.lo), s.lo.loc, "the loop's start");
        const hi = this.int(this.expr(s.hi), s.hi.loc, "the loop's end");
        if (hi - lo > MAX_LOOP_TRIPS)
          throw new SourceError(
            s.loc,
            `the loop ${lo}..${hi} runs ${hi - lo} times, more than ${MAX_LOOP_TRIPS} (MAX_LOOP_TRIPS)`,
          );
        this.iterations += Math.max(0, hi - lo);
        if (this.iterations > GRAPH_LIMITS.iterations)
          throw new SourceError(
            s.loc,
            `loop ${lo}..${hi} brings the graph's loop iterations to ${this.iterations}, more than pimc's limit of ${GRAPH_LIMITS.iterations}`,
          );
        for (let i = lo; i < hi; i++) {
          this.vars.set(s.var.name, num(i));
          this.loops.push(i);
          for (const b of s.body) this.stmt(b);
          this.loops.pop();
        }
        return;
      }
      case "return":
        throw new Error("internal: graph not checked");
    }
  }

  private expr(e: Expr, hint?: string): GVal {
    switch (e.kind) {
      case "num":
        return num(e.value);
      case "bool":
        return { kind: "bool", value: e.value };
      case "str":
        return {
          kind: "string",
          value: e.parts.map((p) => (typeof p === "string" ? p : this.text(p))).join(""),
        };
      case "list":
        return { kind: "list", items: e.items.map((x) => this.expr(x)) };
      case "name": {
        const v = this.vars.get(e.name) ?? this.predefined.get(e.name);
        if (v) return v;
        if (this.assigned.has(e.name))
          throw new SourceError(e.loc, `'${e.name}' is used before it is assigned`);
        throw new SourceError(
          e.loc,
          `unknown name '${e.name}'${didYouMean(e.name, [...this.vars.keys(), ...this.predefined.keys()])}`,
        );
      }
      case "neg": {
        const v = this.expr(e.operand);
        if (v.kind === "tensor") return this.emit("scale", [v.val], { value: -1 }, e.loc, hint);
        if (v.kind === "number") return num(-v.value);
        if (v.kind === "dim") return fromDim(dimNeg(v.dim));
        throw new SourceError(e.loc, `cannot negate ${KIND_NAME[v.kind]}`);
      }
      case "binary":
        return this.binary(e.op, this.expr(e.lhs), this.expr(e.rhs), e.loc, hint);
      case "call":
        return this.call(e, hint);
    }
  }

  /** Text of an interpolation `{expr}`. */
  private text(e: Expr): string {
    const v = this.expr(e);
    if (v.kind === "number" || v.kind === "string" || v.kind === "bool") return String(v.value);
    if (v.kind === "dim") return dimToString(v.dim);
    throw new SourceError(e.loc, `cannot put ${KIND_NAME[v.kind]} in a string`);
  }

  private binary(op: "+" | "-" | "*" | "/", a: GVal, b: GVal, loc: Loc, hint?: string): GVal {
    const r = this.binaryOf(op, a, b, loc, hint);
    if (r.kind === "number" && !Number.isFinite(r.value))
      throw new SourceError(loc, `'${op}' overflows: the result is not a finite number`);
    return r;
  }

  private binaryOf(op: "+" | "-" | "*" | "/", a: GVal, b: GVal, loc: Loc, hint?: string): GVal {
    const opcode = { "+": "add", "-": "sub", "*": "mul", "/": "div" }[op];
    if (a.kind === "tensor" && b.kind === "tensor") return this.emit(opcode, [a.val, b.val], {}, loc, hint);
    // A tensor times (or divided by) a number is the `scale` op.
    if (a.kind === "tensor" && b.kind === "number" && (op === "*" || op === "/")) {
      if (op === "/" && b.value === 0) throw new SourceError(loc, "division by zero");
      return this.emit("scale", [a.val], { value: op === "*" ? b.value : 1 / b.value }, loc, hint);
    }
    if (a.kind === "number" && b.kind === "tensor" && op === "*")
      return this.emit("scale", [b.val], { value: a.value }, loc, hint);
    const isNum = (v: GVal): v is Extract<GVal, { kind: "number" | "dim" }> =>
      v.kind === "number" || v.kind === "dim";
    if (!isNum(a) || !isNum(b))
      throw new SourceError(loc, `cannot apply '${op}' to ${KIND_NAME[a.kind]} and ${KIND_NAME[b.kind]}`);
    const x: Dim = a.kind === "number" ? a.value : a.dim;
    const y: Dim = b.kind === "number" ? b.value : b.dim;
    if (typeof x === "number" && typeof y === "number" && !(Number.isInteger(x) && Number.isInteger(y))) {
      if (op === "/" && y === 0) throw new SourceError(loc, "division by zero");
      return num(op === "+" ? x + y : op === "-" ? x - y : op === "*" ? x * y : x / y);
    }
    if (op === "+") return fromDim(dimAdd(x, y));
    if (op === "-") return fromDim(dimSub(x, y));
    if (op === "*") return fromDim(dimMul(x, y));
    const q = dimDiv(x, y);
    if (q === undefined)
      throw new SourceError(
        loc,
        `${dimToString(x)} / ${dimToString(y)} does not divide exactly (write fractions as decimals)`,
      );
    return fromDim(q);
  }

  private emit(opcode: string, ins: Val[], attrs: Attrs, loc: Loc, hint?: string): GVal {
    const rs = this.ctx.f.op(opcode, ins, attrs, { loc, ...(hint !== undefined ? { name: hint } : {}) });
    return rs.length === 1
      ? { kind: "tensor", val: rs[0]! }
      : { kind: "list", items: rs.map((val) => ({ kind: "tensor", val })) };
  }

  private call(e: Extract<Expr, { kind: "call" }>, hint?: string): GVal {
    switch (e.callee) {
      case "weight":
        return this.weight(e);
      case "positions": {
        const a = this.bind(e, ["offset"], 0);
        const offset = a.offset ? this.int(a.offset.value, a.offset.loc, "offset") : 0;
        return { kind: "tensor", val: this.ctx.positions(offset, e.loc) };
      }
      case "cache": {
        const a = this.bind(e, ["x"], 1);
        const x = this.tensor(a.x!.value, a.x!.loc, "operand x of cache");
        return { kind: "tensor", val: this.ctx.cache(String(this.slot++), x, e.loc) };
      }
      case "self_attention":
        return this.selfAttention(e);
    }
    const def = getOp(e.callee);
    if (!def)
      throw new SourceError(
        e.loc,
        `unknown op '${e.callee}'${didYouMean(e.callee, [...allOps().map((o) => o.name), ...BUILTINS])}`,
      );
    const ins = e.args.map((a, i) =>
      this.tensor(this.expr(a), a.loc, `operand ${operandName(def, i)} of ${def.name}`),
    );
    const attrs: Record<string, Attr> = {};
    const known = (def.attrs as { shape?: Record<string, unknown> }).shape;
    const names = Object.keys(known ?? {}).join(", ");
    for (const n of e.named) {
      if (known && !(n.name in known))
        throw new SourceError(
          n.loc,
          `${def.name} has no attribute '${n.name}' (${names ? `attributes: ${names}` : "it has none"})`,
        );
      attrs[n.name] = this.attr(this.expr(n.value), n, def.name);
    }
    return this.emit(def.name, ins, attrs, e.loc, hint);
  }

  /** Binds positional and named arguments of a builtin to its parameters. */
  private bind(
    e: Extract<Expr, { kind: "call" }>,
    params: readonly string[],
    required: number,
  ): Record<string, Bound> {
    const out: Record<string, Bound> = {};
    if (e.args.length > params.length)
      throw new SourceError(
        e.args[params.length]!.loc,
        `${e.callee} takes at most ${params.length} positional argument(s)`,
      );
    e.args.forEach((a, i) => (out[params[i]!] = { value: this.expr(a), loc: a.loc }));
    for (const n of e.named) {
      if (!params.includes(n.name))
        throw new SourceError(
          n.loc,
          `${e.callee} has no argument '${n.name}' (arguments: ${params.join(", ")})`,
        );
      if (out[n.name]) throw new SourceError(n.loc, `argument ${n.name} of ${e.callee} given twice`);
      out[n.name] = { value: this.expr(n.value), loc: n.loc };
    }
    const missing = params.slice(0, required).find((p) => !out[p]);
    if (missing) throw new SourceError(e.loc, `${e.callee} needs argument ${missing}`);
    return out;
  }

  private weight(e: Extract<Expr, { kind: "call" }>): GVal {
    const a = this.bind(e, ["name", "shape", "dtype"], 2);
    const name = a.name!.value;
    if (name.kind !== "string" || name.value === "")
      throw new SourceError(
        a.name!.loc,
        `weight name must be a non-empty string, got ${KIND_NAME[name.kind]}`,
      );
    const sv = a.shape!.value;
    if (sv.kind !== "list")
      throw new SourceError(a.shape!.loc, `weight shape must be a list, got ${KIND_NAME[sv.kind]}`);
    const shape = sv.items.map((d) => {
      if (d.kind !== "number" || !Number.isInteger(d.value) || d.value < 1)
        throw new SourceError(a.shape!.loc, `weight shape must hold positive integers, got ${showVal(d)}`);
      if (d.value > GRAPH_LIMITS.dim)
        throw new SourceError(
          a.shape!.loc,
          `weight shape: ${d.value} is more than pimc's limit of ${GRAPH_LIMITS.dim} per dimension`,
        );
      return d.value;
    });
    let dtype: DType | undefined;
    if (a.dtype) {
      const d = a.dtype.value;
      if (d.kind !== "string" || !isDType(d.value))
        throw new SourceError(a.dtype.loc, `dtype must be one of ${DTYPES.join(", ")}, got ${showVal(d)}`);
      dtype = d.value;
    }
    if (!this.weightLocs.has(name.value)) this.weightLocs.set(name.value, e.loc);
    const val = this.ctx.weight(name.value, shape, { ...(dtype ? { dtype } : {}), loc: e.loc });
    return { kind: "tensor", val };
  }

  private selfAttention(e: Extract<Expr, { kind: "call" }>): GVal {
    const P = [
      "q",
      "k",
      "v",
      "heads",
      "kv_heads",
      "head_dim",
      "rope_theta",
      "rotary_dim",
      "interleaved",
      "scale",
      "window",
    ];
    const a = this.bind(e, P, 4);
    const [q, k, v] = (["q", "k", "v"] as const).map((n) =>
      this.tensor(a[n]!.value, a[n]!.loc, `operand ${n} of self_attention`),
    );
    const heads = this.posInt(a.heads!, "heads");
    const kvHeads = a.kv_heads ? this.posInt(a.kv_heads, "kv_heads") : heads;
    if (heads % kvHeads !== 0)
      throw new SourceError(a.kv_heads!.loc, `heads (${heads}) must be a multiple of kv_heads (${kvHeads})`);
    const qw = q!.type.shape[q!.type.shape.length - 1]!;
    let headDim: number;
    if (a.head_dim) headDim = this.posInt(a.head_dim, "head_dim");
    else {
      if (typeof qw !== "number" || qw % heads !== 0)
        throw new SourceError(
          a.q!.loc,
          `the width of q (${dimToString(qw)}) is not a multiple of heads (${heads})`,
        );
      headDim = qw / heads;
    }
    const want = (n: "q" | "k" | "v", t: Val, h: number): void => {
      const s = t.type.shape;
      if (s.length !== 3 || !dimEq(s[0]!, this.ctx.B) || !dimEq(s[1]!, this.ctx.S) || s[2] !== h * headDim)
        throw new SourceError(
          a[n]!.loc,
          `${n} of self_attention must be [B, S, ${h * headDim}], got ${typeToString(t.type)}`,
        );
    };
    want("q", q!, heads);
    want("k", k!, kvHeads);
    want("v", v!, kvHeads);
    let rope: RopeConfig | undefined;
    if (a.rope_theta) {
      const theta = this.number(a.rope_theta, "rope_theta");
      if (theta <= 0) throw new SourceError(a.rope_theta.loc, "rope_theta must be positive");
      rope = defaultRope(theta);
      if (a.rotary_dim) {
        const rd = this.posInt(a.rotary_dim, "rotary_dim");
        if (rd % 2 !== 0 || rd > headDim)
          throw new SourceError(
            a.rotary_dim.loc,
            `rotary_dim must be even and at most head_dim (${headDim})`,
          );
        rope = { ...rope, rotary_dim: rd };
      }
    } else if (a.rotary_dim) throw new SourceError(a.rotary_dim.loc, "rotary_dim needs rope_theta");
    let interleaved = false;
    if (a.interleaved) {
      const iv = a.interleaved.value;
      if (iv.kind !== "bool")
        throw new SourceError(a.interleaved.loc, `interleaved must be true or false, got ${showVal(iv)}`);
      if (!rope && iv.value) throw new SourceError(a.interleaved.loc, "interleaved needs rope_theta");
      interleaved = iv.value;
    }
    const scale = a.scale ? this.number(a.scale, "scale") : 1 / Math.sqrt(headDim);
    if (scale <= 0) throw new SourceError(a.scale!.loc, "scale must be positive");
    const window = a.window ? this.int(a.window.value, a.window.loc, "window") : 0;
    if (window < 0) throw new SourceError(a.window!.loc, "window must be 0 (full attention) or positive");
    const slot = String(this.slot++);
    const val = selfAttention(this.ctx, {
      q: q!,
      k: k!,
      v: v!,
      heads,
      kvHeads,
      headDim,
      rope,
      scale,
      window,
      slot,
      tag: `L${slot}`,
      interleaved,
      loc: e.loc,
    });
    return { kind: "tensor", val };
  }

  private tensor(v: GVal, loc: Loc, what: string): Val {
    if (v.kind !== "tensor")
      throw new SourceError(loc, `a tensor was expected for ${what}, got ${KIND_NAME[v.kind]}`);
    return v.val;
  }

  private int(v: GVal, loc: Loc, what: string): number {
    if (v.kind !== "number" || !Number.isInteger(v.value))
      throw new SourceError(loc, `${what} must be an integer, got ${showVal(v)}`);
    return v.value;
  }

  private posInt(b: Bound, what: string): number {
    const n = this.int(b.value, b.loc, what);
    if (n < 1) throw new SourceError(b.loc, `${what} must be positive, got ${n}`);
    return n;
  }

  private number(b: Bound, what: string): number {
    if (b.value.kind !== "number")
      throw new SourceError(b.loc, `${what} must be a number, got ${showVal(b.value)}`);
    return b.value.value;
  }

  private attr(v: GVal, n: NamedArg, op: string): Attr {
    switch (v.kind) {
      case "number":
      case "string":
      case "bool":
        return v.value;
      case "dim":
        return v.dim;
      case "list":
        return v.items.map((x) => this.attr(x, n, op));
      case "tensor":
        throw new SourceError(
          n.loc,
          `attribute ${n.name} of ${op} cannot be a tensor (tensors are positional)`,
        );
    }
  }
}

function operandName(def: OpDef, i: number): string {
  const o = def.operands[Math.min(i, def.operands.length - 1)];
  if (o === undefined || (i >= def.operands.length && !o.endsWith("..."))) return `#${i + 1}`;
  return o.replace(/\?$|\.\.\.$/, "");
}

/** A value in a message: `4`, `B+1`, `"abc"`, `a tensor f32[B, S, 64]`. */
function showVal(v: GVal): string {
  switch (v.kind) {
    case "number":
    case "bool":
      return String(v.value);
    case "string":
      return JSON.stringify(v.value);
    case "dim":
      return `the dimension ${dimToString(v.dim)}`;
    case "tensor":
      return `a tensor ${typeToString(v.val.type)}`;
    case "list":
      return "a list";
  }
}
