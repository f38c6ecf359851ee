/**
 * The AiM units' arithmetic for functional runs (`pimc verify`, `generate`): a linear layer or an
 * attention placed on the units computes with 16-bit BF16 operands (weights, activations, the KV
 * cache), as CENT runs its models, each 32-byte column's 16 products summed in fp32 and accumulated
 * into the bank's accumulator in fp32, the host adding the K chunks' partial sums (the GEMV of
 * kernels.ts) and running the softmax in fp32; element-wise ops on the units (CENT's mapping) take
 * and give BF16 vectors. BF16 is CENT's format (the AiM simulator's README
 * says 16-bit FP16 values); the accumulator's format is not published: fp32 is an assumption.
 */
import { evalOp, Interpreter, type OpHook } from "../../src/exec/interpreter.js";
import type { Module } from "../../src/ir/module.js";
import { f32, type Tensor } from "../../src/ir/tensor.js";
import type { WeightStore } from "../../src/ir/weights.js";
import { weightGemm } from "../../src/ir/registry.js";
import { laneCount, rowElements, type AimSystem } from "./standard.js";

const u32 = new Uint32Array(1);
const f = new Float32Array(u32.buffer);

/** fp32 rounded to BF16 (round to nearest even), as fp32. */
export function bf16(x: number): number {
  f[0] = x;
  const u = u32[0]!;
  if ((u & 0x7f800000) === 0x7f800000) return x; // inf, NaN
  u32[0] = (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000;
  return f[0]!;
}

const rounded = (t: Tensor): Float32Array => {
  const d = t.data as Float32Array;
  const out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = bf16(d[i]!);
  return out;
};

/** One dot product of length k as the units compute it: bursts of `lanes`, rows of `row` values. */
function dot(
  x: Float32Array,
  xo: number,
  w: Float32Array,
  wo: number,
  k: number,
  lanes: number,
  row: number,
  xs = 1,
  ws = 1,
): number {
  let total = 0;
  for (let c = 0; c < k; c += row) {
    let acc = 0;
    for (let b = c; b < Math.min(k, c + row); b += lanes) {
      let burst = 0;
      for (let i = b; i < Math.min(k, b + lanes); i++)
        burst = Math.fround(burst + x[xo + i * xs]! * w[wo + i * ws]!);
      acc = Math.fround(acc + burst);
    }
    total = Math.fround(total + acc);
  }
  return total;
}

/** The functional runner: the reference interpreter with the units' arithmetic for ops on them. */
export function aimRunner(module: Module, weights: WeightStore, sys: AimSystem): Interpreter {
  const lanes = laneCount(sys);
  const row = rowElements(sys);
  const hook: OpHook = (op, ins, env) => {
    if (op.attrs.device !== "pim") return undefined;
    if (op.opcode === "linear" && weightGemm(op)) {
      const [x, w, b] = ins as [Tensor, Tensor, Tensor | undefined];
      const [n, k] = w.shape as [number, number];
      const xr = rounded(x);
      const wr = rounded(w);
      const rows = xr.length / k;
      const y = new Float32Array(rows * n);
      const bias = b?.data as Float32Array | undefined;
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < n; o++) {
          const v = dot(xr, r * k, wr, o * k, k, lanes, row);
          y[r * n + o] = bias ? Math.fround(v + bias[o]!) : v;
        }
      return [f32([...x.shape.slice(0, -1), n], y)];
    }
    if (op.opcode === "attention") return attention(op.attrs, ins as Tensor[], lanes, row);
    // Element-wise work on the units (CENT's mapping, vectors.ts): BF16 vectors in the banks, the
    // units' products rounded to BF16 (the near-memory units' scalar work in fp32 between).
    const bf = (t: Tensor): Tensor => (t.dtype === "f32" ? f32(t.shape, rounded(t)) : t);
    return evalOp(op.opcode, op.attrs, ins.map(bf), env).map(bf);
  };
  return new Interpreter(module, weights, hook);
}

/** Attention with BF16 q, K, V: scores and context as the units' GEMVs, the masked softmax in fp32. */
function attention(
  attrs: Readonly<Record<string, unknown>>,
  ins: Tensor[],
  lanes: number,
  row: number,
): Tensor[] {
  const [q, k, v] = ins as [Tensor, Tensor, Tensor];
  const [b, h, s, d] = q.shape as [number, number, number, number];
  const [, kvh, t] = k.shape as [number, number, number];
  const dv = v.shape[3]!;
  const rep = h / kvh;
  const qr = rounded(q);
  const kr = rounded(k);
  const vr = rounded(v);
  const scale = Number(attrs.scale);
  const causal = attrs.causal === true;
  const window = Number(attrs.window ?? 0);
  const out = new Float32Array(b * h * s * dv);
  const p = new Float32Array(t);
  for (let bi = 0; bi < b; bi++)
    for (let hi = 0; hi < h; hi++) {
      const g = bi * kvh + Math.floor(hi / rep);
      for (let si = 0; si < s; si++) {
        // The query's position: the last s of the t cached tokens.
        const pos = t - s + si;
        let max = -Infinity;
        for (let ti = 0; ti < t; ti++) {
          const masked = (causal && ti > pos) || (window > 0 && ti <= pos - window);
          p[ti] = masked
            ? -Infinity
            : Math.fround(dot(qr, ((bi * h + hi) * s + si) * d, kr, (g * t + ti) * d, d, lanes, row) * scale);
          if (p[ti]! > max) max = p[ti]!;
        }
        let sum = 0;
        for (let ti = 0; ti < t; ti++) {
          p[ti] = p[ti] === -Infinity ? 0 : Math.fround(Math.exp(p[ti]! - max));
          sum += p[ti]!;
        }
        for (let ti = 0; ti < t; ti++) p[ti] = bf16(p[ti]! / sum);
        for (let di = 0; di < dv; di++)
          out[((bi * h + hi) * s + si) * dv + di] = dot(p, 0, vr, g * t * dv + di, t, lanes, row, 1, dv);
      }
    }
  return [f32([b, h, s, dv], out)];
}
