/**
 * `pimc tune`: the Tile-Selector against the emulator over the full tiling space. The space is
 * counted exactly, the oracle's lower bound never exceeds the emulated time (in every dimension:
 * odd tasklet counts, double buffering, K splits inside the DPU, any distribution), branch-and-bound
 * finds what timing every candidate finds, the selector's pruning is exact for its own model, and
 * the selector is near the full space's best on representative GEMMs. (The sweep over four models,
 * two systems, two precisions and both phases is `npm run bench`.)
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import {
  distributions,
  estimateGemm,
  kernelLowerBound,
  kernelModels,
  kSplitFloor,
  selectorFamilies,
  type Distribution,
  type GemmShape,
  type Tiling,
} from "../targets/upmem/gemm.js";
import { perCallFor } from "../targets/upmem/base.js";
import { bestTiles, select, selectorLayouts } from "../targets/upmem/selector.js";
import {
  blockOf,
  compareTilings,
  distributionOk,
  familyTiles,
  isLegal,
  legalDistributions,
  legalTilings,
  spaceSize,
  tileFamilies,
} from "../targets/upmem/space.js";
import { DEFAULT_SYSTEM, zUpmemSystem } from "../targets/upmem/system.js";
import { pimc } from "./util.js";
import {
  candidates,
  emulatedGemm,
  emulatedKernel,
  gemmLowerBound,
  oracle,
  summarize,
  tuneShapes,
} from "../targets/upmem/tune.js";

const sys = DEFAULT_SYSTEM;
const prim = zUpmemSystem.parse({ dpus: 2556, frequency: 350e6, max_tasklets: 16 });

/**
 * About `n` legal tilings of a shape spread over its distributions, tile families and their tiles
 * (tasklets, buffering, K splits), without enumerating the space.
 */
function sample(s: GemmShape, n: number, on = sys): Tiling[] {
  const ds = legalDistributions(s, on);
  const step = Math.max(1, Math.floor(ds.length / n));
  const per = Math.ceil(n / ds.length);
  const out: Tiling[] = [];
  for (let i = 0, j = 0; i < ds.length && out.length < n; i += step) {
    const fams = tileFamilies(s.dtype, blockOf(s, ds[i]!), on);
    for (let r = 0; r < per && fams.length > 0; r++, j++) {
      const ts = familyTiles(fams[(j * 7919) % fams.length]!);
      out.push({ ...ds[i]!, ...ts[(j * 104729) % ts.length]! });
    }
  }
  return out;
}

