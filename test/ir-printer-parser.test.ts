/** The textual IR: printer format, print/parse round trips (property-based), parser errors, verifier. */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { SourceError, UserError } from "../src/errors.js";
import { ModuleBuilder, type FuncBuilder, type Val } from "../src/ir/builder.js";
import { dimAdd, dimMul, sym, type Dim } from "../src/ir/dim.js";
import { stripLocs } from "../src/ir/equal.js";
import type { Attr, Attrs, Func, Module, Op } from "../src/ir/module.js";
import { parseModule } from "../src/ir/parser.js";
import { printFunc, printModule } from "../src/ir/printer.js";
import { tensor, typeEq, type TensorType } from "../src/ir/types.js";
import { assertValid, verifyModule } from "../src/ir/verifier.js";

const B = sym("B");
const S = sym("S");
const P = sym("P");
const f32 = (...shape: Dim[]): TensorType => tensor("f32", shape);

// ---------------------------------------------------------------------------------------------
// Random modules

/** Characters that exercise name quoting and string escapes. */
const nameUnit = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("a", "b", "x", "_", ".", "0", "9") },
  fc.constantFrom(
    "-",
    ":",
    "/",
    " ",
    '"',
    "\\",
    "é",
    "😀",
    "\u2028",
    "\ud800",
    "\n",
    "\t",
    "%",
    "@",
    "}",
    "{",
    "#",
  ),
);
const weirdName = fc.oneof(
  fc.constantFrom(
    "model.layers.0.self_attn.q_proj.weight",
    "a-b:c/d",
    "weird name",
    'q"uote',
    "back\\slash",
    "ünïcödé",
    "😀",
    "",
    "new\nline",
    "a//b",
    "0",
  ),
  fc.string({ unit: nameUnit, maxLength: 8 }),
);
const text = fc.oneof(
  fc.string({ unit: nameUnit, maxLength: 10 }),
  fc.string({ unit: "binary", maxLength: 6 }),
  fc.constantFrom("", 'say "hi"', "C:\\path\\", "日本語", "\u0000\u001f\u007f", "// not a comment"),
);
const symDim = fc
  .tuple(
    fc.integer({ min: -3, max: 3 }),
    fc.constantFrom<Dim[]>(B, S, P, dimMul(B, S), dimAdd(P, S), sym("true"), dimMul(sym("false"), sym("z"))),
    fc.integer({ min: -5, max: 5 }),
  )
  .map(([c, d, k]) => dimAdd(dimMul(c === 0 ? 1 : c, d), k));
