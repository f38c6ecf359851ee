/**
 * HuggingFace `config.json` -> ModelConfig, validated with zod. Supports model_type llama, mistral,
 * qwen2, mixtral, gpt2 and opt, with transformers 4 (`rope_theta`, `rope_scaling`) and transformers 5
 * (`rope_parameters`) keys. Unrelated keys are ignored; wrong types or values name the field.
 */
import { parseJson } from "../../guards.js";
import { z } from "zod";
import { UserError } from "../../errors.js";
import { zodMessage } from "../../ir/attrs.js";
import { MODEL_LIMITS as L } from "../../limits.js";
import {
  cappedInt,
  defaultRope,
  FAMILIES,
  zModelConfig,
  type Activation,
  type Family,
  type ModelConfig,
  type RopeConfig,
} from "../config.js";

const int = z.number().int().positive();
const eps = z.number().positive();
const optBool = z.boolean().nullish();

const zRopeParams = z.looseObject({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  rope_theta: z.number().positive().optional(),
  factor: z.number().positive().optional(),
  low_freq_factor: z.number().positive().optional(),
  high_freq_factor: z.number().positive().optional(),
  original_max_position_embeddings: int.optional(),
  partial_rotary_factor: z.number().positive().max(1).optional(),
});

const zDtype = z.string().nullish();

const zLlama = z.looseObject({
  vocab_size: cappedInt(L.vocab),
  hidden_size: cappedInt(L.hidden),
  intermediate_size: cappedInt(L.ffn),
  num_hidden_layers: cappedInt(L.layers),
  num_attention_heads: cappedInt(L.heads),
  num_key_value_heads: cappedInt(L.kv_heads).nullish(),
  head_dim: cappedInt(L.head_dim).nullish(),
  hidden_act: z.string().default("silu"),
  max_position_embeddings: cappedInt(L.max_positions).default(4096),
  rms_norm_eps: eps.default(1e-6),
  rope_theta: z.number().positive().nullish(),
  rope_scaling: zRopeParams.nullish(),
  rope_parameters: zRopeParams.nullish(),
  partial_rotary_factor: z.number().positive().max(1).nullish(),
  attention_bias: optBool,
  mlp_bias: optBool,
  tie_word_embeddings: optBool,
  sliding_window: int.nullish(),
  use_sliding_window: optBool,
  max_window_layers: z.number().int().nonnegative().nullish(),
  layer_types: z.array(z.string()).nullish(),
  num_local_experts: cappedInt(L.experts).nullish(),
  num_experts_per_tok: cappedInt(L.top_k).nullish(),
  torch_dtype: zDtype,
  dtype: zDtype,
});

const zGpt2 = z.looseObject({
  vocab_size: cappedInt(L.vocab),
  n_embd: cappedInt(L.hidden),
  n_layer: cappedInt(L.layers),
  n_head: cappedInt(L.heads),
  n_inner: cappedInt(L.ffn).nullish(),
  n_positions: cappedInt(L.max_positions).default(1024),
  layer_norm_epsilon: eps.default(1e-5),
  activation_function: z.string().default("gelu_new"),
  scale_attn_weights: z.boolean().default(true),
  scale_attn_by_inverse_layer_idx: z.boolean().default(false),
  tie_word_embeddings: optBool,
  torch_dtype: zDtype,
  dtype: zDtype,
});

const zOpt = z.looseObject({
  vocab_size: cappedInt(L.vocab),
  hidden_size: cappedInt(L.hidden),
  num_hidden_layers: cappedInt(L.layers),
  num_attention_heads: cappedInt(L.heads),
  ffn_dim: cappedInt(L.ffn),
  max_position_embeddings: cappedInt(L.max_positions).default(2048),
  word_embed_proj_dim: cappedInt(L.embed_dim).nullish(),
  do_layer_norm_before: z.boolean().default(true),
  _remove_final_layer_norm: z.boolean().default(false),
  activation_function: z.string().default("relu"),
  enable_bias: z.boolean().default(true),
  layer_norm_elementwise_affine: z.boolean().default(true),
  tie_word_embeddings: optBool,
  torch_dtype: zDtype,
  dtype: zDtype,
});

/** HF ACT2FN names we support, mapped to ours. */
const ACTS: Record<string, Activation> = {
  silu: "silu",
  swish: "silu",
  relu: "relu",
  gelu: "gelu",
  gelu_new: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu_fast: "gelu_tanh",
};

