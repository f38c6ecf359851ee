/** Attention ops: rotary embedding, scaled-dot-product attention over the KV cache, and cache append. */
import { z } from "zod";
import { zDim } from "../attrs.js";
import { dimAdd, dimEq, dimEval, type Dim } from "../dim.js";
import { registerOp } from "../registry.js";
import { tensor } from "../types.js";
import { concatTensors } from "./shape.js";
import {
  fdata,
  idata,
  need,
  needDimEq,
  needFloat,
  needRank,
  nelem,
  outF32,
  show,
  showDim,
  sumBytes,
} from "./util.js";

const ropeAttrs = z.strictObject({
  theta: z.number().positive(),
  /** Leading features of each head that rotate (partial rotary); default all. */
  rotary_dim: z.number().int().positive().optional(),
  /** Pairs (2i, 2i+1) rotate (GPT-J) instead of (i, i + d/2) (Llama / NeoX, HF rotate_half). */
  interleaved: z.boolean().default(false),
  /** Frequency scaling (HF rope_type); factor for linear and llama3, the rest for llama3 only. */
  scaling: z.enum(["none", "linear", "llama3"]).default("none"),
  factor: z.number().positive().optional(),
  low_freq_factor: z.number().positive().optional(),
  high_freq_factor: z.number().positive().optional(),
  original_max_position: z.number().int().positive().optional(),
});
type RopeAttrs = z.input<typeof ropeAttrs>;

/** Inverse frequencies of the rotary embedding, HF `rope_init_fn` semantics. */
export function ropeInvFreq(a: RopeAttrs, rd: number): Float64Array {
  const inv = new Float64Array(rd / 2);
  for (let i = 0; i < rd / 2; i++) inv[i] = 1 / Math.pow(a.theta, (2 * i) / rd);
  const factor = a.factor ?? 1;
  if (a.scaling === "linear") for (let i = 0; i < inv.length; i++) inv[i]! /= factor;
  if (a.scaling === "llama3") {
    const [orig, low, high] = [
      a.original_max_position ?? 8192,
      a.low_freq_factor ?? 1,
      a.high_freq_factor ?? 4,
    ];
    for (let i = 0; i < inv.length; i++) {
      const f = inv[i]!;
      const wave = (2 * Math.PI) / f;
      if (wave > orig / low) inv[i] = f / factor;
      else if (wave >= orig / high) {
        const smooth = (orig / wave - low) / (high - low);
        inv[i] = (1 - smooth) * (f / factor) + smooth * f;
      }
    }
  }
  return inv;
}

registerOp({
  name: "rope",
  summary: "rotary position embedding of x[B, S, H, D] at positions pos[S]",
  operands: ["x", "pos"],
  attrs: ropeAttrs,
  infer([x, pos], a) {
    needFloat(x!, "x");
    needRank(x!, 4, "x");
    needRank(pos!, 1, "pos");
    needDimEq(
      pos!.shape[0]!,
      x!.shape[1]!,
      `pos ${show(pos!)} does not match the sequence axis of x ${show(x!)}`,
    );
    const d = x!.shape[3]!;
    const rd = a.rotary_dim ?? (typeof d === "number" ? d : 2);
    need(
      rd % 2 === 0 && (typeof d !== "number" || rd <= d),
      `rotary_dim ${showDim(rd)} must be even and at most head dim ${showDim(d)}`,
    );
    return [x!];
  },
  cost: (ins, outs, _a, env) => ({
    flops: 3 * nelem(outs[0]!, env),
    bytes: sumBytes(ins, env) + sumBytes(outs, env),
  }),
  eval([x, pos], a, { outTypes }) {
    const out = outF32(outTypes[0]!);
    const [b, s, h, d] = x!.shape as [number, number, number, number];
    const rd = a.rotary_dim ?? d;
    const half = rd / 2;
    const inv = ropeInvFreq(a, rd);
    const xs = fdata(x!);
    const ps = idata(pos!);
    const o = fdata(out);
    o.set(xs);
    const cos = new Float32Array(half);
    const sin = new Float32Array(half);
    for (let si = 0; si < s; si++) {
      // HF computes freqs = pos * inv_freq in fp32, then cos/sin of that.
      for (let i = 0; i < half; i++) {
        const ang = Math.fround(ps[si]! * Math.fround(inv[i]!));
        cos[i] = Math.cos(ang);
        sin[i] = Math.sin(ang);
      }
      for (let bi = 0; bi < b; bi++)
        for (let hi = 0; hi < h; hi++) {
          const base = ((bi * s + si) * h + hi) * d;
          for (let i = 0; i < half; i++) {
            const [p, q] = a.interleaved ? [base + 2 * i, base + 2 * i + 1] : [base + i, base + i + half];
            const x1 = xs[p]!;
            const x2 = xs[q]!;
            o[p] = x1 * cos[i]! - x2 * sin[i]!;
            o[q] = x2 * cos[i]! + x1 * sin[i]!;
          }
        }
    }
    return [out];
  },
});

