import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { dequantizeGroups, lowbitRange, quantizeGroups } from "../src/ir/ops/quant.js";
import { evalOp } from "../src/exec/interpreter.js";
import { groupFor } from "../passes/quantize.js";
import { pimc, rng } from "./util.js";

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
