import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { sym } from "../src/ir/dim.js";
import { erf } from "../src/ir/ops/elementwise.js";
import { ropeInvFreq } from "../src/ir/ops/attention.js";
import "../src/ir/ops/index.js";
import { allOps, checkOp, getOp, weightGemm } from "../src/ir/registry.js";
import { DEFAULT_SYSTEM, taskletsThatFit, wramNeeded } from "../targets/upmem/system.js";
import type { Attrs } from "../src/ir/module.js";
import { f32, i32, type Tensor } from "../src/ir/tensor.js";
import { tensor, typeToString, type TensorType } from "../src/ir/types.js";

const ty = (t: Tensor): TensorType => ({ dtype: t.dtype, shape: t.shape });

/** Runs an op through its attribute schema, shape rule and reference kernel. */
function run(opcode: string, ins: Tensor[], attrs: Attrs = {}): Tensor[] {
  const def = getOp(opcode)!;
  const r = checkOp(def, ins.map(ty), attrs);
  if (!r.ok) throw new Error(r.message);
  return def.eval(ins, r.attrs as never, { outTypes: r.types });
}
const run1 = (opcode: string, ins: Tensor[], attrs: Attrs = {}): number[] => [
  ...(run(opcode, ins, attrs)[0]!.data as Float32Array),
];
const shapeErr = (opcode: string, ins: TensorType[], attrs: Attrs = {}): string => {
  const r = checkOp(getOp(opcode)!, ins, attrs);
  return r.ok ? "ok" : r.message;
};
const T = (shape: number[], xs: number[]): Tensor => f32(shape, Float32Array.from(xs));
const close = (a: number[], b: number[], tol = 1e-6): void => {
  expect(a.length).toBe(b.length);
  a.forEach((x, i) => expect(Math.abs(x - b[i]!)).toBeLessThan(tol));
};
const rand = (n: number, seed: number): number[] => {
  let s = seed;
  return Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
};

describe("op traits", () => {
  const op = (opcode: string, operands: string[]) => ({
    opcode,
    operands,
    attrs: {},
    results: [],
    loc: undefined,
  });
  test("weightGemm: a linear layer whose weight is a module constant, not one computed at run time", () => {
    expect(
      allOps()
        .filter((d) => d.traits?.gemm)
        .map((d) => d.name),
    ).toEqual(["linear", "lowbit_linear", "qlinear"]);
    expect(weightGemm(op("linear", ["%x", "@w"]) as never)).toEqual({ input: 0, weight: 1 });
    expect(weightGemm(op("qlinear", ["%x", "@wq", "@ws"]) as never)).toEqual({ input: 0, weight: 1 });
    expect(weightGemm(op("linear", ["%x", "%w"]) as never)).toBeUndefined();
    expect(weightGemm(op("matmul", ["%a", "@b"]) as never)).toBeUndefined();
  });

  test("one WRAM budget: buffers and a stack per tasklet, shared buffers once", () => {
    const s = DEFAULT_SYSTEM;
    expect(wramNeeded(s, 4, 100, 10)).toBe(4 * (100 + s.stack_per_tasklet) + 10);
    const most = taskletsThatFit(s, 1024);
    expect(wramNeeded(s, most, 1024)).toBeLessThanOrEqual(s.wram);
    expect(most === s.max_tasklets || wramNeeded(s, most + 1, 1024) > s.wram).toBe(true);
    expect(taskletsThatFit(s, s.wram)).toBe(0);
  });
});

