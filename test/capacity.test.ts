/**
 * Capacity and position checks (src/pipeline/capacity.ts): weights + KV cache + activations against
 * each memory a target reports, positions against the model's limit, serve's admission control and
 * the --no-capacity-check what-if flag.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { metrics, simulate, type Request, type StepTiming } from "../src/exec/serve.js";
import { loadModel } from "../src/frontend/load.js";
import { defaultWorkload, type Workload } from "../src/frontend/workload.js";
import { chooseTarget, compileModel, type PipelineFlags } from "../src/driver/compile.js";
import {
  capacityProblem,
  footprint,
  positionProblem,
  totalCapacityProblem,
} from "../src/pipeline/capacity.js";
import { getTarget } from "../targets/index.js";
import { pimc, tempDir } from "./util.js";

const dir = tempDir("pimc-capacity-");

/** An xPU system file with `memory` bytes of HBM (100 us per kernel: serve's requests overlap). */
function xpuSystem(memory: number): string {
  const file = join(dir, `xpu-${memory}.pim`);
  writeFileSync(
    file,
    `system tight {\n  target = "xpu"\n  xpu = { kind = "gpu", flops = 312 TFLOPS, bandwidth = 2 TB/s, overhead = 100 us, memory = ${memory} }\n}\n`,
  );
  return file;
}

const flags = (system: string): PipelineFlags => ({
  system,
  disablePass: [],
  printBefore: [],
  printAfter: [],
});

const decode = (batch: number, context: number): Workload => ({
  ...defaultWorkload("decode"),
  batch,
  context,
});

const oneLine = (stderr: string): string => {
  const lines = stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  return lines[0]!;
};

