import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { metrics, percentile, simulate, type Request, type StepTiming } from "../src/exec/serve.js";
import { poissonRequests, readRequests } from "../src/frontend/requests.js";
import { UserError } from "../src/errors.js";
import { pimc, tempDir } from "./util.js";

/** Prefill 1 s, decode 0.1 s per step, whatever the batch. */
const flat: StepTiming = { prefill: () => 1, decode: () => 0.1 };

describe("the serving simulator", () => {
  const trace: Request[] = [
    { arrival: 0, prompt: 4, output: 3 },
    { arrival: 0.5, prompt: 4, output: 2 },
  ];
  it("continuous batching: the second request joins between steps and leaves when done", () => {
    const r = simulate(trace, flat, { batching: "continuous", maxBatch: 2 });
    // r0 prefilled 0-1; r1 joins, prefilled 1-2; both decode 2-2.1 (r1 done); r0 decodes 2.1-2.2.
    expect(r.requests.map((q) => q.firstToken)).toEqual([1, 2]);
    expect(r.requests[0]!.tbt.map((x) => +x.toFixed(9))).toEqual([1.1, 0.1]);
    expect(r.requests[1]!.tbt.map((x) => +x.toFixed(9))).toEqual([0.1]);
    expect(r.makespan).toBeCloseTo(2.2, 12);
    expect([r.prefillSteps, r.decodeSteps]).toEqual([2, 2]);
    expect(r.meanBatch).toBe(1.5);
  });
  it("static batching: a batch runs to its end before the next one starts", () => {
    const r = simulate(trace, flat, { batching: "static", maxBatch: 2 });
    // r0 alone (r1 had not arrived): 0-1 prefill, two decodes to 1.2; then r1: 1.2-2.2, 2.2-2.3.
    expect(r.requests.map((q) => +q.firstToken.toFixed(9))).toEqual([1, 2.2]);
    expect(r.makespan).toBeCloseTo(2.3, 12);
    const m = metrics(trace, r);
    expect(m.ttft.p50).toBeCloseTo(1, 12);
    expect(m.ttft.p99).toBeCloseTo(1.7, 12);
  });
  it("every request gets exactly its output tokens, after its prefill, whatever the trace (property)", () => {
    const arbTrace = fc.array(
      fc.record({
        arrival: fc.double({ min: 0, max: 10, noNaN: true }),
        prompt: fc.integer({ min: 1, max: 64 }),
        output: fc.integer({ min: 1, max: 20 }),
      }),
      { minLength: 1, maxLength: 30 },
    );
    const timing: StepTiming = {
      prefill: (b, s) => 0.01 + 1e-4 * b * s,
      decode: (b, c) => 0.005 + 1e-5 * b * c,
    };
    fc.assert(
      fc.property(
        arbTrace,
        fc.constantFrom("static", "continuous" as const),
        fc.integer({ min: 1, max: 8 }),
        (tr, batching, maxBatch) => {
          const r = simulate(tr, timing, { batching, maxBatch });
          expect(r.requests).toHaveLength(tr.length);
          r.requests.forEach((q, i) => {
            expect(q.tbt.length + 1).toBe(tr[i]!.output);
            expect(q.firstToken - q.arrival).toBeGreaterThanOrEqual(0.01);
            expect(q.finish).toBeGreaterThanOrEqual(q.firstToken);
          });
          expect(simulate(tr, timing, { batching, maxBatch })).toEqual(r);
        },
      ),
    );
  });
  it("one sequence per step: static and continuous batching are the same schedule", () => {
    const tr = poissonRequests({ rate: 3, count: 20, prompt: [8, 64], output: [1, 12], seed: 5 });
    const timing: StepTiming = { prefill: (_b, s) => 0.01 * s, decode: () => 0.02 };
    expect(simulate(tr, timing, { batching: "static", maxBatch: 1 })).toEqual(
      simulate(tr, timing, { batching: "continuous", maxBatch: 1 }),
    );
  });
  it("percentiles are nearest-rank", () => {
    expect(percentile([5, 1, 3, 2, 4], 50)).toBe(3);
    expect(percentile([1, 2, 3, 4], 90)).toBe(4);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });
});

