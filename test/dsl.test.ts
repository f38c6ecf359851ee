import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { Interpreter, tokenTensor } from "../src/exec/interpreter.js";
import {
  buildModel,
  loadDescription,
  parseDescription,
  plainEntries,
  selectModel,
  selectSystem,
  selectWorkload,
  type DescriptionFile,
} from "../src/frontend/dsl/index.js";
import { defaultWorkload, workloadEnv, workloadFromDecl } from "../src/frontend/workload.js";
import { expandSweep } from "../src/sweep/spec.js";
import type { Tensor } from "../src/ir/tensor.js";

const EX = "examples";
const pimFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? pimFiles(join(dir, e.name)) : e.name.endsWith(".pim") ? [join(dir, e.name)] : [],
  );

/** The message of what `f` throws. */
function errorOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected an error");
}

/** Parses `text` as examples/t.pim (relative weights paths resolve from there) and builds its model. */
/** A model `m` (vocab 8, hidden 8) whose graph has these lines, from line 3 on. */
const graph = (...lines: string[]): string =>
  `model m { vocab = 8, hidden = 8\n graph {\n${lines.join("\n")} } }`;

const build = (text: string): unknown => {
  const d = parseDescription(text, join(EX, "t.pim"));
  return buildModel(selectModel(d), d);
};