describe("the full tiling space", () => {
  test.each<GemmShape>([
    { m: 1, n: 64, k: 176, dtype: "i8" },
    { m: 3, n: 40, k: 32, dtype: "i8" },
    { m: 2, n: 12, k: 48, dtype: "f32" },
  ])("space_size counts every legal tiling, without materialising them: %j", (s) => {
    let n = 0;
    let odd = 0;
    let splits = 0;
    for (const t of legalTilings(s, sys)) {
      n++;
      if (t.tasklets % 2 === 1) odd++;
      if ((t.ks ?? 1) > 1) splits++;
    }
    expect(spaceSize(s, sys)).toBe(n);
    expect(odd).toBeGreaterThan(0);
    expect(splits).toBeGreaterThan(0);
  });

  test("what is legal: every tasklet count, non-degenerate blocks, K splits with a chunk per item", () => {
    const s: GemmShape = { m: 3, n: 40, k: 32, dtype: "i8" };
    const all = candidates(s, sys);
    // Every tasklet count of the system, any dm x dn x dk that fits (not only powers of two).
    expect(new Set(all.map((t) => t.tasklets))).toEqual(new Set(Array.from({ length: 24 }, (_, i) => i + 1)));
    expect(all.some((t) => t.dn === 3 && t.dk === 1)).toBe(true);
    for (const d of legalDistributions(s, sys)) {
      const b = blockOf(s, d);
      expect((d.dm - 1) * b.mb).toBeLessThan(s.m);
      expect((d.dk - 1) * b.kb).toBeLessThan(s.k);
      expect(d.dm * d.dn * d.dk).toBeLessThanOrEqual(sys.dpus);
    }
    // A K split gives each of its items a chunk; without double buffering.
    for (const t of all.filter((x) => (x.ks ?? 1) > 1)) {
      const kc = blockOf(s, t).kb / t.tk;
      expect((t.ks! - 1) * Math.ceil(kc / t.ks!)).toBeLessThan(kc);
      expect(t.double).toBe(false);
    }
    // dn = 20 leaves every DPU 2 rows; dn = 30 would leave the last 10 with none.
    expect(isLegal(s, { dm: 1, dn: 20, dk: 1, tasklets: 1, tm: 1, tn: 2, tk: 32, double: false }, sys)).toBe(
      true,
    );
    expect(isLegal(s, { dm: 1, dn: 30, dk: 1, tasklets: 1, tm: 1, tn: 2, tk: 32, double: false }, sys)).toBe(
      false,
    );
  });

  test("every tiling of the space is a kernel the DPU model accepts (WRAM, DMA rules, MRAM)", () => {
    const s: GemmShape = { m: 3, n: 300, k: 200, dtype: "i8" };
    const ts = sample(s, 1500);
    expect(ts.length).toBeGreaterThan(1000);
    for (const t of ts) expect(emulatedKernel(s, t, sys).cycles, JSON.stringify(t)).toBeGreaterThan(0);
  });
});

describe("oracle", () => {
  const shapes: [GemmShape, number, typeof sys][] = [
    [{ m: 1, n: 64, k: 176, dtype: "i8" }, 2048, sys],
    [{ m: 3, n: 300, k: 200, dtype: "i8" }, 2048, sys],
    [{ m: 8, n: 128, k: 64, dtype: "f32" }, 2048, sys],
    [{ m: 1, n: 1600, k: 1600, dtype: "f32" }, 2048, sys],
    [{ m: 1, n: 4096, k: 4096, dtype: "i8" }, 2556, prim],
  ];
  test.each(shapes)("the lower bound never exceeds the emulated time: %j on %i DPUs", (s, _, on) => {
    const cs = sample(s, 400, on);
    expect(cs.length).toBeGreaterThan(300);
    // The sample spans the new dimensions.
    expect(cs.some((t) => (t.ks ?? 1) > 1)).toBe(true);
    expect(cs.some((t) => t.tasklets % 2 === 1 && t.tasklets > 11)).toBe(true);
    expect(cs.some((t) => t.double)).toBe(true);
    for (const t of cs) {
      const k = emulatedKernel(s, t, on);
      expect(kernelLowerBound(s, t, on), JSON.stringify(t)).toBeLessThanOrEqual(k.cycles * (1 + 1e-12));
      expect(gemmLowerBound(s, t, on)).toBeLessThanOrEqual(emulatedGemm(s, t, on) * (1 + 1e-12));
    }
  });

  test("the K-split floor bounds every split of a family from below", () => {
    const s: GemmShape = { m: 1, n: 64, k: 4096, dtype: "i8" };
    const d = { dm: 1, dn: 8, dk: 1 };
    let n = 0;
    for (const f of tileFamilies(s.dtype, blockOf(s, d), sys))
      for (const ks of f.splits)
        for (const tasklets of [1, Math.ceil(f.t1 / 2), f.t1]) {
          const t = { ...d, tasklets, tm: f.tm, tn: f.tn, tk: f.tk, double: false, ks };
          const floor = kSplitFloor(s, { ...t, tasklets: f.t1 }, sys);
          expect(floor).toBeLessThanOrEqual(kernelLowerBound(s, t, sys) * (1 + 1e-12));
          n++;
        }
    expect(n).toBeGreaterThan(100);
  });

  test("the lower bound counts the emulator's instructions exactly", () => {
    // With one cycle per instruction and free DMAs the bound is the instruction count.
    const fast = {
      ...sys,
      pipeline: { ...sys.pipeline, issue_interval: 1 },
      dma: { ...sys.dma, read_alpha: 1e-9, write_alpha: 1e-9, beta: 1e-12 },
    };
    const s: GemmShape = { m: 3, n: 300, k: 200, dtype: "i8" };
    const cs = sample(s, 300, fast);
    expect(cs.some((t) => (t.ks ?? 1) > 1)).toBe(true);
    for (const t of cs) {
      const { instructions } = emulatedKernel(s, t, fast);
      expect(kernelLowerBound(s, t, fast), JSON.stringify(t)).toBeCloseTo(instructions, 3);
    }
  });

  test.each<GemmShape>([
    { m: 1, n: 8, k: 32, dtype: "i8" },
    { m: 2, n: 4, k: 16, dtype: "i8" },
  ])("branch-and-bound finds the tiling timing every candidate finds: %j", (s) => {
    const all = oracle(s, { ...sys }, { prune: false })!;
    const pruned = oracle(s, { ...sys })!;
    expect(all.timed).toBe(all.candidates);
    expect(all.candidates).toBe(spaceSize(s, sys));
    expect(pruned.candidates).toBe(all.candidates);
    expect(pruned.timed).toBeLessThan(all.timed / 5);
    expect(pruned.tiling).toEqual(all.tiling);
    expect(pruned.emulated_s).toBe(all.emulated_s);
    // Ties go to the first tiling in compareTilings order.
    for (const t of legalTilings(s, sys))
      if (emulatedGemm(s, t, sys) === all.emulated_s)
        expect(compareTilings(all.tiling, t)).toBeLessThanOrEqual(0);
  });
});

