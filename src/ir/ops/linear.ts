/** Dense ops: linear layers (GEMM/GEMV with weights), batched matmul and embedding lookup. */
import { z } from "zod";
import { isFloat } from "../dtype.js";
import { dimEval } from "../dim.js";
import { registerOp } from "../registry.js";
import { broadcastShapes, tensor } from "../types.js";
import { strides } from "../tensor.js";
import {
  fdata,
  idata,
  lastDim,
  need,
  needDimEq,
  needFloat,
  needRank,
  nelem,
  outF32,
  show,
  sumBytes,
} from "./util.js";

registerOp({
  name: "linear",
  summary: "y = x W^T + b, with W stored [out, in] (PyTorch layout)",
  operands: ["x", "weight", "bias?"],
  traits: { gemm: { input: 0, weight: 1 } },
  attrs: z.strictObject({}),
  infer([x, w, b]) {
    needFloat(x!, "x");
    needRank(w!, 2, "weight");
    needDimEq(lastDim(x!), w!.shape[1]!, `x has ${show(x!)} but weight ${show(w!)} expects [..., in]`);
    if (b) {
      needRank(b, 1, "bias");
      needDimEq(b.shape[0]!, w!.shape[0]!, `bias ${show(b)} does not match weight ${show(w!)}`);
    }
    return [tensor(x!.dtype, [...x!.shape.slice(0, -1), w!.shape[0]!])];
  },
  cost(ins, outs, _a, env) {
    const [x, w, b] = ins;
    const m = nelem(x!, env) / dimEval(lastDim(x!), env);
    const n = dimEval(w!.shape[0]!, env);
    const k = dimEval(w!.shape[1]!, env);
    return { flops: 2 * m * n * k + (b ? m * n : 0), bytes: sumBytes(ins, env) + sumBytes(outs, env) };
  },
  eval([x, w, b], _a, { outTypes }) {
    const out = outF32(outTypes[0]!);
    const [n, k] = w!.shape as [number, number];
    const xs = fdata(x!);
    const ws = fdata(w!);
    const bs = b ? fdata(b) : undefined;
    const o = fdata(out);
    const m = xs.length / k;
    for (let i = 0; i < m; i++) {
      const xo = i * k;
      for (let j = 0; j < n; j++) {
        const wo = j * k;
        let s = bs ? bs[j]! : 0;
        for (let t = 0; t < k; t++) s += xs[xo + t]! * ws[wo + t]!;
        o[i * n + j] = s;
      }
    }
    return [out];
  },
});

registerOp({
  name: "matmul",
  summary: "batched matrix product a[..., M, K] x b[..., K, N] (b[..., N, K] with transpose_b)",
  operands: ["a", "b"],
  attrs: z.strictObject({ transpose_b: z.boolean().default(false) }),
  infer([a, b], { transpose_b }) {
    needFloat(a!, "a");
    need(
      a!.shape.length >= 2 && b!.shape.length >= 2,
      `matmul needs rank >= 2 operands, got ${show(a!)} and ${show(b!)}`,
    );
    const [m, k] = a!.shape.slice(-2);
    const [kb, n] = transpose_b ? [...b!.shape.slice(-2)].reverse() : b!.shape.slice(-2);
    needDimEq(k!, kb!, `contraction dims of ${show(a!)} and ${show(b!)} differ`);
    const batch = broadcastShapes(a!.shape.slice(0, -2), b!.shape.slice(0, -2));
    need(batch, `batch dims of ${show(a!)} and ${show(b!)} do not broadcast`);
    return [tensor(a!.dtype, [...batch, m!, n!])];
  },
  cost(ins, outs, { transpose_b }, env) {
    const k = dimEval(ins[0]!.shape[ins[0]!.shape.length - 1]!, env);
    void transpose_b;
    return { flops: 2 * k * nelem(outs[0]!, env), bytes: sumBytes(ins, env) + sumBytes(outs, env) };
  },
  eval([a, b], { transpose_b }, { outTypes }) {
    const out = outF32(outTypes[0]!);
    const os = out.shape;
    const r = os.length;
    const m = os[r - 2]!;
    const n = os[r - 1]!;
    const k = a!.shape[a!.shape.length - 1]!;
    const batchShape = os.slice(0, -2);
    const nb = batchShape.reduce((p, d) => p * d, 1);
    const as = fdata(a!);
    const bs = fdata(b!);
    const o = fdata(out);
    const aBatch = batchOffsets(a!.shape.slice(0, -2), batchShape, m * k);
    const bBatch = batchOffsets(b!.shape.slice(0, -2), batchShape, k * n);
    for (let bi = 0; bi < nb; bi++) {
      const ao = aBatch(bi);
      const bo = bBatch(bi);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = 0;
          if (transpose_b) for (let t = 0; t < k; t++) s += as[ao + i * k + t]! * bs[bo + j * k + t]!;
          else for (let t = 0; t < k; t++) s += as[ao + i * k + t]! * bs[bo + t * n + j]!;
          o[(bi * m + i) * n + j] = s;
        }
    }
    return [out];
  },
});

/** Offset of the matrix of broadcast batch index `bi` in an operand with batch shape `inBatch`. */
function batchOffsets(
  inBatch: readonly number[],
  outBatch: readonly number[],
  matSize: number,
): (bi: number) => number {
  const pad = outBatch.length - inBatch.length;
  const os = strides(outBatch);
  const is = strides(inBatch);
  return (bi) => {
    let r = bi;
    let off = 0;
    for (let d = 0; d < outBatch.length; d++) {
      const q = Math.floor(r / os[d]!);
      r -= q * os[d]!;
      if (d >= pad && inBatch[d - pad] !== 1) off += q * is[d - pad]!;
    }
    return off * matSize;
  };
}

registerOp({
  name: "embedding",
  summary: "rows of table[V, D] gathered by integer ids",
  operands: ["ids", "table"],
  traits: { lookup: { ids: 0, table: 1 } },
  attrs: z.strictObject({}),
  infer([ids, table]) {
    need(!isFloat(ids!.dtype), `ids must be integers, got ${ids!.dtype}`);
    needRank(table!, 2, "table");
    return [tensor(table!.dtype, [...ids!.shape, table!.shape[1]!])];
  },
  cost(ins, outs, _a, env) {
    // Only the gathered rows are read from the table.
    return { flops: 0, bytes: sumBytes([ins[0]!], env) + 2 * sumBytes(outs, env) };
  },
  eval([ids, table], _a, { outTypes }) {
    const out = outF32(outTypes[0]!);
    const [v, d] = table!.shape as [number, number];
    const is = idata(ids!);
    const ts = fdata(table!);
    const o = fdata(out);
    for (let i = 0; i < is.length; i++) {
      const id = is[i]!;
      if (id < 0 || id >= v) throw new RangeError(`token id ${id} out of range for a table of ${v} rows`);
      o.set(ts.subarray(id * d, (id + 1) * d), i * d);
    }
    return [out];
  },
});
