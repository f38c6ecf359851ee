/**
 * `pimc tune`: the Tile-Selector against the emulator. The oracle's lower bound never exceeds the
 * emulated time, branch-and-bound finds what timing every candidate finds, the selector's pruning is
 * exact for its own model, and the selector is within the issue's targets on Llama-2-7B's GEMMs.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { loadModel } from "../src/frontend/load.js";
import { resolveWorkload } from "../src/cli/workload-flags.js";
import type { PipelineFlags } from "../src/cli/pipeline.js";
import { distributions, estimateGemm, kernelLowerBound, type GemmShape } from "../targets/upmem/gemm.js";
import { select } from "../targets/upmem/selector.js";
import { DEFAULT_SYSTEM, zUpmemSystem } from "../targets/upmem/system.js";
import {
  candidates,
  emulatedGemm,
  emulatedKernel,
  gemmLowerBound,
  gemmShapes,
  oracle,
  summarize,
  tuneShapes,
} from "../targets/upmem/tune.js";

const sys = DEFAULT_SYSTEM;
const flags = (weights: "f32" | "int8"): PipelineFlags => ({
  disablePass: [],
  printBefore: [],
  printAfter: [],
  weights,
});

/** Every `every`-th candidate of a shape (a spread over distributions and tiles). */
const sample = (s: GemmShape, every: number) => candidates(s, sys).filter((_, i) => i % every === 0);

describe("oracle", () => {
  const shapes: [GemmShape, number][] = [
    [{ m: 1, n: 64, k: 176, dtype: "i8" }, 3],
    [{ m: 3, n: 300, k: 200, dtype: "i8" }, 7],
    [{ m: 8, n: 128, k: 64, dtype: "f32" }, 7],
    [{ m: 128, n: 352, k: 64, dtype: "i8" }, 23],
    [{ m: 1, n: 1600, k: 1600, dtype: "f32" }, 11],
  ];
  test.each(shapes)("the lower bound never exceeds the emulated time: %j", (s, every) => {
    const cs = sample(s, every);
    expect(cs.length).toBeGreaterThan(20);
    for (const t of cs) {
      const k = emulatedKernel(s, t, sys);
      expect(kernelLowerBound(s, t, sys), JSON.stringify(t)).toBeLessThanOrEqual(k.cycles * (1 + 1e-12));
      expect(gemmLowerBound(s, t, sys)).toBeLessThanOrEqual(emulatedGemm(s, t, sys) * (1 + 1e-12));
    }
  });

  test("the lower bound counts the emulator's instructions exactly", () => {
    // With one cycle per instruction and free DMAs the bound is the instruction count.
    const fast = {
      ...sys,
      pipeline: { ...sys.pipeline, issue_interval: 1 },
      dma: { ...sys.dma, read_alpha: 1e-9, write_alpha: 1e-9, beta: 1e-12 },
    };
    const s: GemmShape = { m: 3, n: 300, k: 200, dtype: "i8" };
    for (const t of sample(s, 13)) {
      const { instructions } = emulatedKernel(s, t, fast);
      expect(kernelLowerBound(s, t, fast)).toBeCloseTo(instructions, 3);
    }
  });

  test.each<GemmShape>([
    { m: 1, n: 64, k: 176, dtype: "i8" },
    { m: 3, n: 40, k: 32, dtype: "i8" },
  ])("branch-and-bound finds the tiling timing every candidate finds: %j", (s) => {
    const all = oracle(s, { ...sys }, { prune: false })!;
    const pruned = oracle(s, { ...sys })!;
    expect(all.timed).toBe(all.candidates);
    expect(pruned.candidates).toBe(all.candidates);
    expect(pruned.timed).toBeLessThan(all.timed / 10);
    expect(pruned.tiling).toEqual(all.tiling);
    expect(pruned.emulated_s).toBe(all.emulated_s);
  });
});

