import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  dequantizeGroups,
  groupDots,
  lowbitIntGemm,
  lowbitRange,
  quantizeGroups,
} from "../src/ir/ops/quant.js";
import { buildTable, lutGroupDots, patternOf } from "../src/exec/lut.js";
import { evalOp } from "../src/exec/interpreter.js";
import { groupFor } from "../passes/quantize.js";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pimc, rng, tempDir } from "./util.js";
import { compileModel, type PipelineFlags } from "../src/driver/compile.js";
import { loadModel } from "../src/frontend/load.js";
import { defaultWorkload } from "../src/frontend/workload.js";

describe("group-wise low-bit weights", () => {
  it("quantizes every group to its range with an error of at most half a step (property)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(2, 4, 8),
        fc.constantFrom(4, 8, 16),
        fc.array(fc.float({ min: -4, max: 4, noNaN: true }), { minLength: 16, maxLength: 16 }),
        (bits, group, xs) => {
          const w = Float32Array.from(xs);
          const q = new Int8Array(w.length);
          const scale = quantizeGroups(w, 16, bits, group, q);
          const [lo, hi] = lowbitRange(bits);
          expect(scale).toHaveLength(16 / group);
          for (const v of q) {
            expect(v).toBeGreaterThanOrEqual(lo);
            expect(v).toBeLessThanOrEqual(hi);
          }
          const back = dequantizeGroups(q, scale, group);
          w.forEach((x, i) => {
            const s = scale[Math.floor(i / group)]!;
            expect(Math.abs(back[i]! - x)).toBeLessThanOrEqual(s / 2 + 1e-6 * Math.abs(x) + 1e-7);
          });
        },
      ),
    );
  });
  it("picks the largest group size dividing K", () => {
    expect(groupFor(4096, 128)).toBe(128);
    expect(groupFor(176, 128)).toBe(88);
    expect(groupFor(64, 128)).toBe(64);
    expect(groupFor(7, 4)).toBe(1);
  });
  it("lowbit_linear is the fp32 product with the dequantized weights", () => {
    const r = rng(4);
    const [n, k, g] = [6, 16, 8];
    const w = Float32Array.from({ length: n * k }, () => r() - 0.5);
    const q = new Int8Array(n * k);
    const scale = quantizeGroups(w, k, 4, g, q);
    const x = Float32Array.from({ length: 2 * k }, () => r() - 0.5);
    const [y] = evalOp(
      "lowbit_linear",
      { bits: 4, group: g },
      [
        { dtype: "f32", shape: [2, k], data: x },
        { dtype: "i8", shape: [n, k], data: q },
        { dtype: "f32", shape: [n, k / g], data: scale },
      ],
      {},
    );
    const wd = dequantizeGroups(q, scale, g);
    for (let m = 0; m < 2; m++)
      for (let o = 0; o < n; o++) {
        let s = 0;
        for (let t = 0; t < k; t++) s += x[m * k + t]! * wd[o * k + t]!;
        expect((y!.data as Float32Array)[m * n + o]).toBe(Math.fround(s));
      }
  });
});

describe("pimc verify --weights int4 | int2", () => {
  it("reports the error and the token agreement without a tolerance, checks them with one", async () => {
    for (const w of ["int4", "int2"]) {
      const r = await pimc(
        "verify",
        "test/fixtures/qwen2-tiny",
        "--weights",
        w,
        "--group-size",
        "16",
        "--json",
      );
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout) as {
        report_only: boolean;
        passed: boolean;
        tokens_total: number;
        decode_max_abs_err: number;
      };
      expect(j.report_only).toBe(true);
      expect(j.tokens_total).toBe(14);
      expect(j.decode_max_abs_err).toBeGreaterThan(0.01);
    }
    const strict = await pimc(
      "verify",
      "test/fixtures/qwen2-tiny",
      "--weights",
      "int2",
      "--tolerance",
      "0.01",
    );
    expect(strict.code).toBe(1);
    expect(strict.stdout).toMatch(/FAILED \(tolerance 0.01\)/);
    const hbm = await pimc("verify", "test/fixtures/qwen2-tiny", "--target", "hbm-pim", "--weights", "int4");
    expect(hbm.code).toBe(2);
    expect(hbm.stderr).toMatch(/does not quantize/);
  });
});

