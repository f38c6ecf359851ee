/** Normalisation ops over the last axis. */
import { z } from "zod";
import { registerOp } from "../registry.js";
import { fdata, lastDim, needDimEq, needFloat, needRank, outF32, show, streamingCost } from "./util.js";
import type { TensorType } from "../types.js";

function checkParam(x: TensorType, p: TensorType | undefined, what: string): void {
  if (!p) return;
  needRank(p, 1, what);
  needDimEq(p.shape[0]!, lastDim(x), `${what} ${show(p)} does not match x ${show(x)}`);
}

registerOp({
  name: "rms_norm",
  summary: "x / sqrt(mean(x^2) + eps) * weight over the last axis",
  operands: ["x", "weight?"],
  attrs: z.strictObject({ eps: z.number().positive() }),
  infer([x, w]) {
    needFloat(x!, "x");
    checkParam(x!, w, "weight");
    return [x!];
  },
  cost: (ins, outs, _a, env) => streamingCost(ins, outs, env, 4),
  eval([x, w], { eps }, { outTypes }) {
    const out = outF32(outTypes[0]!);
    const d = x!.shape[x!.shape.length - 1]!;
    const xs = fdata(x!);
    const ws = w ? fdata(w) : undefined;
    const o = fdata(out);
    for (let r = 0; r < xs.length; r += d) {
      let ss = 0;
      for (let i = 0; i < d; i++) ss += xs[r + i]! * xs[r + i]!;
      // HF computes the variance in fp32 and scales in fp32 before applying the weight.
      const inv = Math.fround(1 / Math.sqrt(Math.fround(ss / d) + eps));
      for (let i = 0; i < d; i++) o[r + i] = Math.fround(xs[r + i]! * inv) * (ws ? ws[i]! : 1);
    }
    return [out];
  },
});

registerOp({
  name: "layer_norm",
  summary: "(x - mean) / sqrt(var + eps) * weight + bias over the last axis",
  operands: ["x", "weight?", "bias?"],
  attrs: z.strictObject({ eps: z.number().positive() }),
  infer([x, w, b]) {
    needFloat(x!, "x");
    checkParam(x!, w, "weight");
    checkParam(x!, b, "bias");
    return [x!];
  },
  cost: (ins, outs, _a, env) => streamingCost(ins, outs, env, 7),
  eval([x, w, b], { eps }, { outTypes }) {
    const out = outF32(outTypes[0]!);
    const d = x!.shape[x!.shape.length - 1]!;
    const xs = fdata(x!);
    const ws = w ? fdata(w) : undefined;
    const bs = b ? fdata(b) : undefined;
    const o = fdata(out);
    for (let r = 0; r < xs.length; r += d) {
      let mean = 0;
      for (let i = 0; i < d; i++) mean += xs[r + i]!;
      mean /= d;
      let v = 0;
      for (let i = 0; i < d; i++) v += (xs[r + i]! - mean) ** 2;
      const inv = 1 / Math.sqrt(v / d + eps);
      for (let i = 0; i < d; i++)
        o[r + i] = (xs[r + i]! - mean) * inv * (ws ? ws[i]! : 1) + (bs ? bs[i]! : 0);
    }
    return [out];
  },
});