describe("request traces", () => {
  const dir = tempDir();
  it("reads CSV and JSON and rejects bad rows with file:line", () => {
    const csv = join(dir, "t.csv");
    writeFileSync(csv, "arrival,prompt,output\n0,128,32\n# a comment\n0.25,64,8\n");
    expect(readRequests(csv)).toEqual([
      { arrival: 0, prompt: 128, output: 32 },
      { arrival: 0.25, prompt: 64, output: 8 },
    ]);
    const json = join(dir, "t.json");
    writeFileSync(json, JSON.stringify([{ arrival: 1, prompt: 2, output: 3 }]));
    expect(readRequests(json)).toEqual([{ arrival: 1, prompt: 2, output: 3 }]);
    writeFileSync(csv, "arrival,prompt,output\n0,128,32\n1,-4,2\n");
    expect(() => readRequests(csv)).toThrow(
      new UserError(
        `${csv}:3: expected arrival >= 0 and positive integer prompt and output lengths, got "1,-4,2"`,
      ),
    );
    writeFileSync(csv, "time,prompt,output\n");
    expect(() => readRequests(csv)).toThrow(/:1: expected a header with columns arrival,prompt,output/);
  });
  it("generates Poisson traces deterministically", () => {
    const a = poissonRequests({ rate: 10, count: 1000, prompt: [1, 9], output: [5, 5], seed: 3 });
    expect(a).toEqual(poissonRequests({ rate: 10, count: 1000, prompt: [1, 9], output: [5, 5], seed: 3 }));
    // Mean gap 1 / rate.
    expect(a[999]!.arrival / 999).toBeGreaterThan(0.09);
    expect(a[999]!.arrival / 999).toBeLessThan(0.11);
    expect(a.every((r) => r.prompt >= 1 && r.prompt <= 9 && r.output === 5)).toBe(true);
  });
});

describe("pimc serve", () => {
  it("serves a generated trace on the H100 model: continuous batching beats static on throughput and TTFT", async () => {
    const run = async (batching: string) => {
      const r = await pimc(
        "serve",
        "examples/llama2-7b.pim",
        "--system",
        "examples/systems/h100.pim",
        "--rate",
        "20",
        "--count",
        "100",
        "--batching",
        batching,
        "--json",
      );
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as {
        tokens_per_second: number;
        ttft: { p90: number };
        tbt: { p50: number };
        requests: number;
      };
    };
    const c = await run("continuous");
    const s = await run("static");
    expect(c.requests).toBe(100);
    expect(c.tokens_per_second).toBeGreaterThan(s.tokens_per_second);
    expect(c.ttft.p90).toBeLessThan(s.ttft.p90);
  });
  it("serves on every kind of target: an emulated program (upmem), a cost model alone (cpu)", async () => {
    const args = ["--rate", "50", "--count", "12", "--prompt", "8-32", "--output", "4-16", "--json"];
    for (const system of ["upmem-rank", "host-cpu"]) {
      const r = await pimc(
        "serve",
        "examples/tiny-llama.pim",
        "--system",
        `examples/systems/${system}.pim`,
        ...args,
      );
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout) as { requests: number; tokens: number; ttft: { p50: number } };
      expect(j.requests).toBe(12);
      expect(j.ttft.p50).toBeGreaterThan(0);
    }
    // The host CPU's steps come from its cost model, op by op: the host-alone reference exactly.
    const b = await pimc(
      "bench",
      "examples/tiny-llama.pim",
      "--system",
      "examples/systems/host-cpu.pim",
      "--batch",
      "1,8",
      "--baselines",
      "--json",
    );
    expect(b.code, b.stderr).toBe(0);
    for (const s of (JSON.parse(b.stdout) as { steps: { seconds: number; host_only_s: number }[] }).steps)
      expect(s.seconds).toBe(s.host_only_s);
  });

  it("rejects bad requests in one line", async () => {
    for (const args of [
      ["examples/tiny-llama.pim", "--target", "xpu"],
      ["examples/tiny-llama.pim", "--target", "xpu", "--rate", "1", "--requests", "x.csv"],
      ["examples/tiny-llama.pim", "--target", "xpu", "--requests", "x.csv", "--seed", "3"],
      // Every request past tiny-llama's 128 positions (prompts of 128-512 tokens by default).
      ["examples/tiny-llama.pim", "--system", "examples/systems/upmem-rank.pim", "--rate", "1"],
      ["examples/tiny-llama.pim", "--target", "xpu", "--rate", "1", "--prompt", "9-3"],
    ]) {
      const r = await pimc("serve", ...args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });
});
