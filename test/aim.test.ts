/**
 * The GDDR6-AiM target (docs/aim.md): the standard's rules against the public AiM simulator's cycle
 * counts (measured by running github.com/arkhadem/aim_simulator at commit 0f28a07 on the same
 * instructions), the GEMV kernel, and the target through the contract.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { runChannel } from "../targets/aim/device.js";
import { expand, gemvPlan } from "../targets/aim/kernels.js";
import { parseAimTrace, runAimTrace, type TraceStep } from "../targets/aim/trace.js";
import { readCsv } from "../bench/fidelity.js";
import {
  kvAppendProgram,
  rmsNormProgram,
  ropeProgram,
  softmaxProgram,
  swigluProgram,
  type VectorBlock,
} from "../targets/aim/vectors.js";
import {
  cxlSeconds,
  DEFAULT_SYSTEM as S,
  pnmCycles,
  poolOf,
  type AimSystem,
} from "../targets/aim/standard.js";
import { chooseTarget, compileModel } from "../src/driver/compile.js";
import { loadModel } from "../src/frontend/load.js";
import { defaultWorkload } from "../src/frontend/workload.js";
import { costModelTiming } from "../src/pipeline/cost-model.js";
import { pimc, tempDir } from "./util.js";
import { aimCostModel } from "../targets/aim/index.js";
import { bf16 } from "../targets/aim/functional.js";
import { hostRoofline } from "../targets/cpu/index.js";

const M = "0x80000000"; // channel 0
const lines = (n: number, f: (i: number) => string): string => [...Array(n).keys()].map(f).join("\n");

/**
 * [docs/aim.md's label, a trace on channel 0, the AiM simulator's memory_system_cycles] (commit
 * 0f28a07, built and run on each trace with its test/example.yaml).
 */
const MICRO: [string, string, number][] = [
  ["one MAC_ABK 64, row closed", `AiM MAC_ABK 64 ${M} 0`, 185],
  ["MAC_ABK 1", `AiM MAC_ABK 1 ${M} 0`, 59],
  ["2 MAC_ABK 64 on different rows", lines(2, (r) => `AiM MAC_ABK 64 ${M} ${r}`), 411],
  ["100 MAC_ABK 64 on different rows", lines(100, (r) => `AiM MAC_ABK 64 ${M} ${r}`), 22559],
  ["10 MAC_ABK 64 on the same row", lines(10, () => `AiM MAC_ABK 64 ${M} 0`), 1337],
  ["MAC_ABK 64 on all 32 channels", "AiM MAC_ABK 64 0xffffffff 0", 185],
  ["WR_GB 64", `AiM WR_GB 64 0 ${M}`, 163],
  ["WR_BIAS", `AiM WR_BIAS 0 ${M}`, 37],
  ["RD_MAC", `AiM RD_MAC 0 ${M}`, 37],
  ["RD_MAC, RD_MAC", `AiM RD_MAC 0 ${M}\nAiM RD_MAC 0 ${M}`, 40],
  ["RD_MAC, WR_BIAS", `AiM RD_MAC 0 ${M}\nAiM WR_BIAS 0 ${M}`, 42],
  ["RD_MAC, WR_GB 64", `AiM RD_MAC 0 ${M}\nAiM WR_GB 64 0 ${M}`, 168],
  ["MAC_ABK 64, RD_MAC", `AiM MAC_ABK 64 ${M} 0\nAiM RD_MAC 0 ${M}`, 221],
  ["WR_BIAS, MAC_ABK 64", `AiM WR_BIAS 0 ${M}\nAiM MAC_ABK 64 ${M} 0`, 250],
  ["WR_BIAS, MAC_ABK 64, RD_MAC", `AiM WR_BIAS 0 ${M}\nAiM MAC_ABK 64 ${M} 0\nAiM RD_MAC 0 ${M}`, 286],
  [
    "WR_BIAS, MAC_ABK 64, AF, RD_AF",
    `AiM WR_BIAS 0 ${M}\nAiM MAC_ABK 64 ${M} 0\nAiM AF ${M}\nAiM RD_AF 0 ${M}`,
    415,
  ],
  ["AF", `AiM AF ${M}`, 89],
  ["EWMUL 64", `AiM EWMUL 64 ${M} 0`, 154],
  ["COPY_BKGB 64", `AiM COPY_BKGB 64 ${M} 0 0`, 195],
  ["COPY_GBBK 64", `AiM COPY_GBBK 64 ${M} 0 0`, 177],
  ["WR_ABK", `AiM WR_ABK 0 ${M} 0`, 70],
];

const fmt = (n: number): string => n.toLocaleString("en-US");
const trace = (body: string, sys: AimSystem = S) =>
  runAimTrace(sys, parseAimTrace(`${body}\nAiM EOC\n`, "t", sys));

