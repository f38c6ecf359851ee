/**
 * Weight layouts per phase (targets/upmem/layouts.ts): each weight's Pareto front of (MRAM bytes per
 * DPU, seconds per request), the choice within MRAM, and lowering with them: a layout per phase when
 * MRAM holds them, smaller ones (and what each phase pays) when it does not, an error naming `mram`
 * when even the smallest do not fit, and programs that still compute the reference's results.
 */
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { importHf } from "../src/frontend/hf/import.js";
import { defaultWorkload } from "../src/frontend/workload.js";
import { compileModel } from "../src/driver/compile.js";
import { UserError } from "../src/errors.js";
import type { Distribution } from "../targets/upmem/gemm.js";
import {
  decideLayouts,
  weightOptions,
  type Selection,
  type WeightOptions,
} from "../targets/upmem/layouts.js";
import { lowerModule } from "../targets/upmem/lower.js";
import { UpmemMachine } from "../targets/upmem/machine.js";
import { DEFAULT_SYSTEM } from "../targets/upmem/system.js";
import { mramUse } from "../targets/upmem/disasm.js";
import { decodeProgram, encodeProgram } from "../targets/upmem/codec.js";
import { Interpreter, tokenTensor } from "../src/exec/interpreter.js";
import { pimc } from "./util.js";

/**
 * A synthetic weight: layouts dn in 1..8 (dk 1), a W block of `size / dn` bytes, and per phase a
 * time falling with dn at a rate of its own (so phases disagree on the best layout).
 */
function synthetic(name: string, size: number, rates: readonly number[], calls: readonly number[]) {
  const ds: Distribution[] = [1, 2, 4, 8].map((dn) => ({ dm: 1, dn, dk: 1 }));
  const bytes = (d: Distribution): number => size / d.dn;
  // Phase p's time under layout dn: fastest at dn = 2^p (a bowl in log dn).
  const time = (p: number, d: Distribution): number => 1 + rates[p]! * (Math.log2(d.dn) - p) ** 2;
  const select = (phase: number | "all", budget: number): Selection<Distribution> | undefined => {
    const ok = ds.filter((d) => bytes(d) <= budget);
    const cost = (d: Distribution): number =>
      phase === "all" ? rates.reduce((s, _, p) => s + calls[p]! * time(p, d), 0) : time(phase, d);
    const best = ok.sort((a, b) => cost(a) - cost(b))[0];
    if (!best) return undefined;
    const phases = phase === "all" ? rates.map((_, p) => p) : [phase];
    return {
      distribution: best,
      choices: phases.map((p) => ({ tiling: best, estimate: { total: time(p, best) } })),
    };
  };
  const w: WeightOptions<Distribution> = {
    weight: name,
    phases: rates.map((_, p) => `p${p}`),
    calls,
    select,
    bytes,
  };
  return w;
}

