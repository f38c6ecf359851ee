/**
 * OPT: learned positions with an offset of 2, LayerNorm before (or, for OPT-350m, after) each
 * sub-block, ReLU MLP, optional project_in/project_out when the embedding width differs, tied LM head.
 */
import type { Val } from "../../ir/builder.js";
import type { ModelConfig } from "../config.js";
import { activation, norm, proj, selfAttention } from "./blocks.js";
import type { DecoderCtx, DecoderGraph } from "./decoder.js";

export function optGraph(cfg: ModelConfig): DecoderGraph {
  return (ctx: DecoderCtx): Val => {
    const { f } = ctx;
    const d = cfg.hidden;
    const e = cfg.embed_dim ?? d;
    const pre = "model.decoder";
    const wte = ctx.weight(`${pre}.embed_tokens.weight`, [cfg.vocab, e]);
    let x = f.op1("embedding", [ctx.tokens, wte], {}, { name: "embed" });
    if (e !== d) x = proj(ctx, x, `${pre}.project_in`, d, false, "project_in");
    const wpe = ctx.weight(`${pre}.embed_positions.weight`, [cfg.max_positions + cfg.position_offset, d]);
    const pos = f.op1("embedding", [ctx.positions(cfg.position_offset), wpe], {}, { name: "pos_embed" });
    x = f.op1("add", [x, pos], {}, { name: "embed_sum" });
    const qkvDim = cfg.heads * cfg.head_dim;
    for (let i = 0; i < cfg.layers; i++) {
      const p = `${pre}.layers.${i}`;
      const t = `L${i}`;
      const h = cfg.pre_norm ? norm(ctx, x, cfg, `${p}.self_attn_layer_norm`, `${t}.attn_norm`) : x;
      const a = selfAttention(ctx, {
        q: proj(ctx, h, `${p}.self_attn.q_proj`, qkvDim, cfg.qkv_bias, `${t}.q`),
        k: proj(ctx, h, `${p}.self_attn.k_proj`, qkvDim, cfg.qkv_bias, `${t}.k`),
        v: proj(ctx, h, `${p}.self_attn.v_proj`, qkvDim, cfg.qkv_bias, `${t}.v`),
        heads: cfg.heads,
        kvHeads: cfg.kv_heads,
        headDim: cfg.head_dim,
        scale: cfg.attn_scale ?? 1 / Math.sqrt(cfg.head_dim),
        window: 0,
        slot: String(i),
        tag: t,
      });
      const o = proj(ctx, a, `${p}.self_attn.out_proj`, d, cfg.o_bias, `${t}.o`);
      x = f.op1("add", [x, o], {}, { name: `${t}.resid_attn` });
      if (!cfg.pre_norm) x = norm(ctx, x, cfg, `${p}.self_attn_layer_norm`, `${t}.attn_norm`);
      const h2 = cfg.pre_norm ? norm(ctx, x, cfg, `${p}.final_layer_norm`, `${t}.mlp_norm`) : x;
      const up = proj(ctx, h2, `${p}.fc1`, cfg.ffn, cfg.mlp_bias, `${t}.fc1`);
      const m = proj(ctx, activation(ctx, up, cfg.act, `${t}.act`), `${p}.fc2`, d, cfg.mlp_bias, `${t}.fc2`);
      x = f.op1("add", [x, m], {}, { name: `${t}.resid_mlp` });
      if (!cfg.pre_norm) x = norm(ctx, x, cfg, `${p}.final_layer_norm`, `${t}.mlp_norm`);
    }
    if (cfg.final_norm) x = norm(ctx, x, cfg, `${pre}.final_layer_norm`, "final_norm");
    if (e !== d) x = proj(ctx, x, `${pre}.project_out`, e, false, "project_out");
    const head = cfg.tie_embeddings ? wte : ctx.weight("lm_head.weight", [cfg.vocab, e]);
    return f.op1("linear", [x, head], {}, { name: "logits" });
  };
}
