import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { dequantizeGroups, lowbitRange, quantizeGroups } from "../src/ir/ops/quant.js";
import { evalOp } from "../src/exec/interpreter.js";
import { groupFor } from "../passes/quantize.js";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pimc, rng, tempDir } from "./util.js";
import { compileModel, type PipelineFlags } from "../src/cli/pipeline.js";
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
  it("reports the error and the token agreement without a tolerance, checks them with one", () => {
    for (const w of ["int4", "int2"]) {
      const r = pimc("verify", "test/fixtures/qwen2-tiny", "--weights", w, "--group-size", "16", "--json");
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
    const strict = pimc("verify", "test/fixtures/qwen2-tiny", "--weights", "int2", "--tolerance", "0.01");
    expect(strict.code).toBe(1);
    expect(strict.stdout).toMatch(/FAILED \(tolerance 0.01\)/);
    const hbm = pimc("verify", "test/fixtures/qwen2-tiny", "--target", "hbm-pim", "--weights", "int4");
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
  const opcodes = async (flags: Partial<PipelineFlags>) => {
    const { module } = await compileModel(
      loadModel(model),
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
    expect(mixed["L1.down"]).toBe("qlinear");
    expect(mixed["L0.down"]).toBe("lowbit_linear 16");
    const bad = pimc("compile", model, "--layer-weights", "L1.*=int9");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/expected PATTERN=f32\|int8\|int4\|int2/);
  });
});