/** The selector's candidates: every layout's distributions with every tile of its families. */
function selectorCandidates(s: GemmShape, on: typeof sys): Tiling[] {
  const l = selectorLayouts(s, on, [s.m], on.dpus, on.mram / 2);
  const out: Tiling[] = [];
  l.dn.forEach((dn, i) => {
    const d = { dm: l.dms[i]!, dn, dk: l.dk[i]! };
    if (d.dm === 0) return;
    for (const { tasklets, ...f } of selectorFamilies(s, d, on))
      for (const t of tasklets) out.push({ ...d, ...f, tasklets: t });
  });
  return out;
}

describe("Tile-Selector", () => {
  test.each<[GemmShape, number, typeof sys]>([
    [{ m: 1, n: 4096, k: 4096, dtype: "i8" }, 2048, sys],
    [{ m: 128, n: 352, k: 64, dtype: "i8" }, 2048, sys],
    [{ m: 1, n: 1600, k: 6400, dtype: "f32" }, 2556, prim],
  ])("its pruning is exact: the model's best over its candidates, %j on %i DPUs", (s, _, on) => {
    const c = select(s, on)!;
    let best = Infinity;
    // Collected, not one expect per candidate (tens of thousands of them).
    const illegal: Tiling[] = [];
    for (const t of selectorCandidates(s, on)) {
      if (!isLegal(s, t, on)) illegal.push(t);
      best = Math.min(best, estimateGemm(s, t, on).total);
    }
    expect(illegal).toEqual([]);
    expect(c.estimate.total).toBeCloseTo(best, 12);
  });

  test("the family floor it prunes with never exceeds the model, for any tasklet count", () => {
    for (const [s, on] of [
      [{ m: 1, n: 4096, k: 4096, dtype: "i8" }, sys],
      [{ m: 128, n: 352, k: 64, dtype: "f32" }, prim],
    ] as const) {
      const cs = selectorCandidates(s, on);
      expect(cs.length).toBeGreaterThan(1000);
      const above: string[] = [];
      for (const t of cs.filter((_, i) => i % 7 === 0)) {
        const { cycles, floor } = kernelModels(s, t, on);
        for (const tasklets of [1, 5, 11, 16, on.max_tasklets])
          if (!(floor({ ...t, tasklets }) <= cycles({ ...t, tasklets })))
            above.push(JSON.stringify({ ...t, tasklets }));
      }
      expect(above).toEqual([]);
    }
  });

  test("without pooling (DPUs allocated and W sent every call) it beats every power-of-two grid", () => {
    const s: GemmShape = { m: 128, n: 4096, k: 4096, dtype: "i8" };
    const perCall = (d: Distribution) => perCallFor({ ...s, m: 1 }, d, sys, false);
    const c = select(s, sys, { perCall })!;
    let grids = 0;
    for (let dm = 1; dm <= s.m; dm *= 2)
      for (let dn = 1; dm * dn <= sys.dpus; dn *= 2)
        for (let dk = 1; dm * dn * dk <= sys.dpus; dk *= 2) {
          const d = { dm, dn, dk };
          if (!distributionOk(s, d, sys)) continue;
          const r = bestTiles(s, d, sys, [s.m]);
          if (r) expect(r.total + perCall(d)).toBeGreaterThanOrEqual(c.estimate.total * (1 - 1e-12));
          grids++;
        }
    expect(grids).toBeGreaterThan(300);
    // A small grid: allocating 2048 DPUs alone takes 82 ms.
    expect(c.tiling.dm * c.tiling.dn * c.tiling.dk).toBeLessThanOrEqual(1024);
  });

  // Llama-2-7B INT8 decode (the old candidate list reached 0.753 of the full space on 1x12288x4096),
  // a prefill GEMM and an f32 decode GEMM, on both systems.
  test.each<[GemmShape, number, typeof sys]>([
    [{ m: 1, n: 12288, k: 4096, dtype: "i8" }, 2048, sys],
    [{ m: 1, n: 4096, k: 11008, dtype: "i8" }, 2048, sys],
    [{ m: 128, n: 4096, k: 4096, dtype: "i8" }, 2048, sys],
    [{ m: 1, n: 4096, k: 4096, dtype: "f32" }, 2556, prim],
  ])("is within 5 percent of the full space's best on the emulator: %j on %i DPUs", (s, _, on) => {
    const [r] = tuneShapes([s], on, { exhaustive: true });
    expect(r!.space_size).toBe(spaceSize(s, on));
    expect(r!.oracle!.timed).toBeLessThan(r!.space_size! / 1000);
    expect(r!.ratio).toBeLessThanOrEqual(1 + 1e-12);
    expect(r!.ratio).toBeGreaterThanOrEqual(1 / 1.05);
    expect(summarize([r!]).space_size).toBe(r!.space_size);
  });
});

