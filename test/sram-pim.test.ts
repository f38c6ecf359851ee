import { describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseDescription, selectSystem } from "../src/frontend/dsl/index.js";
import { importHf } from "../src/frontend/hf/import.js";
import { defaultWorkload } from "../src/frontend/workload.js";
import { compileModel, type PipelineFlags } from "../src/driver/compile.js";
import { getTarget } from "../targets/index.js";
import sramPim, { systemOf } from "../targets/sram-pim/index.js";
import {
  arrayBusy,
  candidateWidths,
  lutGemv,
  lutGemvAt,
  sramPimCostModel,
  type LutShape,
} from "../targets/sram-pim/model.js";
import type { SramPimRunner } from "../targets/sram-pim/runner.js";
import { DEFAULT_SYSTEM, zSramPimSystem, type SramPimSystem } from "../targets/sram-pim/system.js";
import type { Tensor } from "../src/ir/tensor.js";
import {
  benchJson,
  expectUserError,
  LLAMA_TINY,
  llama7bLayers,
  pimc,
  tempDir,
  type BenchStep,
} from "./util.js";

const SAIL = "examples/systems/sail-n1-64.pim";

/** A system block of target sram-pim with `body` as its entries. */
const decl = (body: string) =>
  selectSystem(parseDescription(`system s {\n  target = "sram-pim"\n${body}\n}\n`, "s.pim"));

/** The default system with some array parameters changed. */
const withArrays = (a: Partial<SramPimSystem["arrays"]>): SramPimSystem =>
  zSramPimSystem.parse({ host: DEFAULT_SYSTEM.host, arrays: { ...DEFAULT_SYSTEM.arrays, ...a } });

describe("sram-pim system descriptions", () => {
  it("validates the SAIL example and fills the defaults", async () => {
    const sys = systemOf(sramPim.system(decl("  arrays = { count = 64 }")));
    expect(sys.arrays.count).toBe(64);
    expect(sys.arrays.rows).toBe(DEFAULT_SYSTEM.arrays.rows);
    expect(sys.host.cores).toBe(DEFAULT_SYSTEM.host.cores);
    const r = await pimc("dump", "--pipeline", "--system", SAIL);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/quantize/);
  });

  it("reports malformed fields on one line, at the field", () => {
    expectUserError(
      () => sramPim.system(decl("  arrays = { lookup_per_cycle = 2 }")),
      "arrays.lookup_per_cycle",
    );
    expectUserError(() => sramPim.system(decl("  arrays = { count = 0 }")), "arrays.count");
    expectUserError(() => sramPim.system(decl('  arrays = { level = "l3" }')), "arrays.level");
    // 32 tables of 16-bit entries do not fit a 256-bit row.
    expectUserError(() => sramPim.system(decl("  arrays = { batch = 32 }")), "arrays.batch", "columns");
    expectUserError(() => sramPim.system(decl("  host = { cores = -1 }")), "host.cores");
  });

  it("exits 2 with one line for a malformed system on the command line", async () => {
    const dir = tempDir();
    const file = join(dir, "bad.pim");
    writeFileSync(file, 'system bad {\n  target = "sram-pim"\n  arrays = { entry_bits = 0 }\n}\n');
    const r = await pimc(
      "bench",
      "examples/llama2-7b.pim",
      "--system",
      file,
      "--weights",
      "int4",
      "--activations",
      "int8",
    );
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/bad\.pim:3:\d+: arrays\.entry_bits/);
  });
});

