/**
 * The upmem-lower pass: the ops planned on the DPUs become the UPMEM dialect, one op per command.
 * Before/Expected on a one-layer module; the lowered module prints, parses back and verifies; the
 * reference interpreter runs it to the emulator's logits; the program has a command per op.
 */
import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { importHf } from "../src/frontend/hf/import.js";
import { chooseTarget, compileModel, type CompileFlags } from "../src/driver/compile.js";
import { emitProgram } from "../src/driver/run.js";
import { defaultWorkload, phaseEnvs } from "../src/frontend/workload.js";
import { stripLocs } from "../src/ir/equal.js";
import { parseModule } from "../src/ir/parser.js";
import { printModule } from "../src/ir/printer.js";
import { assertValid } from "../src/ir/verifier.js";
import { Interpreter } from "../src/exec/interpreter.js";
import { PassContext } from "../src/pipeline/pass.js";
import { f32, i32 } from "../src/ir/tensor.js";
import { WeightStore } from "../src/ir/weights.js";
import { UserError } from "../src/errors.js";
import type { Func } from "../src/ir/module.js";
import { decodeProgram } from "../targets/upmem/codec.js";
import { UpmemMachine } from "../targets/upmem/machine.js";
import { pimc } from "./util.js";
import { passInputs, upmemPlan } from "../targets/upmem/passes/plan.js";
import { lowerModule } from "../targets/upmem/lower.js";
import { upmemLower } from "../targets/upmem/passes/lower.js";

const w = { ...defaultWorkload("decode"), batch: 2, context: 16 };

/** A one-layer module after partition: an FP32 GEMM with a bias and an INT8 one on the DPUs. */
const BEFORE = `module @one attributes {dtype = "f32"}

const @w : f32[64, 128]
const @b : f32[64]
const @q : i8[128, 64]
const @qs : f32[128]

func @decode(%x: f32[B, S, 128]) -> (f32[B, S, 128]) attributes {phase = "decode"} {
  %x.to_pim = transfer(%x) {from = "host", to = "pim"} : f32[B, S, 128]
  %y = linear(%x.to_pim, @w, @b) {device = "pim"} : f32[B, S, 64]
  %z = qlinear(%y, @q, @qs) {device = "pim"} : f32[B, S, 128]
  %z.to_host = transfer(%z) {from = "pim", to = "host"} : f32[B, S, 128]
  return %z.to_host
}
`;

const EXPECTED = `module @one attributes {dtype = "f32"}

const @w : f32[64, 128]
const @b : f32[64]
const @q : i8[128, 64]
const @qs : f32[128]

func @decode(%x: f32[B, S, 128]) -> (f32[B, S, 128]) attributes {phase = "decode"} {
  %y.x.dpu = upmem.push(%x) {at = 0, dpus = [0, 64], map = ["B*S", 128, "cdiv(B*S, 2)", 8, 8, 32, 2, 1, 16], region = "x"} : f32[B, S, 128]
  %y.y.dpu = upmem.launch(%y.x.dpu, @w) {computes = "gemm", dpus = [0, 64], kernel = "gemm0", reads = ["x"], w = "w:w", writes = "y"} : f32[B, S, 64]
  %y.raw = upmem.pull(%y.y.dpu) {at = 0, dpus = [0, 64], map = ["B*S", 64, "cdiv(B*S, 2)", 32, 32, 32, 2, 16, 2], reduce = true, region = "y"} : f32[B, S, 64]
  %y = add(%y.raw, @b) {device = "host"} : f32[B, S, 64]
  %z.xq, %z.xs = quantize(%y) {device = "host"} : i8[B, S, 64], f32[B, S]
  %z.x.dpu = upmem.push(%z.xq) {at = 0, dpus = [0, 64], map = ["B*S", 64, "cdiv(B*S, 2)", 32, 32, 32, 2, 1, 2], region = "x"} : i8[B, S, 64]
  %z.y.dpu = upmem.launch(%z.x.dpu, @q) {computes = "gemm", dpus = [0, 64], kernel = "gemm1", reads = ["x"], w = "w:q", writes = "y"} : i32[B, S, 128]
  %z.acc = upmem.pull(%z.y.dpu) {at = 0, dpus = [0, 64], map = ["B*S", 128, "cdiv(B*S, 2)", 8, 8, 32, 2, 2, 16], reduce = true, region = "y"} : i32[B, S, 128]
  %z = dequantize(%z.acc, %z.xs, @qs) {device = "host"} : f32[B, S, 128]
  return %z
}
`;

