/** Family registry: builds the decoder module of a normalised model config. */
import type { Attr } from "../../ir/module.js";
import type { Module } from "../../ir/module.js";
import type { Family, ModelConfig } from "../config.js";
import { buildDecoderModule, type DecoderGraph } from "./decoder.js";
import { gpt2Graph } from "./gpt2.js";
import { llamaGraph } from "./llama.js";
import { optGraph } from "./opt.js";

const GRAPHS: Record<Family, (cfg: ModelConfig) => DecoderGraph> = {
  llama: llamaGraph,
  mistral: llamaGraph,
  qwen2: llamaGraph,
  mixtral: llamaGraph,
  gpt2: gpt2Graph,
  opt: optGraph,
};

/** Module attributes recording the config (what `pimc dump` shows in its header). */
export function configAttrs(cfg: ModelConfig): Record<string, Attr> {
  const a: Record<string, Attr> = {
    family: cfg.family,
    vocab: cfg.vocab,
    hidden: cfg.hidden,
    layers: cfg.layers,
    heads: cfg.heads,
    kv_heads: cfg.kv_heads,
    head_dim: cfg.head_dim,
    ffn: cfg.ffn,
    dtype: cfg.dtype,
  };
  if (cfg.experts !== undefined) {
    a.experts = cfg.experts;
    a.top_k = cfg.top_k!;
  }
  if (cfg.precision !== undefined) a.precision = cfg.precision;
  if (cfg.group_size !== undefined) a.group_size = cfg.group_size;
  if (cfg.layer_precision !== undefined) a.layer_precision = cfg.layer_precision.map(([p, w]) => [p, w]);
  return a;
}

export function buildFamilyModule(name: string, cfg: ModelConfig): Module {
  return buildDecoderModule(name, configAttrs(cfg), cfg.dtype, GRAPHS[cfg.family](cfg));
}