describe("precision per model and per layer", () => {
  const dir = tempDir();
  const model = join(dir, "q.pim");
  writeFileSync(
    model,
    "model tinyq {\n  family = llama\n  vocab = 64\n  hidden = 32\n  layers = 2\n  heads = 4\n  kv_heads = 2\n  ffn = 64\n  max_positions = 64\n  precision = int4\n  group_size = 16\n}\n",
  );
  const opcodes = async (flags: Partial<PipelineFlags>, file = model) => {
    const { module } = await compileModel(
      loadModel(file),
      { disablePass: [], printBefore: [], printAfter: [], ...flags },
      defaultWorkload("decode"),
      2,
    );
    const f = module.funcs.find((x) => x.name === "decode")!;
    return Object.fromEntries(
      f.body
        .filter((o) => /linear/.test(o.opcode))
        .map((o) => [o.results[0]!.name, `${o.opcode} ${o.attrs.group ?? ""}`.trim()]),
    );
  };
  it("takes the model description's precision and group size, the flags over them, and per-layer patterns", async () => {
    const fromModel = await opcodes({});
    expect(new Set(Object.values(fromModel))).toEqual(new Set(["lowbit_linear 16"]));
    expect(new Set(Object.values(await opcodes({ weights: "f32" })))).toEqual(new Set(["linear"]));
    const mixed = await opcodes({ layerWeights: ["logits=f32", "L1.*=int8"] });
    expect(mixed.logits).toBe("linear");
    // The group size is every quantized layer's: INT8 ones become group-wise too.
    expect(mixed["L1.down"]).toBe("lowbit_linear 16");
    expect(mixed["L0.down"]).toBe("lowbit_linear 16");
    // The same per-layer choice written in the description (and kept through the printed IR).
    const described = join(dir, "q2.pim");
    writeFileSync(
      described,
      readFileSync(model, "utf8").replace("}", '  layer_precision = [["logits", f32], ["L1.*", int8]]\n}'),
    );
    const fromDescription = await opcodes({}, described);
    expect(fromDescription).toEqual(mixed);
    const bad = await pimc("compile", model, "--layer-weights", "L1.*=int9");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/expected PATTERN=f32\|int8\|int4\|int2/);
  });
});

describe("LUT-GEMV (SAIL / PIM-DL)", () => {
  const arbCase = fc.record({
    bits: fc.constantFrom(2, 4),
    width: fc.constantFrom(1, 2, 4),
    rows: fc.integer({ min: 1, max: 3 }),
    n: fc.integer({ min: 1, max: 5 }),
    groups: fc.integer({ min: 1, max: 3 }),
    seed: fc.integer({ min: 1, max: 1e6 }),
  });
  it("gives exactly the integer dot products of every weight group (property)", () => {
    fc.assert(
      fc.property(arbCase, ({ bits, width, rows, n, groups, seed }) => {
        if (bits === 4 && width === 4) return; // 65536-entry tables: valid but slow here
        const r = rng(seed);
        const group = 8;
        const k = group * groups;
        const [lo, hi] = lowbitRange(bits);
        const xq = Int8Array.from({ length: rows * k }, () => Math.floor(r() * 255) - 127);
        const wq = Int8Array.from({ length: n * k }, () => lo + Math.floor(r() * (hi - lo + 1)));
        const want = new Int32Array(rows * n * groups);
        const got = new Int32Array(rows * n * groups);
        groupDots(xq, wq, k, group, want);
        lutGroupDots(bits, width)(xq, wq, k, group, got);
        expect(Array.from(got)).toEqual(Array.from(want));
      }),
    );
  });
  it("makes the W4A8 / W2A8 layer bit-identical to dequantize-then-multiply in integers", () => {
    const r = rng(12);
    for (const bits of [2, 4]) {
      const [n, k, group] = [7, 64, 16];
      const w = Float32Array.from({ length: n * k }, () => r() - 0.5);
      const q = new Int8Array(n * k);
      const sw = quantizeGroups(w, k, bits, group, q);
      const x = Float32Array.from({ length: 3 * k }, () => r() - 0.5);
      const a = new Float32Array(3 * n);
      const b = new Float32Array(3 * n);
      lowbitIntGemm(x, q, sw, k, group, undefined, a, groupDots);
      lowbitIntGemm(x, q, sw, k, group, undefined, b, lutGroupDots(bits, bits === 2 ? 4 : 2));
      expect(Array.from(b)).toEqual(Array.from(a));
      // The op's A8 mode is the same reference.
      const [y] = evalOp(
        "lowbit_linear",
        { bits, group, act_bits: 8 },
        [
          { dtype: "f32", shape: [3, k], data: x },
          { dtype: "i8", shape: [n, k], data: q },
          { dtype: "f32", shape: [n, k / group], data: sw },
        ],
        {},
      );
      expect(Array.from(y!.data as Float32Array)).toEqual(Array.from(a));
    }
  });
  it("tables have an entry per weight pattern, patterns index them", () => {
    const x = Int8Array.from([3, -2]);
    const t = new Int32Array(16);
    buildTable(x, 0, 2, 2, t);
    // int2 weights -2..1; pattern of (w0, w1) = (w0 + 2) + 4 (w1 + 2).
    const w = Int8Array.from([1, -2]);
    expect(t[patternOf(w, 0, 2, 2)]).toBe(3 * 1 + -2 * -2);
  });
});