/** One rank of 64 DPUs: small distributions to read. */
const RANK = "examples/systems/upmem-rank.pim";

async function lowerText(text: string): Promise<string> {
  const { system } = await chooseTarget({ system: RANK, cooperation: false });
  const ctx = new PassContext({
    options: { ...system.passOptions, envs: phaseEnvs(w) },
    weights: new WeightStore(),
  });
  return printModule(upmemLower.run(upmemPlan.run(parseModule(text), ctx), ctx));
}

const ALL_ON_DPUS: CompileFlags = { target: "upmem", cooperation: false, attention: "pim" };

/** BEFORE after upmem-plan: each op on the DPUs carries its kernel, MRAM region and tiling. */
const PLANNED = BEFORE.replace(
  '{device = "pim"} : f32[B, S, 64]',
  '{device = "pim", upmem.kernel = "gemm0", upmem.mram = "w:w", upmem.tiling = "BatchedGEMM 2x2x16 t16 1x2x8"} : f32[B, S, 64]',
).replace(
  '{device = "pim"} : f32[B, S, 128]',
  '{device = "pim", upmem.kernel = "gemm1", upmem.mram = "w:q", upmem.tiling = "BatchedGEMM 2x16x2 t8 1x2x32"} : f32[B, S, 128]',
);