describe("Tile-Selector", () => {
  test.each<GemmShape>([
    { m: 1, n: 4096, k: 4096, dtype: "i8" },
    { m: 128, n: 352, k: 64, dtype: "i8" },
    { m: 1, n: 1600, k: 6400, dtype: "f32" },
  ])("its pruning is exact: the model's best over every legal tiling, %j", (s) => {
    const c = select(s, sys)!;
    let best = Infinity;
    for (const t of candidates(s, sys)) best = Math.min(best, estimateGemm(s, t, sys).total);
    expect(c.estimate.total).toBeCloseTo(best, 12);
  });

  test.each(["f32", "int8"] as const)(
    "on Llama-2-7B's GEMM shapes (%s): geomean ratio >= 0.98, within 5 percent >= 0.95",
    async (weights) => {
      const path = "examples/llama2-7b.pim";
      const { shapes, system } = await gemmShapes(
        loadModel(path),
        { ...flags(weights), system: "examples/systems/upmem-2048.pim" },
        resolveWorkload(path, {}),
      );
      expect(shapes.map((s) => s.m).sort((a, b) => a - b)).toEqual([1, 1, 1, 1, 1, 128, 128, 128, 128, 128]);
      expect(new Set(shapes.map((s) => s.dtype))).toEqual(new Set([weights === "int8" ? "i8" : "f32"]));
      const rs = tuneShapes(shapes, system, { exhaustive: true });
      for (const r of rs) {
        expect(r.ratio).toBeGreaterThan(0);
        expect(r.ratio).toBeLessThanOrEqual(1 + 1e-12);
        expect(r.oracle!.timed).toBeLessThan(r.oracle!.candidates);
      }
      const sum = summarize(rs);
      expect(sum.geomean_ratio).toBeGreaterThanOrEqual(0.98);
      expect(sum.within_5pct_fraction).toBeGreaterThanOrEqual(0.95);
    },
  );
});

describe("pimc tune", () => {
  test("--exhaustive --json on tiny-llama", () => {
    const r = spawnSync(
      process.execPath,
      ["dist/src/cli/bin.js", "tune", "examples/tiny-llama.pim", "--exhaustive", "--json"],
      { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } },
    );
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as Record<string, unknown> & { shapes: Record<string, unknown>[] };
    expect(j).toMatchObject({ model: "llama_tiny", system: "upmem_default" });
    expect(j.shapes.length).toBe(8);
    for (const s of j.shapes) {
      expect(Object.keys(s)).toEqual(["m", "n", "k", "dtype", "selector", "oracle", "ratio"]);
      expect(Object.keys(s.selector as object)).toEqual([
        "tiling",
        "variant",
        "estimate_s",
        "emulated_s",
        "select_ms",
      ]);
      expect(Object.keys(s.oracle as object)).toEqual(["tiling", "emulated_s", "candidates", "timed"]);
      expect(s.ratio).toBeLessThanOrEqual(1);
    }
    for (const k of ["geomean_ratio", "within_5pct_fraction", "max_select_ms"])
      expect(typeof j[k], k).toBe("number");
    expect(j.geomean_ratio).toBeGreaterThanOrEqual(0.98);
    expect(j.within_5pct_fraction).toBeGreaterThanOrEqual(0.95);
  });

  test("errors are one line with exit code 2", () => {
    const run = (...args: string[]) =>
      spawnSync(process.execPath, ["dist/src/cli/bin.js", "tune", ...args], {
        encoding: "utf8",
        env: { ...process.env, NO_COLOR: "1" },
      });
    const cpu = run("examples/tiny-llama.pim", "--system", "examples/systems/host-cpu.pim");
    expect(cpu.status).toBe(2);
    expect(cpu.stderr.trim().split("\n")).toHaveLength(1);
    expect(cpu.stderr).toContain("needs an upmem system");
    const noPrune = run("examples/tiny-llama.pim", "--no-prune");
    expect(noPrune.status).toBe(2);
    expect(noPrune.stderr).toContain("--no-prune needs --exhaustive");
  });
});

describe("DPU counts that are not powers of two", () => {
  const prim = zUpmemSystem.parse({ dpus: 2556, frequency: 350e6, max_tasklets: 16 });
  test("distributions fill the DPUs (dn = 2556 / (dm x dk)) and the selector uses them", () => {
    const shape: GemmShape = { m: 1, n: 4096, k: 4096, dtype: "f32" };
    const ds = distributions(shape, prim);
    expect(ds).toContainEqual({ dm: 1, dn: 159, dk: 16 });
    expect(ds.every((d) => d.dm * d.dn * d.dk <= 2556)).toBe(true);
    const c = select(shape, prim)!;
    const used = c.tiling.dm * c.tiling.dn * c.tiling.dk;
    expect(used).toBeGreaterThan(2048);
    // Restricted to powers of two it is slower.
    const pow2 = select(shape, { ...prim, dpus: 2048 })!;
    expect(c.estimate.total).toBeLessThan(pow2.estimate.total);
  });
  test("a model verifies on 6 DPUs (blocks of 3 DPUs)", () => {
    const dir = mkdtempSync(join(tmpdir(), "pimc-six-"));
    const sys = join(dir, "six.pim");
    writeFileSync(sys, "system six {\n  target = upmem\n  dpus = 6\n  dpus_per_rank = 4\n}\n");
    const r = spawnSync(
      process.execPath,
      [
        "dist/src/cli/bin.js",
        "verify",
        "test/fixtures/llama-tiny",
        "--system",
        sys,
        "--no-cooperation",
        "--attention",
        "pim",
      ],
      { encoding: "utf8" },
    );
    rmSync(dir, { recursive: true, force: true });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});