describe("shape rules", () => {
  const B = sym("B");
  const S = sym("S");
  test("linear infers symbolic shapes and rejects mismatches", () => {
    const r = checkOp(
      getOp("linear")!,
      [tensor("f16", [B, S, 64]), tensor("f16", [32, 64]), tensor("f16", [32])],
      {},
    );
    expect(r.ok && typeToString(r.types[0]!)).toBe("f16[B, S, 32]");
    expect(shapeErr("linear", [tensor("f32", [B, S, 64]), tensor("f32", [32, 48])])).toMatch(
      /linear: x has \[B, S, 64\] but weight \[32, 48\]/,
    );
    expect(shapeErr("linear", [tensor("f32", [B, 64])])).toMatch(/takes 2 to 3 operands/);
  });
  test("attributes are validated", () => {
    expect(shapeErr("rms_norm", [tensor("f32", [4])], { eps: "x" })).toMatch(/rms_norm: attribute eps/);
    expect(shapeErr("softmax", [tensor("f32", [4])], { axis: 0, bogus: 1 })).toMatch(
      /unknown attribute bogus/,
    );
  });
  test("reshape checks element counts symbolically", () => {
    expect(shapeErr("reshape", [tensor("f32", [B, S, 64])], { shape: [B, S, 4, 16] })).toBe("ok");
    expect(shapeErr("reshape", [tensor("f32", [B, S, 64])], { shape: [B, 4, 16] })).toMatch(
      /element counts differ/,
    );
  });
  test("attention requires GQA-compatible heads", () => {
    const q = tensor("f32", [B, 6, S, 8]);
    const kv = tensor("f32", [B, 4, S, 8]);
    expect(shapeErr("attention", [q, kv, kv], { scale: 1 })).toMatch(/multiple of key\/value heads/);
  });
  test("kv_append grows the cache by the new tokens", () => {
    const r = checkOp(
      getOp("kv_append")!,
      [tensor("f32", [B, 2, sym("T"), 16]), tensor("f32", [B, 2, S, 16])],
      { axis: 2, past: sym("P") },
    );
    expect(r.ok && typeToString(r.types[0]!)).toBe("f32[B, 2, P+S, 16]");
  });
});