function act(name: string, field: string, file: string): Activation {
  const a = ACTS[name];
  if (!a)
    throw new UserError(
      `${file}: field ${field}: activation "${name}" is not supported (supported: ${Object.keys(ACTS).join(", ")})`,
    );
  return a;
}

function dtypeOf(c: {
  torch_dtype?: string | null | undefined;
  dtype?: string | null | undefined;
}): "f32" | "f16" | "bf16" {
  const d = c.dtype ?? c.torch_dtype ?? "float32";
  return d === "float16" ? "f16" : d === "bfloat16" ? "bf16" : "f32";
}

function parseWith<T>(schema: z.ZodType<T>, raw: unknown, file: string): T {
  const r = schema.safeParse(raw);
  if (!r.success) throw new UserError(`${file}: ${zodMessage(r.error, "field")}`);
  return r.data;
}

function rope(c: z.infer<typeof zLlama>, headDim: number, file: string): RopeConfig {
  // transformers 5 writes rope_parameters (with rope_theta inside); 4.x writes rope_theta + rope_scaling.
  const p = c.rope_parameters ?? c.rope_scaling ?? {};
  const theta = c.rope_parameters?.rope_theta ?? c.rope_theta ?? 10000;
  const type = p.rope_type ?? p.type ?? "default";
  const partial = p.partial_rotary_factor ?? c.partial_rotary_factor ?? 1;
  const r: RopeConfig = {
    ...defaultRope(theta),
    ...(partial < 1 ? { rotary_dim: Math.floor(headDim * partial) } : {}),
  };
  const field = c.rope_parameters ? "rope_parameters.rope_type" : "rope_scaling.rope_type";
  if (type === "default") return r;
  if (p.factor === undefined)
    throw new UserError(`${file}: field ${field}: rope type "${type}" needs a factor`);
  if (type === "linear") return { ...r, scaling: "linear", factor: p.factor };
  if (type === "llama3")
    return {
      ...r,
      scaling: "llama3",
      factor: p.factor,
      low_freq_factor: p.low_freq_factor ?? 1,
      high_freq_factor: p.high_freq_factor ?? 4,
      original_max_position: p.original_max_position_embeddings ?? 8192,
    };
  throw new UserError(
    `${file}: field ${field}: rope type "${type}" is not supported (supported: default, linear, llama3)`,
  );
}

function llamaLike(family: Family, raw: unknown, file: string): unknown {
  const c = parseWith(zLlama, raw, file);
  const heads = c.num_attention_heads;
  const headDim = c.head_dim ?? c.hidden_size / heads;
  if (!Number.isInteger(headDim))
    throw new UserError(
      `${file}: field hidden_size: ${c.hidden_size} is not divisible by num_attention_heads ${heads}`,
    );
  // Sliding windows: Mistral/Mixtral use it on every layer when set; Qwen2 only with use_sliding_window,
  // from layer max_window_layers on (or as layer_types says, in transformers 5).
  let windows: number[] | undefined;
  const w = c.sliding_window ?? 0;
  if (w > 0) {
    if (family === "qwen2") {
      if (c.layer_types) windows = c.layer_types.map((t) => (t === "sliding_attention" ? w : 0));
      else if (c.use_sliding_window) {
        const from = c.max_window_layers ?? 0;
        windows = Array.from({ length: c.num_hidden_layers }, (_, i) => (i >= from ? w : 0));
      }
    } else if (family === "mistral" || family === "mixtral") {
      windows = c.layer_types
        ? c.layer_types.map((t) => (t === "sliding_attention" ? w : 0))
        : new Array<number>(c.num_hidden_layers).fill(w);
    }
    if (windows?.every((x) => x === 0)) windows = undefined;
  }
  if (windows && windows.length !== c.num_hidden_layers)
    throw new UserError(
      `${file}: field layer_types: has ${windows.length} entries for ${c.num_hidden_layers} layers`,
    );
  const biasQkv = family === "qwen2" ? true : (c.attention_bias ?? false);
  const moe = family === "mixtral";
  if (moe && (c.num_local_experts == null || c.num_experts_per_tok == null))
    throw new UserError(
      `${file}: field num_local_experts: mixtral needs num_local_experts and num_experts_per_tok`,
    );
  return {
    family,
    vocab: c.vocab_size,
    hidden: c.hidden_size,
    layers: c.num_hidden_layers,
    heads,
    kv_heads: c.num_key_value_heads ?? heads,
    head_dim: headDim,
    ffn: c.intermediate_size,
    max_positions: c.max_position_embeddings,
    norm: "rms",
    norm_eps: c.rms_norm_eps,
    act: act(c.hidden_act, "hidden_act", file),
    rope: rope(c, headDim, file),
    tie_embeddings: c.tie_word_embeddings ?? false,
    qkv_bias: biasQkv,
    o_bias: family === "llama" ? (c.attention_bias ?? false) : false,
    mlp_bias: family === "llama" ? (c.mlp_bias ?? false) : false,
    ...(windows ? { windows } : {}),
    ...(moe ? { experts: c.num_local_experts, top_k: c.num_experts_per_tok } : {}),
    dtype: dtypeOf(c),
  };
}

