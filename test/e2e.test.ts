/** End-to-end: `pimc` commands on real inputs, run in-process (test/util.ts; test/bin.test.ts spawns the bin). */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { stripLocs } from "../src/ir/equal.js";
import { parseModule } from "../src/ir/parser.js";
import { printFunc } from "../src/ir/printer.js";
import { importHf } from "../src/frontend/hf/import.js";
import { llamaVariant, pimc, tempDir } from "./util.js";

const tmp = tempDir("pimc-e2e-");

/** A bad input: exit code 2, one line on stderr containing every part, no stack trace. */
async function rejects(args: string[], ...parts: string[]): Promise<string> {
  const r = await pimc(...args);
  expect(r.code, r.stderr).toBe(2);
  const lines = r.stderr.trim().split("\n");
  expect(lines.length, r.stderr).toBe(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  for (const p of parts) expect(r.stderr).toContain(p);
  return r.stderr;
}

const write = (name: string, text: string): string => {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
};

describe("pimc verify", () => {
  const passing = [
    "llama-tiny",
    "mistral-tiny",
    "qwen2-tiny",
    "mixtral-tiny",
    "mixtral-tiny-fused",
    "opt-tiny",
    "opt-tiny-350m",
    "llama-tiny-variants",
    "gpt2-tiny-bias",
  ];
  test.each(passing)("%s matches its reference logits within 1e-4", async (name) => {
    const r = await pimc("verify", `test/fixtures/${name}`, "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(j).slice(0, 7)).toEqual([
      "model",
      "target",
      "prefill_max_abs_err",
      "decode_max_abs_err",
      "full_max_abs_err",
      "tokens_match",
      "passed",
    ]);
    expect(j).toMatchObject({
      model: name,
      target: "cpu",
      tokens_match: true,
      passed: true,
      tokens_agreed: 14,
      tokens_total: 14,
    });
    for (const k of ["prefill_max_abs_err", "decode_max_abs_err", "full_max_abs_err"])
      expect(j[k]).toBeLessThan(1e-5);
  });
  test("human output and a tolerance too tight to pass", async () => {
    const ok = await pimc("verify", "test/fixtures/llama-tiny");
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/prefill +max \|logit error\| \d\.\d\de-\d/);
    expect(ok.stdout).toContain("PASSED (tolerance 0.0001)");
    const tight = await pimc("verify", "test/fixtures/llama-tiny", "--tolerance", "1e-9", "--json");
    expect(tight.code).toBe(1);
    expect(JSON.parse(tight.stdout)).toMatchObject({ passed: false, tokens_match: true });
  });
  test("INT8 weights: the error is stated and every disagreement is on a reference near-tie", async () => {
    const r = await pimc("verify", "test/fixtures/llama-tiny", "--weights", "int8", "--json");
    const j = JSON.parse(r.stdout) as Record<string, number | boolean>;
    // Within INT8's tolerance (0.25), its two disagreements reference near ties: verify passes.
    expect(j.passed).toBe(true);
    expect(j.tokens_match).toBe(false);
    expect(j.prefill_max_abs_err).toBeGreaterThan(1e-3);
    expect(j.prefill_max_abs_err).toBeLessThan(0.2);
    expect(j.tokens_agreed).toBeGreaterThanOrEqual(12);
    expect(j.disagreements_beyond_near_ties).toBe(0);
    const q = JSON.parse(
      (await pimc("verify", "test/fixtures/qwen2-tiny", "--weights", "int8", "--json")).stdout,
    ) as Record<string, unknown>;
    expect(q).toMatchObject({ tokens_match: true, tokens_agreed: 14 });
  });
  // The HuggingFace gpt2-tiny (transformers 5.17 reference logits), with its c_attn biases restored.
  test.each(["cpu", "upmem", "hbm-pim", "xpu", "sram-pim", "aim"])(
    "gpt2-tiny verifies on --target %s at the target's tolerance",
    async (target) => {
      const r = await pimc("verify", "test/fixtures/gpt2-tiny", "--target", target, "--json");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe("");
      const j = JSON.parse(r.stdout) as {
        passed: boolean;
        tokens_match: boolean;
        prefill_max_abs_err: number;
      };
      expect(j).toMatchObject({ passed: true, tokens_match: true });
      expect(j.prefill_max_abs_err).toBeLessThan(target === "hbm-pim" ? 0.02 : 1e-4);
    },
  );
  test("a GPT-2 checkpoint without c_attn.bias (as transformers' save_pretrained can write it): pimc warns, zero-fills like transformers, and reports the mismatch", async () => {
    const dir = llamaVariant(
      tmp,
      {
        tensors: (t) =>
          Object.keys(t)
            .filter((n) => n.endsWith("attn.c_attn.bias"))
            .forEach((n) => delete t[n]),
      },
      "test/fixtures/gpt2-tiny",
    );
    const r = await pimc("verify", dir, "--json");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("checkpoint has no transformer.h.0.attn.c_attn.bias");
    const j = JSON.parse(r.stdout) as { prefill_max_abs_err: number; tokens_match: boolean; passed: boolean };
    expect(j.passed).toBe(false);
    expect(j.prefill_max_abs_err).toBeGreaterThan(0.1);
  });
});