const attentionAttrs = z.strictObject({
  scale: z.number().positive(),
  causal: z.boolean().default(true),
  /** Sliding window: a query sees keys at most window-1 positions behind it; 0 = unlimited. */
  window: z.number().int().nonnegative().default(0),
});

/**
 * Number of (query, key) pairs attended, for the cost model, in closed form (a loop over the queries
 * took seconds for long prompts). Query i sees keys up to position t - s + i when causal (t - 1
 * otherwise), at most `window` of them: sum over i of min(max(0, keys_i), cap).
 */
export function attendedPairs(s: number, t: number, causal: boolean, window: number): number {
  const cap = window > 0 ? window : Infinity;
  if (!causal) return s * Math.min(Math.max(0, t), cap);
  // sum_{x=1..n} min(x, cap)
  const upTo = (n: number): number =>
    n <= 0 ? 0 : n <= cap ? (n * (n + 1)) / 2 : (cap * (cap + 1)) / 2 + (n - cap) * cap;
  // Query i sees t - s + 1 + i keys (before the window): x from t - s + 1 to t.
  return upTo(t) - upTo(t - s);
}

registerOp({
  name: "attention",
  summary:
    "softmax(q k^T * scale + mask) v; q[B, Hq, S, D], k[B, Hkv, T, D], v[B, Hkv, T, Dv], Hq a multiple of Hkv (GQA)",
  operands: ["q", "k", "v"],
  attrs: attentionAttrs,
  infer([q, k, v]) {
    for (const [t, n] of [
      [q, "q"],
      [k, "k"],
      [v, "v"],
    ] as const) {
      needFloat(t!, n);
      needRank(t!, 4, n);
    }
    needDimEq(q!.shape[0]!, k!.shape[0]!, `batch of q ${show(q!)} and k ${show(k!)} differ`);
    needDimEq(q!.shape[3]!, k!.shape[3]!, `head dim of q ${show(q!)} and k ${show(k!)} differ`);
    need(
      dimEq(k!.shape[0]!, v!.shape[0]!) &&
        dimEq(k!.shape[1]!, v!.shape[1]!) &&
        dimEq(k!.shape[2]!, v!.shape[2]!),
      `k ${show(k!)} and v ${show(v!)} differ in batch, heads or length`,
    );
    const hq = q!.shape[1]!;
    const hkv = k!.shape[1]!;
    need(
      typeof hq !== "number" || typeof hkv !== "number" || hq % hkv === 0,
      `query heads (${showDim(hq)}) must be a multiple of key/value heads (${showDim(hkv)})`,
    );
    return [tensor(q!.dtype, [q!.shape[0]!, hq, q!.shape[2]!, v!.shape[3]!])];
  },
  cost([q, k, v], outs, a, env) {
    const [b, h, s, d] = q!.shape.map((x) => dimEval(x, env)) as [number, number, number, number];
    const t = dimEval(k!.shape[2]!, env);
    const dv = dimEval(v!.shape[3]!, env);
    const pairs = b * h * attendedPairs(s, t, a.causal, a.window);
    return { flops: pairs * (2 * d + 2 * dv + 5), bytes: sumBytes([q!, k!, v!], env) + sumBytes(outs, env) };
  },
  eval([q, k, v], a, { outTypes }) {
    const out = outF32(outTypes[0]!);
    const [b, hq, s, d] = q!.shape as [number, number, number, number];
    const [, hkv, t] = k!.shape as [number, number, number, number];
    const dv = v!.shape[3]!;
    const group = hq / hkv;
    const qs = fdata(q!);
    const ks = fdata(k!);
    const vs = fdata(v!);
    const o = fdata(out);
    const scores = new Float64Array(t);
    for (let bi = 0; bi < b; bi++)
      for (let h = 0; h < hq; h++) {
        const kh = Math.floor(h / group);
        const kBase = (bi * hkv + kh) * t;
        for (let i = 0; i < s; i++) {
          const qo = ((bi * hq + h) * s + i) * d;
          const last = a.causal ? t - s + i : t - 1;
          const first = a.window > 0 ? Math.max(0, last - a.window + 1) : 0;
          let m = -Infinity;
          for (let j = first; j <= last; j++) {
            const ko = (kBase + j) * d;
            let dot = 0;
            for (let x = 0; x < d; x++) dot += qs[qo + x]! * ks[ko + x]!;
            scores[j] = Math.fround(Math.fround(dot) * a.scale);
            if (scores[j]! > m) m = scores[j]!;
          }
          let sum = 0;
          for (let j = first; j <= last; j++) {
            scores[j] = Math.exp(scores[j]! - m);
            sum += scores[j]!;
          }
          const oo = ((bi * hq + h) * s + i) * dv;
          for (let x = 0; x < dv; x++) {
            let acc = 0;
            for (let j = first; j <= last; j++) acc += scores[j]! * vs[(kBase + j) * dv + x]!;
            o[oo + x] = acc / sum;
          }
        }
      }
    return [out];
  },
});

