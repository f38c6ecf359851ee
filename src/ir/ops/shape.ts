/** Data-movement ops: reshape, transpose, concat, split, reduce_sum and the position-id generator. */
import { z } from "zod";
import { zDim, zDims } from "../attrs.js";
import { dimAdd, dimEq, dimEval, dimProd, dimToString, type Dim } from "../dim.js";
import { registerOp } from "../registry.js";
import { isFloat } from "../dtype.js";
import { i32, strides, type Tensor } from "../tensor.js";
import { normAxis, tensor } from "../types.js";
import { concreteShape, fdata, idata, need, nelem, show, sumBytes } from "./util.js";

registerOp({
  name: "reshape",
  summary: "same elements, new shape (a view: no data moves)",
  operands: ["x"],
  attrs: z.strictObject({ shape: zDims }),
  infer([x], { shape }) {
    need(
      dimEq(dimProd(x!.shape), dimProd(shape)),
      `cannot reshape ${show(x!)} to [${shape.map(dimToString).join(", ")}]: element counts differ`,
    );
    return [tensor(x!.dtype, shape)];
  },
  cost: () => ({ flops: 0, bytes: 0 }),
  eval([x], _a, { outTypes }) {
    return [{ dtype: x!.dtype, shape: concreteShape(outTypes[0]!), data: x!.data }];
  },
});

registerOp({
  name: "transpose",
  summary: "permute axes: result axis i is input axis perm[i]",
  operands: ["x"],
  attrs: z.strictObject({ perm: z.array(z.number().int()) }),
  infer([x], { perm }) {
    const r = x!.shape.length;
    need(
      perm.length === r && [...perm].sort((a, b) => a - b).every((p, i) => p === i),
      `perm [${perm.join(", ")}] is not a permutation of the ${r} axes of ${show(x!)}`,
    );
    return [
      tensor(
        x!.dtype,
        perm.map((p) => x!.shape[p]!),
      ),
    ];
  },
  cost: (ins, outs, _a, env) => ({ flops: 0, bytes: sumBytes(ins, env) + sumBytes(outs, env) }),
  eval([x], { perm }, { outTypes }) {
    return [permute(x!, perm, concreteShape(outTypes[0]!))];
  },
});

export function permute(x: Tensor, perm: readonly number[], outShape: readonly number[]): Tensor {
  const data = x.data.constructor as new (n: number) => typeof x.data;
  const out = new data(x.data.length);
  const is = strides(x.shape);
  const ps = perm.map((p) => is[p]!);
  const r = outShape.length;
  const idx = new Array<number>(r).fill(0);
  const src = x.data as ArrayLike<number | bigint>;
  const dst = out as unknown as (number | bigint)[];
  for (let o = 0; o < out.length; o++) {
    let off = 0;
    for (let k = 0; k < r; k++) off += idx[k]! * ps[k]!;
    dst[o] = src[off]!;
    for (let k = r - 1; k >= 0; k--) {
      if (++idx[k]! < outShape[k]!) break;
      idx[k] = 0;
    }
  }
  return { dtype: x.dtype, shape: [...outShape], data: out };
}

registerOp({
  name: "concat",
  summary: "join tensors along an axis",
  operands: ["xs..."],
  attrs: z.strictObject({ axis: z.number().int() }),
  infer(ins, { axis }) {
    need(ins.length >= 1, "concat needs at least one operand");
    const first = ins[0]!;
    const ax = normAxis(axis, first.shape.length);
    need(ax !== undefined, `axis ${axis} out of range for ${show(first)}`);
    let len: Dim = 0;
    for (const t of ins) {
      need(t.dtype === first.dtype, `operands have different dtypes (${first.dtype}, ${t.dtype})`);
      need(
        t.shape.length === first.shape.length &&
          t.shape.every((d, i) => i === ax || dimEq(d, first.shape[i]!)),
        `operand ${show(t)} does not match ${show(first)} outside axis ${axis}`,
      );
      len = dimAdd(len, t.shape[ax]!);
    }
    return [
      tensor(
        first.dtype,
        first.shape.map((d, i) => (i === ax ? len : d)),
      ),
    ];
  },
  cost: (ins, outs, _a, env) => ({ flops: 0, bytes: sumBytes(ins, env) + sumBytes(outs, env) }),
  eval(ins, { axis }, { outTypes }) {
    return [concatTensors(ins, normAxis(axis, ins[0]!.shape.length)!, concreteShape(outTypes[0]!))];
  },
});