describe("pimc dump and compile", () => {
  test("dump of a real model (shape-only)", async () => {
    const r = await pimc("dump", "examples/llama2-70b.pim");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^module @llama2_70b attributes \{/);
    expect(r.stdout).toContain("const @model.layers.79.mlp.down_proj.weight : f16[8192, 28672]");
    expect(r.stdout).toContain("state @kv.79.v : f16[B, 8, T, 128]");
    expect(r.stdout).toMatch(/func @decode\(%tokens: i32\[B, S\]\) -> \(f16\[B, S, 32000\]\)/);
    expect(r.stdout).toContain(
      "%kv.79.v = kv_append(@kv.79.v, %L79.v_t) {axis = 2, past = P} : f16[B, 8, P+S, 128]",
    );
  });
  test("dump -o writes a file that parses back to the same function", async () => {
    const out = join(tmp, "decode.pimir");
    const r = await pimc("dump", "test/fixtures/qwen2-tiny", "--func", "decode", "-o", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    const text = readFileSync(out, "utf8");
    expect(text).toBe(printFunc(importHf("test/fixtures/qwen2-tiny").module.funcs[1]!));
  });
  test("a dumped module is a model too: dump of a .pimir round-trips", async () => {
    const out = join(tmp, "gpt2.pimir");
    expect((await pimc("dump", "test/fixtures/gpt2-tiny-bias", "-o", out)).code).toBe(0);
    const again = await pimc("dump", out);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe(readFileSync(out, "utf8"));
    expect(stripLocs(parseModule(again.stdout))).toEqual(
      stripLocs(importHf("test/fixtures/gpt2-tiny-bias").module),
    );
  });
  test("compile prints the summary and per-op costs of a workload", async () => {
    const r = await pimc("compile", "examples/llama2-7b.pim", "--phase", "prefill", "--prompt", "128");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      "model     llama2_7b (llama: 32 layers, hidden 4096, 32 heads (32 kv), ffn 11008",
    );
    expect(r.stdout).toContain("prefill, batch 1, prompt 128 tokens");
    expect(r.stdout).toMatch(/L\*\.qkv +│ linear +│ +32 │ +412 G │/); // 32 x 2*128*4096*12288 flops
    expect(r.stdout).toContain("fuse-qkv: 32 fused weights, 64 qkv groups fused");
    const j = JSON.parse(
      (await pimc("compile", "examples/llama2-7b.pim", "--workload", "decode_b1", "--json")).stdout,
    ) as {
      ops: { name: string; flops: number; bytes: number }[];
      total_flops: number;
    };
    const q = j.ops.find((o) => o.name === "L*.qkv")!;
    expect(q.flops).toBe(32 * 2 * 4096 * 12288);
    expect(q.bytes).toBe(32 * (4096 * 12288 * 2 + 4096 * 2 + 12288 * 2)); // f16 weight + input + output
    const unfused = JSON.parse(
      (await pimc("compile", "examples/llama2-7b.pim", "--disable-pass", "fuse-qkv", "--json")).stdout,
    ) as typeof j;
    expect(unfused.ops.find((o) => o.name === "L*.q")!.flops).toBe(32 * 2 * 4096 * 4096);
  });
  test("npm start's command works from a clean build", async () => {
    const r = await pimc("compile", "examples/tiny-llama.pim");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("from examples/tiny-llama.pim");
    expect(r.stdout).toMatch(/│ total +│/);
  });
  test("list", async () => {
    expect((await pimc("list", "ops")).stdout).toMatch(/│ attention +│ q, k, v +│/);
    expect((await pimc("list", "targets")).stdout).toContain("cpu");
    expect((await pimc("list", "families")).stdout).toContain("mixtral");
  });
});