describe("GDDR6-AiM device model", () => {
  it("gives the AiM simulator's cycles on its micro-benchmarks, each instruction kind, as docs/aim.md shows", () => {
    const doc = readFileSync("docs/aim.md", "utf8");
    for (const [label, body, sim] of MICRO) {
      expect(trace(body).cycles, label).toBe(sim);
      expect(doc).toContain(`| ${label} | ${fmt(sim)} | ${fmt(sim)} |`);
    }
    // A kernel's time is its last command's completion: the trace's end (EOC) is 2 cycles more.
    expect(runChannel(S, expand([{ op: "MAC_ABK", opsize: 64, row: 0 }])).cycles).toBe(183);
  });

  it("issues CENT's GEMVs as the simulator does (test/fixtures/peers): its instructions, commands and cycles", () => {
    const points = readCsv("test/fixtures/peers/aim-simulator-points.csv");
    expect(points.length).toBe(4);
    for (const p of points) {
      const label = `gemv ${p.rows}x${p.cols} on ${p.channels} channels`;
      const sys: AimSystem = { ...S, channels: Number(p.channels) };
      const plan = gemvPlan(sys, Number(p.rows), Number(p.cols));
      // Every channel with data runs the same instructions (the host broadcasts them).
      for (const op of ["WR_GB", "WR_BIAS", "MAC_ABK", "RD_MAC"])
        expect(plan.instrs.filter((i) => i.op === op).length, `${label} ${op}`).toBe(Number(p[`isr_${op}`]));
      // The same instructions as a trace on the first `channels` channels (CENT's masks).
      const mask = `0x${(2 ** 32 - 2 ** (32 - sys.channels)).toString(16)}`;
      const text = plan.instrs
        .map((i) =>
          i.op === "WR_GB"
            ? `AiM WR_GB ${i.opsize} 0 ${mask}`
            : i.op === "MAC_ABK"
              ? `AiM MAC_ABK ${i.opsize} ${mask} ${i.row}`
              : `AiM ${i.op} 0 ${mask}`,
        )
        .join("\n");
      const r = trace(text);
      for (const c of ["ACT16", "PREA", "MAC16", "WRGB", "WRMAC16", "RDMAC16", "TMOD"] as const)
        expect(r.counts[c], `${label} ${c}`).toBe(Number(p[`cmd_${c}`]));
      expect(r.cycles, label).toBe(Number(p.cycles));
      // The kernel's own run is the same until its last command completes: the trace's last RD_MAC
      // then holds the host a cycle, its EOC two more.
      expect(runChannel(sys, expand(plan.instrs)).cycles, label).toBe(r.cycles - 3);
    }
    // Register-mode switches: one into register mode, then per K chunk to MAC_ABK and back.
    expect(runChannel(S, expand(gemvPlan(S, 4096, 4096).instrs)).counts.TMOD).toBe(1 + 2 * 4);
  });

  it("times CENT's whole Llama-2-7B decoder blocks as the simulator does (test/fixtures/peers): pipeline traces to the cycle", () => {
    const run = (t: string) => {
      const file = `test/fixtures/peers/cent-llama2-7b-${t}.trace.gz`;
      return runAimTrace(S, parseAimTrace(gunzipSync(readFileSync(file)).toString("utf8"), file, S));
    };
    const pp = run("pp8_s128");
    expect(pp.cycles).toBe(425471);
    expect(pp.instructions).toMatchObject({ MAC_ABK: 1618, EWMUL: 10, AF: 86, WR_SBK: 29952, RD_SBK: 6912 });
    // Against CENT's stored PIM latency (its simulator pin): within 0.03 %.
    expect(Math.abs(pp.cycles * 0.5e-9 - 212.7925e-6) / 212.7925e-6).toBeLessThan(3e-4);
    // 1024 tokens in the KV cache: the scores, softmax and context grow, to the cycle too.
    expect(run("pp8_s1024").cycles).toBe(498047);
    // Tensor parallel: its RMSNorms' normal writes come in runs over closed banks, reordered by the
    // controller (FR-FCFS); 5 cycles fewer than the simulator after each of the two.
    expect(run("tp8_s128").cycles).toBe(37654 - 10);
  });

  it("CENT's element-wise work as pimc's programs: the instructions of CENT's own block traces, and their cycles", () => {
    const cent = (t: string) => {
      const file = `test/fixtures/peers/cent-llama2-7b-${t}.trace.gz`;
      return parseAimTrace(gunzipSync(readFileSync(file)).toString("utf8"), file, S);
    };
    const ops = (steps: readonly TraceStep[]) => {
      const h: Record<string, number> = {};
      for (const s of steps) h[s.instr.op] = (h[s.instr.op] ?? 0) + 1;
      return h;
    };
    const cycles = (steps: readonly TraceStep[]) => runAimTrace(S, steps).cycles;
    // A block of 8 channels, 4 sharing the device (CENT's pipeline), and a whole device (tensor parallel).
    const pp: VectorBlock = { sys: S, channels: 8, copies: 4 };
    const tp: VectorBlock = { sys: S, channels: 32, copies: 1 };
    const pp128 = cent("pp8_s128");
    const pp1024 = cent("pp8_s1024");
    const tp128 = cent("tp8_s128");
    // [CENT's part (its lines in the trace: found with markers written by CENT's own generator), pimc's program]
    const same: [string, readonly TraceStep[], TraceStep[]][] = [
      ["RMSNorm, pipeline", pp128.slice(0, 5134), rmsNormProgram(pp, 4096)],
      ["RMSNorm, tensor parallel", tp128.slice(0, 1294), rmsNormProgram(tp, 4096)],
      ["softmax scaling, 128 tokens", pp128.slice(15872, 22020), softmaxProgram(pp, 32, 128)],
      ["softmax scaling, 1024 tokens", pp1024.slice(16572, 65728), softmaxProgram(pp, 32, 1024)],
      ["softmax scaling, tensor parallel", tp128.slice(4004, 5544), softmaxProgram(tp, 32, 128)],
      [
        "SwiGLU",
        pp128.slice(29887, 41162),
        [...swigluProgram(pp, 11008, "silu"), ...swigluProgram(pp, 11008, "mul")],
      ],
      ["KV append, tensor parallel", tp128.slice(3392, 3904), kvAppendProgram(tp, 4096, 127)],
    ];
    for (const [label, theirs, ours] of same) {
      expect(ops(ours), label).toEqual(ops(theirs));
      expect(cycles(ours), label).toBe(cycles(theirs));
    }
    expect(cycles(rmsNormProgram(pp, 4096))).toBe(5932);
    expect(cycles(softmaxProgram(pp, 32, 1024))).toBe(49537);
    // RoPE: CENT's EWMULs run over dim / 16 = 256 columns where its writes filled 16 of each bank,
    // and it reads the result back with writes; pimc's multiply the 16 and read with reads.
    const rope = pp128.slice(6298, 14492);
    expect(
      rope.filter((s) => s.instr.op === "EWMUL").map((s) => (s.instr as { opsize: number }).opsize),
    ).toEqual([256, 256]);
    expect(ops(rope)).toEqual({ WR_SBK: 8192, EWMUL: 2 });
    const ours = [...ropeProgram(pp, 4096), ...ropeProgram(pp, 4096)];
    expect(ops(ours)).toEqual({ WR_SBK: 4096, EWMUL: 2, RD_SBK: 4096 });
    expect(cycles(ours)).toBe(8326);
    expect(cycles(rope)).toBe(9369);
    // The KV append in the pipeline: CENT appends V for the device's first block only (256 WR_ABKs),
    // pimc for each of the 4.
    const kv = pp128.slice(14492, 15772);
    expect(ops(kv)).toEqual({ WR_SBK: 1024, WR_ABK: 256 });
    expect(ops(kvAppendProgram(pp, 4096, 127))).toEqual({ WR_SBK: 1024, WR_ABK: 1024 });
    // SiLU's sigmoid: an AF and its read per output of the gate a bank holds (CENT's W1 with activation).
    expect(ops(swigluProgram(pp, 11008, "silu", 86))).toMatchObject({ AF: 86, RD_AF: 86 });
  });

  it("a MAC_ABK stream over new rows pays activation and precharge: 226 cycles each, 128 on an open row", () => {
    const t = (n: number, rows: (i: number) => number) =>
      runChannel(S, expand([...Array(n).keys()].map((i) => ({ op: "MAC_ABK", opsize: 64, row: rows(i) }))))
        .cycles;
    expect(t(11, (i) => i) - t(10, (i) => i)).toBe(56 + 63 * 2 + 12 + 32);
    expect(t(11, () => 0) - t(10, () => 0)).toBe(64 * 2);
  });
});