function gpt2(raw: unknown, file: string): unknown {
  const c = parseWith(zGpt2, raw, file);
  const headDim = c.n_embd / c.n_head;
  if (!Number.isInteger(headDim))
    throw new UserError(`${file}: field n_embd: ${c.n_embd} is not divisible by n_head ${c.n_head}`);
  return {
    family: "gpt2",
    vocab: c.vocab_size,
    hidden: c.n_embd,
    layers: c.n_layer,
    heads: c.n_head,
    kv_heads: c.n_head,
    head_dim: headDim,
    ffn: c.n_inner ?? 4 * c.n_embd,
    max_positions: c.n_positions,
    norm: "layer",
    norm_eps: c.layer_norm_epsilon,
    act: act(c.activation_function, "activation_function", file),
    tie_embeddings: c.tie_word_embeddings ?? true,
    qkv_bias: true,
    o_bias: true,
    mlp_bias: true,
    dtype: dtypeOf(c),
    ...(c.scale_attn_weights ? {} : { attn_scale: 1 }),
    scale_attn_by_inverse_layer_idx: c.scale_attn_by_inverse_layer_idx,
  };
}

function opt(raw: unknown, file: string): unknown {
  const c = parseWith(zOpt, raw, file);
  const headDim = c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim))
    throw new UserError(
      `${file}: field hidden_size: ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`,
    );
  if (!c.layer_norm_elementwise_affine)
    throw new UserError(`${file}: field layer_norm_elementwise_affine: false is not supported`);
  const embed = c.word_embed_proj_dim ?? c.hidden_size;
  return {
    family: "opt",
    vocab: c.vocab_size,
    hidden: c.hidden_size,
    layers: c.num_hidden_layers,
    heads: c.num_attention_heads,
    kv_heads: c.num_attention_heads,
    head_dim: headDim,
    ffn: c.ffn_dim,
    max_positions: c.max_position_embeddings,
    norm: "layer",
    norm_eps: 1e-5,
    act: act(c.activation_function, "activation_function", file),
    tie_embeddings: c.tie_word_embeddings ?? true,
    qkv_bias: c.enable_bias,
    o_bias: c.enable_bias,
    mlp_bias: c.enable_bias,
    dtype: dtypeOf(c),
    position_offset: 2,
    ...(embed !== c.hidden_size ? { embed_dim: embed } : {}),
    pre_norm: c.do_layer_norm_before,
    final_norm: c.do_layer_norm_before && !c._remove_final_layer_norm,
  };
}

/** Parses the text of a config.json; `file` names it in messages. */
export function parseHfConfig(text: string, file: string): ModelConfig {
  const raw = parseJson(text, file);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new UserError(`${file}: expected a JSON object`);
  const mt = (raw as { model_type?: unknown }).model_type;
  if (typeof mt !== "string")
    throw new UserError(`${file}: field model_type: missing (expected one of ${FAMILIES.join(", ")})`);
  let norm: unknown;
  switch (mt) {
    case "llama":
    case "mistral":
    case "qwen2":
    case "mixtral":
      norm = llamaLike(mt, raw, file);
      break;
    case "gpt2":
      norm = gpt2(raw, file);
      break;
    case "opt":
      norm = opt(raw, file);
      break;
    default:
      throw new UserError(
        `${file}: field model_type: "${mt}" is not a supported family (supported: ${FAMILIES.join(", ")})`,
      );
  }
  const r = zModelConfig.safeParse(norm);
  if (!r.success) throw new UserError(`${file}: ${zodMessage(r.error, "field")}`);
  return r.data;
}
