/**
 * INT8 quantized linear layers. Weights are quantized at build time per output channel (symmetric:
 * w = q * scale[n], q in [-127, 127]); activations per row at run time. `qlinear` is the whole
 * layer; a target may lower it as `quantize` (host) -> integer GEMM (device) -> `dequantize` (host),
 * and the arithmetic here is shared so both paths give bit-identical results.
 */
import { z } from "zod";
import { dimEval } from "../dim.js";
import { registerOp } from "../registry.js";
import { tensor } from "../types.js";
import { f32, type Tensor } from "../tensor.js";
import { fdata, lastDim, need, needDimEq, needRank, nelem, show, sumBytes } from "./util.js";

/** Round half away from zero, then clamp to [-127, 127]. */
export const q8 = (x: number): number =>
  Math.max(-127, Math.min(127, x < 0 ? -Math.round(-x) : Math.round(x)));

/** Symmetric per-row quantization of rows of length k: fills q and returns the scales (f32). */
export function quantizeRows(x: Float32Array, k: number, q: Int8Array): Float32Array {
  const rows = x.length / k;
  const scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let i = 0; i < k; i++) m = Math.max(m, Math.abs(x[r * k + i]!));
    const s = m === 0 ? 1 : Math.fround(m / 127);
    scale[r] = s;
    for (let i = 0; i < k; i++) q[r * k + i] = q8(x[r * k + i]! / s);
  }
  return scale;
}

/** Largest |q| of 16-bit activations: hi = q >> 8 (arithmetic, rounded) and lo stay within int8. */
export const Q16_MAX = 127 * 256 + 127;

/**
 * 16-bit activations as two INT8 planes: q = hi * 256 + lo with q = round(x / scale), scale =
 * max |x| / Q16_MAX per row, lo in [-128, 127], hi in [-127, 127]. `planes` is [2, rows, k]: the hi
 * plane, then the lo plane; every product stays an int8 x int8 multiply.
 */
export function quantizeRows16(x: Float32Array, k: number, planes: Int8Array): Float32Array {
  const rows = x.length / k;
  const scale = new Float32Array(rows);
  const n = rows * k;
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let i = 0; i < k; i++) m = Math.max(m, Math.abs(x[r * k + i]!));
    const s = m === 0 ? 1 : Math.fround(m / Q16_MAX);
    scale[r] = s;
    for (let i = 0; i < k; i++) {
      const v = x[r * k + i]! / s;
      const q = Math.max(-Q16_MAX, Math.min(Q16_MAX, v < 0 ? -Math.round(-v) : Math.round(v)));
      const lo = ((q + 128) & 255) - 128;
      planes[r * k + i] = (q - lo) / 256;
      planes[n + r * k + i] = lo;
    }
  }
  return scale;
}

/** Combines the two planes' int32 results: acc[m, n] = hi[m, n] * 256 + lo[m, n] (exact in float64). */
export function combinePlanes(acc: Int32Array): Float64Array {
  const n = acc.length / 2;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = acc[i]! * 256 + acc[n + i]!;
  return out;
}

/** y[m, n] = fp32(acc[m, n] * fp32(sa[m] * sw[n])) + bias[n]. */
export function dequantizeInto(
  acc: Int32Array | Float64Array,
  sa: Float32Array,
  sw: Float32Array,
  bias: Float32Array | undefined,
  y: Float32Array,
): void {
  const n = sw.length;
  for (let i = 0; i < acc.length; i++) {
    const r = Math.floor(i / n);
    const c = i - r * n;
    const v = Math.fround(acc[i]! * Math.fround(sa[r]! * sw[c]!));
    y[i] = bias ? Math.fround(v + bias[c]!) : v;
  }
}

/** acc[m, n] = sum_t xq[m, t] * wq[n, t] (exact int32). */
export function int8Gemm(xq: Int8Array, wq: Int8Array, k: number, acc: Int32Array): void {
  const n = wq.length / k;
  const m = xq.length / k;
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += xq[i * k + t]! * wq[j * k + t]!;
      acc[i * n + j] = s;
    }
}

