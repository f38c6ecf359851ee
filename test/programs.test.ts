/**
 * Program files on every target: `pimc compile -o` writes one for every example system (UPMEM's
 * lowered program; the compiled IR with its system for the others), and `pimc sim` of it gives the
 * step time `pimc bench` gives for the same workload.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { decodeIrProgram, encodeIrProgram } from "../src/exec/ir-program.js";
import { pimc, tempDir } from "./util.js";

const tmp = tempDir("pimc-programs-");
const SYSTEMS = readdirSync("examples/systems")
  .filter((f) => f.endsWith(".pim"))
  .sort();

interface SimJson {
  phases: { phase: string; seconds: number; busy: Record<string, number> }[];
}

describe("compile -o and sim, bench --trace --plot on every example system", () => {
  test.each(SYSTEMS)("%s: sim of the program gives bench's decode step", async (file) => {
    const system = join("examples/systems", file);
    const prog = join(tmp, `${file}.pimx`);
    // tiny-llama's own workload: decode, batch 1, context 16.
    const c = await pimc("compile", "examples/tiny-llama.pim", "--system", system, "-o", prog);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/written to /);
    const s = await pimc("sim", prog, "--phase", "decode", "--batch", "1", "--context", "16", "--json");
    expect(s.code, s.stderr).toBe(0);
    const [trace, plot] = [join(tmp, `${file}.trace.json`), join(tmp, `${file}.svg`)];
    const b = await pimc(
      "bench",
      "examples/tiny-llama.pim",
      "--system",
      system,
      "--phase",
      "decode",
      "--trace",
      trace,
      "--plot",
      plot,
      "--json",
    );
    expect(b.code, b.stderr).toBe(0);
    // The same report shape on every target, with a trace and a plot.
    const step = (JSON.parse(b.stdout) as { steps: Record<string, unknown>[] }).steps[0]!;
    expect(Object.keys(step)).toEqual(expect.arrayContaining(["seconds", "busy", "ops"]));
    expect(
      (JSON.parse(readFileSync(trace, "utf8")) as { traceEvents: unknown[] }).traceEvents.length,
    ).toBeGreaterThan(0);
    expect(readFileSync(plot, "utf8").startsWith("<svg")).toBe(true);
    const sim = (JSON.parse(s.stdout) as SimJson).phases[0]!;
    const bench = (JSON.parse(b.stdout) as { steps: { seconds: number; busy: Record<string, number> }[] })
      .steps[0]!;
    expect(sim.seconds).toBe(bench.seconds);
    expect(sim.busy).toEqual(bench.busy);
  });
});

describe("serve and tune on every example system", () => {
  test.each(SYSTEMS)("%s: each runs and reports the same shape as on every system", async (file) => {
    const tiny = ["examples/tiny-llama.pim", "--system", join("examples/systems", file)];
    const s = await pimc(
      "serve",
      ...tiny,
      "--rate",
      "5",
      "--count",
      "4",
      "--prompt",
      "8",
      "--output",
      "4",
      "--json",
    );
    expect(s.code, s.stderr).toBe(0);
    expect(Object.keys(JSON.parse(s.stdout) as object)).toEqual(
      expect.arrayContaining(["requests", "tokens_per_second", "ttft", "tbt"]),
    );
    const t = await pimc("tune", ...tiny, "--json");
    expect(t.code, t.stderr).toBe(0);
    expect(Object.keys(JSON.parse(t.stdout) as object)).toEqual(
      expect.arrayContaining(["model", "system", "shapes"]),
    );
  });
});

describe("the compiled IR as a program file", () => {
  test("round-trips, lists its module with --disasm, traces its calls, and checks the memory", async () => {
    const prog = join(tmp, "h100.pimx");
    const c = await pimc(
      "compile",
      "examples/llama2-7b.pim",
      "--system",
      "examples/systems/h100.pim",
      "-o",
      prog,
    );
    expect(c.code, c.stderr).toBe(0);
    const ir = decodeIrProgram(readFileSync(prog), prog);
    expect(ir).toMatchObject({ target: "xpu", model: "llama2_7b", limits: { B: 1, S: 128, T: 1025 } });
    expect(ir.system?.name).toBe("h100");
    expect(Buffer.from(encodeIrProgram(ir)).equals(readFileSync(prog))).toBe(true);
    const dis = await pimc("sim", prog, "--disasm");
    expect(dis.code, dis.stderr).toBe(0);
    expect(dis.stdout).toMatch(
      /^\/\/ llama2_7b for xpu on h100 \(examples\/systems\/h100\.pim\)\nmodule @llama2_7b/,
    );
    const trace = join(tmp, "h100-trace.json");
    const t = await pimc("sim", prog, "--phase", "decode", "--trace", trace);
    expect(t.code, t.stderr).toBe(0);
    const events = (
      JSON.parse(readFileSync(trace, "utf8")) as { traceEvents: { ph: string; dur?: number }[] }
    ).traceEvents;
    expect(events.filter((e) => e.ph === "X").length).toBeGreaterThan(800);
    // Larger calls than compiled for are timed, within the system's memory; past it, one line.
    const big = await pimc("sim", prog, "--phase", "decode", "--batch", "512", "--context", "4000");
    expect(big.code).toBe(2);
    expect(big.stderr).toMatch(/^pimc: error: h100: weights .* exceed the xPU's HBM \(74\.5 GiB\)\n$/);
    // No slower "detailed" mode on any target (issue 20: it timed identical launches for the same numbers).
    const detailed = await pimc("sim", prog, "--detailed");
    expect(detailed.code).toBe(2);
    expect(detailed.stderr).toMatch(/unknown option '--detailed'/);
  });

  test("a program of another version, or whose system is for another target, is one clear line", async () => {
    const prog = join(tmp, "tiny-cpu.pimx");
    expect((await pimc("compile", "examples/tiny-llama.pim", "--target", "cpu", "-o", prog)).code).toBe(0);
    const doc = JSON.parse(readFileSync(prog, "utf8")) as Record<string, unknown>;
    const bad = join(tmp, "bad.pimx");
    writeFileSync(bad, JSON.stringify({ ...doc, pimc_program: 1 }));
    const v = await pimc("sim", bad);
    expect(v.code).toBe(2);
    expect(v.stderr).toMatch(/format version 1; this pimc reads version 2 \(compile it again\)/);
    const system = { file: "s.pim", name: "s", text: "system s {\n  target = xpu\n}\n" };
    writeFileSync(bad, JSON.stringify({ ...doc, system }));
    const w = await pimc("sim", bad);
    expect(w.code).toBe(2);
    expect(w.stderr.trim()).toBe("pimc: error: s.pim: system s is for target xpu, not cpu");
  });
});
