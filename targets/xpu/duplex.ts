/**
 * Duplex-style co-processing: an xPU and a Logic-PIM (a processor on the HBM logic die with several
 * times the external bandwidth, made for Op/B 1 to 8) share the work of one op.
 *
 * - Mixture-of-experts layers: the tokens of a step are routed to experts (a deterministic sample
 *   of uniform top-k routing, so the per-expert token counts vary as they do in a real step); each
 *   expert's FFN runs on one device, the experts with the fewest tokens (the lowest Op/B) on the
 *   Logic-PIM and the rest on the xPU, split where the slower of the two finishes first.
 * - Attention (decode): the (sequence, head) pairs split between the devices in proportion to their
 *   speeds.
 * Both devices are timed by the xPU device model (model.ts) with their own peaks, caps and units.
 */
import { dimEval, type DimEnv } from "../../src/ir/dim.js";
import type { OpView } from "../../src/pipeline/cost-model.js";
import { mulberry32 } from "../../src/rng.js";
import { xpuSeconds, type Xpu } from "./model.js";

/** Tokens per expert for `tokens` tokens each routed to `topK` distinct experts of `experts`. */
export function expertTokens(tokens: number, experts: number, topK: number, seed = 1): number[] {
  const r = mulberry32(seed);
  const counts = new Array<number>(experts).fill(0);
  const pick = Array.from({ length: experts }, (_, i) => i);
  for (let t = 0; t < tokens; t++) {
    // A partial Fisher-Yates shuffle: topK distinct experts.
    for (let k = 0; k < topK; k++) {
      const j = k + Math.floor(r() * (experts - k));
      [pick[k], pick[j]] = [pick[j]!, pick[k]!];
      counts[pick[k]!]!++;
    }
  }
  return counts;
}

interface MoeShape {
  readonly tokens: number;
  readonly d: number;
  readonly f: number;
  readonly experts: number;
  readonly topK: number;
  readonly elem: number;
}

function moeShape(v: OpView, env: DimEnv): MoeShape {
  const [x, router, wg] = v.ins;
  const d = dimEval(x!.shape[x!.shape.length - 1]!, env);
  const tokens = x!.shape.reduce<number>((a, s) => a * dimEval(s, env), 1) / d;
  const elem = wg!.dtype === "f32" ? 4 : wg!.dtype === "i8" ? 1 : 2;
  return {
    tokens,
    d,
    f: dimEval(wg!.shape[1]!, env),
    experts: dimEval(router!.shape[0]!, env),
    topK: Number(v.op.attrs.top_k ?? 2),
    elem,
  };
}

/** One expert's FFN over n tokens as a GEMM op view (gate, up and down: 3 weights of f x d). */
function expertView(s: MoeShape, n: number): OpView {
  const flops = n * (6 * s.d * s.f + 2 * s.f);
  const bytes = 3 * s.d * s.f * s.elem + 2 * n * s.d * s.elem;
  const t = { dtype: "f16" as const, shape: [n, s.d] };
  return {
    op: { opcode: "linear", operands: [], results: [], attrs: {} },
    ins: [t, { dtype: "f16", shape: [3 * s.f, s.d] }],
    outs: [t],
    cost: { flops, bytes },
  };
}

/** An MoE layer's kernels: the router, then each expert that received tokens as a GEMM. */
export function moeParts(v: OpView, env: DimEnv, seed = 1): OpView[] {
  const s = moeShape(v, env);
  const counts = expertTokens(s.tokens, s.experts, s.topK, seed);
  const router = { ...v, cost: { flops: 2 * s.tokens * s.experts * s.d, bytes: s.experts * s.d * s.elem } };
  return [router, ...counts.filter((n) => n > 0).map((n) => expertView(s, n))];
}

/** Seconds of the router and the experts' FFNs on one device. */
export function moeSeconds(dev: Xpu, v: OpView, env: DimEnv, seed = 1): number {
  return moeParts(v, env, seed).reduce((t, part) => t + xpuSeconds(dev, part, env), 0);
}

/**
 * Seconds of an MoE layer co-processed: experts sorted by their token counts, the first ones (fewest
 * tokens) on the Logic-PIM, the others on the xPU, split where the later device finishes first; the
 * router on the xPU.
 */
export function moeCoSeconds(xpu: Xpu, pim: Xpu, v: OpView, env: DimEnv, seed = 1): number {
  const s = moeShape(v, env);
  const counts = expertTokens(s.tokens, s.experts, s.topK, seed)
    .filter((n) => n > 0)
    .sort((a, b) => a - b);
  const router = xpuSeconds(
    xpu,
    { ...v, cost: { flops: 2 * s.tokens * s.experts * s.d, bytes: s.experts * s.d * s.elem } },
    env,
  );
  const onX = counts.map((n) => xpuSeconds(xpu, expertView(s, n), env));
  const onP = counts.map((n) => xpuSeconds(pim, expertView(s, n), env));
  let best = Infinity;
  for (let split = 0; split <= counts.length; split++) {
    let tp = 0;
    let tx = 0;
    for (let i = 0; i < counts.length; i++) {
      if (i < split) tp += onP[i]!;
      else tx += onX[i]!;
    }
    best = Math.min(best, Math.max(tx, tp));
  }
  return router + best;
}

/** Seconds of an op whose work divides freely between the devices (attention's (sequence, head) pairs). */
export function splitSeconds(tx: number, tp: number): number {
  return 1 / (1 / tx + 1 / tp);
}
