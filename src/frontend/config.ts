/**
 * The normalised description of a decoder model that family builders consume. Both front ends produce
 * it: HF `config.json` import (src/frontend/hf/config.ts) and `model` blocks of the description
 * language (src/frontend/dsl/).
 */
import { z } from "zod";
import { MODEL_LIMITS } from "../limits.js";

export const FAMILIES = ["llama", "mistral", "qwen2", "mixtral", "gpt2", "opt"] as const;
export type Family = (typeof FAMILIES)[number];

export const ACTIVATIONS = ["silu", "gelu", "gelu_tanh", "relu"] as const;
export type Activation = (typeof ACTIVATIONS)[number];

export const zRope = z.strictObject({
  theta: z.number().positive(),
  scaling: z.enum(["none", "linear", "llama3"]).default("none"),
  factor: z.number().positive().default(1),
  low_freq_factor: z.number().positive().default(1),
  high_freq_factor: z.number().positive().default(4),
  original_max_position: z.number().int().positive().default(8192),
  /** Features per head that rotate; default the whole head. */
  rotary_dim: z.number().int().positive().optional(),
});
export type RopeConfig = z.infer<typeof zRope>;

/** Plain rotary embedding with base `theta` (every other field at its default). */
export const defaultRope = (theta: number): RopeConfig => zRope.parse({ theta });

const posInt = z.number().int().positive();

/** A positive integer at most `max` (a cap of src/limits.ts); the message gives the value. */
export const cappedInt = (max: number) =>
  posInt.max(max, { error: (i) => `must be at most ${max} (pimc's limit), got ${String(i.input)}` });

const L = MODEL_LIMITS;

/** Parameters of a config, counted loosely (embeddings, attention, MLP per expert) to bound it. */
export function roughParameters(c: {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kv_heads: number;
  head_dim: number;
  ffn: number;
  experts?: number | undefined;
}): number {
  const attn = c.hidden * c.head_dim * (2 * c.heads + 2 * c.kv_heads);
  const mlp = 3 * c.hidden * c.ffn * (c.experts ?? 1);
  return 2 * c.vocab * c.hidden + c.layers * (attn + mlp);
}

export const zModelConfig = z
  .strictObject({
    family: z.enum(FAMILIES),
    vocab: cappedInt(L.vocab),
    hidden: cappedInt(L.hidden),
    layers: cappedInt(L.layers),
    heads: cappedInt(L.heads),
    kv_heads: cappedInt(L.kv_heads),
    head_dim: cappedInt(L.head_dim),
    ffn: cappedInt(L.ffn),
    max_positions: cappedInt(L.max_positions),
    norm: z.enum(["rms", "layer"]),
    norm_eps: z.number().positive(),
    act: z.enum(ACTIVATIONS),
    /** Rotary embedding (llama-like families); absent for learned positions (gpt2, opt). */
    rope: zRope.optional(),
    tie_embeddings: z.boolean(),
    qkv_bias: z.boolean(),
    o_bias: z.boolean(),
    mlp_bias: z.boolean(),
    /** Per-layer sliding window (0 = full attention); absent = full attention everywhere. */
    windows: z.array(z.number().int().nonnegative()).optional(),
    experts: cappedInt(L.experts).optional(),
    top_k: cappedInt(L.top_k).optional(),
    /** Element type of weights and activations. */
    dtype: z.enum(["f32", "f16", "bf16"]),
    /** Multiplier of q k^T; default head_dim^-0.5. */
    attn_scale: z.number().positive().optional(),
    /** GPT-2: also divide attention scores by (layer index + 1). */
    scale_attn_by_inverse_layer_idx: z.boolean().default(false),
    /** OPT: offset added to position ids before the learned position embedding. */
    position_offset: z.number().int().nonnegative().default(0),
    /** OPT-350m style: embedding width differs from hidden (project_in / project_out). */
    embed_dim: cappedInt(L.embed_dim).optional(),
    /** false = post-LayerNorm blocks (OPT-350m). */
    pre_norm: z.boolean().default(true),
    /** Final norm before the LM head. */
    final_norm: z.boolean().default(true),
    /** Weight precision to compile with (the --weights flag overrides it). */
    precision: z.enum(["f32", "int8", "int4", "int2"]).optional(),
    /** Weights per scale of int4 / int2 (--group-size overrides it). */
    group_size: cappedInt(L.group_size).optional(),
    /** Per-layer precision: [op name pattern (`*` any text), precision]; first match wins over `precision`. */
    layer_precision: z.array(z.tuple([z.string(), z.enum(["f32", "int8", "int4", "int2"])])).optional(),
  })
  .superRefine((c, ctx) => {
    const bad = (path: string, message: string): void => {
      ctx.addIssue({ code: "custom", path: [path], message });
    };
    const params = roughParameters(c);
    if (params > L.parameters)
      bad(
        "layers",
        `the model has about ${params.toExponential(2)} parameters, more than pimc's limit of ${L.parameters.toExponential(2)}`,
      );
    if (c.heads % c.kv_heads !== 0)
      bad("kv_heads", `heads (${c.heads}) must be a multiple of kv_heads (${c.kv_heads})`);
    if ((c.experts === undefined) !== (c.top_k === undefined)) bad("top_k", "experts and top_k go together");
    if (c.experts !== undefined && c.top_k !== undefined && c.top_k > c.experts)
      bad("top_k", `top_k (${c.top_k}) exceeds experts (${c.experts})`);
    if (c.windows && c.windows.length !== c.layers) bad("windows", `needs one entry per layer (${c.layers})`);
    if (c.rope?.rotary_dim !== undefined && (c.rope.rotary_dim > c.head_dim || c.rope.rotary_dim % 2 !== 0))
      bad("rope.rotary_dim", `must be even and at most head_dim (${c.head_dim})`);
    if (
      c.rope === undefined &&
      (c.family === "llama" || c.family === "mistral" || c.family === "qwen2" || c.family === "mixtral")
    )
      bad("rope", `family ${c.family} needs rotary embedding parameters`);
  });

export type ModelConfig = z.infer<typeof zModelConfig>;
export type ModelConfigInput = z.input<typeof zModelConfig>;

/** Defaults of each family, applied under the values a user or config.json gives. */
export function familyDefaults(family: Family): Partial<ModelConfigInput> {
  switch (family) {
    case "llama":
    case "mistral":
    case "qwen2":
    case "mixtral":
      return {
        norm: "rms",
        norm_eps: family === "qwen2" ? 1e-6 : 1e-5,
        act: "silu",
        tie_embeddings: family === "qwen2",
        qkv_bias: family === "qwen2",
        o_bias: false,
        mlp_bias: false,
        rope: {
          theta:
            family === "llama" ? 10000 : family === "qwen2" ? 1000000 : family === "mixtral" ? 1e6 : 10000,
        } as RopeConfig,
        max_positions: family === "llama" ? 4096 : 32768,
        dtype: "f16",
      };
    case "gpt2":
      return {
        norm: "layer",
        norm_eps: 1e-5,
        act: "gelu_tanh",
        tie_embeddings: true,
        qkv_bias: true,
        o_bias: true,
        mlp_bias: true,
        max_positions: 1024,
        dtype: "f16",
      };
    case "opt":
      return {
        norm: "layer",
        norm_eps: 1e-5,
        act: "relu",
        tie_embeddings: true,
        qkv_bias: true,
        o_bias: true,
        mlp_bias: true,
        max_positions: 2048,
        position_offset: 2,
        dtype: "f16",
      };
  }
}