const asI8 = (t: Tensor): Int8Array =>
  t.data instanceof Int8Array ? t.data : Int8Array.from(t.data as Int32Array);
const asI32 = (t: Tensor): Int32Array =>
  t.data instanceof Int32Array ? t.data : Int32Array.from(t.data as Int8Array);

registerOp({
  name: "qlinear",
  summary:
    "INT8 linear: x quantized per row, int8 weights [out, in] with per-channel scales, int32 accumulation",
  operands: ["x", "weight_q", "weight_scale", "bias?"],
  traits: { gemm: { input: 0, weight: 1 } },
  attrs: z.strictObject({ act_bits: z.union([z.literal(8), z.literal(16)]).optional() }),
  infer([x, w, s, b]) {
    needRank(w!, 2, "weight_q");
    need(w!.dtype === "i8", `weight_q must be i8, got ${w!.dtype}`);
    needDimEq(lastDim(x!), w!.shape[1]!, `x has ${show(x!)} but weight_q ${show(w!)} expects [..., in]`);
    needRank(s!, 1, "weight_scale");
    needDimEq(s!.shape[0]!, w!.shape[0]!, `weight_scale ${show(s!)} does not match weight_q ${show(w!)}`);
    if (b) needDimEq(b.shape[0]!, w!.shape[0]!, `bias ${show(b)} does not match weight_q ${show(w!)}`);
    return [tensor(x!.dtype, [...x!.shape.slice(0, -1), w!.shape[0]!])];
  },
  cost(ins, outs, _a, env) {
    const [x, w] = ins;
    const k = dimEval(w!.shape[1]!, env);
    const m = nelem(x!, env) / k;
    return { flops: 2 * m * dimEval(w!.shape[0]!, env) * k, bytes: sumBytes(ins, env) + sumBytes(outs, env) };
  },
  eval([x, w, s, b], a, { outTypes }) {
    const k = w!.shape[1]!;
    const xs = fdata(x!);
    const planes = a.act_bits === 16 ? 2 : 1;
    const xq = new Int8Array(planes * xs.length);
    const sa = planes === 2 ? quantizeRows16(xs, k, xq) : quantizeRows(xs, k, xq);
    const acc = new Int32Array(planes * (xs.length / k) * w!.shape[0]!);
    int8Gemm(xq, asI8(w!), k, acc);
    const out = f32(outTypes[0]!.shape as number[]);
    dequantizeInto(
      planes === 2 ? combinePlanes(acc) : acc,
      sa,
      fdata(s!),
      b ? fdata(b) : undefined,
      out.data as Float32Array,
    );
    return [out];
  },
});

registerOp({
  name: "quantize",
  summary:
    "symmetric per-row quantization: (q, scale) with x ~ q * scale; bits 16 gives two INT8 planes [2, ...] (hi, lo)",
  operands: ["x"],
  attrs: z.strictObject({ bits: z.union([z.literal(8), z.literal(16)]).optional() }),
  infer([x], a) {
    const q = a.bits === 16 ? [2, ...x!.shape] : x!.shape;
    return [tensor("i8", q), tensor("f32", x!.shape.slice(0, -1))];
  },
  cost: (ins, outs, _a, env) => ({
    flops: 3 * nelem(ins[0]!, env),
    bytes: sumBytes(ins, env) + sumBytes(outs, env),
  }),
  eval([x], a) {
    const k = x!.shape[x!.shape.length - 1]!;
    const wide = a.bits === 16;
    const q = new Int8Array((wide ? 2 : 1) * x!.data.length);
    const scale = wide ? quantizeRows16(fdata(x!), k, q) : quantizeRows(fdata(x!), k, q);
    return [
      { dtype: "i8", shape: wide ? [2, ...x!.shape] : x!.shape, data: q },
      { dtype: "f32", shape: x!.shape.slice(0, -1), data: scale },
    ];
  },
});

/** The float type a dequantizing op's result has in the model (default f32; computed in f32). */
const zFloatType = z.enum(["f32", "f16", "bf16"]).optional();