registerOp({
  name: "kv_append",
  summary: "append x to the cache state along axis; the result is the whole cache (past + new)",
  operands: ["state", "x"],
  stateOperand: 0,
  attrs: z.strictObject({ axis: z.number().int().nonnegative(), past: zDim }),
  infer([st, x], { axis, past }) {
    need(st!.shape.length === x!.shape.length, `state ${show(st!)} and x ${show(x!)} differ in rank`);
    need(axis < st!.shape.length, `axis ${axis} out of range for state ${show(st!)}`);
    need(st!.dtype === x!.dtype, `state is ${st!.dtype} but x is ${x!.dtype}`);
    for (let i = 0; i < st!.shape.length; i++)
      if (i !== axis)
        needDimEq(st!.shape[i]!, x!.shape[i]!, `x ${show(x!)} does not fit state ${show(st!)} at axis ${i}`);
    const len: Dim = dimAdd(past, x!.shape[axis]!);
    return [
      tensor(
        x!.dtype,
        x!.shape.map((d, i) => (i === axis ? len : d)),
      ),
    ];
  },
  // The new entries are read and written once; the returned whole cache is a view of the state.
  cost: ([, x], _o, _a, env) => ({ flops: 0, bytes: 2 * sumBytes([x!], env) }),
  eval([st, x], { axis, past }, { outTypes }) {
    const have = st!.shape[axis]!;
    const want = dimEval(past, {});
    if (have !== want) throw new RangeError(`KV cache holds ${have} positions but the call expects ${want}`);
    const shape = outTypes[0]!.shape.map((d) => dimEval(d, {}));
    return [have === 0 ? x! : concatTensors([st!, x!], axis, shape)];
  },
});

registerOp({
  name: "masked_softmax",
  summary:
    "softmax over the last axis of scores[B, H, S, T] * scale with attention's causal and window masks (masked entries 0)",
  operands: ["scores"],
  attrs: attentionAttrs,
  infer([x]) {
    needFloat(x!, "scores");
    needRank(x!, 4, "scores");
    return [tensor("f32", x!.shape)];
  },
  cost: (ins, outs, _a, env) => ({
    flops: 5 * nelem(outs[0]!, env),
    bytes: sumBytes(ins, env) + sumBytes(outs, env),
  }),
  eval([x], a, { outTypes }) {
    const out = outF32(outTypes[0]!);
    const [b, h, s, t] = x!.shape as [number, number, number, number];
    const xs = fdata(x!);
    const o = fdata(out);
    const row = new Float64Array(t);
    for (let r = 0; r < b * h * s; r++) {
      const i = r % s;
      const last = a.causal ? t - s + i : t - 1;
      const first = a.window > 0 ? Math.max(0, last - a.window + 1) : 0;
      const base = r * t;
      let m = -Infinity;
      for (let j = first; j <= last; j++) {
        row[j] = Math.fround(Math.fround(xs[base + j]!) * a.scale);
        if (row[j]! > m) m = row[j]!;
      }
      let sum = 0;
      for (let j = first; j <= last; j++) {
        row[j] = Math.exp(row[j]! - m);
        sum += row[j]!;
      }
      for (let j = first; j <= last; j++) o[base + j] = row[j]! / sum;
    }
    return [out];
  },
});

registerOp({
  name: "kv_window",
  summary:
    "the newest tokens of a cache[B, H, T, D] transposed to [B, H, D, S + align], from the last multiple of align before the new x[B, H, S, D] (zeros past T)",
  operands: ["cache", "x"],
  attrs: z.strictObject({ align: z.number().int().positive() }),
  infer([c, x], { align }) {
    needFloat(c!, "cache");
    needRank(c!, 4, "cache");
    needRank(x!, 4, "x");
    for (const i of [0, 1, 3])
      needDimEq(c!.shape[i]!, x!.shape[i]!, `x ${show(x!)} does not fit cache ${show(c!)} at axis ${i}`);
    const [b, h, , d] = c!.shape;
    return [tensor("f32", [b!, h!, d!, dimAdd(x!.shape[2]!, align)])];
  },
  cost: (_ins, outs, _a, env) => ({ flops: 0, bytes: 2 * sumBytes(outs, env) }),
  eval([c, x], { align }, { outTypes }) {
    const out = outF32(outTypes[0]!);
    const [b, h, t, d] = c!.shape as [number, number, number, number];
    const s = x!.shape[2]!;
    const w = s + align;
    const first = Math.floor((t - s) / align) * align;
    const cs = fdata(c!);
    const o = fdata(out);
    for (let g = 0; g < b * h; g++)
      for (let j = 0; j < w && first + j < t; j++)
        for (let k = 0; k < d; k++) o[(g * d + k) * w + j] = cs[(g * t + first + j) * d + k]!;
    return [out];
  },
});