describe("reference kernels", () => {
  test("linear and matmul", () => {
    const x = T([2, 3], [1, 2, 3, 4, 5, 6]);
    const w = T([2, 3], [1, 0, -1, 2, 1, 0]);
    close(run1("linear", [x, w, T([2], [10, 20])]), [8, 24, 8, 33]);
    const a = T([2, 2, 3], [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]);
    close(run1("matmul", [a, T([3, 2], [1, 2, 0, 1, -1, 0])]), [-2, 4, -2, 13, -2, 4, -2, 13]);
    close(run1("matmul", [a, w], { transpose_b: true }), [-2, 4, -2, 13, -2, 4, -2, 13]);
  });
  test("broadcasting element-wise ops", () => {
    close(run1("add", [T([2, 3], [1, 2, 3, 4, 5, 6]), T([3], [10, 20, 30])]), [11, 22, 33, 14, 25, 36]);
    close(run1("mul", [T([2, 1], [2, 3]), T([1, 3], [1, 2, 3])]), [2, 4, 6, 3, 6, 9]);
  });
  test("activations", () => {
    close(run1("silu", [T([2], [0, 1])]), [0, 1 / (1 + Math.exp(-1))]);
    close(run1("gelu", [T([3], [-1, 0, 1])]), [-0.15865525, 0, 0.84134475]);
    close(run1("gelu", [T([1], [1])], { approx: "tanh" }), [0.8411920071]);
    for (const [x, e] of [
      [0.5, 0.5204998778],
      [1, 0.8427007929],
      [-2, -0.995322265],
      [3, 0.9999779095],
    ] as const)
      expect(Math.abs(erf(x) - e)).toBeLessThan(2e-7);
  });
  test("softmax and norms", () => {
    close(run1("softmax", [T([2], [0, Math.log(3)])]), [0.25, 0.75]);
    close(
      run1("rms_norm", [T([2], [3, 4]), T([2], [1, 2])], { eps: 1e-12 }),
      [3 / Math.sqrt(12.5), 8 / Math.sqrt(12.5)],
      1e-6,
    );
    close(
      run1("layer_norm", [T([2], [1, 3]), T([2], [2, 2]), T([2], [1, 1])], { eps: 1e-12 }),
      [-1, 3],
      1e-5,
    );
  });
  test("transpose, split and concat", () => {
    const x = T([2, 3], [1, 2, 3, 4, 5, 6]);
    close(run1("transpose", [x], { perm: [1, 0] }), [1, 4, 2, 5, 3, 6]);
    const [a, b] = run("split", [x], { axis: 1, sizes: [1, 2] });
    close([...(a!.data as Float32Array)], [1, 4]);
    close(run1("concat", [a!, b!], { axis: -1 }), [1, 2, 3, 4, 5, 6]);
  });
  test("embedding rejects out-of-range ids", () => {
    const table = T([2, 2], [1, 2, 3, 4]);
    close(run1("embedding", [i32([2], [1, 0]), table]), [3, 4, 1, 2]);
    expect(() => run("embedding", [i32([1], [2]), table])).toThrow(/token id 2 out of range/);
  });
  test("rope rotates pairs (i, i + d/2) by position x inv_freq", () => {
    const x = T([1, 2, 1, 4], [1, 2, 3, 4, 1, 2, 3, 4]);
    const out = run1("rope", [x, i32([2], [0, 5])], { theta: 100 });
    close(out.slice(0, 4), [1, 2, 3, 4]);
    const inv = [1, 1 / 10];
    const ang = inv.map((f) => 5 * f);
    close(
      out.slice(4),
      [
        1 * Math.cos(ang[0]!) - 3 * Math.sin(ang[0]!),
        2 * Math.cos(ang[1]!) - 4 * Math.sin(ang[1]!),
        3 * Math.cos(ang[0]!) + 1 * Math.sin(ang[0]!),
        4 * Math.cos(ang[1]!) + 2 * Math.sin(ang[1]!),
      ],
      1e-5,
    );
  });
  test("llama3 rope scaling keeps high frequencies, divides low ones and blends between", () => {
    const a = {
      theta: 500000,
      interleaved: false,
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position: 64,
    } as const;
    const base = ropeInvFreq({ ...a, scaling: "none" }, 32);
    const l3 = ropeInvFreq({ ...a, scaling: "llama3" }, 32);
    expect(l3[0]).toBe(base[0]); // wavelength 2*pi < 64/4: unchanged
    expect(l3[15]).toBeCloseTo(base[15]! / 8, 12); // wavelength > 64: divided by the factor
    const mid = [...base.keys()].find((i) => (2 * Math.PI) / base[i]! > 16 && (2 * Math.PI) / base[i]! < 64)!;
    const s = (64 / ((2 * Math.PI) / base[mid]!) - 1) / 3;
    expect(l3[mid]).toBeCloseTo((1 - s) * (base[mid]! / 8) + s * base[mid]!, 12);
  });
  test("kv_window: the newest tokens transposed, from the last even position, zeros past the cache", () => {
    // cache [1, 1, T=5, D=2] holds tokens t with values (10t, 10t + 1); x is the S = 2 newest.
    const cache = T([1, 1, 5, 2], [0, 1, 10, 11, 20, 21, 30, 31, 40, 41]);
    const x = T([1, 1, 2, 2], [30, 31, 40, 41]);
    const [w] = run("kv_window", [cache, x], { align: 2 });
    // P = 3, so the window starts at token 2 and holds S + 2 = 4 columns: tokens 2, 3, 4 and a zero.
    expect(w!.shape).toEqual([1, 1, 2, 4]);
    expect(Array.from(w!.data as Float32Array)).toEqual([20, 30, 40, 0, 21, 31, 41, 0]);
  });

  test("reduce_sum adds along one axis and drops it", () => {
    const x = T([2, 3, 2], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(run1("reduce_sum", [x], { axis: 1 })).toEqual([9, 12, 27, 30]);
    expect(run("reduce_sum", [x], { axis: -1 })[0]!.shape).toEqual([2, 3]);
    expect(shapeErr("reduce_sum", [ty(x)], { axis: 3 })).toMatch(/axis 3 out of range/);
  });

  test("attention matches a naive computation (GQA, causal offset, sliding window)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 1, max: 1000 }),
        (s, past, window, seed) => {
          const [b, hq, hkv, d] = [2, 4, 2, 3];
          const t = past + s;
          const q = T([b, hq, s, d], rand(b * hq * s * d, seed));
          const k = T([b, hkv, t, d], rand(b * hkv * t * d, seed + 1));
          const v = T([b, hkv, t, d], rand(b * hkv * t * d, seed + 2));
          const out = run1("attention", [q, k, v], { scale: 0.5, window });
          const qd = q.data as Float32Array;
          const kd = k.data as Float32Array;
          const vd = v.data as Float32Array;
          const want: number[] = [];
          for (let bi = 0; bi < b; bi++)
            for (let h = 0; h < hq; h++)
              for (let i = 0; i < s; i++) {
                const kh = Math.floor(h / (hq / hkv));
                const keys = [...Array(t).keys()].filter(
                  (j) => j <= past + i && (window === 0 || past + i - j < window),
                );
                const sc = keys.map(
                  (j) =>
                    0.5 *
                    [...Array(d).keys()].reduce(
                      (acc, x) =>
                        acc + qd[((bi * hq + h) * s + i) * d + x]! * kd[((bi * hkv + kh) * t + j) * d + x]!,
                      0,
                    ),
                );
                const m = Math.max(...sc);
                const e = sc.map((z) => Math.exp(z - m));
                const z = e.reduce((p, c) => p + c, 0);
                for (let x = 0; x < d; x++)
                  want.push(
                    keys.reduce((acc, j, n) => acc + (e[n]! / z) * vd[((bi * hkv + kh) * t + j) * d + x]!, 0),
                  );
              }
          close(out, want, 1e-5);
        },
      ),
      { numRuns: 60 },
    );
  });
  test("kv_append appends along the axis and checks the cached length", () => {
    const st = T([1, 1, 1, 2], [1, 2]);
    close(run1("kv_append", [st, T([1, 1, 2, 2], [3, 4, 5, 6])], { axis: 2, past: 1 }), [1, 2, 3, 4, 5, 6]);
    expect(() => run("kv_append", [st, T([1, 1, 1, 2], [3, 4])], { axis: 2, past: 2 })).toThrow(
      /holds 1 positions but the call expects 2/,
    );
  });
  test("moe equals the top-k weighted sum of dense expert MLPs", () => {
    const [e, d, f] = [4, 3, 5];
    const x = T([2, d], rand(2 * d, 7));
    const router = T(
      [e, d],
      rand(e * d, 8).map((v) => 3 * v),
    );
    const wg = T([e, f, d], rand(e * f * d, 9));
    const wu = T([e, f, d], rand(e * f * d, 10));
    const wd = T([e, d, f], rand(e * d * f, 11));
    const out = run1("moe", [x, router, wg, wu, wd], { top_k: 2 });
    const want: number[] = [];
    for (let r = 0; r < 2; r++) {
      const xr = [...(x.data as Float32Array).slice(r * d, r * d + d)];
      const dot = (w: Float32Array, off: number): number => xr.reduce((s, v, i) => s + v * w[off + i]!, 0);
      const logits = [...Array(e).keys()].map((ei) => dot(router.data as Float32Array, ei * d));
      const top = [...logits.keys()].sort((a, b) => logits[b]! - logits[a]!).slice(0, 2);
      const ex = top.map((i) => Math.exp(logits[i]!));
      const acc = new Array<number>(d).fill(0);
      top.forEach((ei, n) => {
        const h = [...Array(f).keys()].map((j) => {
          const g = dot(wg.data as Float32Array, (ei * f + j) * d);
          return (g / (1 + Math.exp(-g))) * dot(wu.data as Float32Array, (ei * f + j) * d);
        });
        for (let i = 0; i < d; i++)
          acc[i]! +=
            (ex[n]! / (ex[0]! + ex[1]!)) *
            h.reduce((s, hv, j) => s + hv * (wd.data as Float32Array)[(ei * d + i) * f + j]!, 0);
      });
      want.push(...acc);
    }
    close(out, want, 1e-5);
  });
});

describe("int8 ops", () => {
  test("qlinear equals quantize -> exact int32 GEMM -> dequantize, and approximates linear", () => {
    const [m, k, n] = [3, 16, 5];
    const x = T([m, k], rand(m * k, 21));
    const wf = rand(n * k, 22);
    const wq = Int8Array.from(wf, (v) => Math.round(v * 127));
    const ws = T([n], new Array(n).fill(1 / 127));
    const bias = T([n], rand(n, 23));
    const w: Tensor = { dtype: "i8", shape: [n, k], data: wq };
    const q = run1("qlinear", [x, w, ws, bias]);
    const [xq, xs] = run("quantize", [x]);
    const acc = new Int32Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++)
        for (let t = 0; t < k; t++) acc[i * n + j]! += (xq!.data as Int8Array)[i * k + t]! * wq[j * k + t]!;
    const d = run1("dequantize", [{ dtype: "i32", shape: [m, n], data: acc }, xs!, ws, bias]);
    expect(q).toEqual(d); // bit-identical
    close(
      q,
      run1("linear", [
        x,
        T(
          [n, k],
          Array.from(wq, (v) => v / 127),
        ),
        bias,
      ]),
      0.05,
    );
  });
});