registerOp({
  name: "dequantize",
  summary:
    "y[..., n] = acc[..., n] * scale[...] * weight_scale[n] + bias[n] (int32 GEMM result to float); bits 16 combines planes [2, ...] as hi * 256 + lo",
  operands: ["acc", "scale", "weight_scale", "bias?"],
  attrs: z.strictObject({ bits: z.union([z.literal(8), z.literal(16)]).optional(), dtype: zFloatType }),
  infer([acc, s, ws], a) {
    need(acc!.dtype === "i32", `acc must be i32, got ${acc!.dtype}`);
    needDimEq(lastDim(acc!), ws!.shape[0]!, `weight_scale ${show(ws!)} does not match acc ${show(acc!)}`);
    const shape = a.bits === 16 ? acc!.shape.slice(1) : acc!.shape;
    if (a.bits === 16)
      need(acc!.shape[0] === 2, `acc ${show(acc!)} must hold 2 planes [2, ...] with bits 16`);
    need(
      s!.shape.length === shape.length - 1,
      `scale ${show(s!)} must have one scale per row of acc ${show(acc!)}`,
    );
    return [tensor(a.dtype ?? "f32", shape)];
  },
  cost: (ins, outs, _a, env) => ({
    flops: 3 * nelem(outs[0]!, env),
    bytes: sumBytes(ins, env) + sumBytes(outs, env),
  }),
  eval([acc, s, ws, b], a, { outTypes }) {
    const out = f32(outTypes[0]!.shape as number[]);
    const raw = asI32(acc!);
    dequantizeInto(
      a.bits === 16 ? combinePlanes(raw) : raw,
      fdata(s!),
      fdata(ws!),
      b ? fdata(b) : undefined,
      out.data as Float32Array,
    );
    return [out];
  },
});

// ---------------------------------------------------------------------------------------------
// Low-bit weights (INT4, INT2) with group-wise scales: weight-only quantization.

/** The sizes of a low-bit linear layer under a workload: rows (tokens), outputs, inputs, format. */
export interface LowbitShape {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly bits: number;
  readonly group: number;
}

/** The signed range of a `bits`-bit weight: [-(2^(bits-1)), 2^(bits-1) - 1]. */
export const lowbitRange = (bits: number): [number, number] => [-(1 << (bits - 1)), (1 << (bits - 1)) - 1];

/**
 * Group-wise symmetric quantization of a row-major [n, k] matrix to `bits` bits: each run of `group`
 * consecutive weights of a row has scale = max |w| / (2^(bits-1) - 1) (INT2: max |w|), and
 * q = round(w / scale) (half away from zero) clamped to the signed range. Fills q, returns the scales
 * [n, k / group].
 */
export function quantizeGroups(
  w: Float32Array,
  k: number,
  bits: number,
  group: number,
  q: Int8Array,
): Float32Array {
  const [lo, hi] = lowbitRange(bits);
  const groups = w.length / group;
  const scale = new Float32Array(groups);
  for (let gi = 0; gi < groups; gi++) {
    let m = 0;
    for (let i = gi * group; i < (gi + 1) * group; i++) m = Math.max(m, Math.abs(w[i]!));
    const s = m === 0 ? 1 : Math.fround(m / hi);
    scale[gi] = s;
    for (let i = gi * group; i < (gi + 1) * group; i++) {
      const x = w[i]! / s;
      q[i] = Math.max(lo, Math.min(hi, x < 0 ? -Math.round(-x) : Math.round(x)));
    }
  }
  void k;
  return scale;
}

/** W = q x scale, in float32 (the reference every low-bit kernel must reproduce). */
export function dequantizeGroups(q: Int8Array, scale: Float32Array, group: number): Float32Array {
  const w = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) w[i] = Math.fround(q[i]! * scale[Math.floor(i / group)]!);
  return w;
}

