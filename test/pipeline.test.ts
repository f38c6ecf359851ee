import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { Interpreter, tokenTensor } from "../src/exec/interpreter.js";
import { importHf } from "../src/frontend/hf/import.js";
import { loadModel } from "../src/frontend/load.js";
import { phaseEnvs, defaultWorkload } from "../src/frontend/workload.js";
import type { Module } from "../src/ir/module.js";
import { parseModule } from "../src/ir/parser.js";
import {
  dumpIr,
  printAfter,
  printBefore,
  timePasses,
  verifyEach,
  PassVerificationError,
} from "../src/pipeline/instruments.js";
import { PassContext, runPipeline, Sequential, type Instrument, type Pass } from "../src/pipeline/pass.js";
import { pipelineOf } from "../passes/index.js";
import { getTarget } from "../targets/index.js";
import { expectUserError, tempDir } from "./util.js";

const noop = (name: string, optLevel: number, requires?: string[]): Pass => ({
  name,
  optLevel,
  summary: name,
  ...(requires ? { requires } : {}),
  run: (m) => m,
});

const M = parseModule(
  "module @m\n\nfunc @f(%x: f32[4]) -> (f32[4]) {\n  %y = relu(%x) : f32[4]\n  return %y\n}\n",
);

describe("pass manager", () => {
  test("opt level, disabled and required passes", () => {
    const seq = new Sequential("p", [noop("a", 0), noop("b", 1), noop("c", 3), noop("d", 1)]);
    const run = (init: ConstructorParameters<typeof PassContext>[0]) => {
      const ctx = new PassContext(init);
      seq.run(M, ctx);
      return ctx.ran;
    };
    expect(run({ optLevel: 0 })).toEqual(["a"]);
    expect(run({ optLevel: 2 })).toEqual(["a", "b", "d"]);
    expect(run({ optLevel: 2, disabled: ["d"], required: ["c"] })).toEqual(["a", "b", "c"]);
  });
  test("a pass whose requirement did not run is an error", () => {
    const seq = new Sequential("p", [noop("fold", 1), noop("lower", 0, ["fold"])]);
    expectUserError(() => seq.run(M, new PassContext({ disabled: ["fold"] })), "pass lower requires fold");
  });
  test("instruments: print before/after, dump files, timing, verify-each", () => {
    const out: string[] = [];
    const dir = join(tempDir("pimc-dump-"), "ir");
    const ctx = new PassContext({
      instruments: [
        printBefore(new Set(["b"]), (s) => out.push(s)),
        printAfter(new Set(["a"]), (s) => out.push(s)),
        dumpIr(dir),
        timePasses((s) => out.push(s)),
      ],
    });
    runPipeline(new Sequential("p", [noop("a", 0), noop("b", 0)]), M, ctx);
    expect(out[0]).toMatch(/^\/\/ ----- IR after a -----\nmodule @m\n/);
    expect(out[1]).toMatch(/^\/\/ ----- IR before b -----\nmodule @m\n/);
    expect(out[2]).toMatch(/^\/\/ ----- pass timing -----\na +\d+\.\d\d ms +\d+\.\d %\nb .*\ntotal /);
    expect(readdirSync(dir)).toEqual(["000_input.pimir", "001_a.pimir", "002_b.pimir"]);
    const broken: Pass = {
      name: "broken",
      optLevel: 0,
      summary: "",
      run: (m): Module => ({ ...m, funcs: [{ ...m.funcs[0]!, results: ["%nope"] }] }),
    };
    expect(() =>
      runPipeline(new Sequential("p", [broken]), M, new PassContext({ instruments: [verifyEach()] })),
    ).toThrow(PassVerificationError);
    expect(() =>
      runPipeline(new Sequential("p", [broken]), M, new PassContext({ instruments: [verifyEach()] })),
    ).toThrow(/after pass broken/);
  });
  test("the full pipeline of every target runs on Llama-2-70B (shape-only) with verification after each pass", async () => {
    for (const name of ["cpu", "roofline"]) {
      const target = await getTarget(name);
      const system = target.system();
      const ctx = new PassContext({
        costModel: system.costModel,
        options: { ...system.passOptions, envs: phaseEnvs(defaultWorkload("decode")) },
        instruments: [verifyEach()],
      });
      const out = runPipeline(
        pipelineOf(name, target.pipeline, target.passes),
        loadModel("examples/llama2-70b.pim").module,
        ctx,
      );
      expect(ctx.ran).toEqual(target.pipeline);
      for (const f of out.funcs) expect(f.body.filter((op) => op.attrs.fused === "qkv")).toHaveLength(80);
    }
  });
});

const FIXTURES = readdirSync("test/fixtures").filter((d) =>
  existsSync(join("test/fixtures", d, "reference.json")),
);

/** Logits of prefill (2 x 7 prompt) and one decode step. */
function logits(m: Module, weights: ReturnType<typeof importHf>["weights"]): Float32Array[] {
  const it = new Interpreter(m, weights);
  const ref = JSON.parse(readFileSync("test/fixtures/llama-tiny/reference.json", "utf8")) as {
    prompt: number[][];
  };
  const a = it.run("prefill", [tokenTensor(ref.prompt)])[0]!.data as Float32Array;
  const b = it.run("decode", [tokenTensor([[3], [4]])])[0]!.data as Float32Array;
  return [a, b];
}

describe("numerics are unchanged by every pass", () => {
  test.each(FIXTURES)("%s", async (fixture) => {
    const model = importHf(join("test/fixtures", fixture));
    const want = logits(model.module, model.weights);
    for (const name of ["cpu", "roofline"]) {
      const target = await getTarget(name);
      const system = target.system();
      const errs: string[] = [];
      const check: Instrument = {
        after(p, m, c) {
          const got = logits(m, c.weights);
          const err = Math.max(
            ...got.map((g, k) => g.reduce((e, x, i) => Math.max(e, Math.abs(x - want[k]![i]!)), 0)),
          );
          if (!(err <= 1e-5)) errs.push(`${name} ${p.name}: ${err}`);
        },
      };
      const ctx = new PassContext({
        costModel: system.costModel,
        weights: model.weights,
        options: { ...system.passOptions, envs: phaseEnvs(defaultWorkload("decode")) },
        instruments: [verifyEach(), check],
      });
      runPipeline(pipelineOf(name, target.pipeline, target.passes), model.module, ctx);
      expect(errs).toEqual([]);
      expect(ctx.ran.length).toBe(target.pipeline.length);
    }
  });
});