describe("what a model needs in each memory", () => {
  it("counts the weights at their precision and the KV cache by the formula (llama-tiny, f32)", async () => {
    // llama-tiny: vocab 128, hidden 64, 2 layers, 4 heads of 16 (2 kv heads), ffn 176, untied head.
    const [V, H, L, KV, D, F] = [128, 64, 2, 2, 16, 176];
    const perLayer = H * H + 2 * KV * D * H + H * H + 3 * F * H + 2 * H;
    const weights = 4 * (2 * V * H + L * perLayer + H);
    const model = loadModel("test/fixtures/llama-tiny");
    const w = decode(3, 20);
    const c = await compileModel(model, flags(xpuSystem(1e9)), w, 2);
    const [u] = footprint(c.module, c.target.memories!(c.system), w);
    expect(u!.weights).toBe(weights);
    // K and V of every layer: batch x (context + 1 new token) x kv heads x head dim x 4 bytes.
    expect(u!.kv).toBe(2 * L * 3 * 21 * KV * D * 4);
    expect(u!.activations).toBeGreaterThan(0);
    expect(u!.activations).toBeLessThan(u!.weights);
  });

  it("fits just under the capacity and fails one byte over it (compile, exit 2, one line)", async () => {
    const model = loadModel("test/fixtures/llama-tiny");
    const w = decode(4, 100);
    const c = await compileModel(model, flags(xpuSystem(1e9)), w, 2);
    const [u] = footprint(c.module, c.target.memories!(c.system), w);
    const need = u!.weights + u!.kv + u!.activations;
    const args = ["compile", "test/fixtures/llama-tiny", "--batch", "4", "--context", "100", "--json"];
    const fits = await pimc(...args, "--system", xpuSystem(need));
    expect(fits.code, fits.stderr).toBe(0);
    const [m] = (JSON.parse(fits.stdout) as { memories: Record<string, number | string>[] }).memories;
    expect(m).toEqual({
      memory: "the xPU's HBM",
      capacity: need,
      weights: u!.weights,
      kv_cache: u!.kv,
      activations: u!.activations,
    });
    const over = await pimc(...args, "--system", xpuSystem(need - 1));
    expect(over.code).toBe(2);
    const msg = oneLine(over.stderr);
    expect(msg).toMatch(/^pimc: error: tight: weights .* \+ KV cache .* exceed the xPU's HBM \(/);
    expect(over.stdout).toBe("");
  });

  it("GPT-3 175B does not fit the 16 GiB of hbm-pim-64ch: the PIM banks hold everything there", async () => {
    const { target, system } = await chooseTarget({ system: "examples/systems/hbm-pim-64ch.pim" });
    expect(target).toBe(await getTarget("hbm-pim"));
    const map = target.memories!(system);
    // One memory (the host reads the same HBM): where the partition puts an op does not matter.
    expect(map.memories.map((m) => [m.name, m.bytes])).toEqual([
      ["the PIM banks", 64 * 16 * (16384 - 4) * 1024],
    ]);
    const model = loadModel("examples/gpt3-175b.pim");
    const msg = capacityProblem(system.name, model.module, map, decode(1, 1024))!;
    expect(msg).toMatch(
      /^hbm_pim_64ch: weights 3\d\d GiB \+ KV cache 4\.50 GiB .* exceed the PIM banks \(16\.0 GiB\)$/,
    );
  });

  it("a model no placement can fit fails before the partition runs the cost models", async () => {
    // The bound before placement: weights and KV cache against every memory together (no
    // activations: the exact check after placement counts them), so the message has none.
    const r = await pimc("bench", "examples/gpt3-175b.pim", "--system", "examples/systems/hbm-pim-64ch.pim");
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(
      /^pimc: error: hbm_pim_64ch: weights 3\d\d GiB \+ KV cache 4\.50 GiB = 3\d\d GiB at batch 1 and 1025 cached tokens per sequence exceed the PIM banks \(16\.0 GiB\) \(--no-capacity-check to time it anyway\)$/,
    );
    // Several memories: all of them together (AttAcc's PIM stacks and the GPU's HBM).
    const { target, system } = await chooseTarget({ system: "examples/systems/a100-attacc.pim" });
    const map = target.memories!(system);
    const model = loadModel("examples/gpt3-175b.pim");
    expect(totalCapacityProblem(system.name, model.module, map, decode(64, 2047))).toMatch(
      /exceed the PIM banks \(40\.0 GiB\) and the xPU's HBM \(74\.5 GiB\) together \(114 GiB\)$/,
    );
    // A bound only where every datum has a memory: a map with a memory-less device gives none.
    expect(
      totalCapacityProblem(system.name, model.module, { ...map, holdsAll: false }, decode(64, 2047)),
    ).toBeUndefined();
    // Under the memories' total it says nothing: the exact check after placement decides.
    const small = loadModel("examples/llama2-13b.pim").module;
    expect(totalCapacityProblem(system.name, small, map, decode(1, 15))).toBeUndefined();
  });

  it("batch 512 of GPT-3 on one A100: the KV cache alone is terabytes beside the GPU's 80 GB", async () => {
    const { target, system } = await chooseTarget({ system: "examples/systems/a100.pim" });
    const map = target.memories!(system);
    expect(map.memories).toEqual([{ name: "the xPU's HBM", bytes: 80e9 }]);
    const model = loadModel("examples/gpt3-175b.pim");
    // 96 layers x K and V x 12288 x 2 bytes (fp16) per token, 512 sequences of 2048 tokens.
    const kv = 96 * 2 * 12288 * 2 * 512 * 2048;
    const [u] = footprint(model.module, map, decode(512, 2047));
    expect(u!.kv).toBe(kv);
    expect(capacityProblem(system.name, model.module, map, decode(512, 2047))).toMatch(
      /^a100_hbm3: weights 3\d\d GiB \+ KV cache 4\.50 TiB .* at batch 512 and 2048 cached tokens per sequence exceed the xPU's HBM \(74\.5 GiB\)$/,
    );
  });
});

describe("upmem: every DPU's MRAM together", () => {
  it("holds the weights of GEMMs on the DPUs; the whole-system bound is checked before any layout", async () => {
    const file = join(dir, "small-upmem.pim");
    writeFileSync(file, "system small {\n  target = upmem\n  dpus = 4\n  mram = 64 KiB\n}\n");
    // llama-tiny's 425 KiB of fp32 weights on 4 x 64 KiB of MRAM (--no-cooperation: GEMMs on the DPUs).
    const r = await pimc("compile", "examples/tiny-llama.pim", "--system", file, "--no-cooperation");
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/^pimc: error: small: weights [\d.]+ KiB .* exceed MRAM \(256 KiB\)/);
    // With cooperation the tiny GEMMs stay on the host: its DRAM (no size given) holds them.
    const model = loadModel("examples/tiny-llama.pim");
    const w = decode(1, 16);
    const c = await compileModel(model, flags(file), w, 2);
    expect(footprint(c.module, c.target.memories!(c.system), w)).toEqual([
      { memory: { name: "MRAM", bytes: 4 * 65536 }, weights: 0, kv: 0, activations: 0 },
    ]);
  });
});

describe("positions", () => {
  it("--seq past the model's positions exits 2 naming the limit, before any work", async () => {
    const r = await pimc(
      "bench",
      "examples/llama2-7b.pim",
      "--system",
      "examples/systems/h100.pim",
      "--phase",
      "prefill",
      "--seq",
      "1000000",
    );
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toContain(
      "a prompt of 1000000 tokens needs 1000000 positions; the model has 4096 (max_positions",
    );
  });

  it("the last position fits, one more does not (compile --context, decode adds the new token)", async () => {
    const model = loadModel("test/fixtures/llama-tiny");
    const max = model.config!.max_positions;
    expect(positionProblem(model, decode(1, max - 1))).toBeUndefined();
    expect(positionProblem(model, decode(1, max))).toContain(
      `need ${max + 1} positions; the model has ${max}`,
    );
    const ok = await pimc("compile", "test/fixtures/llama-tiny", "--context", String(max - 1), "--json");
    expect(ok.code, ok.stderr).toBe(0);
    const bad = await pimc("compile", "test/fixtures/llama-tiny", "--context", String(max), "--json");
    expect(bad.code).toBe(2);
    expect(oneLine(bad.stderr)).toContain("max_positions");
  });

  it("the built-in default workload is shortened to a small model's positions", async () => {
    const r = await pimc("compile", "test/fixtures/llama-tiny", "--json");
    expect(r.code, r.stderr).toBe(0);
    const w = (JSON.parse(r.stdout) as { workload: Workload }).workload;
    expect(w.context + w.speculation).toBe(128);
  });
});