describe("the AiM units' arithmetic", () => {
  it("rounds operands to BF16, to nearest even", () => {
    expect(bf16(1 + 2 ** -8)).toBe(1); // a tie: to the even mantissa
    expect(bf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
    expect(bf16(1 + 2 ** -7)).toBe(1 + 2 ** -7);
    expect(bf16(-3.14159)).toBe(-3.140625);
    expect(bf16(Infinity)).toBe(Infinity);
    expect(Number.isNaN(bf16(NaN))).toBe(true);
  });

  it("pimc verify: the tiny models pass at the BF16 tolerance (llama-tiny with a near tie flipped); the error is BF16's", async () => {
    const r = await pimc(
      "verify",
      "test/fixtures/gpt2-tiny",
      "--target",
      "aim",
      "--no-cooperation",
      "--attention",
      "pim",
      "--json",
    );
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as {
      prefill_max_abs_err: number;
      decode_max_abs_err: number;
      tokens_match: boolean;
    };
    expect(j.tokens_match).toBe(true);
    for (const e of [j.prefill_max_abs_err, j.decode_max_abs_err]) {
      expect(e).toBeGreaterThan(1e-3); // not the fp32 reference's 1e-6
      expect(e).toBeLessThan(5e-2);
    }
    // llama-tiny: one decision flips, a reference near tie (top-2 margin below twice the error).
    const l = await pimc("verify", "test/fixtures/llama-tiny", "--target", "aim", "--json");
    expect(l.code, l.stderr).toBe(0);
    expect(JSON.parse(l.stdout)).toMatchObject({
      passed: true,
      tokens_match: false,
      tokens_agreed: 13,
      tokens_total: 14,
      disagreements_beyond_near_ties: 0,
    });
  });
});

describe("the AiM cost model", () => {
  const f16 = (shape: number[]) => ({ dtype: "f16" as const, shape });
  // Llama-2-7B decode attention at batch 1 with 1024 cached tokens: q [1, 32, 1, 128], K and V [1, 32, 1024, 128].
  const view = {
    op: { opcode: "attention", operands: ["%q", "%k", "%v"], results: [], attrs: {} },
    ins: [f16([1, 32, 1, 128]), f16([1, 32, 1024, 128]), f16([1, 32, 1024, 128])],
    outs: [f16([1, 32, 1, 128])],
    cost: { flops: 4 * 32 * 1024 * 128, bytes: 2 * 2 * 32 * 1024 * 128 },
  };
  it("times attention over the KV cache as two GEMVs per query row, beside the host's roofline", () => {
    const cm = aimCostModel(S);
    const gemv = (n: number, k: number) =>
      runChannel(S, expand(gemvPlan(S, n, k).instrs)).cycles * S.timing.tCK;
    const pim = cm.opTime(view, "pim", {})!;
    // 32 query rows (one per head) x (scores over 1024 tokens + context over 128 dims), plus the softmax and the writes.
    const kernels = 32 * (gemv(1024, 128) + gemv(128, 1024));
    const softmax = hostRoofline(S.host, 5 * 32 * 1024, 8 * 32 * 1024);
    // The new token's K and V: 32 heads x 256 values x 2 bytes in 32-byte bursts over 32 channels.
    const writes = Math.ceil((32 * 256 * 2) / 32 / 32) * S.timing.nBL * S.timing.tCK;
    expect(pim).toBeCloseTo(kernels + softmax + writes, 15);
    expect(pim).toBeLessThan(cm.opTime(view, "host", {})!);
    expect(aimCostModel(S, { attention: "host" }).opTime(view, "pim", {})).toBeUndefined();
    expect(aimCostModel(S, { attention: "pim" }).opTime(view, "host", {})).toBeUndefined();
  });
});

describe("CENT's devices", () => {
  it("share a GEMV over the CXL network as cent_simulation/cxl_latency.py prices it", async () => {
    const { system } = await chooseTarget({ system: "examples/systems/cent-latency.pim" });
    const cent = system.config as AimSystem;
    expect(cent.devices).toBe(8);
    // One-hop round trip 4 x 25 + 2 x 30 + 20 = 180 ns; 18 lanes x 4 GB/s; 2-byte values, 3 x 64-byte
    // messages per 256-byte flit: the input (4096 values: 43 flits) broadcast, 7 devices' 512 outputs
    // (6 flits each) gathered.
    const bw = 18 * 4e9;
    expect(cxlSeconds(cent, 4096, 4096)).toBeCloseTo(180e-9 + (43 * 256) / bw + 180e-9 + (42 * 256) / bw, 18);
    expect(cxlSeconds(S, 4096, 4096)).toBe(0);
    // A GEMV runs on every device's channels, then crosses the network.
    const pool = poolOf(cent);
    expect(pool.channels).toBe(256);
    const f16 = (shape: number[]) => ({ dtype: "f16" as const, shape });
    const linear = {
      op: { opcode: "linear", operands: ["%x", "@w"], results: [], attrs: {} },
      ins: [f16([1, 1, 4096]), f16([4096, 4096])],
      outs: [f16([1, 1, 4096])],
      cost: { flops: 2 * 4096 * 4096, bytes: 2 * 4096 * 4096 },
    };
    const kernel = runChannel(pool, expand(gemvPlan(pool, 4096, 4096).instrs)).cycles * pool.timing.tCK;
    expect(aimCostModel(cent).opTime(linear, "pim", {})).toBeCloseTo(
      kernel + cxlSeconds(cent, 4096, 4096),
      18,
    );
  });

  it("time their near-memory units as CENT's run_sim.py does: its stored per-block latencies", async () => {
    const { system } = await chooseTarget({ system: "examples/systems/cent.pim" });
    const cent = system.config as AimSystem;
    const c = pnmCycles(cent.pnm!, cent.channels);
    // Llama-2-7B: two RMSNorms of 4096, RoPE of q and k (4096 each), softmax of 32 heads over s
    // tokens; a device's 4 blocks share the units (simulation_results.csv: 9.32 and 21.64 us).
    const block = (s: number) => (4 * (2 * c.rmsNorm(4096) + 2 * c.rope(4096) + 32 * c.softmax(s))) / 2e9;
    expect(block(128) * 1e6).toBeCloseTo(9.32, 2);
    expect(block(1024) * 1e6).toBeCloseTo(21.64, 2);
  });

  it("run element-wise work on the AiM units as CENT maps it: its programs, the near-memory units' scalar work", async () => {
    const { system } = await chooseTarget({ system: "examples/systems/cent.pim" });
    const cent = system.config as AimSystem;
    expect(cent.elementwise).toBe("units");
    const cm = aimCostModel(cent);
    const f16 = (shape: number[]) => ({ dtype: "f16" as const, shape });
    const op = (opcode: string, ins: number[][], flops: number, bytes: number) => ({
      op: { opcode, operands: ins.map((_, i) => `%${i}`), results: [], attrs: {} },
      ins: ins.map(f16),
      outs: [f16(ins[0]!)],
      cost: { flops, bytes },
    });
    // A block's 8 channels, the device's 4 blocks sending their vectors too.
    const block: VectorBlock = { sys: { ...cent, devices: 1 }, channels: 8, copies: 4 };
    const program = (steps: TraceStep[]) => runAimTrace(block.sys, steps).cycles * cent.timing.tCK;
    const c = pnmCycles(cent.pnm!, cent.channels);
    // RMSNorm of 2 rows: the program per row, CENT's near-memory latency for the rows (shared by 4 blocks).
    const norm = op("rms_norm", [[2, 1, 4096], [4096]], 8 * 4096, 4 * 4096);
    expect(cm.opTime(norm, "pim", {})).toBeCloseTo(
      2 * program(rmsNormProgram(block, 4096)) + (4 * 2 * c.rmsNorm(4096)) / 2e9,
      15,
    );
    // CENT's near-memory units do not take the element-wise work: the units must.
    expect(cm.opTime(norm, "host", {})).toBeUndefined();
    const rope = op("rope", [[1, 1, 32, 128], [1]], 4096 * 6, 4096 * 4);
    expect(cm.opTime(rope, "pim", {})).toBeCloseTo(
      program(ropeProgram(block, 4096)) + (4 * c.rope(4096)) / 2e9,
      15,
    );
    // SiLU: 86 sigmoids per bank of the gate's 11008 outputs over 8 x 16 banks; the gate's product.
    const silu = op("silu", [[1, 1, 11008]], 4 * 11008, 4 * 11008);
    expect(cm.opTime(silu, "pim", {})).toBeCloseTo(program(swigluProgram(block, 11008, "silu", 86)), 15);
    const mul = op(
      "mul",
      [
        [1, 1, 11008],
        [1, 1, 11008],
      ],
      11008,
      6 * 11008,
    );
    expect(cm.opTime(mul, "pim", {})).toBeCloseTo(program(swigluProgram(block, 11008, "mul")), 15);
    // A broadcast product is not an EWMUL: the host's.
    expect(cm.opTime(op("mul", [[1, 1, 11008], [1]], 11008, 4 * 11008), "pim", {})).toBeUndefined();
    // Energy: the commands of a block's share of the device's program, the other channels' standby.
    expect(cm.opEnergy!(mul, "pim", {})!.breakdown.pim_mac).toBeGreaterThan(0);
    // Without CENT's mapping the near-memory units run them; "units" needs them.
    const dir = tempDir();
    const f = join(dir, "u.pim");
    writeFileSync(f, `system u {\n  target = "aim"\n  elementwise = "units"\n}\n`);
    const r = await pimc("bench", "test/fixtures/llama-tiny", "--system", f, "--phase", "decode");
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/elementwise.*needs the near-memory units \(pnm\)/);
  });

  it("map blocks to devices in a pipeline: a step's ops over min(batch, blocks); bad pipelines are refused", async () => {
    const dir = tempDir();
    const sys = (pipeline: string) => {
      const f = join(dir, "p.pim");
      writeFileSync(
        f,
        `system p {\n  target = "aim"\n  devices = 1\n  channels = 32\n  pipeline = ${pipeline}\n}\n`,
      );
      return f;
    };
    // llama-tiny's 2 blocks on one device's 2 x 16 channels: its call's ops timed as the cost model
    // times them, over min(batch, 2) queries in flight.
    const f = sys("{ blocks_per_device = 2 }");
    const model = loadModel("test/fixtures/llama-tiny");
    for (const batch of [1, 2, 4]) {
      const env = { B: batch, S: 1, P: 20, T: 21 };
      const c = await compileModel(
        model,
        { system: f, disablePass: [], printBefore: [], printAfter: [] },
        {
          ...defaultWorkload("decode"),
          batch,
          context: 20,
        },
        2,
      );
      const plain = costModelTiming(c.module, c.system, "decode", env);
      const piped = c.target.timeCall!(c.module, c.system, "decode", env);
      const m = Math.min(batch, 2);
      expect(piped.seconds * m, `batch ${batch}`).toBeCloseTo(plain.seconds, 15);
      expect(piped.ops.reduce((t, o) => t + o.seconds, 0)).toBeCloseTo(piped.seconds, 15);
      // The channels' standby is charged over the step's time, not the ops' sum.
      const standby = 32 * (0.3663 / 2);
      expect(plain.energy!.joules - piped.energy!.joules).toBeCloseTo(
        (standby + 32 * 0.06702101898e-3) * (plain.seconds - piped.seconds),
        9,
      );
    }
    const small = await pimc(
      "bench",
      "test/fixtures/llama-tiny",
      "--system",
      sys("{ blocks_per_device = 1 }"),
      "--phase",
      "decode",
    );
    expect(small.code).toBe(2);
    expect(small.stderr.trim()).toBe(
      "pimc: error: system p: its pipeline holds 1 blocks (1 devices x 1 blocks_per_device), the model has 2",
    );
    const wide = await pimc(
      "bench",
      "test/fixtures/llama-tiny",
      "--system",
      sys("{ blocks_per_device = 64 }"),
      "--phase",
      "decode",
    );
    expect(wide.code).toBe(2);
    expect(wide.stderr).toMatch(/pipeline\.blocks_per_device.*more blocks than the device's 32 channels/);
  });

  it("bench runs a model on them end to end", async () => {
    const r = await pimc(
      "bench",
      "test/fixtures/llama-tiny",
      "--system",
      "examples/systems/cent.pim",
      "--phase",
      "decode",
      "--json",
    );
    expect(r.code, r.stderr).toBe(0);
  });
});

describe("pimc on the aim target", () => {
  it("kernel rmsnorm, mul, silu, rope, softmax: CENT's element-wise programs on a device, their commands and energy", async () => {
    const run = async (...args: string[]) => {
      const r = await pimc("kernel", ...args, "--system", "examples/systems/aimx.pim", "--json");
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as {
        kernel: string;
        cycles: number;
        instructions: Record<string, number>;
        energy: { joules: number };
      };
    };
    const device: VectorBlock = { sys: S, channels: 32, copies: 1 };
    const norm = await run("rmsnorm", "4096");
    expect(norm.kernel).toBe("rmsnorm 4096");
    expect(norm.cycles).toBe(runAimTrace(S, rmsNormProgram(device, 4096)).cycles);
    // 4096 values over 32 x 16 banks: 8 per bank of a pair, written twice (two banks of each pair, 1
    // burst each: 256 x 2), as EWMUL operands twice (32 per bank of a group: 2 bursts x 128 x 2).
    expect(norm.instructions).toMatchObject({ WR_SBK: 2 * 256 + 2 * 2 * 128, RD_SBK: 2 * 128, EWMUL: 2 });
    const mul = await run("mul", "11008");
    expect(mul.instructions).toMatchObject({ EWMUL: 1, SYNC: 1 });
    expect(mul.energy.joules).toBeGreaterThan(0);
    // SiLU: an AF per output a bank holds (11008 over 512 banks: 22).
    expect((await run("silu", "11008")).instructions).toMatchObject({ AF: 22, RD_AF: 22 });
    expect((await run("softmax", "32x1024")).cycles).toBe(
      runAimTrace(S, softmaxProgram(device, 32, 1024)).cycles,
    );
    // --emit: the program in the AiM simulator's format, which kernel trace reads back to the same cycles.
    const dir = tempDir();
    // The AiM simulator (0f28a07) on the emitted files: rmsnorm 2,086 (pimc 5 fewer, as after the
    // block traces' RMSNorm writes), softmax 12,681, attention 33,165 and gemv 8,124 as pimc.
    const simulator: Record<string, number> = {
      rmsnorm: 2086 - 5,
      softmax: 12681,
      attention: 33165,
      gemv: 8124,
    };
    for (const [k, size] of [
      ["rmsnorm", "4096"],
      ["silu", "11008"],
      ["softmax", "32x1024"],
      ["attention", "32x1024x128"],
      ["gemv", "4096x4096"],
    ] as const) {
      const file = join(dir, `${k}.trace`);
      const r = await pimc(
        "kernel",
        k,
        size,
        "--system",
        "examples/systems/aimx.pim",
        "--emit",
        file,
        "--json",
      );
      expect(r.code, r.stderr).toBe(0);
      const back = await run("trace", file);
      const own = JSON.parse(r.stdout) as { cycles?: number; pim?: { cycles: number } };
      // The trace ends with the EOC's two cycles (a GEMV's also with its last RD_MAC's extra one).
      expect(back.cycles, k).toBe(own.cycles !== undefined ? own.cycles + 2 : own.pim!.cycles + 3);
      if (simulator[k] !== undefined) expect(back.cycles, k).toBe(simulator[k]);
    }
    expect(readFileSync(join(dir, "gemv.trace"), "utf8").split("\n").slice(0, 2)).toEqual([
      "AiM WR_GB 64 0 0xffffffff",
      "AiM WR_BIAS 0 0xffffffff",
    ]);
    const refused = await pimc(
      "kernel",
      "gemv",
      "64x64",
      "--system",
      "examples/systems/hbm-pim-64ch.pim",
      "--emit",
      join(dir, "x"),
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--emit: target hbm-pim writes no kernel programs/);
    expect(existsSync(join(dir, "x"))).toBe(false);
    const big = await pimc("kernel", "mul", "1M", "--system", "examples/systems/aimx.pim");
    expect(big.code).toBe(2);
    expect(big.stderr).toMatch(
      /mul 1048576: more values than a row of one bank per bank group holds \(131072/,
    );
    const shape = await pimc("kernel", "softmax", "32", "--system", "examples/systems/aimx.pim");
    expect(shape.code).toBe(2);
    expect(shape.stderr).toMatch(/softmax: expected a size HxT/);
    const att = await pimc("kernel", "attention", "32x1024", "--system", "examples/systems/aimx.pim");
    expect(att.code).toBe(2);
    expect(att.stderr).toMatch(/attention: expected a size HxTxD/);
  });

  it("kernel gemv: the AiM run and the conventional read, per channel, within JSSC 2023's 7.5-10.5x", async () => {
    const r = await pimc("kernel", "gemv", "4096x4096", "--system", "examples/systems/aimx.pim", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as {
      pim: { cycles: number; commands: Record<string, number> };
      non_pim: { cycles: number; commands: Record<string, number> };
      speedup: number;
    };
    expect(j.pim.cycles).toBe(8121);
    // The conventional read moves every byte of W: 32 MiB over 32 channels of 32-byte bursts.
    expect(j.non_pim.commands.RD! * 32 * 32).toBe(2 * 4096 * 4096);
    expect(j.speedup).toBeGreaterThan(7.5);
    expect(j.speedup).toBeLessThan(10.5);
    // Energy (CENT's power model): its parts add up; the units read in the banks, the stream pays the pins.
    const e = (m: "pim" | "non_pim") =>
      (j as unknown as Record<string, { energy: { joules: number; breakdown: Record<string, number> } }>)[m]!
        .energy;
    for (const m of ["pim", "non_pim"] as const)
      expect(Object.values(e(m).breakdown).reduce((s, x) => s + x, 0)).toBeCloseTo(e(m).joules, 15);
    expect(e("pim").breakdown.pim_mac).toBeGreaterThan(0);
    expect(e("non_pim").breakdown.pim_mac).toBe(0);
    expect(e("pim").breakdown.io).toBeLessThan(0.1 * e("pim").joules);
    expect(e("non_pim").breakdown.io).toBeGreaterThan(0.5 * e("non_pim").joules);
    expect(e("non_pim").joules).toBeGreaterThan(e("pim").joules);
    const bad = await pimc("kernel", "add", "1M", "--system", "examples/systems/aimx.pim");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /unknown kernel "add" \(available: gemv, mul, silu, rmsnorm, rope, softmax, attention, trace\)/,
    );
    const ranks = await pimc(
      "kernel",
      "gemv",
      "64x64",
      "--system",
      "examples/systems/aimx.pim",
      "--ranks",
      "1",
    );
    expect(ranks.code).toBe(2);
    expect(ranks.stderr.trim()).toBe("pimc: error: --ranks: GDDR6-AiM channels have no ranks");
    // A weight the banks cannot hold fails before its instructions are built.
    const big = await pimc(
      "kernel",
      "gemv",
      "1024Kx1024K",
      "--system",
      "examples/systems/aimx.pim",
      "--channels",
      "1",
    );
    expect(big.code).toBe(2);
    expect(big.stderr.trim()).toBe(
      "pimc: error: gemv 1048576x1048576: needs 67108864 rows per bank, more than 16384",
    );
  });

  it("kernel trace: a trace of the AiM simulator's, plain or gzipped, timed over its channels; bad lines name file:line:col", async () => {
    const file = "test/fixtures/peers/cent-llama2-7b-tp8_s128.trace.gz";
    const r = await pimc("kernel", "trace", file, "--system", "examples/systems/aimx.pim", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as {
      cycles: number;
      channels_used: number;
      instructions: Record<string, number>;
      commands: Record<string, number>;
      energy: { joules: number; breakdown: Record<string, number> };
    };
    expect(j.channels_used).toBe(32);
    expect(j.instructions.EOC).toBe(1);
    expect(j.commands.MAC16).toBeGreaterThan(0);
    expect(Object.values(j.energy.breakdown).reduce((s, x) => s + x, 0)).toBeCloseTo(j.energy.joules, 15);
    // Every command priced as CENT's model does (cent_power_calculator.py): the block's normal
    // writes and WR_ABKs (a WRA16 writes all 16 banks) beside the accumulator writes.
    const c = j.commands;
    expect(c.WR! + c.WRA16!).toBeGreaterThan(0);
    expect(j.energy.breakdown.write).toBeCloseTo(
      (1106.3e-3 / 2) * (c.WR! + c.WRCP! + c.WRMAC16! + 16 * c.WRA16!) * 1.25e-9,
      12,
    );
    const dir = tempDir();
    const bad = join(dir, "bad.trace");
    writeFileSync(bad, "# a comment\nAiM MAC_ABK 64 0x80000000 0\n  AiM MAC_ABC 64 0x80000000 0\nAiM EOC\n");
    const e = await pimc("kernel", "trace", bad, "--system", "examples/systems/aimx.pim");
    expect(e.code).toBe(2);
    expect(e.stderr.trim()).toBe(
      `pimc: error: ${bad}:3:7: unknown AiM instruction "MAC_ABC" (known: WR_SBK, WR_ABK, WR_GB, WR_BIAS, RD_MAC, RD_AF, RD_SBK, COPY_BKGB, COPY_GBBK, MAC_SBK, MAC_ABK, AF, EWMUL, EWADD, SYNC, EOC)`,
    );
    for (const [text, msg] of [
      ["AiM MAC_ABK 64 0x80000000\nAiM EOC\n", ":1:1: AiM MAC_ABK takes 3 fields (opsize, mask, row), got 2"],
      ["AiM MAC_ABK 64 0x80000000 0\n", ": no AiM EOC at the end of the trace"],
      ["W MEM 40 0 0\nAiM EOC\n", ":1:7: channel 40 out of range 0..31"],
      ["AiM WR_GB 64 0 zz\nAiM EOC\n", ':1:16: channel mask must be a number, got "zz"'],
    ] as const) {
      writeFileSync(bad, text);
      const x = await pimc("kernel", "trace", bad, "--system", "examples/systems/aimx.pim");
      expect(x.code, text).toBe(2);
      expect(x.stderr.trim(), text).toBe(`pimc: error: ${bad}${msg}`);
    }
  });

  it("bench --compare sets AiM beside UPMEM and HBM-PIM: quantizing targets at each precision, the others at f32", async () => {
    const systems = ["upmem-rank", "hbm-pim-64ch", "aimx"].map((s) => `examples/systems/${s}.pim`).join(",");
    const r = await pimc(
      "bench",
      "test/fixtures/llama-tiny",
      "--compare",
      systems,
      "--precisions",
      "int8,f32",
      "--phase",
      "decode",
      "--json",
    );
    expect(r.code, r.stderr).toBe(0);
    const all = (
      JSON.parse(r.stdout) as {
        steps: {
          rows: { system: string; target: string; weights: string; energy?: { per_token_j: number } }[];
        }[];
      }
    ).steps[0]!.rows;
    const rows = all.map((x) => `${x.system} ${x.target} ${x.weights}`);
    // Energy per token where the target models it (hbm-pim, aim), none elsewhere.
    expect(all.map((x) => x.energy !== undefined)).toEqual([false, false, false, false, true, false, true]);
    expect(rows).toEqual([
      "upmem_rank host CPU alone int8",
      "upmem_rank upmem int8",
      "upmem_rank upmem f32",
      "hbm_pim_64ch host CPU alone f32",
      "hbm_pim_64ch hbm-pim f32",
      "aimx host CPU alone f32",
      "aimx aim f32",
    ]);
  });

  it("bench runs a model end to end: linear layers on the AiM units, the rest on the host", async () => {
    const r = await pimc(
      "bench",
      "test/fixtures/llama-tiny",
      "--system",
      "examples/systems/aimx.pim",
      "--phase",
      "decode",
      "--json",
    );
    expect(r.code, r.stderr).toBe(0);
    type Row = { name: string; device: string; calls: number; seconds: number; joules?: number };
    const step = (
      JSON.parse(r.stdout) as {
        steps: {
          seconds: number;
          energy: { joules: number; breakdown: Record<string, number> };
          ops: Row[];
        }[];
      }
    ).steps[0]!;
    const row = (name: string) => step.ops.find((o) => o.name === name)!;
    expect(row("L*.qkv").device).toBe("pim");
    expect(row("L*.attn").device).toBe("host");
    // Energy (CENT's power model): the step's is its ops'; the down projection's (W [64, 176], no
    // bias) is its GEMV kernel's, once per layer, as `pimc kernel` prices it.
    expect(step.ops.reduce((s, o) => s + (o.joules ?? 0), 0)).toBeCloseTo(step.energy.joules, 12);
    const k = await pimc("kernel", "gemv", "64x176", "--system", "examples/systems/aimx.pim", "--json");
    const kj = JSON.parse(k.stdout) as { pim: { seconds: number; energy: { joules: number } } };
    const down = row("L*.down");
    expect(down.device).toBe("pim");
    expect(down.seconds / down.calls).toBeCloseTo(kj.pim.seconds, 15);
    expect(down.joules! / down.calls).toBeCloseTo(kj.pim.energy.joules, 15);
    // Every channel draws standby power all the step long: at least precharge standby (CENT's
    // 366.3 / 2 mW per channel) over the step's time, 32 channels.
    expect(step.energy.breakdown.background).toBeGreaterThanOrEqual(
      32 * (0.3663 / 2) * step.seconds * (1 - 1e-12),
    );
    // The host's ops: its multiply-adds and its bursts through the pins.
    expect(step.energy.breakdown.host).toBeGreaterThan(0);
    expect(row("L*.attn").joules!).toBeGreaterThan(32 * (0.3663 / 2) * row("L*.attn").seconds);
  });
});
