/**
 * Llama-style decoders: Llama, Mistral, Qwen2 and Mixtral (RMSNorm, rotary embedding, GQA, SwiGLU or
 * top-k mixture of experts). Weight names follow HF `*ForCausalLM` checkpoints.
 */
import type { Val } from "../../ir/builder.js";
import type { ModelConfig } from "../config.js";
import { activation, norm, proj, selfAttention } from "./blocks.js";
import type { DecoderCtx, DecoderGraph } from "./decoder.js";

/** Names of the stacked expert weights of layer i ([experts, ...]), assembled by the HF loader. */
export const moeNames = (i: number) => {
  const p = `model.layers.${i}.block_sparse_moe`;
  return {
    router: `${p}.gate.weight`,
    gate: `${p}.experts.gate`,
    up: `${p}.experts.up`,
    down: `${p}.experts.down`,
  };
};

export function llamaGraph(cfg: ModelConfig): DecoderGraph {
  return (ctx: DecoderCtx): Val => {
    const { f } = ctx;
    const embed = ctx.weight("model.embed_tokens.weight", [cfg.vocab, cfg.hidden]);
    let x = f.op1("embedding", [ctx.tokens, embed], {}, { name: "embed" });
    const qDim = cfg.heads * cfg.head_dim;
    const kvDim = cfg.kv_heads * cfg.head_dim;
    for (let i = 0; i < cfg.layers; i++) {
      const p = `model.layers.${i}`;
      const t = `L${i}`;
      const h = norm(ctx, x, cfg, `${p}.input_layernorm`, `${t}.attn_norm`);
      const a = selfAttention(ctx, {
        q: proj(ctx, h, `${p}.self_attn.q_proj`, qDim, cfg.qkv_bias, `${t}.q`),
        k: proj(ctx, h, `${p}.self_attn.k_proj`, kvDim, cfg.qkv_bias, `${t}.k`),
        v: proj(ctx, h, `${p}.self_attn.v_proj`, kvDim, cfg.qkv_bias, `${t}.v`),
        heads: cfg.heads,
        kvHeads: cfg.kv_heads,
        headDim: cfg.head_dim,
        rope: cfg.rope,
        scale: cfg.attn_scale ?? 1 / Math.sqrt(cfg.head_dim),
        window: cfg.windows?.[i] ?? 0,
        slot: String(i),
        tag: t,
      });
      const o = proj(ctx, a, `${p}.self_attn.o_proj`, cfg.hidden, cfg.o_bias, `${t}.o`);
      x = f.op1("add", [x, o], {}, { name: `${t}.resid_attn` });
      const h2 = norm(ctx, x, cfg, `${p}.post_attention_layernorm`, `${t}.mlp_norm`);
      let m: Val;
      if (cfg.experts !== undefined) {
        const n = moeNames(i);
        const e = cfg.experts;
        m = f.op1(
          "moe",
          [
            h2,
            ctx.weight(n.router, [e, cfg.hidden]),
            ctx.weight(n.gate, [e, cfg.ffn, cfg.hidden]),
            ctx.weight(n.up, [e, cfg.ffn, cfg.hidden]),
            ctx.weight(n.down, [e, cfg.hidden, cfg.ffn]),
          ],
          { top_k: cfg.top_k!, act: cfg.act === "relu" ? "relu" : "silu", norm_topk: true },
          { name: `${t}.moe` },
        );
      } else {
        const g = proj(ctx, h2, `${p}.mlp.gate_proj`, cfg.ffn, cfg.mlp_bias, `${t}.gate`);
        const u = proj(ctx, h2, `${p}.mlp.up_proj`, cfg.ffn, cfg.mlp_bias, `${t}.up`);
        const gu = f.op1("mul", [activation(ctx, g, cfg.act, `${t}.act`), u], {}, { name: `${t}.gated` });
        m = proj(ctx, gu, `${p}.mlp.down_proj`, cfg.hidden, cfg.mlp_bias, `${t}.down`);
      }
      x = f.op1("add", [x, m], {}, { name: `${t}.resid_mlp` });
    }
    const xn = norm(ctx, x, cfg, "model.norm", "final_norm");
    const head = cfg.tie_embeddings ? embed : ctx.weight("lm_head.weight", [cfg.vocab, cfg.hidden]);
    return f.op1("linear", [xn, head], {}, { name: "logits" });
  };
}