describe("--no-capacity-check", () => {
  it("times an overflowing model with one warning line naming the memory", async () => {
    const model = loadModel("test/fixtures/llama-tiny");
    const w = decode(4, 100);
    const c = await compileModel(model, flags(xpuSystem(1e9)), w, 2);
    const [u] = footprint(c.module, c.target.memories!(c.system), w);
    const small = xpuSystem(u!.weights);
    const args = ["bench", "test/fixtures/llama-tiny", "--system", small, "--batch", "4", "--context", "100"];
    expect((await pimc(...args)).code).toBe(2);
    const r = await pimc(...args, "--no-capacity-check", "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(oneLine(r.stderr)).toMatch(
      /^pimc: warning: --no-capacity-check: tight: weights .* exceed the xPU's HBM/,
    );
    expect((JSON.parse(r.stdout) as { steps: unknown[] }).steps).toHaveLength(1);
  });
});

describe("serve: admission control", () => {
  const flat: StepTiming = { prefill: () => 1, decode: () => 1 };
  const at0 = (prompt: number, output: number): Request => ({ arrival: 0, prompt, output });

  it("a request waits until finished ones free the KV cache, and one that never fits is rejected", () => {
    const trace = [at0(30, 30), at0(30, 30), at0(50, 100), at0(10, 10), at0(100, 100)];
    for (const batching of ["continuous", "static"] as const) {
      const r = simulate(trace, flat, { batching, maxBatch: 8, capacity: { tokens: 150, positions: 180 } });
      // 60 + 60 fit; 150 does not beside them and waits; 200 exceeds the positions.
      expect(r.rejected).toEqual({ memory: [], positions: [4] });
      expect(r.waited).toBeGreaterThanOrEqual(1);
      expect(r.requests.map((q) => q.id).sort()).toEqual([0, 1, 2, 3]);
      const third = r.requests.find((q) => q.id === 2)!;
      const first = r.requests.find((q) => q.id === 0)!;
      expect(third.firstToken).toBeGreaterThan(first.finish);
      const m = metrics(trace, r);
      expect([m.requests, m.rejected_positions, m.rejected_memory]).toEqual([4, 1, 0]);
      expect(m.tokens).toBe(30 + 30 + 100 + 10);
    }
    const r = simulate(trace, flat, { batching: "continuous", maxBatch: 8, capacity: { tokens: 100 } });
    expect(r.rejected.memory).toEqual([2, 4]);
    // Without a budget everything joins at once.
    const free = simulate(trace, flat, { batching: "continuous", maxBatch: 8 });
    expect([free.waited, free.requests.length]).toEqual([0, 5]);
  });

  it("pimc serve reports the KV-cache room, the waits and the rejections", async () => {
    const model = loadModel("test/fixtures/llama-tiny");
    const c = await compileModel(model, flags(xpuSystem(1e9)), decode(1, 8), 2);
    const map = c.target.memories!(c.system);
    const perToken = footprint(c.module, map, decode(1, 0))[0]!.kv;
    // Room for 150 cached tokens beside the weights and the activations serve reserves: those of a
    // full decode step (4 sequences) or of the longest prefill (prompts of at most 100 tokens).
    const acts = (w: Workload) => footprint(c.module, map, w)[0]!;
    const reserve = Math.max(
      acts(decode(4, 0)).activations,
      acts({ ...defaultWorkload("prefill"), prompt: 100 }).activations,
    );
    const system = xpuSystem(acts(decode(1, 0)).weights + reserve + 150 * perToken);
    const args = ["serve", "test/fixtures/llama-tiny", "--system", system, "--rate", "1000", "--count", "24"];
    const shape = ["--prompt", "20-100", "--output", "10-40", "--max-batch", "4"];
    const r = await pimc(...args, ...shape, "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as {
      kv_tokens: number;
      requests: number;
      waited: number;
      rejected_memory: number;
      rejected_positions: number;
      rejected: { memory: number[]; positions: number[] };
    };
    expect(j.kv_tokens).toBeGreaterThanOrEqual(150);
    expect(j.kv_tokens).toBeLessThan(300);
    expect(j.requests).toBeGreaterThan(0);
    expect(j.waited).toBeGreaterThan(0);
    expect(j.requests + j.rejected_memory + j.rejected_positions).toBe(24);
    expect(j.rejected_positions).toBe(j.rejected.positions.length);
    const text = await pimc(...args, ...shape);
    expect(text.stdout).toMatch(/admission KV cache room for \d+ tokens: \d+ requests waited for memory/);
  });
});
