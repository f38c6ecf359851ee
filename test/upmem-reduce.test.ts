/**
 * Attention's context partials (a K split inside the DPUs) added on the DPUs by the reduce kernel or
 * on the host by reduce_sum: the same bits, the kernel's model against the emulator, and the cost
 * model's choice against what the emulator measures, per call and in Llama-2-7B's decode. (Whole
 * programs forced either way, verified and bit-identical: upmem.test.ts.)
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { evalOp } from "../src/exec/interpreter.js";
import { defaultWorkload, phaseEnvs, workloadEnv, type Workload } from "../src/frontend/workload.js";
import { getOp } from "../src/ir/registry.js";
import { tensor } from "../src/ir/types.js";
import { loadForCli } from "../src/cli/io.js";
import { compileModel, type PipelineFlags } from "../src/driver/compile.js";
import {
  attentionLayout,
  bestReduce,
  finishContext,
  reduceKernel,
  reduceModel,
  reduceTiles,
  type AttentionLayout,
  type ReduceSite,
} from "../targets/upmem/attention.js";
import { hostTime, type UpmemOptions } from "../targets/upmem/index.js";
import { decodeProgram } from "../targets/upmem/codec.js";
import { runKernel, timeKernel } from "../targets/upmem/dpu.js";
import { UpmemMachine } from "../targets/upmem/machine.js";
import { DEFAULT_SYSTEM, type UpmemSystem } from "../targets/upmem/system.js";
import { zHost } from "../targets/cpu/index.js";
import { pullTime } from "../targets/upmem/transfer.js";
import { llama7bLayers, tempDir } from "./util.js";

const sys = DEFAULT_SYSTEM;
const tmp = tempDir("pimc-reduce-");

const bits = (a: Float32Array): number[] => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

describe("the reduce kernel", () => {
  test("adds the partials in reduce_sum's order, over the run-time rows: the same bits", () => {
    for (const [ks, nbPad] of [
      [2, 2],
      [5, 8],
      [16, 32],
      [16, 128],
    ] as const)
      for (const tile of reduceTiles(ks, nbPad, sys).filter((t) => [1, 4, 16].includes(t.tasklets))) {
        const rows = 3;
        const yOff = 64;
        const mram = new Uint8Array(yOff + (rows + 1) * ks * nbPad * 4);
        const y = new Float32Array(mram.buffer, yOff, (rows + 1) * ks * nbPad);
        // Magnitudes over 40 binades: the order of the adds shows in the bits.
        for (let i = 0; i < y.length; i++) y[i] = Math.sin(i * 12.9898 + ks) * 2 ** (((i * 7919) % 40) - 20);
        const last = y.slice(rows * ks * nbPad);
        const parts = y.slice(0, rows * ks * nbPad);
        runKernel(reduceKernel(ks, nbPad, tile, "B*S", yOff), sys, mram, { B: 1, S: rows, P: 0 });
        const want = evalOp(
          "reduce_sum",
          { axis: 1 },
          [{ dtype: "f32", shape: [rows, ks, nbPad], data: parts }],
          {},
        )[0]!.data as Float32Array;
        for (let i = 0; i < rows; i++) {
          const sums = y.slice(i * ks * nbPad, i * ks * nbPad + nbPad);
          expect(bits(sums)).toEqual(bits(want.slice(i * nbPad, (i + 1) * nbPad)));
        }
        // Rows past the run-time count are left alone.
        expect(bits(y.slice(rows * ks * nbPad))).toEqual(bits(last));
        // The test can tell orders apart: adding the partials last to first gives other bits.
        let reversed = 0;
        for (let c = 0; c < nbPad; c++) {
          let s = 0;
          for (let p = ks - 1; p >= 0; p--) s = Math.fround(s + parts[p * nbPad + c]!);
          if (!Object.is(s, want[c])) reversed++;
        }
        if (ks > 2) expect(reversed).toBeGreaterThan(0);
      }
  });

  test("its analytical model follows the emulator's DPU timing (within 10 % for the tiles it picks)", () => {
    const picked: number[] = [];
    const vsBest: number[] = [];
    const all: number[] = [];
    for (const ks of [2, 3, 4, 8, 16])
      for (const nbPad of [2, 8, 32, 128])
        for (const rows of [1, 2, 4, 16, 64]) {
          const best = bestReduce(ks, nbPad, rows, sys)!;
          let fastest = Infinity;
          let chosen = 0;
          for (const t of reduceTiles(ks, nbPad, sys)) {
            const emulated = timeKernel(reduceKernel(ks, nbPad, t, rows, 0), sys, {}).cycles;
            const model = reduceModel(ks, nbPad, rows, t, sys);
            all.push(model / emulated - 1);
            fastest = Math.min(fastest, emulated);
            if (t.cw === best.tile.cw && t.tasklets === best.tile.tasklets) {
              chosen = emulated;
              picked.push(best.cycles / emulated - 1);
            }
          }
          vsBest.push(chosen / fastest - 1);
        }
    const abs = (x: number[]) => x.map(Math.abs).sort((a, b) => a - b);
    const q = (x: number[], f: number) => abs(x)[Math.min(x.length - 1, Math.floor(f * x.length))]!;
    console.log(
      `reduce model vs emulator: picked tiles (${picked.length}) max ${(q(picked, 1) * 100).toFixed(1)} %, ` +
        `all tiles (${all.length}) median ${(q(all, 0.5) * 100).toFixed(1)} %, p99 ${(q(all, 0.99) * 100).toFixed(1)} %; ` +
        `picked tile at most ${(Math.max(...vsBest) * 100).toFixed(1)} % slower than the emulator's fastest`,
    );
    for (const e of picked) expect(Math.abs(e)).toBeLessThan(0.1);
    for (const e of vsBest) expect(e).toBeLessThan(0.05);
    // Every tile's estimate within 10 %, but for a few it overestimates (never picked).
    expect(q(all, 0.99)).toBeLessThan(0.1);
    expect(Math.min(...all)).toBeGreaterThan(-0.1);
  });
});

describe("host or DPUs: the cost model's choice", () => {
  /** Llama-2-7B's attention at batch 16: 4 DPUs per group of 16 x 32, 32 head-dim columns each. */
  const layout = attentionLayout({ h: 32, kvh: 32, d: 128 }, { B: 16, T: 1025 }, 4, sys)!;
  /**
   * A faster host than the default's measured Xeon Silver pair: the roofline of a 16-core AVX-512
   * part with two FMA units, 51.2 GB/s and 1 us per op.
   */
  const FAST_HOST =
    "host = { cores = 16, frequency = 2.4 GHz, memory_bandwidth = 51.2 GB/s, overhead = 1 us }";
  const fastHost = {
    ...sys,
    host: zHost.parse({ cores: 16, frequency: 2.4e9, memory_bandwidth: 51.2e9, overhead: 1e-6 }),
  };

  /** What the emulator charges each way: the bigger pull and reduce_sum, or the kernel and the smaller pull. */
  function measured(
    l: AttentionLayout,
    rows: number,
    ks: number,
    sys: UpmemSystem,
  ): Record<ReduceSite, number> {
    const range = { first: 0, count: l.groups * l.dt };
    const [b, h] = [l.groups / l.dims.kvh, l.dims.h];
    const s = rows / (h / l.dims.kvh);
    const inT = tensor("f32", [b, h, s, l.dt, ks, l.dd]);
    const outT = tensor("f32", [b, h, s, l.dt, l.dd]);
    const cost = getOp("reduce_sum")!.cost([inT], [outT], { axis: 4 } as never, {});
    const tile = bestReduce(ks, l.dd, rows, sys)!.tile;
    const kernel = timeKernel(reduceKernel(ks, l.dd, tile, rows, 0), sys, {}).seconds;
    return {
      host: pullTime(sys, range, rows * ks * l.dd * 4) + hostTime(sys, cost.flops, cost.bytes, "reduce_sum"),
      pim: kernel + sys.launch_overhead + pullTime(sys, range, rows * l.dd * 4),
    };
  }

  test.each([
    // The measured host (23.1 GB/s, 4.3 us per op): the DPUs add every size faster.
    { rows: 1, ks: 2, host: "measured", want: "pim" },
    { rows: 1, ks: 16, host: "measured", want: "pim" },
    // The fast host, at decode batch 16 (ks 2 is what the context kernel picks there): the launch
    // costs more than the host's pass.
    { rows: 1, ks: 2, host: "fast", want: "host" },
    { rows: 1, ks: 4, host: "fast", want: "host" },
    // More partials or more query rows per group: the DPUs add them faster than the host.
    { rows: 1, ks: 16, host: "fast", want: "pim" },
    { rows: 4, ks: 16, host: "fast", want: "pim" },
    { rows: 16, ks: 16, host: "fast", want: "pim" },
  ] as const)(
    "$rows rows of $ks partials, $host host: $want, as the emulator measures",
    ({ rows, ks, host, want }) => {
      const sys = host === "fast" ? fastHost : DEFAULT_SYSTEM;
      const call = { b: 16, rows, s: rows, t: 1024 };
      const chosen = finishContext(layout, call, ks, sys)!;
      const m = measured(layout, rows, ks, sys);
      const est = (site: ReduceSite) => finishContext(layout, call, ks, sys, site)!.seconds;
      console.log(
        `${rows} rows x ks ${ks} on ${layout.groups * layout.dt} DPUs: host ${(m.host * 1e6).toFixed(1)} us (model ${(est("host") * 1e6).toFixed(1)}), ` +
          `DPUs ${(m.pim * 1e6).toFixed(1)} us (model ${(est("pim") * 1e6).toFixed(1)}) -> ${chosen.reduce}`,
      );
      expect(chosen.reduce).toBe(want);
      expect(m[want]).toBeLessThan(m[want === "host" ? "pim" : "host"]);
      for (const site of ["host", "pim"] as const)
        expect(Math.abs(est(site) / m[site] - 1)).toBeLessThan(0.1);
    },
  );

  /**
   * Llama-2-7B INT8 decode at batch 16, attention on the DPUs, emulated with each choice: two of its
   * layers (each layer's attention makes the same choice; compiling and emulating all 32 costs 16x).
   */
  async function decode16(system: string) {
    const path = llama7bLayers(2);
    const model = loadForCli(path, undefined);
    const w: Workload = { ...defaultWorkload("decode"), batch: 16, context: 1024 };
    const flags: PipelineFlags = {
      system,
      weights: "int8",
      attention: "pim",
      disablePass: [],
      printBefore: [],
      printAfter: [],
    };
    const { module, ctx, target, system: sm } = await compileModel(model, flags, w, 2);
    const run = (attentionReduce: UpmemOptions["attentionReduce"]) => {
      const options: UpmemOptions = { ...sm.options, attentionReduce };
      const out = target.emit!(
        { ...model, module, weights: ctx.weights },
        { ...sm, options },
        {
          envs: phaseEnvs(w),
          shapeOnly: true,
        },
      );
      const machine = new UpmemMachine(decodeProgram(out.bytes, path), { functional: false });
      return {
        seconds: machine.run("decode", undefined, workloadEnv(w)).report.seconds,
        line: out.lines.find((l) => l.startsWith("attention"))!,
      };
    };
    return { auto: run("auto"), host: run("host"), pim: run("pim") };
  }

  test("Llama-2-7B INT8 decode, batch 16: the DPUs add on the default system, the host when it is fast", async () => {
    const fast = join(tmp, "fast-host.pim");
    writeFileSync(fast, `system fast_host {\n  target = upmem\n  ${FAST_HOST}\n}\n`);
    for (const [system, want] of [
      ["examples/systems/upmem-2048.pim", "pim"],
      [fast, "host"],
    ] as const) {
      const r = await decode16(system);
      const other = want === "host" ? "pim" : "host";
      console.log(
        `${system}: auto ${(r.auto.seconds * 1e3).toFixed(3)} ms, host ${(r.host.seconds * 1e3).toFixed(3)} ms, DPUs ${(r.pim.seconds * 1e3).toFixed(3)} ms`,
      );
      expect(r.auto.seconds).toBe(r[want].seconds);
      // Forcing goes through the target's options to the lowering.
      expect(r.host.line).toMatch(/decode ks \d+, partials added by the host$/);
      expect(r.pim.line).toMatch(/decode ks \d+, partials added on the DPUs \(reduce kernel\)$/);
      expect(r[want].seconds).toBeLessThan(r[other].seconds);
      expect(r.auto.line).toMatch(
        want === "host"
          ? /^attention 2 layers on the DPUs \(4 per group\); context kernel: .*decode ks 2, partials added by the host$/
          : /decode ks 2, partials added on the DPUs \(reduce kernel\)$/,
      );
    }
  }, 60_000);
});