describe("pass pipeline from the command line", () => {
  test("dump --print-after fuse-qkv shows one fused QKV GEMM per layer", async () => {
    const r = await pimc("dump", "examples/llama2-7b.pim", "--print-after", "fuse-qkv");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.startsWith("// ----- IR after fuse-qkv -----\nmodule @llama2_7b")).toBe(true);
    for (const f of r.stdout.split("func @").slice(1)) {
      const fused =
        f.match(/= linear\([^)]*qkv_proj\.weight\) \{fused = "qkv"\} : f16\[B, S, 12288\]/g) ?? [];
      expect(fused).toHaveLength(32);
      expect(f).not.toMatch(/\.[qkv]_proj\./);
    }
    expect(r.stdout).not.toContain("IR after fuse-gate-up");
  });
  test("dump --pipeline lists the target's default pipeline", async () => {
    const r = await pimc("dump", "--pipeline", "--system", "examples/systems/host-pim-roofline.pim");
    expect(r.stdout).toContain("pipeline of target roofline");
    expect(r.stdout).toMatch(/│ fuse-qkv +│ 1 +│ yes/);
    expect(r.stdout).toMatch(/│ partition +│ 1 +│ yes/);
    expect((await pimc("dump", "--pipeline", "-O", "0")).stdout).toMatch(/│ fuse-qkv +│ 1 +│ no/);
  });
  test("dump --placement prints each op's device, Op/B and reason", async () => {
    const r = await pimc(
      "dump",
      "examples/llama2-7b.pim",
      "--placement",
      "--system",
      "examples/systems/host-pim-roofline.pim",
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("placement of @decode on host_pim (roofline) for decode_b1");
    expect(r.stdout).toMatch(
      /│ L0\.qkv +│ linear +│ pim +│ +101 M │ 96\.0 MiB │ 1\.00 │ fastest \(host [\d.]+ ms, pim [\d.]+ us\)/,
    );
    expect(r.stdout).toMatch(/│ L0\.attn_norm +│ rms_norm +│ host /);
    const big = await pimc(
      "dump",
      "examples/llama2-7b.pim",
      "--placement",
      "--system",
      "examples/systems/host-pim-roofline.pim",
      "--phase",
      "prefill",
      "--prompt",
      "512",
    );
    expect(big.stdout).toMatch(/│ L0\.qkv +│ linear +│ host /); // compute-bound at 512 tokens
    // Ops only the host can run say so (no "Infinity" for the device that cannot).
    const upmem = await pimc(
      "dump",
      "examples/tiny-llama.pim",
      "--placement",
      "--system",
      "examples/systems/upmem-2048.pim",
    );
    expect(upmem.stdout).toMatch(/│ L0\.attn_norm +│ rms_norm +│ host +│.*│ only host runs it/);
    expect(upmem.stdout).not.toContain("Infinity");
    const dyn = await pimc(
      "dump",
      "examples/llama2-7b.pim",
      "--system",
      "examples/systems/host-pim-roofline.pim",
      "--dynamic-placement",
      "--func",
      "decode",
    );
    expect(dyn.stdout).toMatch(
      /%L0\.qkv = linear\(.*\) \{alt_device = "host", device = "pim", fused = "qkv", switch_above = \d+\}/,
    );
    expect((await pimc("dump", "examples/llama2-7b.pim", "--placement")).stdout).toMatch(
      /│ L0\.qkv +│ linear +│ host .*the system has one device/,
    );
  });
  test("dump-ir writes every stage; verify-each and time-passes", async () => {
    const dir = join(tmp, "stages");
    const r = await pimc(
      "verify",
      "test/fixtures/llama-tiny-variants",
      "--verify-each",
      "--time-passes",
      "--dump-ir",
      dir,
      "--json",
    );
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ passed: true });
    expect(r.stderr).toMatch(/pass timing[\s\S]*fuse-qkv +\d/);
    expect(readdirSync(dir)).toEqual([
      "000_input.pimir",
      "001_simplify-shapes.pimir",
      "002_fuse-qkv.pimir",
      "003_fuse-gate-up.pimir",
      "004_layout.pimir",
      "005_quantize.pimir",
      "006_dce.pimir",
      "007_partition.pimir",
    ]);
    expect((await pimc("dump", join(dir, "004_layout.pimir"))).code).toBe(0);
  });
  test.each(["gpt2-tiny-bias", "qwen2-tiny", "mixtral-tiny"])(
    "verify %s on the roofline system with the whole pipeline",
    async (name) => {
      const r = await pimc(
        "verify",
        `test/fixtures/${name}`,
        "--system",
        "examples/systems/host-pim-roofline.pim",
        "--verify-each",
        "--json",
      );
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ target: "roofline", passed: true });
    },
  );
  test("bad pass flags", async () => {
    await rejects(
      ["dump", "examples/llama2-7b.pim", "--print-after", "fuse-qvk"],
      'unknown pass "fuse-qvk"',
      "did you mean 'fuse-qkv'",
    );
    await rejects(["dump", "examples/llama2-7b.pim", "-O", "7"], "--opt-level", "0, 1, 2 or 3");
    await rejects(
      [
        "dump",
        "examples/llama2-7b.pim",
        "--placement",
        "--system",
        "examples/systems/host-cpu.pim",
        "--target",
        "roofline",
      ],
      "does not match",
    );
    const sys = write(
      "badsys.pim",
      "system s {\n  target = roofline\n  home = host\n  link = 1 GB/s\n  devices = { host = { kind = host, flops = 1 TFLOPS, bandwith = 1 GB/s } }\n}\n",
    );
    await rejects(
      ["dump", "--pipeline", "--system", sys],
      "badsys.pim:5:",
      "bandwith",
      "did you mean 'bandwidth'",
    );
  });
});