describe("examples", () => {
  const files = pimFiles(EX);
  test("the real-model examples exist", () => {
    const names = files.map((f) => f.replace(/^examples\//, ""));
    for (const m of [
      "llama2-7b",
      "llama2-13b",
      "llama2-70b",
      "llama3-8b",
      "llama-65b",
      "mistral-7b",
      "mixtral-8x7b",
      "opt-6.7b",
      "opt-13b",
      "opt-30b",
      "opt-66b",
      "gpt2-xl",
      "gpt3-175b",
      "tiny-llama",
      "custom-llama-tiny",
    ])
      expect(names).toContain(`${m}.pim`);
  });

  test.each(files)("%s parses, and its models, workloads, systems and sweeps are valid", (f) => {
    const d = loadDescription(f);
    expect(d.models.length + d.systems.length + d.workloads.length + d.sweeps.length).toBeGreaterThan(0);
    for (const s of d.sweeps) expect(expandSweep(s).points.length).toBeGreaterThan(0);
    for (const m of d.models) {
      const lm = buildModel(m, d);
      expect(lm.module.funcs.map((x) => x.name)).toEqual(["prefill", "decode"]);
    }
    for (const w of d.workloads) workloadFromDecl(w);
    if (!/\/(workloads|systems|sweeps)\//.test(f)) expect(d.workloads.length).toBeGreaterThan(0);
  });

  test("real model values", () => {
    const cfg = (f: string) => buildModel(selectModel(loadDescription(join(EX, f)))).config!;
    expect(cfg("llama2-70b.pim")).toMatchObject({
      hidden: 8192,
      layers: 80,
      heads: 64,
      kv_heads: 8,
      head_dim: 128,
      ffn: 28672,
    });
    expect(cfg("llama3-8b.pim")).toMatchObject({
      vocab: 128256,
      kv_heads: 8,
      max_positions: 8192,
      rope: { theta: 500000 },
    });
    expect(cfg("mistral-7b.pim").windows).toEqual(new Array(32).fill(4096));
    expect(cfg("mixtral-8x7b.pim")).toMatchObject({ experts: 8, top_k: 2, rope: { theta: 1e6 } });
    expect(cfg("opt-66b.pim")).toMatchObject({ hidden: 9216, ffn: 4 * 9216, vocab: 50272, act: "relu" });
    expect(cfg("gpt2-xl.pim")).toMatchObject({ heads: 25, head_dim: 64, dtype: "f16" });
  });

  test("the custom llama-tiny graph computes the same logits as the llama family", () => {
    const run = (f: string): Tensor[] => {
      const m = buildModel(selectModel(loadDescription(join(EX, f))));
      const it = new Interpreter(m.module, m.weights);
      const prefill = it.run("prefill", [tokenTensor([[1, 2, 3]])])[0]!;
      return [prefill, it.run("decode", [tokenTensor([[4]])])[0]!];
    };
    const fam = run("tiny-llama.pim");
    const custom = run("custom-llama-tiny.pim");
    expect(custom.map((t) => t.shape)).toEqual([
      [1, 3, 128],
      [1, 1, 128],
    ]);
    fam.forEach((t, k) => {
      expect(custom[k]!.shape).toEqual(t.shape);
      let max = 0;
      for (let i = 0; i < t.data.length; i++)
        max = Math.max(max, Math.abs(Number(t.data[i]) - Number(custom[k]!.data[i])));
      expect(max).toBeLessThan(1e-6);
    });
  });

  test("ops of custom graphs carry their source location", () => {
    const m = buildModel(selectModel(loadDescription(join(EX, "custom-llama-tiny.pim"))));
    const ops = m.module.funcs[0]!.body;
    expect(ops.every((o) => o.loc !== undefined)).toBe(true);
    expect(ops.find((o) => o.opcode === "attention")!.loc).toMatchObject({ line: 25 });
    expect(m.module.states.map((s) => s.name)).toEqual(["kv.0.k", "kv.0.v", "kv.1.k", "kv.1.v"]);
  });
});

test("the examples of docs/language.md parse and build", () => {
  const md = readFileSync("docs/language.md", "utf8");
  const blocks = [...md.matchAll(/```(?:pim)?\n([\s\S]*?)```/g)]
    .map((m) => m[1]!)
    .filter((b) => /^model /m.test(b));
  expect(blocks.length).toBe(2);
  for (const b of blocks) {
    const d = parseDescription(b, "docs/language.md");
    for (const m of d.models) expect(buildModel(m, d).module.funcs).toHaveLength(2);
  }
});

describe("values", () => {
  test("units are normalised to base units", () => {
    const d = parseDescription(
      `system s { target = upmem
        frequency = 450 MHz; f2 = 1.2 GHz, mram = 64 MiB
        size = 2 GB; bw = 25.6 GB/s; t = 3 ns; c = 1.2 TFLOPS; k = 4 KiB; x = -3
        n = { a = 1 kHz, b = [1, 2] } }`,
      "s.pim",
    );
    const s = selectSystem(d);
    expect(s.target).toBe("upmem");
    expect(plainEntries(s.entries)).toEqual({
      frequency: 450000000,
      f2: 1200000000,
      mram: 64 * 1024 * 1024,
      size: 2e9,
      bw: 25.6e9,
      t: 3e-9,
      c: 1.2e12,
      k: 4096,
      x: -3,
      n: { a: 1000, b: [1, 2] },
    });
  });

  test("a unit must be on the number's line", () => {
    const d = parseDescription("system s {\n target = cpu\n cores = 4\n B = 3\n}", "s.pim");
    expect(plainEntries(selectSystem(d).entries)).toEqual({ cores: 4, B: 3 });
  });

  test("workloads", () => {
    const d = parseDescription(
      "workload a { phase = decode, batch = 16, context = 2048, speculation = 2 }\n" +
        "workload b { phase = prefill }",
      "w.pim",
    );
    const a = workloadFromDecl(selectWorkload(d, "a"));
    expect(a).toEqual({
      name: "a",
      phase: "decode",
      batch: 16,
      prompt: 128,
      context: 2048,
      speculation: 2,
      output: 128,
    });
    expect(workloadEnv(a)).toEqual({ B: 16, S: 2, P: 2048 });
    const b = workloadFromDecl(selectWorkload(d, "b"));
    expect(workloadEnv(b)).toEqual({ B: 1, S: 128, P: 0 });
    expect(defaultWorkload("decode")).toMatchObject({
      phase: "decode",
      batch: 1,
      context: 1024,
      speculation: 1,
    });
    expect(d.workloads[0]!.phase).toBe("decode");
  });

  test("interpolation errors point into the string", () => {
    const text = 'model m { vocab = 8\n graph {\n  w = weight("a.{vocab $}", [8])\n  return w } }';
    expect(errorOf(() => parseDescription(text, "i.pim"))).toBe("i.pim:3:24: unexpected character '$'");
  });

  test("selecting blocks", () => {
    const d: DescriptionFile = parseDescription(
      "workload a { phase = decode } workload b { phase = decode }",
      "w.pim",
    );
    expect(errorOf(() => selectWorkload(d))).toBe(
      "w.pim: several workload blocks (a, b); choose one by name",
    );
    expect(errorOf(() => selectWorkload(d, "c"))).toBe('w.pim: no workload named "c" (workloads: a, b)');
    expect(errorOf(() => selectModel(d))).toBe("w.pim: no model block (the file has workload blocks: a, b)");
  });

  test("graph arithmetic, interpolation and tuple assignment", () => {
    const d = parseDescription(
      `model m { vocab = 16, hidden = 8, dtype = f32
        graph {
          x = embedding(tokens, weight("e.{hidden / 2 * 2}.{B}", [vocab, hidden]))
          a, b = split(x, axis = -1, sizes = [hidden / 2, 4])
          y = concat(b, a, axis = -1) * 0.5 - x / 2
          z = reshape(y, shape = [B, S, 2, hidden - 4])
          return linear(reshape(z, shape = [B, S, 8]), weight("e.8.B", [vocab, hidden]))
        } }`,
      "g.pim",
    );
    const m = buildModel(selectModel(d), d);
    expect(m.module.consts.map((c) => c.name)).toEqual(["e.8.B"]);
    expect(m.module.funcs[0]!.body.map((o) => o.opcode)).toEqual([
      "embedding",
      "split",
      "concat",
      "scale",
      "scale",
      "sub",
      "reshape",
      "reshape",
      "linear",
    ]);
  });
});

describe("errors are reported at file:line:col", () => {
  const cases: [string, string, string][] = [
    ["lexer error", "model m {\n  hidden = 4096 $\n}", "examples/t.pim:2:17: unexpected character '$'"],
    [
      "syntax error",
      "model m {\n  hidden 4096\n}",
      `examples/t.pim:2:10: expected '=' after key "hidden", found '4096'`,
    ],
    ["unterminated string", 'model m {\n  weights = "abc\n}', "examples/t.pim:2:13: unterminated string"],
    [
      "end of file",
      "model m {\n  hidden = 1",
      "examples/t.pim:2:13: expected a key or '}', found end of file",
    ],
    [
      "duplicate key",
      "model m {\n  hidden = 1\n  hidden = 2\n}",
      'examples/t.pim:3:3: duplicate key "hidden"',
    ],
    [
      "duplicate block",
      "workload a { phase = decode }\nworkload a { phase = decode }",
      'examples/t.pim:2:10: duplicate workload "a"',
    ],
    [
      "unknown key in a family model",
      "model m {\n  family = llama\n  hiden = 64\n}",
      "examples/t.pim:3:3: unknown key 'hiden' in a family model (did you mean 'hidden'?)",
    ],
    [
      "unknown key with no near match",
      "model m {\n  family = llama\n  colour = 64\n}",
      "examples/t.pim:3:3: unknown key 'colour' in a family model (keys: family, weights, vocab,",
    ],
    [
      "bad value type",
      'model m { family = llama, vocab = 32, hidden = "64", layers = 1, heads = 1, ffn = 8 }',
      'examples/t.pim:1:48: hidden must be an integer, got "64"',
    ],
    [
      "bad value",
      "model m { family = llama, vocab = 32, hidden = 64, layers = 0, heads = 1, ffn = 8 }",
      "examples/t.pim:1:61: layers must be positive, got 0",
    ],
    [
      "unknown family",
      "model m {\n  family = gpt5\n}",
      "examples/t.pim:2:12: unknown family 'gpt5' (families: llama, mistral, qwen2, mixtral, gpt2, opt)",
    ],
    [
      "unknown unit",
      "system s { target = cpu, frequency = 3 Ghz }",
      "examples/t.pim:1:40: unknown unit 'Ghz' (units: B, KB,",
    ],
    [
      "unknown op",
      graph('x = embedding(tokens, weight("e", [vocab, hidden]))', "y = foo(x)", "return x"),
      "examples/t.pim:4:5: unknown op 'foo'",
    ],
    [
      "shape mismatch",
      graph(
        'x = embedding(tokens, weight("e", [vocab, hidden]))',
        'return linear(x, weight("w", [vocab, 4]))',
      ),
      "examples/t.pim:4:8: linear:",
    ],
    [
      "unknown name",
      graph('x = embedding(tokens, weight("e", [vocab, hiden]))', "return x"),
      "examples/t.pim:3:43: unknown name 'hiden'",
    ],
    [
      "name used before assignment",
      graph("x = y", 'y = embedding(tokens, weight("e", [vocab, hidden]))', "return y"),
      "examples/t.pim:3:5: 'y' is used before it is assigned",
    ],
    [
      "wrong value kind",
      graph('x = linear(hidden, weight("e", [vocab, hidden]))', "return x"),
      "examples/t.pim:3:12: a tensor was expected for operand x of linear, got a number",
    ],
    [
      "non-exact division",
      "model m { vocab = 8, hidden = 8, heads = 3\n graph {\n  d = hidden / heads\n  return tokens } }",
      "examples/t.pim:3:14: 8 / 3 does not divide exactly",
    ],
    [
      "return not at the end",
      "model m { vocab = 8\n graph {\n  return tokens\n  x = tokens } }",
      "examples/t.pim:3:3: 'return' must be the last statement of the graph",
    ],
    [
      "key disagreeing with config.json",
      'model m {\n  weights = "../test/fixtures/llama-tiny"\n  hidden = 65\n}',
      "examples/t.pim:3:3: hidden = 65 disagrees with",
    ],
    [
      "missing weights folder",
      'model m {\n  weights = "../no/such/folder"\n}',
      'examples/t.pim:2:13: weights folder "../no/such/folder" does not exist',
    ],
  ];
  test.each(cases)("%s", (_what, text, want) => {
    const msg = errorOf(() => build(text));
    expect(msg.slice(0, want.length)).toBe(want);
  });

  test("workload with a negative batch", () => {
    const d = parseDescription("workload w {\n  phase = decode\n  batch = -4\n}", "w.pim");
    expect(errorOf(() => workloadFromDecl(selectWorkload(d)))).toBe(
      "w.pim:3:11: batch must be a positive integer, got -4",
    );
  });

  test("system without a target", () => {
    expect(errorOf(() => parseDescription("\nsystem s {\n  cores = 4\n}", "s.pim"))).toBe(
      "s.pim:2:8: system s has no target (add target = NAME)",
    );
  });

  test("unreadable file", () => {
    expect(errorOf(() => loadDescription("no/such.pim"))).toBe("no/such.pim: no such file");
  });
});