describe("pimc tune", () => {
  test("--exhaustive --json on tiny-llama", async () => {
    const r = await pimc("tune", "examples/tiny-llama.pim", "--target", "upmem", "--exhaustive", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as Record<string, unknown> & { shapes: Record<string, unknown>[] };
    expect(j).toMatchObject({ model: "llama_tiny", system: "upmem_default" });
    expect(j.shapes.length).toBe(8);
    let total = 0;
    for (const s of j.shapes) {
      expect(Object.keys(s)).toEqual(["m", "n", "k", "dtype", "selector", "oracle", "ratio", "space_size"]);
      expect(Object.keys(s.selector as object)).toEqual([
        "tiling",
        "variant",
        "estimate_s",
        "emulated_s",
        "select_ms",
      ]);
      expect(Object.keys(s.oracle as object)).toEqual(["tiling", "emulated_s", "candidates", "timed"]);
      expect(s.ratio).toBeLessThanOrEqual(1);
      const shape = { m: s.m, n: s.n, k: s.k, dtype: s.dtype } as GemmShape;
      expect(s.space_size).toBe(spaceSize(shape, sys));
      expect((s.oracle as { candidates: number }).candidates).toBe(s.space_size);
      total += s.space_size as number;
    }
    for (const k of ["geomean_ratio", "within_5pct_fraction", "space_size", "max_select_ms"])
      expect(typeof j[k], k).toBe("number");
    expect(j.space_size).toBe(total);
    expect(j.geomean_ratio).toBeGreaterThanOrEqual(0.98);
    expect(j.within_5pct_fraction).toBeGreaterThanOrEqual(0.95);
  });

  test("errors are one line with exit code 2", async () => {
    const run = (...args: string[]) => pimc("tune", ...args);
    // One device (the CPU, the xPU alone): nothing to place, a report without shapes.
    const cpu = await run("examples/tiny-llama.pim", "--system", "examples/systems/host-cpu.pim");
    expect(cpu.code, cpu.stderr).toBe(0);
    expect(cpu.stdout).toMatch(/on host_cpu: one device \(host\), no PIM device beside it: nothing to place/);
    const gpu = await run("examples/tiny-llama.pim", "--system", "examples/systems/h100.pim", "--json");
    expect(gpu.code, gpu.stderr).toBe(0);
    expect(JSON.parse(gpu.stdout)).toMatchObject({ system: "h100", shapes: [], alpha: null });
    // Duplex: the xPU against its Logic-PIM.
    const duplex = await run("examples/tiny-llama.pim", "--system", "examples/systems/duplex.pim");
    expect(duplex.code, duplex.stderr).toBe(0);
    expect(duplex.stdout).toMatch(/Logic-PIM at 1 .* xPU at 1/);
    const alpha = await run(
      "examples/tiny-llama.pim",
      "--system",
      "examples/systems/sail-n1-64.pim",
      "--json",
    );
    expect(alpha.code, alpha.stderr).toBe(0);
    expect((JSON.parse(alpha.stdout) as { alpha: number }).alpha).toBeGreaterThanOrEqual(0);
    const ex = await run(
      "examples/tiny-llama.pim",
      "--system",
      "examples/systems/hbm-pim-64ch.pim",
      "--exhaustive",
    );
    expect(ex.stderr).toMatch(/--exhaustive searches a target's own tilings; on hbm-pim, tune reports alpha/);
    const noPrune = await run("examples/tiny-llama.pim", "--no-prune");
    expect(noPrune.code).toBe(2);
    expect(noPrune.stderr).toContain("--no-prune needs --exhaustive");
  });
});

describe("DPU counts that are not powers of two", () => {
  test("distributions fill the DPUs (dn = 2556 / (dm x dk)) and the selector uses them", () => {
    const shape: GemmShape = { m: 1, n: 4096, k: 4096, dtype: "f32" };
    const ds = distributions(shape, prim);
    expect(ds).toContainEqual({ dm: 1, dn: 159, dk: 16 });
    expect(ds.every((d) => d.dm * d.dn * d.dk <= 2556)).toBe(true);
    const c = select(shape, prim)!;
    const used = c.tiling.dm * c.tiling.dn * c.tiling.dk;
    expect(used).toBeGreaterThan(2048);
    // Restricted to 2048 DPUs it is slower.
    const fewer = select(shape, { ...prim, dpus: 2048 })!;
    expect(c.estimate.total).toBeLessThan(fewer.estimate.total);
  });
  test("a model verifies on 6 DPUs (blocks of 3 DPUs)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pimc-six-"));
    const six = join(dir, "six.pim");
    writeFileSync(six, "system six {\n  target = upmem\n  dpus = 6\n  dpus_per_rank = 4\n}\n");
    const r = await pimc(
      "verify",
      "test/fixtures/llama-tiny",
      "--system",
      six,
      "--no-cooperation",
      "--attention",
      "pim",
    );
    rmSync(dir, { recursive: true, force: true });
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });
});
