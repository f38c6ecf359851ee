/** Element-wise ops: binary arithmetic with broadcasting, activations, scaling and softmax. */
import { z } from "zod";
import { isFloat } from "../dtype.js";
import { registerOp, type OpDef } from "../registry.js";
import { strides, type Tensor } from "../tensor.js";
import { broadcastShapes, normAxis, tensor } from "../types.js";
import { fdata, need, needFloat, noAttrs, outF32, resultDType, show, streamingCost } from "./util.js";

/** Maps an output flat index to the flat index of a broadcast input. */
function broadcastIndexer(inShape: readonly number[], outShape: readonly number[]): (i: number) => number {
  const n = outShape.length;
  const pad = n - inShape.length;
  const os = strides(outShape);
  const is = strides(inShape);
  const eff = outShape.map((_, k) => (k < pad || inShape[k - pad] === 1 ? 0 : is[k - pad]!));
  return (i) => {
    let r = i;
    let idx = 0;
    for (let k = 0; k < n; k++) {
      const q = Math.floor(r / os[k]!);
      r -= q * os[k]!;
      idx += q * eff[k]!;
    }
    return idx;
  };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function binary(name: string, summary: string, f: (x: number, y: number) => number): OpDef {
  return registerOp({
    name,
    summary,
    operands: ["lhs", "rhs"],
    attrs: noAttrs,
    infer([a, b]) {
      const shape = broadcastShapes(a!.shape, b!.shape);
      need(shape, `operand shapes ${show(a!)} and ${show(b!)} do not broadcast`);
      return [tensor(resultDType(a!.dtype, b!.dtype), shape)];
    },
    cost: (ins, outs, _a, env) => streamingCost(ins, outs, env, 1),
    eval([a, b], _attrs, { outTypes }) {
      const out = outF32(outTypes[0]!);
      const o = fdata(out);
      const x = fdata(a!);
      const y = fdata(b!);
      if (sameShape(a!.shape, out.shape) && sameShape(b!.shape, out.shape)) {
        for (let i = 0; i < o.length; i++) o[i] = f(x[i]!, y[i]!);
      } else if (sameShape(a!.shape, out.shape) && y.length === 1) {
        for (let i = 0; i < o.length; i++) o[i] = f(x[i]!, y[0]!);
      } else {
        const ia = broadcastIndexer(a!.shape, out.shape);
        const ib = broadcastIndexer(b!.shape, out.shape);
        for (let i = 0; i < o.length; i++) o[i] = f(x[ia(i)]!, y[ib(i)]!);
      }
      return [out];
    },
  });
}

binary("add", "element-wise sum with broadcasting", (x, y) => x + y);
binary("sub", "element-wise difference with broadcasting", (x, y) => x - y);
binary("mul", "element-wise product with broadcasting", (x, y) => x * y);
binary("div", "element-wise quotient with broadcasting", (x, y) => x / y);

function unary<A extends Record<string, unknown>>(
  name: string,
  summary: string,
  attrs: z.ZodType<A>,
  flopsPerElem: number,
  f: (attrs: A) => (x: number) => number,
): OpDef {
  return registerOp({
    name,
    summary,
    operands: ["x"],
    attrs: attrs as never,
    infer([x]) {
      needFloat(x!, "x");
      return [x!];
    },
    cost: (ins, outs, _a, env) => streamingCost(ins, outs, env, flopsPerElem),
    eval([x], a, { outTypes }) {
      const out = outF32(outTypes[0]!);
      const o = fdata(out);
      const xs = fdata(x!);
      const g = f(a as unknown as A);
      for (let i = 0; i < o.length; i++) o[i] = g(xs[i]!);
      return [out];
    },
  });
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

unary("silu", "x * sigmoid(x)", noAttrs, 4, () => (x) => x * sigmoid(x));
unary("relu", "max(x, 0)", noAttrs, 1, () => (x) => (x > 0 ? x : 0));
unary("sigmoid", "1 / (1 + exp(-x))", noAttrs, 4, () => sigmoid);
unary("tanh", "hyperbolic tangent", noAttrs, 4, () => Math.tanh);
unary(
  "gelu",
  "GELU; approx = none (erf) or tanh (gelu_new)",
  z.strictObject({ approx: z.enum(["none", "tanh"]).default("none") }),
  8,
  (a) =>
    a.approx === "tanh"
      ? (x) => 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
      : (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
);
unary("scale", "x * value", z.strictObject({ value: z.number() }), 1, (a) => (x) => x * a.value);

registerOp({
  name: "softmax",
  summary: "softmax along an axis",
  operands: ["x"],
  attrs: z.strictObject({ axis: z.number().int().default(-1) }),
  infer([x], { axis }) {
    needFloat(x!, "x");
    need(normAxis(axis, x!.shape.length) !== undefined, `axis ${axis} out of range for ${show(x!)}`);
    return [x!];
  },
  cost: (ins, outs, _a, env) => streamingCost(ins, outs, env, 5),
  eval([x], { axis }, { outTypes }) {
    const out = outF32(outTypes[0]!);
    const ax = normAxis(axis, x!.shape.length)!;
    const st = strides(x!.shape);
    const len = x!.shape[ax]!;
    const step = st[ax]!;
    const xs = fdata(x!);
    const o = fdata(out);
    const outer = xs.length / (len * step);
    for (let a = 0; a < outer; a++)
      for (let b = 0; b < step; b++) {
        const base = a * len * step + b;
        let m = -Infinity;
        for (let i = 0; i < len; i++) m = Math.max(m, xs[base + i * step]!);
        let s = 0;
        for (let i = 0; i < len; i++) s += Math.exp(xs[base + i * step]! - m);
        for (let i = 0; i < len; i++) o[base + i * step] = Math.exp(xs[base + i * step]! - m) / s;
      }
    return [out];
  },
});

registerOp({
  name: "cast",
  summary: "convert to another element type (the reference interpreter keeps fp32 values)",
  operands: ["x"],
  attrs: z.strictObject({ dtype: z.enum(["f32", "f16", "bf16", "i32", "i8"]) }),
  infer([x], { dtype }) {
    return [tensor(dtype, x!.shape)];
  },
  cost: (ins, outs, _a, env) => streamingCost(ins, outs, env, 1),
  eval([x], { dtype }) {
    const floatIn = isFloat(x!.dtype);
    const floatOut = isFloat(dtype);
    if (floatIn === floatOut) return [x!];
    const data = floatOut ? Float32Array.from(x!.data as Int32Array) : Int32Array.from(fdata(x!), Math.trunc);
    return [{ dtype: floatOut ? "f32" : "i32", shape: x!.shape, data } as Tensor];
  },
});

/**
 * erf(x) with |error| < 1.2e-7 everywhere (Numerical Recipes' erfc by Chebyshev fitting), well
 * below fp32 resolution of the GELU result.
 */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const c = [
    -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
    -0.82215223, 0.17087277,
  ];
  let poly = 0;
  for (let i = c.length - 1; i >= 0; i--) poly = c[i]! + t * poly;
  const r = t * Math.exp(-z * z + poly);
  return x >= 0 ? 1 - r : r - 1;
}
