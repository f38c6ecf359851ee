/** Building blocks shared by the family builders: projections, norms, activations, self-attention. */
import type { Loc } from "../../errors.js";
import type { Val } from "../../ir/builder.js";
import { dimMul, type Dim } from "../../ir/dim.js";
import type { Attrs } from "../../ir/module.js";
import type { Activation, ModelConfig, RopeConfig } from "../config.js";
import type { DecoderCtx } from "./decoder.js";

/** Last dimension of a value. */
export const width = (v: Val): Dim => v.type.shape[v.type.shape.length - 1]!;

/** `linear(x, <prefix>.weight [out, in], <prefix>.bias?)`. */
export function proj(ctx: DecoderCtx, x: Val, prefix: string, out: Dim, bias: boolean, name: string): Val {
  const w = ctx.weight(`${prefix}.weight`, [out, width(x)]);
  const ops = bias ? [x, w, ctx.weight(`${prefix}.bias`, [out])] : [x, w];
  return ctx.f.op1("linear", ops, {}, { name });
}

export function norm(ctx: DecoderCtx, x: Val, cfg: ModelConfig, prefix: string, name: string): Val {
  const d = width(x);
  if (cfg.norm === "rms")
    return ctx.f.op1("rms_norm", [x, ctx.weight(`${prefix}.weight`, [d])], { eps: cfg.norm_eps }, { name });
  const w = ctx.weight(`${prefix}.weight`, [d]);
  const b = ctx.weight(`${prefix}.bias`, [d]);
  return ctx.f.op1("layer_norm", [x, w, b], { eps: cfg.norm_eps }, { name });
}

export function activation(ctx: DecoderCtx, x: Val, act: Activation, name: string): Val {
  switch (act) {
    case "silu":
      return ctx.f.op1("silu", [x], {}, { name });
    case "relu":
      return ctx.f.op1("relu", [x], {}, { name });
    case "gelu":
      return ctx.f.op1("gelu", [x], { approx: "none" }, { name });
    case "gelu_tanh":
      return ctx.f.op1("gelu", [x], { approx: "tanh" }, { name });
  }
}

export function ropeAttrs(r: RopeConfig): Record<string, number | string | boolean> {
  const a: Record<string, number | string | boolean> = { theta: r.theta, scaling: r.scaling };
  if (r.rotary_dim !== undefined) a.rotary_dim = r.rotary_dim;
  if (r.scaling !== "none") a.factor = r.factor;
  if (r.scaling === "llama3") {
    a.low_freq_factor = r.low_freq_factor;
    a.high_freq_factor = r.high_freq_factor;
    a.original_max_position = r.original_max_position;
  }
  return a;
}

export interface SelfAttentionSpec {
  /** Query, key and value projections [B, S, heads * head_dim] (before rotary embedding). */
  readonly q: Val;
  readonly k: Val;
  readonly v: Val;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly rope?: RopeConfig | undefined;
  readonly scale: number;
  /** Sliding window, 0 = full. */
  readonly window: number;
  /** Cache slot name and prefix of result names, e.g. "0" and "L0". */
  readonly slot: string;
  readonly tag: string;
  /** Rotary pairs (2i, 2i+1) instead of (i, i + d/2). */
  readonly interleaved?: boolean;
  /** Source location given to every op (custom graphs). */
  readonly loc?: Loc | undefined;
}

/**
 * Multi-head (grouped-query) self-attention over the KV cache; returns the heads concatenated,
 * [B, S, heads * head_dim], before the output projection.
 */
export function selfAttention(ctx: DecoderCtx, a: SelfAttentionSpec): Val {
  const { B, S } = ctx;
  const t = a.tag;
  const loc = a.loc ? { loc: a.loc } : {};
  const f = {
    op1: (op: string, ins: Val[], attrs: Attrs, o: { name: string }): Val =>
      ctx.f.op1(op, ins, attrs, { ...o, ...loc }),
  };
  const heads = (x: Val, h: number, name: string): Val =>
    f.op1("reshape", [x], { shape: [B, S, h, a.headDim] }, { name });
  let q = heads(a.q, a.heads, `${t}.q_heads`);
  let k = heads(a.k, a.kvHeads, `${t}.k_heads`);
  const v = heads(a.v, a.kvHeads, `${t}.v_heads`);
  if (a.rope) {
    const pos = ctx.positions(0, a.loc);
    const ra = { ...ropeAttrs(a.rope), ...(a.interleaved ? { interleaved: true } : {}) };
    q = f.op1("rope", [q, pos], ra, { name: `${t}.q_rot` });
    k = f.op1("rope", [k, pos], ra, { name: `${t}.k_rot` });
  }
  const bhsd = { perm: [0, 2, 1, 3] };
  const qt = f.op1("transpose", [q], bhsd, { name: `${t}.q_t` });
  const kAll = ctx.cache(`${a.slot}.k`, f.op1("transpose", [k], bhsd, { name: `${t}.k_t` }), a.loc);
  const vAll = ctx.cache(`${a.slot}.v`, f.op1("transpose", [v], bhsd, { name: `${t}.v_t` }), a.loc);
  const o = f.op1(
    "attention",
    [qt, kAll, vAll],
    { scale: a.scale, causal: true, window: a.window },
    { name: `${t}.attn` },
  );
  const ot = f.op1("transpose", [o], bhsd, { name: `${t}.attn_t` });
  return f.op1("reshape", [ot], { shape: [B, S, dimMul(a.heads, a.headDim)] }, { name: `${t}.attn_out` });
}