describe("the LUT-GEMV timing model", () => {
  // A Llama-2-7B gate+up projection at batch 1.
  const gateUp: LutShape = { m: 1, n: 22016, k: 4096, bits: 4, group: 128 };

  it("streams the weights at their packed width: int2 half of int4's bytes, and half the time when stream-bound", () => {
    const t4 = lutGemv(DEFAULT_SYSTEM, gateUp)!;
    const t2 = lutGemv(DEFAULT_SYSTEM, { ...gateUp, bits: 2 })!;
    const scales = gateUp.n * (gateUp.k / gateUp.group) * 4;
    expect(t4.bytes - scales).toBe(2 * (t2.bytes - scales));
    expect(t4.bytes - scales).toBe((gateUp.n * gateUp.k) / 2);
    // Decode GEMVs are bound by the weight stream on this system.
    expect(t4.stream).toBeGreaterThan(arrayBusy(t4));
    expect(t4.seconds - t4.stream).toBeCloseTo(DEFAULT_SYSTEM.arrays.overhead, 12);
    expect(t2.seconds).toBeLessThan(t4.seconds);
  });

  it("batches lookups: one weight-index read serves the tables of up to `batch` rows", () => {
    const at = (m: number, s = DEFAULT_SYSTEM) => lutGemvAt(s, { ...gateUp, m }, 2);
    const b = DEFAULT_SYSTEM.arrays.batch;
    expect(at(b).reads).toBe(at(1).reads);
    expect(at(b).bytes).toBe(at(1).bytes);
    expect(at(b).lookup).toBe(at(1).lookup);
    expect(at(b + 1).reads).toBe(2 * at(1).reads);
    // Without batching every row reads every weight index again.
    const single = withArrays({ batch: 1 });
    expect(at(b, single).reads).toBe(b * at(1, single).reads);
    expect(at(b, single).lookup).toBeGreaterThan(at(b).lookup * (b / 2));
  });

  it("streams the weights again only when the batch's tables cannot all be resident", () => {
    // 4 arrays of 256 rows: 4 table slots of 256 entries (width 2 at 4 bits), 16 rows each.
    const tiny = withArrays({ count: 4 });
    const shape = { ...gateUp, n: 64, k: 256 };
    expect(lutGemvAt(tiny, { ...shape, m: 64 }, 2).streams).toBe(1);
    expect(lutGemvAt(tiny, { ...shape, m: 65 }, 2).streams).toBe(2);
    expect(lutGemvAt(tiny, { ...shape, m: 65 }, 1).streams).toBe(1); // 16-entry tables: 16 slots per array
  });

  it("chooses the width per layer: tables must fit an array; build (2^(bits x width) per vector) vs lookups (K / width)", () => {
    expect(candidateWidths(DEFAULT_SYSTEM, 4, 128)).toEqual([1, 2]);
    expect(candidateWidths(DEFAULT_SYSTEM, 2, 128)).toEqual([1, 2, 4]);
    expect(candidateWidths(withArrays({ rows: 4096 }), 4, 128)).toEqual([1, 2]); // 3 does not divide 128
    expect(candidateWidths(withArrays({ rows: 4096 }), 4, 96)).toEqual([1, 2, 3]);
    // Compute-bound arrays (a weight stream that costs nothing): the trade-off decides.
    const fast = withArrays({ memory_bandwidth: 1e18, pattern_savings: 0 });
    const best = (shape: LutShape) => {
      const all = candidateWidths(fast, shape.bits, shape.group).map((w) => lutGemvAt(fast, shape, w));
      return all.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    };
    // Many outputs per table: lookups dominate, the widest table wins.
    const wide: LutShape = { m: 16, n: 4096, k: 4096, bits: 2, group: 128 };
    expect(lutGemv(fast, wide)!.width).toBe(4);
    expect(lutGemv(fast, wide)!.width).toBe(best(wide).width);
    // Few outputs over many rows: building 256-entry tables costs more than the lookups they save.
    const narrow: LutShape = { m: 4096, n: 16, k: 4096, bits: 2, group: 128 };
    const chosen = lutGemv(fast, narrow)!;
    expect(chosen.width).toBeLessThan(4);
    expect(chosen.seconds).toBe(best(narrow).seconds);
    expect(lutGemvAt(fast, narrow, 4).build).toBeGreaterThan(lutGemvAt(fast, narrow, 4).lookup);
  });

  it("converts types in memory; without it the host's vector units convert", () => {
    const shape = { ...gateUp, m: 16 };
    const inMem = lutGemv(DEFAULT_SYSTEM, shape)!;
    const onHost = lutGemv(withArrays({ in_memory_conversion: false }), shape)!;
    expect(inMem.host).toBe(0);
    expect(onHost.convert).toBe(0);
    expect(onHost.host).toBeGreaterThan(0);
    expect(onHost.seconds).toBeGreaterThan(inMem.seconds);
  });
});