export function concatTensors(ins: readonly Tensor[], ax: number, outShape: readonly number[]): Tensor {
  const ctor = ins[0]!.data.constructor as new (n: number) => Float32Array;
  const total = outShape.reduce((p, d) => p * d, 1);
  const out = new ctor(total);
  const inner = outShape.slice(ax + 1).reduce((p, d) => p * d, 1);
  const outer = outShape.slice(0, ax).reduce((p, d) => p * d, 1);
  const rowOut = outShape[ax]! * inner;
  let colOff = 0;
  for (const t of ins) {
    const row = t.shape[ax]! * inner;
    const src = t.data as Float32Array;
    for (let o = 0; o < outer; o++) out.set(src.subarray(o * row, (o + 1) * row), o * rowOut + colOff);
    colOff += row;
  }
  return { dtype: ins[0]!.dtype, shape: [...outShape], data: out };
}

registerOp({
  name: "split",
  summary: "cut a tensor along an axis into pieces of the given sizes",
  operands: ["x"],
  attrs: z.strictObject({ axis: z.number().int(), sizes: zDims }),
  infer([x], { axis, sizes }) {
    const ax = normAxis(axis, x!.shape.length);
    need(ax !== undefined, `axis ${axis} out of range for ${show(x!)}`);
    need(sizes.length >= 1, "split needs at least one size");
    need(
      dimEq(
        sizes.reduce<Dim>((a, b) => dimAdd(a, b), 0),
        x!.shape[ax]!,
      ),
      `sizes [${sizes.map(dimToString).join(", ")}] do not add up to axis ${axis} of ${show(x!)}`,
    );
    return sizes.map((s) =>
      tensor(
        x!.dtype,
        x!.shape.map((d, i) => (i === ax ? s : d)),
      ),
    );
  },
  cost: (ins, outs, _a, env) => ({ flops: 0, bytes: sumBytes(ins, env) + sumBytes(outs, env) }),
  eval([x], { axis }, { outTypes }) {
    const ax = normAxis(axis, x!.shape.length)!;
    const inner = x!.shape.slice(ax + 1).reduce((p, d) => p * d, 1);
    const outer = x!.shape.slice(0, ax).reduce((p, d) => p * d, 1);
    const rowIn = x!.shape[ax]! * inner;
    const src = fdata(x!);
    let colOff = 0;
    return outTypes.map((t) => {
      const shape = concreteShape(t);
      const row = shape[ax]! * inner;
      const out = new Float32Array(outer * row);
      for (let o = 0; o < outer; o++)
        out.set(src.subarray(o * rowIn + colOff, o * rowIn + colOff + row), o * row);
      colOff += row;
      return { dtype: "f32", shape, data: out } as Tensor;
    });
  },
});

registerOp({
  name: "positions",
  summary: "position ids start, start+1, ..., start+len-1",
  operands: [],
  attrs: z.strictObject({ start: zDim, len: zDim }),
  infer(_ins, { len }) {
    return [tensor("i32", [len])];
  },
  cost: (_i, outs, _a, env) => ({ flops: 0, bytes: sumBytes(outs, env) }),
  eval(_ins, { start, len }) {
    const s = dimEval(start, {});
    const n = dimEval(len, {});
    return [
      i32(
        [n],
        Int32Array.from({ length: n }, (_, i) => s + i),
      ),
    ];
  },
});

registerOp({
  name: "reduce_sum",
  summary: "sum over one axis (floats in fp32 in order, int32 wrapping), which the result drops",
  operands: ["x"],
  attrs: z.strictObject({ axis: z.number().int() }),
  infer([x], { axis }) {
    const ax = normAxis(axis, x!.shape.length);
    need(ax !== undefined, `axis ${axis} out of range for ${show(x!)}`);
    need(
      isFloat(x!.dtype) || x!.dtype === "i32",
      `reduce_sum needs a float or i32, got ${x!.dtype}${show(x!)}`,
    );
    return [
      tensor(
        x!.dtype,
        x!.shape.filter((_, i) => i !== ax),
      ),
    ];
  },
  cost: (ins, outs, _a, env) => ({
    flops: nelem(ins[0]!, env),
    bytes: sumBytes(ins, env) + sumBytes(outs, env),
  }),
  eval([x], { axis }, { outTypes }) {
    const ax = normAxis(axis, x!.shape.length)!;
    const inner = x!.shape.slice(ax + 1).reduce((p, d) => p * d, 1);
    const outer = x!.shape.slice(0, ax).reduce((p, d) => p * d, 1);
    const n = x!.shape[ax]!;
    // Typed-array stores round each sum to fp32, or wrap it mod 2^32 (int32, as the DPUs add).
    const src = x!.dtype === "i32" ? idata(x!) : fdata(x!);
    const out = x!.dtype === "i32" ? new Int32Array(outer * inner) : new Float32Array(outer * inner);
    for (let o = 0; o < outer; o++)
      for (let r = 0; r < n; r++) {
        const from = (o * n + r) * inner;
        for (let i = 0; i < inner; i++) out[o * inner + i] = out[o * inner + i]! + src[from + i]!;
      }
    return [{ dtype: x!.dtype, shape: concreteShape(outTypes[0]!), data: out } as Tensor];
  },
});