describe("--activations with low-bit weights", () => {
  it("int8 makes the layers W4A8 (integer group dot products); int16 and unquantized weights are errors", async () => {
    const { module } = await compileModel(
      loadModel("examples/tiny-llama.pim"),
      { disablePass: [], printBefore: [], printAfter: [], weights: "int4", activations: "int8" },
      defaultWorkload("decode"),
      2,
    );
    const ops = module.funcs
      .find((f) => f.name === "decode")!
      .body.filter((o) => o.opcode === "lowbit_linear");
    expect(ops.length).toBeGreaterThan(0);
    expect(ops.every((o) => o.attrs.act_bits === 8)).toBe(true);
    for (const args of [
      ["--weights", "int4", "--activations", "int16"],
      ["--activations", "int8"],
    ]) {
      const r = await pimc("compile", "examples/tiny-llama.pim", ...args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });
});

describe("INT8 per group", () => {
  const flags = { disablePass: [], printBefore: [], printAfter: [] };
  const linears = async (extra: Partial<PipelineFlags>) => {
    const { module } = await compileModel(
      loadModel("examples/tiny-llama.pim"),
      { ...flags, weights: "int8", ...extra },
      defaultWorkload("decode"),
      2,
    );
    return module.funcs
      .find((f) => f.name === "decode")!
      .body.filter((o) => o.opcode === "qlinear" || o.opcode === "lowbit_linear");
  };
  it("--group-size makes INT8 layers group-wise W8A8, --activations f32 weight-only, int16 stays per channel", async () => {
    const grouped = await linears({ groupSize: 32 });
    expect(grouped.length).toBeGreaterThan(0);
    expect(grouped.every((o) => o.opcode === "lowbit_linear" && o.attrs.bits === 8)).toBe(true);
    // 32, or the largest divisor of K = 176 up to it.
    expect(new Set(grouped.map((o) => o.attrs.group))).toEqual(new Set([32, 22]));
    expect(grouped.every((o) => o.attrs.act_bits === 8)).toBe(true);
    const weightOnly = await linears({ activations: "f32" });
    expect(weightOnly.every((o) => o.opcode === "lowbit_linear" && o.attrs.act_bits === undefined)).toBe(
      true,
    );
    // One scale per row: the group is the whole of K.
    expect(weightOnly.every((o) => o.attrs.group === 64 || o.attrs.group === 176)).toBe(true);
    expect((await linears({})).every((o) => o.opcode === "qlinear")).toBe(true);
    const r = await pimc(
      "compile",
      "examples/tiny-llama.pim",
      "--weights",
      "int8",
      "--group-size",
      "32",
      "--activations",
      "int16",
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/int16 needs --weights int8 with per-channel scales/);
  });
});
