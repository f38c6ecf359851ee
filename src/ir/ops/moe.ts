/** Mixture-of-experts feed-forward (Mixtral): router, top-k selection, gated expert MLPs. */
import { z } from "zod";
import { dimEval } from "../dim.js";
import { registerOp } from "../registry.js";
import {
  fdata,
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

const ACTS = { silu: (x: number) => x / (1 + Math.exp(-x)), relu: (x: number) => (x > 0 ? x : 0) } as const;

const moeAttrs = z.strictObject({
  top_k: z.number().int().positive(),
  act: z.enum(["silu", "relu"]).default("silu"),
  /** Renormalise the selected routing weights to sum to 1 (Mixtral: softmax over the selected logits). */
  norm_topk: z.boolean().default(true),
});

registerOp({
  name: "moe",
  summary:
    "sum over the top_k experts e of w_e * down_e(act(gate_e x) * up_e x), w = softmax(router x) restricted to the top_k",
  operands: ["x", "router", "w_gate", "w_up", "w_down"],
  attrs: moeAttrs,
  infer([x, router, wg, wu, wd], { top_k }) {
    needFloat(x!, "x");
    needRank(router!, 2, "router");
    needRank(wg!, 3, "w_gate");
    needRank(wu!, 3, "w_up");
    needRank(wd!, 3, "w_down");
    const d = lastDim(x!);
    const e = router!.shape[0]!;
    needDimEq(router!.shape[1]!, d, `router ${show(router!)} does not match x ${show(x!)}`);
    for (const [w, n] of [
      [wg, "w_gate"],
      [wu, "w_up"],
    ] as const) {
      needDimEq(
        w!.shape[0]!,
        e,
        `${n} ${show(w!)} has a different expert count than router ${show(router!)}`,
      );
      needDimEq(w!.shape[2]!, d, `${n} ${show(w!)} does not match x ${show(x!)}`);
    }
    needDimEq(wu!.shape[1]!, wg!.shape[1]!, `w_up ${show(wu!)} and w_gate ${show(wg!)} differ`);
    needDimEq(wd!.shape[0]!, e, `w_down ${show(wd!)} has a different expert count than router`);
    needDimEq(wd!.shape[1]!, d, `w_down ${show(wd!)} does not produce x's width`);
    needDimEq(wd!.shape[2]!, wg!.shape[1]!, `w_down ${show(wd!)} does not match w_gate ${show(wg!)}`);
    need(typeof e !== "number" || top_k <= e, `top_k ${top_k} exceeds the ${e} experts`);
    return [x!];
  },
  cost([x, router, wg, wu, wd], outs, { top_k }, env) {
    const d = dimEval(lastDim(x!), env);
    const e = dimEval(router!.shape[0]!, env);
    const f = dimEval(wg!.shape[1]!, env);
    const tokens = nelem(x!, env) / d;
    // Expected number of distinct experts touched by `tokens` tokens with uniform routing.
    const touched = e * (1 - Math.pow(1 - top_k / e, tokens));
    const perExpert = (sumBytes([wg!, wu!, wd!], env) / e) * touched;
    return {
      flops: tokens * (2 * e * d + top_k * (6 * d * f + 2 * f + d)),
      bytes: sumBytes([x!, router!], env) + perExpert + sumBytes(outs, env),
    };
  },
  eval([x, router, wg, wu, wd], { top_k, act, norm_topk }, { outTypes }) {
    const out = outF32(outTypes[0]!);
    const [e, d] = router!.shape as [number, number];
    const f = wg!.shape[1]!;
    const xs = fdata(x!);
    const rs = fdata(router!);
    const gs = fdata(wg!);
    const us = fdata(wu!);
    const ds = fdata(wd!);
    const o = fdata(out);
    const g = ACTS[act];
    const logits = new Float64Array(e);
    const h = new Float64Array(f);
    for (let r = 0; r < xs.length; r += d) {
      for (let ei = 0; ei < e; ei++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += xs[r + i]! * rs[ei * d + i]!;
        logits[ei] = Math.fround(s);
      }
      const m = Math.max(...logits);
      let z = 0;
      const p = Array.from(logits, (l) => Math.exp(l - m));
      for (const v of p) z += v;
      // Stable order: higher probability first, lower expert index on ties (torch.topk on CPU).
      const chosen = p
        .map((v, i) => ({ v: v / z, i }))
        .sort((a, b) => b.v - a.v || a.i - b.i)
        .slice(0, top_k);
      const norm = norm_topk ? chosen.reduce((s, c) => s + c.v, 0) : 1;
      for (const { v, i: ei } of chosen) {
        const w = v / norm;
        for (let j = 0; j < f; j++) {
          let a = 0;
          let b = 0;
          const off = (ei * f + j) * d;
          for (let i = 0; i < d; i++) {
            a += xs[r + i]! * gs[off + i]!;
            b += xs[r + i]! * us[off + i]!;
          }
          h[j] = g(Math.fround(a)) * Math.fround(b);
        }
        for (let i = 0; i < d; i++) {
          let s = 0;
          const off = (ei * d + i) * f;
          for (let j = 0; j < f; j++) s += h[j]! * ds[off + j]!;
          o[r + i] = o[r + i]! + w * s;
        }
      }
    }
    return [out];
  },
});