registerOp({
  name: "lowbit_linear",
  summary:
    "weight-only low-bit linear: y = x . (q x scale)^T + bias, q [out, in] of `bits` bits (held as i8), one scale per `group` inputs of a row",
  operands: ["x", "weight_q", "weight_scale", "bias?"],
  traits: { gemm: { input: 0, weight: 1 } },
  attrs: z.strictObject({
    bits: z.union([z.literal(2), z.literal(4), z.literal(8)]),
    group: z.number().int().positive(),
    /** 8: activations quantized per row to INT8 and every group's dot product accumulated in int32. */
    act_bits: z.literal(8).optional(),
  }),
  infer([x, w, s, b], a) {
    needRank(w!, 2, "weight_q");
    need(w!.dtype === "i8", `weight_q must be i8, got ${w!.dtype}`);
    needDimEq(lastDim(x!), w!.shape[1]!, `x has ${show(x!)} but weight_q ${show(w!)} expects [..., in]`);
    needRank(s!, 2, "weight_scale");
    needDimEq(s!.shape[0]!, w!.shape[0]!, `weight_scale ${show(s!)} does not match weight_q ${show(w!)}`);
    const k = w!.shape[1]!;
    if (typeof k === "number") {
      need(k % a.group === 0, `group ${a.group} does not divide the ${k} inputs of weight_q ${show(w!)}`);
      needDimEq(s!.shape[1]!, k / a.group, `weight_scale ${show(s!)} needs ${k / a.group} groups per row`);
    }
    if (b) needDimEq(b.shape[0]!, w!.shape[0]!, `bias ${show(b)} does not match weight_q ${show(w!)}`);
    return [tensor(x!.dtype, [...x!.shape.slice(0, -1), w!.shape[0]!])];
  },
  cost(ins, outs, a, env) {
    const [x, w, s, b] = ins;
    const k = dimEval(w!.shape[1]!, env);
    const n = dimEval(w!.shape[0]!, env);
    const m = nelem(x!, env) / k;
    // The weights take `bits` bits each in memory (packed), not the i8 they are held in here.
    const weights = (n * k * a.bits) / 8;
    return {
      flops: 2 * m * n * k,
      bytes: sumBytes([x!, s!, ...(b ? [b] : [])], env) + weights + sumBytes(outs, env),
    };
  },
  eval([x, w, s, b], a, { outTypes }) {
    const [n, k] = w!.shape as [number, number];
    if (a.act_bits === 8) {
      const out = f32(outTypes[0]!.shape as number[]);
      lowbitIntGemm(
        fdata(x!),
        asI8(w!),
        fdata(s!),
        k,
        a.group,
        b ? fdata(b) : undefined,
        out.data as Float32Array,
        groupDots,
      );
      return [out];
    }
    const wf = dequantizeGroups(asI8(w!), fdata(s!), a.group);
    const xs = fdata(x!);
    const out = f32(outTypes[0]!.shape as number[]);
    const y = out.data as Float32Array;
    const bias = b ? fdata(b) : undefined;
    const rows = xs.length / k;
    for (let r = 0; r < rows; r++)
      for (let o = 0; o < n; o++) {
        let acc = 0;
        for (let t = 0; t < k; t++) acc += xs[r * k + t]! * wf[o * k + t]!;
        y[r * n + o] = Math.fround(bias ? acc + bias[o]! : acc);
      }
    return [out];
  },
});

/**
 * The integer dot products of every weight group with the activations: dots[r, o, g] =
 * sum over the group's inputs of xq[r, t] x wq[o, t] (exact int32). The reference: one multiply per
 * weight (dequantize-then-multiply, in integers).
 */
export type GroupDots = (xq: Int8Array, wq: Int8Array, k: number, group: number, dots: Int32Array) => void;

export const groupDots: GroupDots = (xq, wq, k, group, dots) => {
  const n = wq.length / k;
  const rows = xq.length / k;
  const groups = k / group;
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < n; o++)
      for (let g = 0; g < groups; g++) {
        let acc = 0;
        for (let t = g * group; t < (g + 1) * group; t++) acc += xq[r * k + t]! * wq[o * k + t]!;
        dots[(r * n + o) * groups + g] = acc;
      }
};

/**
 * W(low-bit) x A8: activations quantized per row (as qlinear), each weight group's integer dot
 * product from `dots` (the reference, or a LUT kernel: they must agree exactly), then
 * y[r, o] = sum over groups in order of fp32(dot x fp32(sa[r] x sw[o, g])), plus the bias.
 */