describe("layouts.ts", () => {
  test("a weight's options are a Pareto front: more bytes, less time, smallest first", () => {
    const w = synthetic("w", 1024, [1, 2], [1, 8]);
    const front = weightOptions(w, 4096);
    expect(front.length).toBeGreaterThan(1);
    for (let i = 1; i < front.length; i++) {
      expect(front[i]!.bytes).toBeGreaterThan(front[i - 1]!.bytes);
      expect(front[i]!.cost).toBeLessThan(front[i - 1]!.cost);
    }
    // The fastest is each phase on its own best layout (p0: dn 1, p1: dn 2): two copies.
    const fastest = front[front.length - 1]!;
    expect(fastest.layouts.map((l) => l.distribution.dn)).toEqual([1, 2]);
    expect(fastest.bytes).toBe(1024 + 512);
    expect(fastest.paid).toBeUndefined();
    // The smallest is one shared layout (dn 8), and both phases pay for it.
    expect(front[0]!.layouts).toHaveLength(1);
    expect(front[0]!.bytes).toBe(128);
    expect(Object.keys(front[0]!.paid!)).toEqual(["p0", "p1"]);
  });

  test("within the budget: every weight's fastest when they fit; otherwise fits, on the fronts, upgrades exhausted", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            size: fc.integer({ min: 64, max: 4096 }),
            rates: fc.array(fc.double({ min: 0.01, max: 4, noNaN: true }), { minLength: 1, maxLength: 2 }),
            calls: fc.array(fc.integer({ min: 1, max: 256 }), { minLength: 2, maxLength: 2 }),
          }),
          { minLength: 1, maxLength: 6 },
        ),
        fc.double({ min: 0.05, max: 1.2, noNaN: true }),
        (specs, share) => {
          const ws = specs.map((s, i) => synthetic(`w${i}`, s.size, s.rates, s.calls));
          const fronts = ws.map((w) => weightOptions(w, 1e9));
          const all = fronts.reduce((s, f) => s + f[f.length - 1]!.bytes, 0);
          const least = fronts.reduce((s, f) => s + f[0]!.bytes, 0);
          const budget = Math.floor(all * share);
          const got = decideLayouts(fronts, budget);
          if (least > budget) return got === undefined;
          expect(got).toBeDefined();
          const used = got!.reduce((s, d) => s + d.bytes, 0);
          expect(used).toBeLessThanOrEqual(budget);
          got!.forEach((d, i) => expect(fronts[i]).toContain(d));
          if (all <= budget) got!.forEach((d, i) => expect(d).toBe(fronts[i]![fronts[i]!.length - 1]));
          // No weight could still take a faster option within the budget.
          got!.forEach((d, i) => {
            const f = fronts[i]!;
            for (const e of f.slice(f.indexOf(d) + 1))
              expect(used - d.bytes + e.bytes).toBeGreaterThan(budget);
          });
          return true;
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("lowering with layouts per phase", () => {
  const envs = { prefill: { B: 2, S: 7, P: 0 }, decode: { B: 2, S: 1, P: 7 } };
  const limits = { B: 2, S: 7, T: 11 };
  /** llama-tiny INT8, every GEMM on the DPUs, lowered on 64 DPUs with `mram` bytes each. */
  async function lowered(mram: number, mix = { prefill: 1, decode: 4 }) {
    const model = importHf("test/fixtures/llama-tiny");
    const c = await compileModel(
      model,
      {
        target: "upmem",
        disablePass: ["upmem-plan"], // lowered below by the test itself
        printBefore: [],
        printAfter: [],
        cooperation: false,
        weights: "int8",
      },
      defaultWorkload("decode"),
      2,
    );
    const system = { ...DEFAULT_SYSTEM, dpus: 64, mram };
    return { c, l: lowerModule(c.module, c.ctx.weights, { system, limits, envs, mix }) };
  }
  const phasesPay = (l: Awaited<ReturnType<typeof lowered>>["l"]) => l.gemms.filter((g) => g.paid).length;

  test("phases keep their own layouts when MRAM holds them; fewer bytes, smaller layouts, and the phases pay", async () => {
    const roomy = (await lowered(DEFAULT_SYSTEM.mram)).l;
    const split = roomy.gemms.filter((g) => g.layouts.length > 1);
    expect(split.length).toBeGreaterThan(0);
    expect(phasesPay(roomy)).toBe(0);
    for (const g of split) {
      // Each phase's tiling is its own best: the layouts differ in dn x dk.
      const [a, b] = g.layouts.map((x) => x.distribution);
      expect(`${a!.dn}x${a!.dk}`).not.toBe(`${b!.dn}x${b!.dk}`);
      expect(new Set(g.layouts.map((x) => x.region)).size).toBe(2);
    }
    const need = mramUse(roomy.program).total;
    const tight = (await lowered(need - 512)).l;
    expect(mramUse(tight.program).total).toBeLessThanOrEqual(need - 512);
    expect(phasesPay(tight)).toBeGreaterThan(0);
    // The program passes the checks a .pimx file gets (regions inside MRAM, images in their regions).
    expect(() => decodeProgram(encodeProgram(tight.program), "tight.pimx")).not.toThrow();
  }, 30_000);

  test("a program with shared layouts computes what the reference interpreter computes", async () => {
    const roomy = (await lowered(DEFAULT_SYSTEM.mram)).l;
    const { c, l } = await lowered(mramUse(roomy.program).total - 512);
    const machine = new UpmemMachine(l.program);
    machine.setup();
    const tokens = tokenTensor([
      [1, 5, 9, 2, 7, 3, 4],
      [8, 6, 1, 0, 2, 9, 5],
    ]);
    const got = machine.run("prefill", [tokens]).outputs![0]!;
    const want = new Interpreter(c.module, c.ctx.weights).run("prefill", [tokens])[0]!;
    expect(Array.from(got.data as Float32Array)).toEqual(Array.from(want.data as Float32Array));
  }, 30_000);

  test("the phase mix decides which phase pays: few decode steps per request, decode pays", async () => {
    const roomy = (await lowered(DEFAULT_SYSTEM.mram)).l;
    const budget = mramUse(roomy.program).total - 512;
    const paidBy = (l: Awaited<ReturnType<typeof lowered>>["l"], phase: string): number =>
      l.gemms.reduce((s, g) => s + (g.paid?.[phase] ?? 0), 0);
    const manySteps = (await lowered(budget, { prefill: 1, decode: 1000 })).l;
    const oneStep = (await lowered(budget, { prefill: 1000, decode: 1 })).l;
    expect(paidBy(manySteps, "decode")).toBeLessThan(paidBy(oneStep, "decode"));
    expect(paidBy(oneStep, "prefill")).toBeLessThan(paidBy(manySteps, "prefill"));
  }, 30_000);

  test.each([
    [
      1024,
      /^mram: @\S+ \[\d+, \d+\] i8 has no tiling whose blocks fit the system's mram of 1.00 KiB per DPU/,
    ],
    [
      2048,
      /^mram: the DPU-resident weights need at least [\d.]+ KiB per DPU .* the system's mram is 2.00 KiB/,
    ],
  ])(
    "MRAM of %i B per DPU, too small for one weight or for all: one error naming mram",
    async (mram, want) => {
      const err = await lowered(mram).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UserError);
      expect(String((err as Error).message)).toMatch(want);
    },
    30_000,
  );
});

