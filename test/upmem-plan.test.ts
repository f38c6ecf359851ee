/**
 * The upmem-plan pass: the first UPMEM lowering stage as IR. It records on every op it lowers the
 * kernel, tiling and MRAM region of the plan the program is built from; the annotated module prints
 * and parses back; an op placed on the DPUs that no kernel runs is an error.
 */
import { describe, expect, test } from "vitest";
import { importHf } from "../src/frontend/hf/import.js";
import { compileModel, type CompileFlags } from "../src/driver/compile.js";
import { emitProgram } from "../src/driver/run.js";
import { defaultWorkload, phaseEnvs, phaseMix } from "../src/frontend/workload.js";
import { stripLocs } from "../src/ir/equal.js";
import { parseModule } from "../src/ir/parser.js";
import { printModule } from "../src/ir/printer.js";
import { assertValid } from "../src/ir/verifier.js";
import { PassContext } from "../src/pipeline/pass.js";
import { UserError } from "../src/errors.js";
import { decodeProgram } from "../targets/upmem/codec.js";
import { PLAN, planFor, planInputs, upmemPlan, type PlanOptions } from "../targets/upmem/passes/plan.js";
import type { Module } from "../src/ir/module.js";
import { pimc } from "./util.js";

const ALL_ON_DPUS: CompileFlags = { target: "upmem", cooperation: false, attention: "pim" };
const w = { ...defaultWorkload("decode"), batch: 2, context: 16 };

async function compiled(dir = "test/fixtures/llama-tiny", flags: CompileFlags = ALL_ON_DPUS) {
  const model = importHf(dir);
  return { model, c: await compileModel(model, flags, w, 2) };
}

/** llama-tiny with everything on the DPUs, compiled once for the tests that only read it. */
let tiny: ReturnType<typeof compiled> | undefined;
const tinyCompiled = () => (tiny ??= compiled());

const onDpus = (m: Module) =>
  m.funcs.flatMap((f) => f.body.filter((op) => op.attrs.device === "pim").map((op) => ({ f: f.name, op })));

describe("upmem-plan", () => {
  test("every op on the DPUs carries its kernel, tiling and MRAM region; the program runs those kernels", async () => {
    const { model, c } = await tinyCompiled();
    const ops = onDpus(c.module).filter(({ op }) => op.opcode !== "transfer");
    expect(new Set(ops.map(({ op }) => op.opcode))).toEqual(new Set(["linear", "attention"]));
    for (const { op } of ops) {
      expect(op.attrs["upmem.kernel"], op.results[0]!.name).toMatch(/^gemm\d+( gemm\d+)*( reduce\d+)?$/);
      expect(op.attrs["upmem.tiling"]).toMatch(/(Ntile|Ktile|Mixed|Batched)GEMM \d+x\d+x\d+ t\d+/);
      expect(op.attrs["upmem.mram"]).toMatch(/^(w:|kc:)/);
    }
    // The emitted program launches, per phase, exactly the kernels the phase's annotations name.
    const program = decodeProgram(emitProgram(model, c, w, { shapeOnly: true }).bytes, "tiny.pimx");
    for (const phase of program.phases) {
      const launched = new Set(phase.commands.flatMap((cmd) => (cmd.kind === "launch" ? [cmd.kernel] : [])));
      const named = new Set(
        ops
          .filter(({ f }) => f === phase.name)
          .flatMap(({ op }) => String(op.attrs["upmem.kernel"]).split(" ")),
      );
      expect(launched, phase.name).toEqual(named);
    }
  });

  test("the annotated module prints and parses back, and verifies", async () => {
    const { c } = await compiled("test/fixtures/qwen2-tiny", { ...ALL_ON_DPUS, weights: "int8" });
    const text = printModule(c.module);
    expect(text).toMatch(/upmem\.tiling = "/);
    const again = parseModule(text);
    assertValid(again);
    expect(stripLocs(again)).toEqual(stripLocs(c.module));
  });

  test("emit builds the program from the pass's plan (the same object), for the same workload only", async () => {
    const { c } = await tinyCompiled();
    const o = c.system.passOptions[PLAN] as PlanOptions;
    const inputs = planInputs(o, phaseEnvs(w), phaseMix(w));
    expect(planFor(c.module, inputs)).toBe(planFor(c.module, inputs));
    const other = planInputs(o, phaseEnvs({ ...w, batch: 3 }), phaseMix(w));
    expect(planFor(c.module, other)).not.toBe(planFor(c.module, other));
  });

  test("an op placed on the DPUs that no kernel runs is one error naming it", async () => {
    const { c } = await tinyCompiled();
    const bad: Module = {
      ...c.module,
      funcs: c.module.funcs.map((f) => ({
        ...f,
        body: f.body.map((op) =>
          op.opcode === "rms_norm" ? { ...op, attrs: { ...op.attrs, device: "pim" } } : op,
        ),
      })),
    };
    const ctx = new PassContext({ options: { ...c.system.passOptions, envs: phaseEnvs(w) } });
    expect(() => upmemPlan.run(bad, ctx)).toThrow(UserError);
    expect(() => upmemPlan.run(bad, ctx)).toThrow(
      /\(rms_norm, prefill\) is placed on the DPUs, which run only GEMMs/,
    );
  });

  test("verify --verify-each interprets the IR after every pass: quantize moves the logits, the program matches the last stage", async () => {
    const r = await pimc(
      "verify",
      "test/fixtures/llama-tiny",
      "--target",
      "upmem",
      "--weights",
      "int8",
      "--verify-each",
      "--json",
    );
    expect(r.code).toBe(0); // llama-tiny's two INT8 near ties flip, within the tolerance (README)
    const j = JSON.parse(r.stdout) as {
      prefill_max_abs_err: number;
      passes: { pass: string; prefill_max_abs_err: number }[];
    };
    expect(j.passes.map((p) => p.pass)).toEqual([
      "(imported)",
      "simplify-shapes",
      "fuse-qkv",
      "fuse-gate-up",
      "layout",
      "quantize",
      "dce",
      "partition",
      "upmem-plan",
      "upmem-lower",
    ]);
    const err = Object.fromEntries(j.passes.map((p) => [p.pass, p.prefill_max_abs_err]));
    expect(err.layout).toBeLessThan(1e-5);
    expect(err.quantize).toBeGreaterThan(1e-2);
    // The lowered IR (pushes, launches, pulls) means what the planned IR means, and the DPUs' INT8
    // kernels compute it, to the bit.
    expect(err["upmem-lower"]).toBe(err["upmem-plan"]);
    expect(j.prefill_max_abs_err).toBe(err["upmem-lower"]);
    const text = await pimc("verify", "test/fixtures/llama-tiny", "--target", "upmem", "--verify-each");
    expect(text.stdout).toMatch(
      /passes\s+\(imported\)\s+prefill max \|logit error\| [\d.e-]+ \(the IR interpreted\)\n\s+simplify-shapes/,
    );
  });

  test("pimc dump --print-after upmem-plan shows the plan; -O0 and --disable-pass partition still compile", async () => {
    const r = await pimc(
      "dump",
      "test/fixtures/llama-tiny",
      "--target",
      "upmem",
      "--no-cooperation",
      "--print-after",
      "upmem-plan",
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/linear\(.*upmem\.kernel = "gemm\d+".*upmem\.tiling = "/);
    for (const extra of [["-O0"], ["--disable-pass", "partition"]]) {
      const c = await pimc("compile", "test/fixtures/llama-tiny", "--target", "upmem", ...extra);
      expect(c.code, c.stderr).toBe(0);
    }
  });
});
