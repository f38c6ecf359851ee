import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setFloat16 } from "@petamoriken/float16";
import { describe, expect, test } from "vitest";
import { Interpreter, tokenTensor } from "../src/exec/interpreter.js";
import { parseHfConfig } from "../src/frontend/hf/config.js";
import { importHf } from "../src/frontend/hf/import.js";
import { SafetensorsFile } from "../src/frontend/hf/safetensors.js";
import {
  buildFile,
  bytesOf,
  expectUserError,
  LLAMA_TINY,
  llamaVariant,
  tempDir,
  type Spec,
  type VariantEdit,
} from "./util.js";

const LLAMA = LLAMA_TINY;
const llamaCfg = (): Record<string, unknown> =>
  JSON.parse(readFileSync(join(LLAMA, "config.json"), "utf8")) as Record<string, unknown>;
const cfgText = (o: Record<string, unknown>): string => JSON.stringify(o);
const tmp = tempDir("pimc-hf-");
const variant = (edit: VariantEdit): string => llamaVariant(tmp, edit);

const prefill = (dir: string): Float32Array => {
  const m = importHf(dir);
  return new Interpreter(m.module, m.weights).run("prefill", [tokenTensor([[1, 2, 3, 4]])])[0]!
    .data as Float32Array;
};

describe("config.json", () => {
  test("transformers 5 rope_parameters and transformers 4 rope_theta give the same rope", () => {
    const v5 = parseHfConfig(cfgText(llamaCfg()), "c.json");
    const old = llamaCfg();
    delete old.rope_parameters;
    old.rope_theta = 10000;
    expect(parseHfConfig(cfgText(old), "c.json").rope).toEqual(v5.rope);
    const l3 = {
      ...llamaCfg(),
      rope_scaling: { rope_type: "llama3", factor: 8, original_max_position_embeddings: 8192 },
      rope_theta: 5e5,
    };
    delete (l3 as Record<string, unknown>).rope_parameters;
    expect(parseHfConfig(cfgText(l3), "c.json").rope).toMatchObject({
      theta: 5e5,
      scaling: "llama3",
      factor: 8,
    });
  });
  test("family rules", () => {
    const base = {
      vocab_size: 100,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 8,
    };
    const qwen = parseHfConfig(
      cfgText({ ...base, model_type: "qwen2", num_key_value_heads: 2, tie_word_embeddings: true }),
      "q",
    );
    expect(qwen).toMatchObject({
      qkv_bias: true,
      o_bias: false,
      kv_heads: 2,
      head_dim: 8,
      tie_embeddings: true,
    });
    const mis = parseHfConfig(cfgText({ ...base, model_type: "mistral", sliding_window: 16 }), "m");
    expect(mis.windows).toEqual([16, 16]);
    const mix = parseHfConfig(
      cfgText({ ...base, model_type: "mixtral", num_local_experts: 8, num_experts_per_tok: 2 }),
      "x",
    );
    expect(mix).toMatchObject({ experts: 8, top_k: 2 });
    const opt = parseHfConfig(
      cfgText({
        model_type: "opt",
        vocab_size: 50,
        hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        ffn_dim: 64,
      }),
      "o",
    );
    expect(opt).toMatchObject({
      position_offset: 2,
      act: "relu",
      tie_embeddings: true,
      pre_norm: true,
      final_norm: true,
    });
    const gpt2 = parseHfConfig(
      cfgText({
        model_type: "gpt2",
        vocab_size: 50,
        n_embd: 32,
        n_layer: 1,
        n_head: 4,
        scale_attn_weights: false,
      }),
      "g",
    );
    expect(gpt2).toMatchObject({ ffn: 128, act: "gelu_tanh", attn_scale: 1 });
  });
  test("bad configs name the field", () => {
    expectUserError(() => parseHfConfig("{", "c.json"), "c.json: not valid JSON");
    expectUserError(
      () => parseHfConfig(cfgText({ ...llamaCfg(), model_type: "bert" }), "c.json"),
      'model_type: "bert" is not a supported family',
    );
    expectUserError(
      () => parseHfConfig(cfgText({ ...llamaCfg(), hidden_size: "64" }), "c.json"),
      "c.json: field hidden_size",
    );
    expectUserError(
      () => parseHfConfig(cfgText({ ...llamaCfg(), num_key_value_heads: 3 }), "c.json"),
      "kv_heads",
    );
    expectUserError(
      () => parseHfConfig(cfgText({ ...llamaCfg(), hidden_act: "mish" }), "c.json"),
      'field hidden_act: activation "mish"',
    );
    expectUserError(
      () =>
        parseHfConfig(
          cfgText({ ...llamaCfg(), rope_parameters: { rope_type: "yarn", factor: 4, rope_theta: 1e4 } }),
          "c.json",
        ),
      'rope type "yarn" is not supported',
    );
    const noLayers = llamaCfg();
    delete noLayers.num_hidden_layers;
    expectUserError(() => parseHfConfig(cfgText(noLayers), "c.json"), "field num_hidden_layers");
  });
});

