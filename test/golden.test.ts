/**
 * Golden IR files. Every `test/golden/*.pimir` must parse, verify, and print back byte-for-byte (so
 * golden files are in canonical printed form); `test/golden/models/<name>.pimir` is what the front end
 * builds for a fixture model or example, so any change to a family builder or the description language
 * shows up as a diff. `UPDATE_GOLDEN=1 npx vitest run test/golden.test.ts` rewrites them instead of
 * comparing.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { parseModule } from "../src/ir/parser.js";
import { printModule } from "../src/ir/printer.js";
import { allOps } from "../src/ir/registry.js";
import { verifyModule } from "../src/ir/verifier.js";
import { stripLocs } from "../src/ir/equal.js";
import { loadModel } from "../src/frontend/load.js";
import { defaultWorkload, phaseEnvs } from "../src/frontend/workload.js";
import { PassContext, runPipeline } from "../src/pipeline/pass.js";
import { pipelineOf } from "../passes/index.js";
import { getTarget, type SystemOptions } from "../targets/index.js";
import type { Module } from "../src/ir/module.js";

const DIR = fileURLToPath(new URL("golden", import.meta.url));
const update = process.env.UPDATE_GOLDEN === "1";
const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".pimir"))
  .sort();

describe("golden IR", () => {
  test("there are golden files", () => expect(files).toContain("ops.pimir"));

  test("ops.pimir uses every core op, the lowered pipeline goldens every op of a target's dialect", () => {
    const opsIn = (path: string) =>
      parseModule(readFileSync(path, "utf8")).funcs.flatMap((f) => f.body.map((op) => op.opcode));
    const used = new Set(opsIn(join(DIR, "ops.pimir")));
    const lowered = readdirSync(join(DIR, "pipeline")).filter((f) => f.endsWith(".lowered.pimir"));
    expect(lowered.length).toBeGreaterThan(0);
    for (const f of lowered) for (const op of opsIn(join(DIR, "pipeline", f))) used.add(op);
    expect(
      allOps()
        .filter((d) => !used.has(d.name))
        .map((d) => d.name),
    ).toEqual([]);
  });

  for (const f of files)
    test(f, () => {
      const path = join(DIR, f);
      const text = readFileSync(path, "utf8");
      const m = parseModule(text, `test/golden/${f}`);
      expect(verifyModule(m)).toEqual([]);
      const printed = printModule(m);
      if (update) {
        if (printed !== text) writeFileSync(path, printed);
      } else expect(printed).toBe(text);
    });
});

/** Models whose front-end output is kept as a golden dump: one per family rule set. */
const MODELS: Record<string, string> = {
  "llama-tiny": "test/fixtures/llama-tiny",
  "llama-tiny-variants": "test/fixtures/llama-tiny-variants",
  "mistral-tiny": "test/fixtures/mistral-tiny",
  "qwen2-tiny": "test/fixtures/qwen2-tiny",
  "mixtral-tiny": "test/fixtures/mixtral-tiny",
  "gpt2-tiny-bias": "test/fixtures/gpt2-tiny-bias",
  "opt-tiny-350m": "test/fixtures/opt-tiny-350m",
  "custom-llama-tiny": "examples/custom-llama-tiny.pim",
};

describe("golden front-end output", () => {
  for (const [name, source] of Object.entries(MODELS))
    test(name, () => {
      const path = join(DIR, "models", `${name}.pimir`);
      const { module } = loadModel(source);
      const printed = printModule(module);
      if (update) writeFileSync(path, printed);
      else expect(printed).toBe(readFileSync(path, "utf8"));
      expect(stripLocs(parseModule(printed))).toEqual(stripLocs(module));
    });
});

/**
 * Models whose IR after a target's whole default pipeline is kept as a golden dump (upmem: every GEMM
 * and attention on the DPUs, so the upmem-plan stage's kernels, tilings and MRAM regions show), and
 * for targets with lowering passes the lowered module too (`<name>.<target>[.<variant>].lowered.pimir`).
 */
const PIPELINES: [string, string, string, SystemOptions?, string?][] = [
  ["llama-tiny", "test/fixtures/llama-tiny", "cpu"],
  ["gpt2-tiny-bias", "test/fixtures/gpt2-tiny-bias", "cpu"],
  ["qwen2-tiny", "test/fixtures/qwen2-tiny", "roofline"],
  ["llama-tiny", "test/fixtures/llama-tiny", "upmem", { cooperation: false, attention: "pim" }],
  [
    "llama-tiny",
    "test/fixtures/llama-tiny",
    "upmem",
    { cooperation: false, attention: "pim", targetFlags: { pooling: false } },
    "no-pooling",
  ],
];

describe("golden pipeline output", () => {
  for (const [name, source, targetName, options, variant] of PIPELINES)
    test(`${name} on ${targetName}${variant ? ` (${variant})` : ""}`, async () => {
      const stem = join(DIR, "pipeline", `${name}.${targetName}${variant ? `.${variant}` : ""}`);
      const target = await getTarget(targetName);
      const system = target.system(undefined, options);
      const model = loadModel(source);
      const ctx = new PassContext({
        costModel: system.costModel,
        weights: model.weights,
        options: { ...system.passOptions, envs: phaseEnvs(defaultWorkload("decode")) },
      });
      const placed = runPipeline(pipelineOf(targetName, target.pipeline, target.passes), model.module, ctx);
      const stages: [string, Module][] = [[`${stem}.pimir`, placed]];
      if (target.lowering)
        stages.push([
          `${stem}.lowered.pimir`,
          runPipeline(pipelineOf(targetName, target.lowering, target.passes), placed, ctx),
        ]);
      for (const [path, m] of stages) {
        const printed = printModule(m);
        if (update) writeFileSync(path, printed);
        else expect(printed).toBe(readFileSync(path, "utf8"));
        // Every stage parses back to the module printed.
        expect(stripLocs(parseModule(printed))).toEqual(stripLocs(m));
      }
    });
});
