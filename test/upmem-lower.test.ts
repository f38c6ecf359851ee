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
import { i32 } from "../src/ir/tensor.js";
import { WeightStore } from "../src/ir/weights.js";
import { UserError } from "../src/errors.js";
import { decodeProgram } from "../targets/upmem/codec.js";
import { UpmemMachine } from "../targets/upmem/machine.js";
import { upmemPlan } from "../targets/upmem/passes/plan.js";
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

describe("upmem-lower", () => {
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

  for (const [what, flags] of [
    ["INT8, attention and K splits on the DPUs", { ...ALL_ON_DPUS, weights: "int8" }],
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

  test("the interpreter runs the lowered module to the emulator's logits (INT8: to the bit)", async () => {
    const model = importHf("test/fixtures/llama-tiny");
    for (const [flags, tol] of [
      [{ target: "upmem", cooperation: false, weights: "int8" }, 0],
      [ALL_ON_DPUS, 1e-5],
    ] as [CompileFlags, number][]) {
      const c = await compileModel(model, flags, w, 2);
      const program = decodeProgram(emitProgram(model, c, w).bytes, "tiny.pimx");
      const machine = new UpmemMachine(program);
      const interp = new Interpreter(c.lowered!, c.ctx.weights);
      const tokens = i32([2, 5], [1, 7, 3, 9, 4, 2, 8, 6, 5, 11]);
      const want = machine.run("prefill", [tokens]).outputs![0]!;
      const got = interp.run("prefill", [tokens], { P: 0 })[0]!;
      let err = 0;
      for (let i = 0; i < want.data.length; i++)
        err = Math.max(err, Math.abs((want.data[i] as number) - (got.data[i] as number)));
      expect(err, JSON.stringify(flags)).toBeLessThanOrEqual(tol);
    }
  });
});