export function lowbitIntGemm(
  x: Float32Array,
  wq: Int8Array,
  sw: Float32Array,
  k: number,
  group: number,
  bias: Float32Array | undefined,
  y: Float32Array,
  dots: GroupDots,
): void {
  const n = wq.length / k;
  const rows = x.length / k;
  const groups = k / group;
  const xq = new Int8Array(x.length);
  const sa = quantizeRows(x, k, xq);
  const d = new Int32Array(rows * n * groups);
  dots(xq, wq, k, group, d);
  foldGroups(d, (r, o, g) => (r * n + o) * groups + g, sa, sw, n, bias, y);
}

/**
 * y[r, o] = sum over groups g in order of fp32(dot(r, o, g) x fp32(sa[r] x sw[o, g])), accumulated in
 * fp32 from 0, then + bias[o]: the float part of every W(low-bit) x A8 layer, wherever its integer
 * dot products come from (`at` gives their index in `dots`).
 */
export function foldGroups(
  dots: Int32Array,
  at: (r: number, o: number, g: number) => number,
  sa: Float32Array,
  sw: Float32Array,
  n: number,
  bias: Float32Array | undefined,
  y: Float32Array,
): void {
  const groups = sw.length / n;
  const rows = sa.length;
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < n; o++) {
      let acc = 0;
      for (let g = 0; g < groups; g++)
        acc = Math.fround(acc + Math.fround(dots[at(r, o, g)]! * Math.fround(sa[r]! * sw[o * groups + g]!)));
      y[r * n + o] = bias ? Math.fround(acc + bias[o]!) : acc;
    }
}

registerOp({
  name: "group_dequantize",
  summary:
    "the float fold of a W(low-bit) x A8 layer: dots [..., blocks, groups, ld] (int32 group dot products, output o at block o / block, column o % block) times sa[...] x weight_scale[n, groups], summed over groups in order, + bias",
  operands: ["dots", "scale", "weight_scale", "bias?"],
  attrs: z.strictObject({ block: z.number().int().positive(), dtype: zFloatType }),
  infer([d, s, ws, b], a) {
    need(d!.dtype === "i32", `dots must be i32, got ${d!.dtype}`);
    need(d!.shape.length >= 3, `dots ${show(d!)} must be [..., blocks, groups, ld]`);
    needRank(ws!, 2, "weight_scale");
    const lead = d!.shape.slice(0, -3);
    need(
      s!.shape.length === lead.length,
      `scale ${show(s!)} must have one scale per row of dots ${show(d!)}`,
    );
    needDimEq(
      d!.shape[d!.shape.length - 2]!,
      ws!.shape[1]!,
      `dots ${show(d!)} and weight_scale ${show(ws!)} differ in groups`,
    );
    const [blocks, ld, n] = [d!.shape[d!.shape.length - 3], d!.shape[d!.shape.length - 1], ws!.shape[0]];
    if (typeof blocks === "number" && typeof ld === "number" && typeof n === "number")
      need(
        a.block <= ld && blocks * a.block >= n,
        `blocks of ${a.block} outputs in ${show(d!)} do not hold the ${n} outputs of weight_scale ${show(ws!)}`,
      );
    if (b) needDimEq(b.shape[0]!, ws!.shape[0]!, `bias ${show(b)} does not match weight_scale ${show(ws!)}`);
    return [tensor(a.dtype ?? "f32", [...lead, ws!.shape[0]!])];
  },
  cost: (ins, outs, _a, env) => ({
    flops: 3 * nelem(ins[0]!, env),
    bytes: sumBytes(ins, env) + sumBytes(outs, env),
  }),
  eval([d, s, ws, b], a, { outTypes }) {
    const out = f32(outTypes[0]!.shape as number[]);
    const [groups, ld] = d!.shape.slice(-2) as [number, number];
    const blocks = d!.shape[d!.shape.length - 3]!;
    const n = ws!.shape[0]!;
    const block = a.block;
    const per = blocks * groups * ld;
    foldGroups(
      asI32(d!),
      (r, o, g) => r * per + (Math.floor(o / block) * groups + g) * ld + (o % block),
      fdata(s!),
      fdata(ws!),
      n,
      b ? fdata(b) : undefined,
      out.data as Float32Array,
    );
    return [out];
  },
});
