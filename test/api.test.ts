/**
 * The library API (src/index.ts): docs/api.md's example run as a dependent project would run it,
 * and each function against the command that is a shell over it.
 */
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { describe, expect, test, vi } from "vitest";
import { apiExample } from "./api-example.mjs";
import {
  compile,
  emit,
  loadModel,
  poissonRequests,
  requestsFrom,
  serve,
  time,
  tune,
  workloadFrom,
  writeProgram,
} from "../src/index.js";
import { benchJson, expectUserError, pimc, tempDir } from "./util.js";

const tmp = tempDir("pimc-api-");

describe("docs/api.md", () => {
  test("its example prints what the doc shows", async () => {
    // In-process: `pimc` is the sources here (vitest.config.ts aliases it to src/index.ts). .ci/run
    // runs the same example from a project that depends on the built package (test/consumer.mjs),
    // and `node test/consumer.mjs --source` does so on the sources through package.json's exports.
    const { code, output } = apiExample(readFileSync("docs/api.md", "utf8"));
    const dir = mkdtempSync(join("test", ".api-example-"));
    const lines: string[] = [];
    const log = vi
      .spyOn(console, "log")
      .mockImplementation((...xs: unknown[]) => void lines.push(xs.join(" ")));
    const cwd = process.cwd();
    try {
      writeFileSync(join(dir, "example.mjs"), code);
      // Its relative paths name the repository's files; the program it writes goes to the temp folder.
      symlinkSync(join(cwd, "examples"), join(dir, "examples"), "dir");
      symlinkSync(join(cwd, "test"), join(dir, "test"), "dir");
      process.chdir(dir);
      await import(/* @vite-ignore */ pathToFileURL(join(cwd, dir, "example.mjs")).href);
    } finally {
      process.chdir(cwd);
      log.mockRestore();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(`${lines.join("\n")}\n`).toBe(output);
  });
});

describe("compile and time", () => {
  test("time() at another batch equals pimc bench --compile-once of the same model", async () => {
    const c = await compile("examples/tiny-llama.pim", "examples/systems/h100.pim");
    // The default workload, its context shortened to the model's 128 positions (as the CLI does).
    expect(c.workload).toMatchObject({ phase: "decode", batch: 1, context: 127 });
    const j = await benchJson(
      "examples/tiny-llama.pim",
      "examples/systems/h100.pim",
      "--batch",
      "1,8",
      // The CLI's default is the description's first workload (context 16); the API's the built-in one.
      "--context",
      "127",
      "--compile-once",
    );
    expect([1, 8].map((batch) => time(c, { batch }).seconds)).toEqual(j.steps.map((s) => s.seconds));
    // A device model's step, op by op; its program file is the compiled IR with its system, which
    // pimc sim times as bench does.
    expect(time(c).timing!.ops.length).toBeGreaterThan(0);
    const file = join(tmp, "tiny-h100.pimx");
    expect(writeProgram(c, file)).toEqual(emit(c).lines);
    const sim = await pimc("sim", file, "--phase", "decode", "--batch", "8", "--json");
    expect(sim.code, sim.stderr).toBe(0);
    expect((JSON.parse(sim.stdout) as { phases: { seconds: number }[] }).phases[0]!.seconds).toBe(
      j.steps[1]!.seconds,
    );
  });

  test("a loaded model compiles as its path does; the program's lines are compile -o's", async () => {
    const model = loadModel("examples/tiny-llama.pim");
    const opts = { weights: "int8" as const, cooperation: false };
    const a = await compile(model, "examples/systems/upmem-rank.pim", opts);
    const b = await compile("examples/tiny-llama.pim", "examples/systems/upmem-rank.pim", opts);
    expect(time(a).seconds).toBe(time(b).seconds);
    const file = join(tmp, "tiny.pimx");
    const lines = writeProgram(a, file);
    const other = join(tmp, "tiny-cli.pimx");
    const cli = await pimc(
      "compile",
      "examples/tiny-llama.pim",
      "--system",
      "examples/systems/upmem-rank.pim",
      "--weights",
      "int8",
      "--no-cooperation",
      "--context",
      "127",
      "-o",
      other,
      "--json",
    );
    expect(cli.code, cli.stderr).toBe(0);
    const shown = (JSON.parse(cli.stdout) as { program: string[] }).program;
    expect(shown.slice(0, -1)).toEqual(lines);
    expect(shown.at(-1)).toMatch(/^ +written to .*tiny-cli\.pimx/);
    expect(readFileSync(other).equals(readFileSync(file))).toBe(true);
    const sim = await pimc("sim", file, "--phase", "decode", "--batch", "1", "--context", "127", "--json");
    expect(sim.code, sim.stderr).toBe(0);
    const seconds = (JSON.parse(sim.stdout) as { phases: { seconds: number }[] }).phases[0]!.seconds;
    expect(seconds).toBe(time(a).seconds);
  });
});

describe("serve", () => {
  test("a generated trace gives the numbers of pimc serve --json", async () => {
    const prompt: [number, number] = [128, 512];
    const output: [number, number] = [32, 256];
    const trace = poissonRequests({ rate: 20, count: 30, prompt, output, seed: 1 });
    const api = await serve("examples/llama2-7b.pim", "examples/systems/h100.pim", trace, { maxBatch: 8 });
    const cli = await pimc(
      "serve",
      "examples/llama2-7b.pim",
      "--system",
      "examples/systems/h100.pim",
      "--rate",
      "20",
      "--count",
      "30",
      "--max-batch",
      "8",
      "--json",
    );
    expect(cli.code, cli.stderr).toBe(0);
    const j = JSON.parse(cli.stdout) as { tokens_per_second: number; per_request: unknown[] };
    expect(api.metrics.tokens_per_second).toBe(j.tokens_per_second);
    expect(api.result.requests).toEqual(j.per_request);
    expectUserError(
      () => requestsFrom([{ arrival: 0, prompt: 0, output: 1 }], "the trace"),
      "request 0: prompt",
    );
    await expect(serve("examples/llama2-7b.pim", undefined, trace, { maxBatch: 0 })).rejects.toThrow(
      /maxBatch/,
    );
  });
});

describe("tune", () => {
  test("gives pimc tune --json's object", async () => {
    const args = ["examples/tiny-llama.pim", "--system", "examples/systems/hbm-pim-64ch.pim", "--json"];
    const cli = await pimc("tune", ...args);
    expect(cli.code, cli.stderr).toBe(0);
    const api = await tune("examples/tiny-llama.pim", "examples/systems/hbm-pim-64ch.pim");
    expect(api.json).toEqual(JSON.parse(cli.stdout));
  });
});

describe("bad input is a UserError naming the field", () => {
  test("workload fields are bounded where they enter", () => {
    expectUserError(() => workloadFrom({ batch: 0 }), "workload.batch: must be a positive integer");
    expectUserError(() => workloadFrom({ context: 1e12 }), "workload.context:", "pimc's limit");
    expectUserError(
      () => workloadFrom({ phase: "train" as "decode" }),
      "workload.phase: must be prefill or decode",
    );
    expectUserError(() => workloadFrom({ bacth: 2 } as object), "workload.", "bacth");
  });

  test("a model that cannot fit is refused unless capacityCheck is false", async () => {
    const small = join(tmp, "small-gpu.pim");
    writeFileSync(
      small,
      'system small {\n  target = "xpu"\n  xpu = { kind = "gpu", flops = 1 TFLOPS, bandwidth = 1 TB/s, memory = 64 KiB }\n}\n',
    );
    await expect(compile("examples/tiny-llama.pim", small)).rejects.toThrow(
      /exceed the xPU's HBM \(64\.0 KiB\)/,
    );
    // time() checks the steps it is asked for as compile checked its own.
    const gpu = await compile("examples/llama2-7b.pim", "examples/systems/h100.pim");
    expect(() => time(gpu, { batch: 512, context: 4000 })).toThrow(/exceed the xPU's HBM \(74\.5 GiB\)/);
    const warnings: string[] = [];
    const c = await compile("examples/tiny-llama.pim", small, {
      capacityCheck: false,
      warn: (m) => warnings.push(m),
    });
    const [hbm] = c.memories;
    expect(hbm!.weights).toBeGreaterThan(hbm!.memory.bytes);
    expect(warnings).toEqual([
      expect.stringMatching(/^--no-capacity-check: small: weights .* timed anyway$/),
    ]);
  });
});