describe("checkpoint binding", () => {
  test("missing, extra and mis-shaped tensors", () => {
    expectUserError(
      () => importHf(variant({ tensors: (t) => delete t["model.norm.weight"] })),
      'missing tensor "model.norm.weight" [64]',
    );
    expectUserError(
      () =>
        importHf(
          variant({
            tensors: (t) =>
              (t["model.extra.weight"] = { dtype: "F32", shape: [1], bytes: new Uint8Array(4) }),
          }),
        ),
      'unexpected tensor "model.extra.weight"',
    );
    expectUserError(
      () => importHf(variant({ config: (c) => (c.intermediate_size = 88) })),
      "has shape [176, 64] but the llama config implies [88, 64]",
    );
  });
  test("truncated or lying safetensors are rejected before reading data", () => {
    const dir = variant({});
    const file = join(dir, "model.safetensors");
    const bytes = readFileSync(file);
    writeFileSync(file, bytes.subarray(0, bytes.length - 100));
    expectUserError(() => importHf(dir), "model.safetensors", "truncated");
  });
  test("missing folder pieces", () => {
    const dir = join(tmp, "empty");
    mkdirSync(dir);
    expectUserError(() => importHf(dir), "config.json: cannot read the file");
    copyFileSync(join(LLAMA, "config.json"), join(dir, "config.json"));
    expectUserError(() => importHf(dir), "no model.safetensors");
  });
  test("tied checkpoints may carry a redundant lm_head; buffers of older exports are ignored", () => {
    const dir = variant({
      config: (c) => (c.tie_word_embeddings = true),
      tensors: (t) =>
        (t["model.layers.0.self_attn.rotary_emb.inv_freq"] = {
          dtype: "F32",
          shape: [8],
          bytes: new Uint8Array(32),
        }),
    });
    const m = importHf(dir);
    expect(m.module.consts.some((c) => c.name === "lm_head.weight")).toBe(false);
  });
  test("a sharded checkpoint and a base-model checkpoint (no model. prefix) load the same weights", () => {
    const whole = prefill(LLAMA);
    const st = SafetensorsFile.open(join(LLAMA, "model.safetensors"));
    const sharded = join(tmp, "sharded");
    mkdirSync(sharded);
    copyFileSync(join(LLAMA, "config.json"), join(sharded, "config.json"));
    const names = [...st.entries.keys()];
    const shards = [names.slice(0, 10), names.slice(10)];
    const weightMap: Record<string, string> = {};
    shards.forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      const t: Record<string, Spec> = {};
      for (const nm of part) {
        t[nm] = { dtype: "F32", shape: [...st.entries.get(nm)!.shape], bytes: bytesOf(st.read(nm).data) };
        weightMap[nm] = file;
      }
      writeFileSync(join(sharded, file), buildFile(t));
    });
    writeFileSync(
      join(sharded, "model.safetensors.index.json"),
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
    expect(prefill(sharded)).toEqual(whole);
    const bare = variant({
      tensors: (t) => {
        for (const k of Object.keys(t))
          if (k.startsWith("model.")) {
            t[k.slice(6)] = t[k]!;
            delete t[k];
          }
      },
    });
    expect(prefill(bare)).toEqual(whole);
  });
  test("f16 and bf16 checkpoints are converted and typed accordingly", () => {
    const toHalf = (dt: "F16" | "BF16") => (t: Record<string, Spec>) => {
      for (const s of Object.values(t)) {
        const f = new Float32Array(
          s.bytes.buffer.slice(s.bytes.byteOffset, s.bytes.byteOffset + s.bytes.byteLength),
        );
        const h = new Uint16Array(f.length);
        const u = new Uint32Array(f.buffer);
        const view = new DataView(h.buffer);
        for (let i = 0; i < f.length; i++)
          if (dt === "BF16")
            h[i] = u[i]! >>> 16; // truncation
          else setFloat16(view, 2 * i, f[i]!, true);
        s.dtype = dt;
        s.bytes = bytesOf(h);
      }
    };
    for (const dt of ["F16", "BF16"] as const) {
      const m = importHf(variant({ tensors: toHalf(dt) }));
      expect(m.module.consts[0]!.type.dtype).toBe(dt.toLowerCase());
      const got = new Interpreter(m.module, m.weights).run("prefill", [tokenTensor([[1, 2, 3, 4]])])[0]!
        .data as Float32Array;
      const want = prefill(LLAMA);
      const err = got.reduce((e, x, i) => Math.max(e, Math.abs(x - want[i]!)), 0);
      expect(err).toBeGreaterThan(0);
      expect(err).toBeLessThan(dt === "F16" ? 5e-3 : 5e-2);
    }
  });
});