const leaf: fc.Arbitrary<Attr> = fc.oneof(
  fc.integer({ min: -100000, max: 100000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(1e-5, 1e-6, -0.5, 0.25, 10000, 1e21, 5e-324, -0, Number.MAX_VALUE, -1),
  text,
  fc.boolean(),
  symDim,
);
const attrValue: fc.Arbitrary<Attr> = fc.letrec<{ v: Attr }>((tie) => ({
  v: fc.oneof({ maxDepth: 3 }, leaf, fc.array(tie("v"), { maxLength: 3 })),
})).v;
const attrKey = fc
  .oneof(
    fc.constantFrom("eps", "axis", "a.b", "family", "with space", "é", "", "true", "0"),
    fc.string({ maxLength: 5 }),
  )
  .filter((k) => k !== "__proto__");
const attrsArb: fc.Arbitrary<Attrs> = fc
  .uniqueArray(fc.tuple(attrKey, attrValue), { selector: (e) => e[0], maxLength: 4 })
  .map((es) => Object.fromEntries(es));

type Gen = fc.GeneratorValue;
const pick = <T>(g: Gen, xs: readonly T[]): T => xs[g(fc.nat, { max: xs.length - 1 })]!;
const rank = (v: Val): number => v.type.shape.length;
const last = (v: Val): Dim => v.type.shape[rank(v) - 1]!;

/** Builds a random well-typed module: a few functions, each a random chain of ops. */
function genModule(g: Gen): Module {
  const used = new Set<string>();
  const unique = (base: string): string => {
    let n = base;
    for (let i = 1; used.has(n); i++) n = `${base}#${i}`;
    used.add(n);
    return n;
  };
  const mb = new ModuleBuilder(
    g(() => weirdName),
    g(() => attrsArb),
  );
  const attrs = (): Attrs => (g(fc.boolean) ? g(() => attrsArb) : {});
  const weight = (...shape: Dim[]): Val => mb.constant(unique(g(() => weirdName)), f32(...shape), attrs());
  const hidden = g(fc.constantFrom, 8, 16, 32);
  const funcNames = new Set<string>();
  const nFuncs = g(fc.integer, { min: 1, max: 3 });
  for (let fi = 0; fi < nFuncs; fi++) {
    let fname = g(() => weirdName);
    while (funcNames.has(fname)) fname += "'";
    funcNames.add(fname);
    const fb = mb.func(fname, attrs());
    const seq = g(fc.constantFrom<Dim[]>, S, 1, dimAdd(S, 2));
    const main = f32(B, seq, hidden);
    let x: Val;
    if (g(fc.boolean)) {
      const ids = fb.param("tokens", tensor("i32", [B, seq]));
      x = fb.op1("embedding", [ids, weight(100, hidden)], {}, { name: "x" });
    } else x = fb.param("x", main);
    const pool: Val[] = [x];
    const ctx = { g, fb, mb, pool, weight, unique, seq, hidden, attrs };
    const nOps = g(fc.integer, { min: 0, max: 12 });
    for (let k = 0; k < nOps; k++) {
      const kind = pick(g, OPS);
      const v = pick(g, pool);
      pool.push(...kind(ctx, v, pool.filter((w) => typeEq(w.type, main))[0] ?? x));
    }
    const nRes = g(fc.integer, { min: 1, max: 2 });
    fb.ret(...Array.from({ length: nRes }, () => pick(g, pool)));
  }
  return g(fc.boolean) ? renameSsa(g, mb.build()) : mb.build();
}

interface Ctx {
  g: Gen;
  fb: FuncBuilder;
  mb: ModuleBuilder;
  pool: Val[];
  weight: (...shape: Dim[]) => Val;
  unique: (base: string) => string;
  seq: Dim;
  hidden: number;
  attrs: () => Attrs;
}
/** An op generator: given a random pool value `v` and a value `x` of shape [B, seq, hidden]. */
type OpGen = (c: Ctx, v: Val, x: Val) => Val[];

const OPS: OpGen[] = [
  ({ g, fb, weight }, v) => {
    const n = g(fc.constantFrom, 4, 8, 16);
    const ins = [v, weight(n, last(v))];
    if (g(fc.boolean)) ins.push(weight(n));
    return [fb.op1("linear", ins)];
  },
  ({ g, fb, pool, weight }, v) => {
    const same = pool.filter((w) => typeEq(w.type, v.type));
    const other = g(fc.boolean) ? weight(last(v)) : pick(g, same);
    return [fb.op1(pick(g, ["add", "mul", "sub", "div"]), g(fc.boolean) ? [v, other] : [other, v])];
  },
  ({ g, fb }, v) => {
    const name = pick(g, ["silu", "gelu", "relu", "sigmoid", "tanh", "scale"]);
    const a: Attrs =
      name === "gelu"
        ? g(fc.constantFrom, {}, { approx: "tanh" }, { approx: "none" })
        : name === "scale"
          ? { value: g(fc.double, { noNaN: true, noDefaultInfinity: true }) }
          : {};
    return [fb.op1(name, [v], a, { name: g(fc.constantFrom, undefined, "h", "h.1") })];
  },
  ({ g, fb, weight }, v) => {
    const eps = g(() =>
      fc.oneof(fc.constantFrom(1e-5, 1e-6, 0.1), fc.double({ min: 1e-12, max: 1, noNaN: true })),
    );
    const ins = g(fc.boolean) ? [v, weight(last(v))] : [v];
    if (g(fc.boolean)) return [fb.op1("rms_norm", ins, { eps })];
    if (ins.length === 2 && g(fc.boolean)) ins.push(weight(last(v)));
    return [fb.op1("layer_norm", ins, { eps })];
  },
  ({ g, fb }, v) => [fb.op1("softmax", [v], { axis: g(fc.integer, { min: -rank(v), max: rank(v) - 1 }) })],
  ({ g, fb }, v) => {
    const sh = v.type.shape;
    const r = sh.length;
    const d = last(v);
    if (typeof d === "number" && d % 2 === 0 && g(fc.boolean))
      return [fb.op1("reshape", [v], { shape: [...sh.slice(0, -1), 2, d / 2] })];
    if (r >= 2) return [fb.op1("reshape", [v], { shape: [...sh.slice(0, -2), dimMul(sh[r - 2]!, d)] })];
    return [];
  },
  ({ g, fb }, v) => {
    const r = rank(v);
    const axes = [...Array(r).keys()];
    return r < 2
      ? []
      : [fb.op1("transpose", [v], { perm: g(fc.shuffledSubarray, axes, { minLength: r, maxLength: r }) })];
  },
  ({ g, fb }, v) => {
    const r = rank(v);
    const ax = g(fc.nat, { max: r - 1 });
    const d = v.type.shape[ax]!;
    const axis = g(fc.boolean) ? ax - r : ax;
    let sizes: Dim[];
    if (typeof d === "number") {
      if (d < 2) return [];
      const a = g(fc.integer, { min: 1, max: d - 1 });
      const b = d - a >= 2 && g(fc.boolean) ? g(fc.integer, { min: 1, max: d - a - 1 }) : 0;
      sizes = b > 0 ? [a, b, d - a - b] : [a, d - a];
    } else if (d.terms.length >= 2)
      sizes = d.terms.map((t) => dimMul(t.coef, t.syms.map(sym).reduce(dimMul, 1)));
    else return [];
    return fb.op("split", [v], { axis, sizes }, { name: "part" });
  },
  ({ g, fb, pool }, v) => {
    const r = rank(v);
    const same = pool.filter((w) => typeEq(w.type, v.type));
    const ins = Array.from({ length: g(fc.integer, { min: 1, max: 3 }) }, () => pick(g, same));
    return [fb.op1("concat", ins, { axis: g(fc.integer, { min: -r, max: r - 1 }) })];
  },
  ({ g, fb, seq }) => {
    fb.op1("positions", [], { start: g(fc.constantFrom<Dim[]>, 0, P, 7, dimAdd(P, 1)), len: seq });
    return [];
  },
  // An attention block: q/k/v projections, rope, KV cache append, attention, output reshape.
  ({ g, fb, mb, weight, unique, seq, hidden, attrs }, _v, x) => {
    const heads = g(fc.constantFrom, 1, 2, 4);
    const kvHeads = g(fc.constantFrom, ...[1, 2, 4].filter((h) => heads % h === 0));
    const hd = hidden / heads;
    const proj = (h: number, name: string): Val => {
      const y = fb.op1("linear", [x, weight(h * hd, hidden)], {}, { name });
      return fb.op1("reshape", [y], { shape: [B, seq, h, hd] });
    };
    const pos = fb.op1("positions", [], { start: P, len: seq }, { name: "pos" });
    const ropeAttrs = (): Attrs => ({
      theta: g(fc.constantFrom, 10000, 500000, 1e6, 0.5),
      ...(g(fc.boolean) ? { rotary_dim: 2 } : {}),
      ...(g(fc.boolean) ? { interleaved: g(fc.boolean) } : {}),
      ...(g(fc.boolean) ? { scaling: "llama3", factor: 8, original_max_position: 8192 } : {}),
    });
    const perm = [0, 2, 1, 3];
    const q = fb.op1("transpose", [fb.op1("rope", [proj(heads, "q"), pos], ropeAttrs())], { perm });
    const k = fb.op1("transpose", [fb.op1("rope", [proj(kvHeads, "k"), pos], ropeAttrs())], { perm });
    const v = fb.op1("transpose", [proj(kvHeads, "v")], { perm });
    const cache = (t: Val, what: string): Val => {
      const st = mb.state(unique(`kv.${what}`), f32(B, kvHeads, sym("T"), hd), attrs());
      return fb.op1("kv_append", [st, t], { axis: 2, past: P }, { name: what });
    };
    const att = fb.op1("attention", [q, cache(k, "k"), cache(v, "v")], {
      scale: g(fc.double, { min: 1e-3, max: 4, noNaN: true }),
      ...(g(fc.boolean) ? { causal: g(fc.boolean) } : {}),
      ...(g(fc.boolean) ? { window: g(fc.nat, { max: 64 }) } : {}),
    });
    const back = fb.op1("transpose", [att], { perm });
    return [fb.op1("reshape", [back], { shape: [B, seq, hidden] }, { name: "attn_out" })];
  },
];

/** Renames SSA values to random names that (mostly) need quoting; the builder only makes bare ones. */
function renameSsa(g: Gen, m: Module): Module {
  const funcs = m.funcs.map((f): Func => {
    const map = new Map<string, string>();
    const taken = new Set<string>();
    const fresh = (old: string): string => {
      let n = g(() => weirdName);
      while (taken.has(n)) n += "~";
      taken.add(n);
      map.set(old, n);
      return n;
    };
    const params = f.params.map((p) => ({ ...p, name: fresh(p.name) }));
    const body = f.body.map((op): Op => ({
      ...op,
      operands: op.operands.map((r) => (r.startsWith("%") ? `%${map.get(r.slice(1))!}` : r)),
      results: op.results.map((r) => ({ ...r, name: fresh(r.name) })),
    }));
    return { ...f, params, body, results: f.results.map((r) => `%${map.get(r.slice(1))!}`) };
  });
  return { ...m, funcs };
}

describe("print/parse round trip", () => {
  test("parse(print(m)) equals m for random valid modules", () => {
    fc.assert(
      fc.property(fc.gen(), (g) => {
        const m = genModule(g);
        expect(verifyModule(m)).toEqual([]);
        const printed = printModule(m);
        const back = parseModule(printed, "rt.pimir");
        expect(stripLocs(back)).toEqual(stripLocs(m));
        expect(printModule(back)).toBe(printed);
        expect(verifyModule(back)).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  test("negative zero and tiny/huge numbers survive", () => {
    const m = new ModuleBuilder("m", { z: -0, t: 5e-324, h: 1e21, n: [-0.5, [1e-5, []]] }).build();
    const back = parseModule(printModule(m));
    expect(Object.is(back.attrs.z, -0)).toBe(true);
    expect(back.attrs).toEqual(m.attrs);
  });
});

// ---------------------------------------------------------------------------------------------
// Format

describe("printer format", () => {
  function example(): Module {
    const mb = new ModuleBuilder("llama_tiny", { hidden: 64, family: "llama" });
    const table = mb.constant("model.embed_tokens.weight", f32(128, 64));
    const head = mb.constant("lm_head.weight", f32(128, 64), { layout: "oi" });
    const wqkv = mb.constant("qkv", f32(128, 64));
    mb.state("kv.0.k", f32(B, 2, sym("T"), 16), { layer: 0 });
    const fb = mb.func("prefill", { phase: "prefill" });
    const tokens = fb.param("tokens", tensor("i32", [B, S]));
    fb.op1("positions", [], { start: 0, len: S }, { name: "pos" });
    const x = fb.op1("embedding", [tokens, table], {}, { name: "x" });
    const qkv = fb.op1("linear", [x, wqkv], {}, { name: "qkv" });
    const [q] = fb.op("split", [qkv], { axis: -1, sizes: [64, 32, 32] }, { name: "p" });
    const y = fb.op1("gelu", [q!], { approx: "tanh" }, { name: "weird name" });
    const logits = fb.op1("linear", [y, head], {}, { name: "logits" });
    fb.ret(logits, x);
    return mb.build();
  }

  test("canonical text", () => {
    expect(printModule(example())).toBe(
      [
        'module @llama_tiny attributes {family = "llama", hidden = 64}',
        "",
        "const @model.embed_tokens.weight : f32[128, 64]",
        'const @lm_head.weight : f32[128, 64] {layout = "oi"}',
        "const @qkv : f32[128, 64]",
        "",
        "state @kv.0.k : f32[B, 2, T, 16] {layer = 0}",
        "",
        'func @prefill(%tokens: i32[B, S]) -> (f32[B, S, 128], f32[B, S, 64]) attributes {phase = "prefill"} {',
        "  %pos = positions() {len = S, start = 0} : i32[S]",
        "  %x = embedding(%tokens, @model.embed_tokens.weight) : f32[B, S, 64]",
        "  %qkv = linear(%x, @qkv) : f32[B, S, 128]",
        "  %p0, %p1, %p2 = split(%qkv) {axis = -1, sizes = [64, 32, 32]} : f32[B, S, 64], f32[B, S, 32], f32[B, S, 32]",
        '  %weird_name = gelu(%p0) {approx = "tanh"} : f32[B, S, 64]',
        "  %logits = linear(%weird_name, @lm_head.weight) : f32[B, S, 128]",
        "  return %logits, %x",
        "}",
        "",
      ].join("\n"),
    );
  });

  test("quoting, dims and values", () => {
    const m: Module = {
      name: "a b",
      attrs: {
        "k y": [1, [true, 'q"\\']],
        d: dimAdd(P, S),
        e: dimMul(B, S),
        t: sym("true"),
        f: 0.25,
        g: 1e-7,
      },
      consts: [{ name: 'w"1', type: f32(dimAdd(P, 1)), attrs: {} }],
      states: [],
      funcs: [],
    };
    expect(printModule(m)).toBe(
      'module @"a b" attributes {d = P+S, e = B*S, f = 0.25, g = 1e-7, "k y" = [1, [true, "q\\"\\\\"]], t = (true)}\n' +
        "\n" +
        'const @"w\\"1" : f32[P+1]\n',
    );
    expect(parseModule(printModule(m))).toEqual(m);
  });

  test("printFunc prints one function ending with a newline", () => {
    const f = example().funcs[0]!;
    const s = printFunc(f);
    expect(s.startsWith("func @prefill(")).toBe(true);
    expect(s.endsWith("  return %logits, %x\n}\n")).toBe(true);
  });

  test("comments and free layout are accepted", () => {
    const m = parseModule(
      [
        "// a comment",
        "module @m // trailing",
        "const @w : f32[4, 4]",
        "func @f(%x: f32[B, 4]) -> (f32[B, 4]) {",
        "  %y = linear(%x, @w)   : f32[B, 4] // done",
        "  return %y }",
      ].join("\n"),
      "c.pimir",
    );
    expect(verifyModule(m)).toEqual([]);
    expect(m.funcs[0]!.body[0]!.loc).toEqual({ file: "c.pimir", line: 5, col: 3 });
  });
});

// ---------------------------------------------------------------------------------------------
// Parser errors

function parseError(src: string): SourceError {
  try {
    parseModule(src, "t.pimir");
  } catch (e) {
    expect(e).toBeInstanceOf(SourceError);
    return e as SourceError;
  }
  throw new Error("expected a parse error");
}

describe("parser errors", () => {
  const fn = (body: string, sig = "(%x: f32[4]) -> (f32[4])"): string =>
    `module @m\nconst @w : f32[4, 4]\nfunc @f${sig} {\n${body}\n  return %y\n}\n`;

  test("missing colon before the result types", () => {
    const e = parseError(fn("  %y = silu(%x) f32[4]"));
    expect(e.message).toBe("t.pimir:4:17: expected ':' after the operand list, found 'f32'");
    expect(e.loc).toEqual({ file: "t.pimir", line: 4, col: 17 });
    expect(parseError(fn('  %y = gelu(%x) {approx = "tanh"} f32[4]')).message).toBe(
      "t.pimir:4:35: expected ':' after the attributes, found 'f32'",
    );
  });

  test("unknown dtype", () => {
    expect(parseError("module @m\nconst @w : f33[4]\n").message).toBe("t.pimir:2:12: unknown dtype 'f33'");
    expect(parseError(fn("  %y = silu(%x) : f32[4]", "(%x: q8[4]) -> (f32[4])")).message).toBe(
      "t.pimir:3:13: unknown dtype 'q8'",
    );
  });

  test("bad attribute value", () => {
    expect(parseError(fn("  %y = scale(%x) {value = } : f32[4]")).message).toBe(
      "t.pimir:4:27: expected an attribute value (number, string, true, false, dimension or [list]), found '}'",
    );
    expect(parseError("module @m attributes {a = 1.5*B}").message).toBe(
      "t.pimir:1:27: dimension expressions take integers, found 1.5",
    );
    expect(parseError("module @m attributes {a = [1, 2}").message).toBe(
      "t.pimir:1:32: expected ',' or ']' in the list, found '}'",
    );
    expect(parseError("module @m attributes {a = B+}").message).toBe(
      "t.pimir:1:29: expected an integer, a dimension symbol or '(', found '}'",
    );
    expect(parseError("module @m attributes {a = 1, a = 2}").message).toBe(
      "t.pimir:1:30: duplicate attribute a",
    );
  });

  test("unterminated string", () => {
    expect(parseError('module @m attributes {a = "abc}\n').message).toBe(
      "t.pimir:1:27: unterminated string literal",
    );
    expect(parseError('module @m\nconst @"w : f32[4]').message).toBe(
      "t.pimir:2:8: unterminated string literal",
    );
  });

  test("unexpected end of input", () => {
    expect(
      parseError("module @m\nfunc @f(%x: f32[4]) -> (f32[4]) {\n  %y = silu(%x) : f32[4]\n").message,
    ).toBe("t.pimir:4:1: expected 'return' to end function @f, found end of input");
    expect(parseError("module @m\nconst @w : f32[4,").message).toBe(
      "t.pimir:2:18: expected a dimension, found end of input",
    );
  });

  test("duplicate function", () => {
    const f = "func @f(%x: f32[4]) -> (f32[4]) {\n  return %x\n}\n";
    expect(parseError(`module @m\n${f}\n${f}`).message).toBe(
      "t.pimir:6:6: function @f is defined twice (first at 2:6)",
    );
  });

  test("other errors point at the offending token", () => {
    expect(parseError("func @f() {}").message).toBe(
      "t.pimir:1:1: expected 'module' at the start of the file, found 'func'",
    );
    expect(parseError("module @m\nconst @w : f32[4]\nstate @w : f32[4]").message).toBe(
      "t.pimir:3:7: state @w is already declared (as a const)",
    );
    expect(parseError("module @m\nconst @w: f32[4]").message).toBe(
      "t.pimir:2:11: expected ':' after const @w:, found 'f32' (@w: is read as one name: put a space before ':')",
    );
    expect(parseError("module @m\n  # x").message).toBe("t.pimir:2:3: unexpected character '#'");
    expect(parseError(fn("  %y = silu(%x, 3) : f32[4]")).message).toBe(
      "t.pimir:4:17: expected an operand (%value or @global), found '3'",
    );
    expect(parseError(fn("  %y, %z = silu(%x) : f32[4]")).message).toBe(
      "t.pimir:5:3: expected ',' and another result type (the op has 2 results), found 'return'",
    );
    expect(parseError(fn("  %y = silu(%x) : f32[4]", "(%x: f32[4]) -> (f32[8])")).message).toBe(
      "t.pimir:5:10: %y has type f32[4] but result 0 of @f is declared f32[8]",
    );
    expect(parseError('module @m attributes {a = "\\q"}').message).toMatch(
      /^t\.pimir:1:27: invalid string literal/,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Verifier

function problems(body: string, extra = ""): string[] {
  const src = [
    "module @m",
    "const @w : f32[32, 64]",
    "state @kv : f32[B, 2, T, 16]",
    extra,
    "func @decode(%x: f32[B, S, 64], %k: f32[B, 2, S, 16]) -> (f32[B, S, 32]) {",
    body,
    "}",
  ].join("\n");
  return verifyModule(parseModule(src, "v.pimir"));
}

describe("verifier", () => {
  test("a valid function has no problems", () => {
    expect(
      problems(
        "  %q = linear(%x, @w) : f32[B, S, 32]\n  %c = kv_append(@kv, %k) {axis = 2, past = P} : f32[B, 2, P+S, 16]\n  return %q",
      ),
    ).toEqual([]);
  });

  test("use before definition", () => {
    expect(
      problems(
        "  %a = silu(%b) : f32[B, S, 64]\n  %b = silu(%x) : f32[B, S, 64]\n  %q = linear(%a, @w) : f32[B, S, 32]\n  return %q",
      ),
    ).toEqual([
      "v.pimir:6:3: func @decode, op 0 (%a = silu): operand 0 %b is used before its definition (op 1)",
    ]);
    expect(problems("  %q = linear(%nope, @w) : f32[B, S, 32]\n  return %q")).toEqual([
      "v.pimir:6:3: func @decode, op 0 (%q = linear): operand 0 %nope is not defined",
    ]);
  });

  test("unknown op", () => {
    expect(problems("  %q = frobnicate(%x) : f32[B, S, 32]\n  return %q")).toEqual([
      "v.pimir:6:3: func @decode, op 0 (%q = frobnicate): unknown op 'frobnicate'",
    ]);
  });

  test("unknown @global", () => {
    expect(problems("  %q = linear(%x, @nope) : f32[B, S, 32]\n  return %q")).toEqual([
      "v.pimir:6:3: func @decode, op 0 (%q = linear): operand 1 @nope names no const or state",
    ]);
  });

  test("wrong result type", () => {
    expect(
      problems("  %a = linear(%x, @w) : f32[B, S, 64]\n  %q = linear(%x, @w) : f32[B, S, 32]\n  return %q"),
    ).toEqual([
      "v.pimir:6:3: func @decode, op 0 (%a = linear): result 0 has type f32[B, S, 64] but the shape rule gives f32[B, S, 32]",
    ]);
    expect(problems("  %q, %r = linear(%x, @w) : f32[B, S, 32], f32[B, S, 32]\n  return %q")).toEqual([
      "v.pimir:6:3: func @decode, op 0 (%q, %r = linear): the shape rule gives 1 result(s), the op has 2",
    ]);
  });

  test("const used where a state is needed, and a state where none is", () => {
    expect(
      problems(
        "  %c = kv_append(@v, %k) {axis = 2, past = P} : f32[B, 2, P+S, 16]\n  %q = linear(%x, @w) : f32[B, S, 32]\n  return %q",
        "const @v : f32[B, 2, T, 16]",
      ),
    ).toEqual([
      "v.pimir:6:3: func @decode, op 0 (%c = kv_append): operand 0 of kv_append must be a state, but @v is a const",
    ]);
    expect(
      problems(
        "  %q = linear(%x, @w) : f32[B, S, 32]\n  %a = add(%k, @kv) : f32[B, 2, S, 16]\n  return %q",
      )[0],
    ).toBe("v.pimir:7:3: func @decode, op 1 (%a = add): operand 1 @kv is a state, but add takes no state");
  });

  test("wrong operand count and bad attributes", () => {
    expect(problems("  %q = linear(%x) : f32[B, S, 32]\n  return %q")).toEqual([
      "v.pimir:6:3: func @decode, op 0 (%q = linear): linear takes 2 to 3 operands (x, weight, bias?), got 1",
    ]);
    expect(
      problems(
        "  %s = softmax(%x) {axis = 3} : f32[B, S, 64]\n  %q = linear(%s, @w) : f32[B, S, 32]\n  return %q",
      ),
    ).toEqual([
      "v.pimir:6:3: func @decode, op 0 (%s = softmax): softmax: axis 3 out of range for [B, S, 64]",
    ]);
  });

  test("duplicate SSA name", () => {
    expect(
      problems("  %q = linear(%x, @w) : f32[B, S, 32]\n  %q = silu(%q) : f32[B, S, 32]\n  return %q"),
    ).toEqual(["v.pimir:7:3: func @decode, op 1 (%q = silu): %q is defined twice (first by op 0)"]);
    expect(
      problems("  %x = silu(%x) : f32[B, S, 64]\n  %q = linear(%x, @w) : f32[B, S, 32]\n  return %q"),
    ).toEqual(["v.pimir:6:3: func @decode, op 0 (%x = silu): %x is defined twice (first by a parameter)"]);
  });

  test("return operands and module-level names", () => {
    const src = "module @m\nfunc @f(%x: f32[4]) -> () {\n  return\n}\n";
    expect(verifyModule(parseModule(src))).toEqual(["func @f: returns nothing"]);
    expect(verifyModule(parseModule(src.replace("()", "(?)").replace("return", "return %y")))).toEqual([
      "func @f: return operand %y is not defined",
    ]);
    const m: Module = {
      name: "m",
      attrs: {},
      consts: [{ name: "w", type: f32(4), attrs: {} }],
      states: [{ name: "w", type: f32(4), attrs: {} }],
      funcs: [
        { name: "f", params: [{ name: "x", type: f32(4) }], body: [], results: ["%x"], attrs: {} },
        { name: "f", params: [{ name: "x", type: f32(4) }], body: [], results: ["%x"], attrs: {} },
      ],
    };
    expect(verifyModule(m)).toEqual(["state @w: name already used by a const", "func @f: defined twice"]);
    expect(() => assertValid(m)).toThrow(UserError);
    expect(() => assertValid(m)).toThrow("state @w: name already used by a const (and 1 more problem)");
  });
});