describe("placement and functional execution on the sram-pim target", () => {
  const flags = (extra: Partial<PipelineFlags> = {}): PipelineFlags => ({
    target: "sram-pim",
    disablePass: [],
    printBefore: [],
    printAfter: [],
    weights: "int4",
    activations: "int8",
    ...extra,
  });
  const compile = async (f: PipelineFlags) => {
    const model = importHf(LLAMA_TINY);
    const c = await compileModel(model, f, defaultWorkload("decode"), 2);
    const runner = c.target.prepare({ ...model, module: c.module, weights: c.ctx.weights }, c.system);
    return { ...c, runner };
  };
  const devices = (m: Awaited<ReturnType<typeof compile>>["module"]) =>
    new Set(
      m.funcs
        .find((f) => f.name === "decode")!
        .body.filter((o) => /linear/.test(o.opcode))
        .map((o) => `${o.opcode}@${String(o.attrs.device)}`),
    );
  const tokens = (ids: number[][]): Tensor => ({
    dtype: "i32",
    shape: [ids.length, ids[0]!.length],
    data: Int32Array.from(ids.flat()),
  });
  /** Prefill of two sequences then two decode steps: every output. */
  const outputs = (r: { reset(): void; run(f: string, i: readonly Tensor[]): Tensor[] }) => {
    r.reset();
    const out = [
      r.run("prefill", [
        tokens([
          [1, 5, 9, 3, 7],
          [2, 4, 6, 8, 10],
        ]),
      ])[0]!,
    ];
    for (const t of [11, 12]) out.push(r.run("decode", [tokens([[t], [t + 1]])])[0]!);
    return out.map((t) => Array.from(t.data as Float32Array));
  };

  it("places W4A8 / W2A8 layers on the arrays, weight-only and INT8 layers on the host", async () => {
    expect(devices((await compile(flags({ cooperation: false }))).module)).toEqual(
      new Set(["lowbit_linear@pim"]),
    );
    expect(devices((await compile(flags({ activations: undefined }))).module)).toEqual(
      new Set(["lowbit_linear@host"]),
    );
    expect(devices((await compile(flags({ weights: "int8", activations: undefined }))).module)).toEqual(
      new Set(["qlinear@host"]),
    );
    // The cost model: the arrays run only W-low-bit A8 layers; the host runs everything.
    const cm = sramPimCostModel(DEFAULT_SYSTEM);
    const view = (attrs: Record<string, number>) => ({
      op: { opcode: "lowbit_linear", operands: ["%x", "@w", "@s"], results: [], attrs },
      ins: [
        { dtype: "f32" as const, shape: [1, 4096] },
        { dtype: "i8" as const, shape: [4096, 4096] },
        { dtype: "f32" as const, shape: [4096, 32] },
      ],
      outs: [{ dtype: "f32" as const, shape: [1, 4096] }],
      cost: { flops: 2 * 4096 * 4096, bytes: 4096 * 4096 * 0.5 },
    });
    expect(cm.opTime(view({ bits: 4, group: 128, act_bits: 8 }), "pim", {})).toBeGreaterThan(0);
    expect(cm.opTime(view({ bits: 4, group: 128 }), "pim", {})).toBeUndefined();
    expect(cm.opTime(view({ bits: 4, group: 128 }), "host", {})).toBeGreaterThan(0);
  });

  it("computes the arrays' layers by LUT-GEMV, bit-identical to the cpu target (int4 and int2)", async () => {
    for (const weights of ["int4", "int2"] as const) {
      const pim = await compile(flags({ weights, cooperation: false }));
      const cpu = await compile(flags({ weights, target: "cpu" }));
      const got = outputs(pim.runner);
      const want = outputs(cpu.runner);
      const stats = (pim.runner as SramPimRunner).stats;
      expect(stats.calls).toBeGreaterThan(0);
      expect(new Set(stats.widths.values()).size).toBeGreaterThan(0);
      for (const w of stats.widths.values()) expect(w).toBeGreaterThanOrEqual(1);
      expect(got).toEqual(want);
      // The LUT path really differs from a float path: the A8 result is not the weight-only one.
      const weightOnly = outputs((await compile(flags({ weights, activations: undefined }))).runner);
      expect(weightOnly).not.toEqual(got);
    }
  });

  it("pimc verify: the same errors as --target cpu with W4A8; fp32 within 1e-5", async () => {
    const run = async (...a: string[]) => {
      const r = await pimc("verify", LLAMA_TINY, ...a, "--json");
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    const pick = (j: Record<string, unknown>) => [
      j.prefill_max_abs_err,
      j.decode_max_abs_err,
      j.full_max_abs_err,
      j.tokens_agreed,
    ];
    for (const extra of [["--no-cooperation"], []]) {
      const sram = await run("--target", "sram-pim", "--weights", "int4", "--activations", "int8", ...extra);
      const cpu = await run("--target", "cpu", "--weights", "int4", "--activations", "int8");
      expect(sram.target).toBe("sram-pim");
      expect(pick(sram)).toEqual(pick(cpu));
      expect(sram.decode_max_abs_err).toBeGreaterThan(1e-3); // quantized: the errors are not trivially 0
    }
    const f32 = await run("--target", "sram-pim");
    expect(f32.passed).toBe(true);
    expect(f32.decode_max_abs_err as number).toBeLessThan(1e-5);
    // Weight-only INT4 runs on the host: the cpu target's errors too.
    expect(pick(await run("--target", "sram-pim", "--weights", "int4"))).toEqual(
      pick(await run("--target", "cpu", "--weights", "int4")),
    );
  });
});

describe("pimc bench on the SAIL system", () => {
  const bench = async (...flags: string[]) =>
    await benchJson("examples/llama2-7b.pim", SAIL, "--phase", "decode", "--batch", "1,16", ...flags);
  const linear = (s: BenchStep) =>
    s.ops.filter((o) => /qkv|\.o$|gate_up|down|logits/.test(o.name)).reduce((t, o) => t + o.seconds, 0);

  it("times Llama-2-7B decode: low-bit layers on the arrays, weights streamed once per step for the batch", async () => {
    const int4 = await bench("--weights", "int4", "--activations", "int8");
    expect(int4.target).toBe("sram-pim");
    const [b1, b16] = int4.steps;
    for (const s of [b1!, b16!]) {
      expect(s.ops.find((o) => o.name === "L*.gate_up")!.device).toBe("pim");
      expect(s.ops.find((o) => o.name === "L*.attn")!.device).toBe("host");
    }
    // 16 tokens cost the arrays what one does (weight-stream bound; one index read per 16 tables).
    expect(b16!.busy.pim! / b1!.busy.pim!).toBeLessThan(1.01);
    expect(b16!.seconds).toBeGreaterThan(b1!.seconds); // attention over 16 KV caches on the host
    // The arrays' time is the model's: the packed weights over the DRAM bandwidth, per layer.
    const sys = systemOf(
      (await getTarget("sram-pim")).system(
        selectSystem(parseDescription(`system x {\n  target = "sram-pim"\n}\n`, "x.pim")),
      ),
    );
    const gateUp = lutGemv(sys, { m: 1, n: 22016, k: 4096, bits: 4, group: 128 })!;
    expect(b1!.ops.find((o) => o.name === "L*.gate_up")!.seconds).toBeCloseTo(32 * gateUp.seconds, 9);

    const int2 = await bench("--weights", "int2", "--activations", "int8");
    expect(int2.steps[0]!.busy.pim! / b1!.busy.pim!).toBeGreaterThan(0.45);
    expect(int2.steps[0]!.busy.pim! / b1!.busy.pim!).toBeLessThan(0.6);

    // The CPU alone (W8A8 on the same host): compute-bound at batch 16, where the arrays gain most.
    const cpu = await bench("--weights", "int8");
    expect(cpu.steps.every((s) => s.busy.pim === 0)).toBe(true);
    const speedup = (i: number) => linear(cpu.steps[i]!) / linear(int4.steps[i]!);
    expect(speedup(0)).toBeGreaterThan(1.5);
    expect(speedup(1)).toBeGreaterThan(speedup(0));
  });
});

describe("pimc bench --compare (SAIL / PIM-DL's comparison)", () => {
  it("times systems x precisions beside each system's host CPU, consistently with its own host model", async () => {
    // Two of Llama-2-7B's layers: the relations below hold layer by layer (lowbit.md's figures are
    // the full model's).
    const r = await pimc(
      "bench",
      llama7bLayers(2),
      "--compare",
      "examples/systems/upmem-2048.pim,examples/systems/sail-n1-64.pim",
      "--phase",
      "decode",
      "--batch",
      "16",
      "--json",
    );
    expect(r.code, r.stderr).toBe(0);
    type Row = { system: string; target: string; weights: string; seconds: number; speedup_vs_host: number };
    const rows = (JSON.parse(r.stdout) as { steps: { batch: number; rows: Row[] }[] }).steps[0]!.rows;
    const at = (system: string, weights: string, target?: string) =>
      rows.find(
        (x) =>
          x.system === system &&
          x.weights === weights &&
          (target ? x.target === target : x.target !== "host CPU alone"),
      )!;
    expect(rows).toHaveLength(8);
    // At batch 16 the UPMEM cost model keeps every op on the host: the emulated step is the host
    // CPU alone, f16 tensors timed at their own size on both sides.
    expect(at("upmem_2048", "int8").seconds).toBeCloseTo(
      at("upmem_2048", "int8", "host CPU alone").seconds,
      9,
    );
    // The SRAM-PIM system multiplies INT8 on its cores; fewer weight bits stream and look up faster.
    expect(at("sail_n1_64", "int8").seconds).toBeCloseTo(
      at("sail_n1_64", "int8", "host CPU alone").seconds,
      9,
    );
    expect(at("sail_n1_64", "int4 (a8)").seconds).toBeLessThan(at("sail_n1_64", "int8").seconds);
    expect(at("sail_n1_64", "int2 (a8)").seconds).toBeLessThan(at("sail_n1_64", "int4 (a8)").seconds);
    for (const args of [
      ["--precisions", "int4"],
      ["--compare", "examples/systems/upmem-2048.pim", "--system", "examples/systems/upmem-2048.pim"],
      ["--compare", "examples/systems/upmem-2048.pim", "--precisions", "int3"],
    ]) {
      const bad = await pimc("bench", "examples/tiny-llama.pim", ...args);
      expect(bad.code, args.join(" ")).toBe(2);
      expect(bad.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
    }
  });
});