describe("upmem-lower", () => {
  test("upmem-plan Before/Expected: the plan recorded on the ops it lowers", async () => {
    const { system } = await chooseTarget({ system: RANK, cooperation: false });
    const ctx = new PassContext({ options: { ...system.passOptions, envs: phaseEnvs(w) } });
    expect(PLANNED).not.toBe(BEFORE);
    expect(printModule(upmemPlan.run(parseModule(BEFORE), ctx))).toBe(PLANNED);
  });

  test("Before/Expected: a GEMM is a push, a launch and a pull; the host adds the bias, quantizes and dequantizes", async () => {
    expect(await lowerText(BEFORE)).toBe(EXPECTED);
    // The expected module is valid IR: every dialect op type-checks against its operands.
    assertValid(parseModule(EXPECTED));
    // docs/upmem.md quotes the FP32 layer's four ops.
    const doc = readFileSync("docs/upmem.md", "utf8");
    for (const line of EXPECTED.split("\n").filter((l) => /^ {2}%y[ .]/.test(l)))
      expect(doc).toContain(line.trim());
  });

  test("an op left on the DPUs without a kernel fails the lowering, naming it", async () => {
    const bad = BEFORE.replace(
      "return %z.to_host",
      '%n = rms_norm(%z, @b) {device = "pim", eps = 0.00001} : f32[B, S, 128]\n  return %z.to_host',
    )
      .replace("const @b : f32[64]", "const @b : f32[64]\nconst @g : f32[128]")
      .replace("rms_norm(%z, @b)", "rms_norm(%z, @g)");
    const { system } = await chooseTarget({ system: RANK, cooperation: false });
    const ctx = new PassContext({ options: { ...system.passOptions, envs: phaseEnvs(w) } });
    const placed = parseModule(bad);
    expect(() => upmemLower.run(placed, ctx)).toThrow(UserError);
    expect(() => upmemLower.run(placed, ctx)).toThrow(/%n \(rms_norm, decode\) is placed on the DPUs/);
  });

  test("pimc dump --print-after-all shows every stage of Llama-2-7B's UPMEM lowering; each parses back", async () => {
    const r = await pimc(
      "dump",
      "examples/llama2-7b.pim",
      "--system",
      "examples/systems/upmem-2048.pim",
      "--weights",
      "int8",
      "--print-after-all",
    );
    expect(r.code).toBe(0);
    const stages = r.stdout.split(/^\/\/ ----- IR after (\S+) -----\n/m).slice(1);
    const names = stages.filter((_, i) => i % 2 === 0);
    expect(names.slice(-3)).toEqual(["partition", "upmem-plan", "upmem-lower"]);
    for (let i = 0; i < stages.length; i += 2) {
      const text = stages[i + 1]!.trimEnd() + "\n";
      // Printed IR is canonical: parse(print(m)) prints the same text.
      expect(printModule(parseModule(text)), stages[i]).toBe(text);
    }
    const lowered = stages[stages.length - 1]!;
    expect(lowered).toMatch(/upmem\.launch\(/);
    expect(lowered).not.toMatch(/ = transfer\(/);
  });

  for (const [what, flags] of [
    ["INT8 and attention on the DPUs", { ...ALL_ON_DPUS, weights: "int8" }],
    [
      "without resource pooling (alloc, load and weight pushes per call)",
      { ...ALL_ON_DPUS, targetFlags: { pooling: false } },
    ],
  ] as [string, CompileFlags][])
    test(`${what}: the lowered module prints, parses back and verifies; the program has a command per op`, async () => {
      const model = importHf("test/fixtures/llama-tiny");
      const c = await compileModel(model, flags, w, 2);
      const lowered = c.lowered!;
      const text = printModule(lowered);
      expect(text).toMatch(/upmem\.launch\(/);
      const again = parseModule(text);
      assertValid(again);
      expect(stripLocs(again)).toEqual(stripLocs(lowered));
      const program = decodeProgram(emitProgram(model, c, w, { shapeOnly: true }).bytes, "tiny.pimx");
      for (const f of lowered.funcs)
        expect(program.phases.find((p) => p.name === f.name)!.commands.length, f.name).toBe(f.body.length);
    });
});

describe("upmem dialect values", () => {
  test("the interpreter computes every value the emulator's DPUs pull (K-split partials in their places) and the logits", async () => {
    const model = importHf("test/fixtures/llama-tiny");
    const split = new Set<string>();
    // FP32 planned for a longer context: the context kernel splits the tokens.
    const long = { ...defaultWorkload("decode"), batch: 2, context: 128 };
    // One rank of 64 DPUs: the emulator runs every DPU of every launch.
    const rank: CompileFlags = { system: RANK, cooperation: false, attention: "pim" };
    for (const [flags, wl] of [
      [{ ...rank, weights: "int8" }, w],
      [rank, long],
      [{ ...rank, weights: "int4", activations: "int8" }, w],
    ] as [CompileFlags, typeof w][]) {
      const c = await compileModel(model, flags, wl, 2);
      const program = decodeProgram(emitProgram(model, c, wl).bytes, "tiny.pimx");
      const pullsOf = (f: Func) =>
        f.body.filter((op) => op.opcode === "upmem.pull").map((op) => op.results[0]!.name);
      // Each phase returns every value it pulls, in the program and in the lowered module.
      const machine = new UpmemMachine({
        ...program,
        phases: program.phases.map((p) => ({
          ...p,
          outputs: [
            ...pullsOf(c.lowered!.funcs.find((f) => f.name === p.name)!).map((n) => `${p.name}/${n}`),
            ...p.outputs,
          ],
        })),
      });
      const interp = new Interpreter(
        {
          ...c.lowered!,
          funcs: c.lowered!.funcs.map((f) => ({
            ...f,
            results: [...pullsOf(f).map((n) => `%${n}`), ...f.results],
          })),
        },
        c.ctx.weights,
      );
      for (const [phase, tokens, env] of [
        ["prefill", i32([2, 5], [1, 7, 3, 9, 4, 2, 8, 6, 5, 11]), { P: 0 }],
        ["decode", i32([2, 1], [12, 13]), { P: 5 }],
      ] as const) {
        const f = c.lowered!.funcs.find((x) => x.name === phase)!;
        for (const op of f.body)
          if (op.opcode === "upmem.launch" && op.attrs.ks !== undefined) split.add(String(op.attrs.computes));
        const want = machine.run(phase, [tokens]).outputs!;
        const got = interp.run(phase, [tokens], env);
        [...pullsOf(f), "logits"].forEach((name, k) => {
          const a = want[k]!.data;
          const b = got[k]!.data;
          expect(b.length, name).toBe(a.length);
          let err = 0;
          let scale = 0;
          for (let i = 0; i < a.length; i++) {
            err = Math.max(err, Math.abs((a[i] as number) - (b[i] as number)));
            scale = Math.max(scale, Math.abs(a[i] as number));
          }
          // Integers to the bit; floats up to the order of their additions.
          const tol = a instanceof Int32Array ? 0 : 1e-5 * Math.max(1, scale);
          expect(err, `${phase} ${name} ${JSON.stringify(flags)}`).toBeLessThanOrEqual(tol);
        });
      }
    }
    // The cases include K splits of both kernels that have them (GEMMs' also below, on their own).
    expect([...split].sort()).toEqual(["context", "gemm"]);
  });

  test("a GEMM's K-split partials (FP32 and INT8) are the DPUs' to the bit (INT8) or the order of additions (FP32)", async () => {
    const text = `module @split attributes {dtype = "f32"}

const @w : f32[8, 16384]
const @q : i8[8, 16384]
const @s : f32[8]

func @decode(%x: f32[B, S, 16384]) -> (f32[B, S, 8], f32[B, S, 8]) attributes {phase = "decode"} {
  %x.to_pim = transfer(%x) {from = "host", to = "pim"} : f32[B, S, 16384]
  %y = linear(%x.to_pim, @w) {device = "pim"} : f32[B, S, 8]
  %z = qlinear(%x.to_pim, @q, @s) {device = "pim"} : f32[B, S, 8]
  %y.to_host = transfer(%y) {from = "pim", to = "host"} : f32[B, S, 8]
  %z.to_host = transfer(%z) {from = "pim", to = "host"} : f32[B, S, 8]
  return %y.to_host, %z.to_host
}
`;
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    const weights = new WeightStore();
    weights.set("w", f32([8, 16384], Float32Array.from({ length: 8 * 16384 }, rand)));
    weights.set("q", {
      dtype: "i8",
      shape: [8, 16384],
      data: Int8Array.from({ length: 8 * 16384 }, () => Math.round(rand() * 127)),
    });
    weights.set(
      "s",
      f32(
        [8],
        Float32Array.from({ length: 8 }, () => 0.01),
      ),
    );
    const { system } = await chooseTarget({ system: RANK, cooperation: false });
    const ctx = new PassContext({
      options: { ...system.passOptions, envs: phaseEnvs({ ...defaultWorkload("decode"), batch: 1 }) },
      weights,
    });
    const placed = upmemPlan.run(parseModule(text), ctx);
    const lowered = upmemLower.run(placed, ctx);
    const f = lowered.funcs[0]!;
    const ks = f.body.filter((op) => op.opcode === "upmem.launch").map((op) => op.attrs.ks);
    expect(ks).toEqual([4, 4]);
    const parts = f.body.filter((op) => op.opcode === "upmem.pull").map((op) => op.results[0]!.name);
    expect(parts).toEqual(["y.parts", "z.parts"]);
    const { program } = lowerModule(placed, weights, passInputs(ctx)!.inputs, undefined, lowered);
    const machine = new UpmemMachine({
      ...program,
      phases: program.phases.map((p) => ({ ...p, outputs: parts.map((n) => `decode/${n}`) })),
    });
    const interp = new Interpreter(
      { ...lowered, funcs: [{ ...f, results: parts.map((n) => `%${n}`) }] },
      weights,
    );
    const x = f32([1, 1, 16384], Float32Array.from({ length: 16384 }, rand));
    const want = machine.run("decode", [x]).outputs!;
    const got = interp.run("decode", [x], { P: 0 });
    // FP32: [1, 1, 4, 8] partial sums of 4096 products each.
    const a = want[0]!.data as Float32Array;
    const b = got[0]!.data as Float32Array;
    expect(b.length).toBe(32);
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!), `y.parts[${i}]`).toBeLessThan(1e-3);
    // The partials differ from one another (a misplaced K range would not match).
    expect(new Set(Array.from(b.slice(0, 4 * 8))).size).toBe(32);
    expect(Array.from(got[1]!.data as Int32Array)).toEqual(Array.from(want[1]!.data as Int32Array));
  });
});
