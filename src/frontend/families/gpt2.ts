/**
 * GPT-2: learned positions, pre-LayerNorm blocks, fused c_attn, Conv1D weights stored [in, out]
 * (transposed here; the layout pass folds the transposes at build time), tied LM head.
 */
import type { Val } from "../../ir/builder.js";
import type { ModelConfig } from "../config.js";
import { activation, norm, selfAttention } from "./blocks.js";
import type { DecoderCtx, DecoderGraph } from "./decoder.js";

/** A Conv1D layer: y = x W + b with W stored [in, out]. */
function conv1d(ctx: DecoderCtx, x: Val, prefix: string, out: number, bias: boolean, name: string): Val {
  const inDim = x.type.shape[x.type.shape.length - 1]!;
  const w = ctx.weight(`${prefix}.weight`, [inDim, out]);
  const wt = ctx.f.op1("transpose", [w], { perm: [1, 0] }, { name: `${name}_wT` });
  const ops = bias ? [x, wt, ctx.weight(`${prefix}.bias`, [out])] : [x, wt];
  return ctx.f.op1("linear", ops, {}, { name });
}

export function gpt2Graph(cfg: ModelConfig): DecoderGraph {
  return (ctx: DecoderCtx): Val => {
    const { f } = ctx;
    const d = cfg.hidden;
    const wte = ctx.weight("transformer.wte.weight", [cfg.vocab, d]);
    const wpe = ctx.weight("transformer.wpe.weight", [cfg.max_positions, d]);
    const tok = f.op1("embedding", [ctx.tokens, wte], {}, { name: "embed" });
    const pos = f.op1("embedding", [ctx.positions(cfg.position_offset), wpe], {}, { name: "pos_embed" });
    let x = f.op1("add", [tok, pos], {}, { name: "embed_sum" });
    for (let i = 0; i < cfg.layers; i++) {
      const p = `transformer.h.${i}`;
      const t = `L${i}`;
      const h = norm(ctx, x, cfg, `${p}.ln_1`, `${t}.ln_1`);
      const qkv = conv1d(ctx, h, `${p}.attn.c_attn`, 3 * d, cfg.qkv_bias, `${t}.qkv`);
      const [q, k, v] = f.op(`split`, [qkv], { axis: -1, sizes: [d, d, d] }, { name: `${t}.qkv` });
      let scale = cfg.attn_scale ?? 1 / Math.sqrt(cfg.head_dim);
      if (cfg.scale_attn_by_inverse_layer_idx) scale /= i + 1;
      const a = selfAttention(ctx, {
        q: q!,
        k: k!,
        v: v!,
        heads: cfg.heads,
        kvHeads: cfg.kv_heads,
        headDim: cfg.head_dim,
        scale,
        window: 0,
        slot: String(i),
        tag: t,
      });
      const o = conv1d(ctx, a, `${p}.attn.c_proj`, d, cfg.o_bias, `${t}.o`);
      x = f.op1("add", [x, o], {}, { name: `${t}.resid_attn` });
      const h2 = norm(ctx, x, cfg, `${p}.ln_2`, `${t}.ln_2`);
      const up = conv1d(ctx, h2, `${p}.mlp.c_fc`, cfg.ffn, cfg.mlp_bias, `${t}.fc`);
      const m = conv1d(
        ctx,
        activation(ctx, up, cfg.act, `${t}.act`),
        `${p}.mlp.c_proj`,
        d,
        cfg.mlp_bias,
        `${t}.down`,
      );
      x = f.op1("add", [x, m], {}, { name: `${t}.resid_mlp` });
    }
    const xn = norm(ctx, x, cfg, "transformer.ln_f", "final_norm");
    return f.op1("linear", [xn, wte], {}, { name: "logits" });
  };
}