describe("pimc compile shows the layouts and the MRAM", () => {
  test("Llama-2-7B INT8 on 2048 DPUs: decode keeps its best layouts, prefill pays for MRAM", async () => {
    const run = async (...extra: string[]) =>
      await pimc(
        "compile",
        "examples/llama2-7b.pim",
        "--system",
        "examples/systems/upmem-2048.pim",
        "--weights",
        "int8",
        "--no-cooperation",
        ...extra,
      );
    const r = await run();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^layouts {3}prefill .*; decode .*; \d+ weights with a layout per phase/m);
    expect(r.stdout).toMatch(/^mram {6}[\d.]+ MiB of 64 MiB per DPU: weights [\d.]+ MiB, KV caches/m);
    const paid = (out: string, phase: string): number => {
      const m = new RegExp(`${phase} pays \\+([\\d.]+) (ms|us) per step`).exec(out);
      return m ? Number(m[1]) * (m[2] === "ms" ? 1e-3 : 1e-6) : 0;
    };
    // 128 decode steps per request outweigh one prefill: decode keeps its layouts.
    expect(r.stdout).toMatch(/1 prefill \+ 128 decode call\(s\) per request/);
    expect(paid(r.stdout, "decode")).toBe(0);
    expect(r.stdout).toMatch(/decode keeps its best layouts/);
    expect(paid(r.stdout, "prefill")).toBeGreaterThan(0);
    // --output-tokens sets the mix: 64 tokens at 4 per step are 16 decode calls.
    const short = await run("--output-tokens", "64", "--speculation", "4");
    expect(short.code, short.stderr).toBe(0);
    expect(short.stdout).toMatch(/1 prefill \+ 16 decode call\(s\) per request/);
  }, 60_000);
});