describe("bad input: one line, exit code 2, no partial output", () => {
  test("malformed description", async () => {
    const f = write("syntax.pim", "model m {\n  family = llama\n  hidden 4096\n}\n");
    await rejects(["dump", f], `${f}:3:10:`, "expected '='");
  });
  test("unknown family, unknown key, bad value", async () => {
    await rejects(["dump", write("fam.pim", "model m { family = bert }")], "fam.pim:1:20:", "bert");
    const base = "family = llama vocab = 10 hidden = 8 layers = 1 heads = 2 ffn = 16";
    await rejects(["dump", write("key.pim", `model m { ${base} hiden = 3 }`)], "key.pim:1:", "hiden");
    await rejects(["dump", write("val.pim", `model m { ${base} norm_eps = "x" }`)], "val.pim:1:", "norm_eps");
  });
  test("unknown op and inconsistent shapes in a custom graph", async () => {
    const graph = (body: string): string =>
      `model m {\n  vocab = 10\n  hidden = 8\n  graph {\n    x = embedding(tokens, weight("e", [vocab, hidden]))\n${body}\n  }\n}\n`;
    await rejects(
      ["dump", write("op.pim", graph("    return frobnicate(x)"))],
      "op.pim:6:12:",
      "unknown op 'frobnicate'",
    );
    await rejects(
      ["dump", write("shape.pim", graph('    return linear(x, weight("w", [vocab, 7]))'))],
      "shape.pim:6:12:",
      "linear",
    );
  });
  test("missing, extra and mis-shaped tensors; truncated and lying safetensors", async () => {
    await rejects(
      ["verify", llamaVariant(tmp, { tensors: (t) => delete t["model.norm.weight"] })],
      'missing tensor "model.norm.weight"',
    );
    await rejects(
      [
        "verify",
        llamaVariant(tmp, {
          tensors: (t) => (t["extra.bias"] = { dtype: "F32", shape: [2], bytes: new Uint8Array(8) }),
        }),
      ],
      'unexpected tensor "extra.bias"',
    );
    await rejects(["verify", llamaVariant(tmp, { config: (c) => (c.hidden_size = 32) })], "has shape");
    const trunc = llamaVariant(tmp, {});
    const st = join(trunc, "model.safetensors");
    writeFileSync(st, readFileSync(st).subarray(0, 5000));
    await rejects(["verify", trunc], "model.safetensors", "truncated");
    const lying = llamaVariant(tmp, {});
    const bytes = readFileSync(join(lying, "model.safetensors"));
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")) as Record<
      string,
      { shape: number[] }
    >;
    header["lm_head.weight"]!.shape = [128, 65]; // the offsets no longer match the shape
    const text = JSON.stringify(header).padEnd(n, " ");
    writeFileSync(
      join(lying, "model.safetensors"),
      Buffer.concat([bytes.subarray(0, 8), Buffer.from(text.slice(0, n)), bytes.subarray(8 + n)]),
    );
    await rejects(["verify", lying], 'tensor "lm_head.weight"', "[128, 65]");
  });
  test("unreadable files and folders", async () => {
    await rejects(["dump", join(tmp, "nope.pim")], "nope.pim: no such file or folder");
    await rejects(["verify", tmp], "config.json: cannot read the file");
    await rejects(["dump", write("bad.pimir", "module @m\nfunc @f( {\n")], "bad.pimir:2:");
  });
  test("out-of-range and unknown options", async () => {
    await rejects(
      ["verify", "test/fixtures/llama-tiny", "--tolerance", "-1"],
      "--tolerance",
      "positive number",
    );
    await rejects(["verify", "test/fixtures/llama-tiny", "--target", "tpu"], 'unknown target "tpu"');
    await rejects(["compile", "examples/llama2-7b.pim", "--batch", "0"], "--batch", "positive integer");
    await rejects(["compile", "examples/llama2-7b.pim", "--phase", "train"], "--phase", "train");
    await rejects(["compile", "examples/llama2-7b.pim", "--workload", "nope"], "nope");
    await rejects(["dump", "examples/llama2-7b.pim", "--func", "train"], "--func", "train");
    await rejects(["dump", "examples/llama2-7b.pim", "--frobnicate"], "unknown option '--frobnicate'");
    await rejects(["frobnicate"], "unknown command 'frobnicate'");
  });
  test("no partial output file when the input is bad", async () => {
    const out = join(tmp, "never.pimir");
    await rejects(["dump", write("bad2.pim", "model m {"), "-o", out], "bad2.pim:1:");
    expect(existsSync(out)).toBe(false);
  });
});
