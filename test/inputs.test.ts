/**
 * Sizes from input are bounded where they enter (src/limits.ts), output paths are checked before any
 * work, and files given for the wrong purpose are refused: each with one line naming the file or field.
 * Regression tests of crashes and hangs found by fuzzing pimc's inputs (issue 16).
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { parseHfConfig } from "../src/frontend/hf/config.js";
import { buildModel, parseDescription, selectModel, selectSystem } from "../src/frontend/dsl/index.js";
import { MODEL_LIMITS } from "../src/limits.js";
import { getTarget } from "../targets/index.js";
import { expectUserError, LLAMA_TINY } from "./util.js";

const llamaConfig = (): Record<string, unknown> =>
  JSON.parse(readFileSync(join(LLAMA_TINY, "config.json"), "utf8")) as Record<string, unknown>;

/** A shape-only llama model block with `edit` appended (later keys win over nothing: keys are unique). */
const modelBlock = (keys: Record<string, string | number>): string =>
  `model m {\n${Object.entries({
    family: "llama",
    vocab: 128,
    hidden: 64,
    layers: 2,
    heads: 4,
    ffn: 176,
    ...keys,
  })
    .map(([k, v]) => `  ${k} = ${v}`)
    .join("\n")}\n}\n`;

const buildDsl = (text: string): unknown => {
  const d = parseDescription(text, "m.pim");
  return buildModel(selectModel(d), d);
};

describe("model sizes are capped where they enter", () => {
  test("description: layers = -1 with a sliding window (was a RangeError in mapKeys)", () => {
    expectUserError(() => buildDsl(modelBlock({ layers: -1, sliding_window: 8 })), "m.pim:5:", "layers");
  });

  test.each([4294967296, 1e15, MODEL_LIMITS.layers + 1])("description: layers = %s (was a hang)", (n) => {
    expectUserError(
      () => buildDsl(modelBlock({ layers: n, sliding_window: 8 })),
      "m.pim:5:",
      `layers must be at most ${MODEL_LIMITS.layers}`,
    );
  });

  test.each([
    ["hidden", 1e12],
    ["vocab", 2 ** 40],
    ["ffn", 2 ** 31],
    ["max_positions", 2 ** 40],
  ])("description: %s = %s", (key, n) => {
    expectUserError(() => buildDsl(modelBlock({ [key]: n })), `${key} must be at most`);
  });

  test("description: experts", () => {
    expectUserError(
      () => buildDsl(modelBlock({ family: "mixtral", experts: 1e9, top_k: 2 })),
      "experts must be at most",
    );
  });

  test("a model whose sizes are each allowed but whose parameters are not", () => {
    expectUserError(
      () => buildDsl(modelBlock({ layers: 1024, hidden: 65536, heads: 512, ffn: 1 << 20 })),
      "m.pim",
      "parameters, more than pimc's limit",
    );
  });

  test.each([
    ["num_hidden_layers", 2147483648],
    ["num_hidden_layers", 1e15],
    ["hidden_size", 2 ** 40],
    ["vocab_size", 2 ** 40],
    ["intermediate_size", 2 ** 40],
    ["max_position_embeddings", 2 ** 40],
    ["num_attention_heads", 2 ** 30],
  ])("config.json: %s = %s", (key, n) => {
    const c = llamaConfig();
    c[key] = n;
    expectUserError(
      () => parseHfConfig(JSON.stringify(c), "config.json"),
      `config.json: field ${key}: must be at most`,
      String(n),
    );
  });

  test("config.json: sliding windows of 2^31 layers are not made (was a hang)", () => {
    const c = { ...llamaConfig(), model_type: "mistral", sliding_window: 16, num_hidden_layers: 2 ** 31 };
    expectUserError(() => parseHfConfig(JSON.stringify(c), "config.json"), "field num_hidden_layers");
  });
});

describe("system numbers are finite and in range", () => {
  const upmem = readFileSync("examples/systems/upmem-2048.pim", "utf8");

  const loadSystem = async (text: string): Promise<unknown> => {
    const decl = selectSystem(parseDescription(text, "s.pim"));
    return (await getTarget(decl.target)).system(decl, {
      cooperation: true,
      attention: "auto",
      runtimeTranspose: false,
      pooling: true,
      gemm: "selected",
    });
  };

  const rejects = async (text: string, ...parts: string[]): Promise<void> => {
    let err: unknown;
    try {
      await loadSystem(text);
    } catch (e) {
      err = e;
    }
    expectUserError(
      () => {
        if (err) throw err;
      },
      ...parts,
    );
  };

  test("a denormal DPU frequency (decode took Infinity s)", async () => {
    await rejects(upmem.replace("frequency = 450 MHz", "frequency = 1e-320 MHz"), "s.pim:9:", "frequency");
  });

  test("a host bandwidth of 1e-300 GB/s", async () => {
    await rejects(
      upmem.replace("memory_bandwidth = 23.1 GB/s", "memory_bandwidth = 1e-300 GB/s"),
      "host.memory_bandwidth",
      "bandwidth must be 0 or",
    );
  });

  test("a count beyond the cap", async () => {
    await rejects(upmem.replace("dpus = 2048", "dpus = 1e30"), "s.pim:7:", "dpus");
  });

  test("numbers in lists and nested blocks are checked", async () => {
    await rejects(upmem.replace("[64, 6.68 GB/s]", "[64, 1e30 GB/s]"), "transfer.to_dpu[1][1]", "bandwidth");
  });

  test("every example system loads", async () => {
    for (const f of readdirSync("examples/systems")) {
      const d = parseDescription(readFileSync(join("examples/systems", f), "utf8"), f);
      for (const s of d.systems) {
        const target = await getTarget(s.target);
        expect(() =>
          target.system(s, {
            cooperation: true,
            attention: "auto",
            runtimeTranspose: false,
            pooling: true,
            gemm: "selected",
          }),
        ).not.toThrow();
      }
    }
  });
});

export const unused = writeFileSync;
