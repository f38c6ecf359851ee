/**
 * Energy in reports (docs/energy.md): bench, sim and serve on the targets that model it carry
 * joules per token, tokens per joule, power and a breakdown that add up; the ops' rows carry their
 * joules; the targets that do not model it carry none.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { pimc, tempDir } from "./util.js";
import { allTargets } from "../targets/index.js";
import { chooseTarget } from "../src/driver/compile.js";

const TINY = "test/fixtures/llama-tiny";
const HBM = "examples/systems/hbm-pim-64ch.pim";

interface EnergyJson {
  joules: number;
  per_token_j: number;
  tokens_per_j: number;
  watts: number;
  breakdown: Record<string, number>;
}
interface TraceEvent {
  ph: string;
  pid: number;
  ts: number;
  args: { watts?: number; joules?: number };
}
interface Step {
  batch: number;
  seconds: number;
  energy?: EnergyJson;
  ops: { joules?: number; seconds: number }[];
}

const json = async (...args: string[]) => {
  const r = await pimc(...args, "--json");
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>;
};

/** The figures of an energy agree with one another and with `tokens` in `seconds`. */
function consistent(e: EnergyJson, tokens: number, seconds: number): void {
  const parts = Object.values(e.breakdown);
  expect(parts.every((j) => j >= 0)).toBe(true);
  expect(parts.reduce((s, j) => s + j, 0)).toBeCloseTo(e.joules, 12);
  expect(e.per_token_j * tokens).toBeCloseTo(e.joules, 12);
  expect(e.tokens_per_j * e.per_token_j).toBeCloseTo(1, 12);
  expect(e.watts * seconds).toBeCloseTo(e.joules, 12);
}

describe("energy in reports", () => {
  it("bench on hbm-pim, xpu and aim: per step, per op row; more tokens per joule at a larger batch on the xPU", async () => {
    const systems = [
      HBM,
      "examples/systems/a100.pim",
      "examples/systems/duplex.pim",
      "examples/systems/cent.pim",
    ];
    for (const system of systems) {
      const j = (await json("bench", TINY, "--system", system, "--phase", "decode", "--batch", "1,8")) as {
        steps: Step[];
      };
      for (const s of j.steps) {
        expect(s.energy, system).toBeDefined();
        consistent(s.energy!, s.batch, s.seconds);
        // The step's energy is its ops' (each op's joules in its row).
        expect(s.ops.reduce((t, o) => t + (o.joules ?? 0), 0)).toBeCloseTo(s.energy!.joules, 12);
      }
      if (system.includes("a100"))
        expect(j.steps[1]!.energy!.tokens_per_j).toBeGreaterThan(j.steps[0]!.energy!.tokens_per_j);
    }
    // A target without an energy model reports none (rather than a partial figure).
    const u = (await json(
      "bench",
      TINY,
      "--system",
      "examples/systems/upmem-rank.pim",
      "--phase",
      "decode",
    )) as {
      steps: Step[];
    };
    expect(u.steps[0]!.energy).toBeUndefined();
    // The contract says which targets price energy (pimc list targets shows it).
    const priced = [...(await allTargets()).values()]
      .filter((t) => t.energy !== undefined)
      .map((t) => t.name);
    expect(priced.sort()).toEqual(["aim", "hbm-pim", "xpu"]);
  });

  it("bench --trace: each op's joules in its args and a power counter whose integral is the step's energy", async () => {
    const dir = tempDir();
    const file = join(dir, "t.json");
    const r = await pimc(
      "bench",
      TINY,
      "--system",
      HBM,
      "--phase",
      "decode",
      "--batch",
      "2",
      "--trace",
      file,
    );
    expect(r.code, r.stderr).toBe(0);
    const events = (JSON.parse(readFileSync(file, "utf8")) as { traceEvents: TraceEvent[] }).traceEvents;
    const power = events.filter((e) => e.ph === "C" && e.pid === 1);
    expect(power.at(-1)!.args.watts).toBe(0);
    let joules = 0;
    for (let i = 1; i < power.length; i++)
      joules += power[i - 1]!.args.watts! * (power[i]!.ts - power[i - 1]!.ts) * 1e-6;
    const ops = events.filter((e) => e.ph === "X" && e.pid === 1);
    const sum = ops.reduce((s, e) => s + (e.args.joules ?? 0), 0);
    const step = (
      (await json("bench", TINY, "--system", HBM, "--phase", "decode", "--batch", "2")) as {
        steps: Step[];
      }
    ).steps[0]!;
    expect(sum).toBeCloseTo(step.energy!.joules, 12);
    // Ops of no duration carry joules but no power: the integral covers the others.
    expect(joules).toBeCloseTo(step.energy!.joules, 9);
  });

  it("sim of a compiled hbm-pim program reports the energy bench does; serve adds up its steps'", async () => {
    const dir = tempDir();
    const file = join(dir, "tiny.pimx");
    expect(
      (await pimc("compile", TINY, "--system", HBM, "--phase", "decode", "--batch", "2", "-o", file)).code,
    ).toBe(0);
    const sim = (await json("sim", file, "--batch", "2", "--phase", "decode")) as {
      phases: { seconds: number; energy: EnergyJson }[];
    };
    const bench = (await json("bench", TINY, "--system", HBM, "--phase", "decode", "--batch", "2")) as {
      steps: Step[];
    };
    const e = sim.phases[0]!.energy;
    consistent(e, 2, sim.phases[0]!.seconds);
    expect(sim.phases[0]!.seconds).toBeCloseTo(bench.steps[0]!.seconds, 12);
    expect(e.joules).toBeCloseTo(bench.steps[0]!.energy!.joules, 12);
    const serve = (await json(
      "serve",
      TINY,
      "--system",
      HBM,
      ..."--rate 50 --count 4 --prompt 8 --output 4".split(" "),
    )) as { tokens: number; makespan: number; energy: EnergyJson };
    consistent(serve.energy, serve.tokens, serve.makespan);
    expect(serve.energy.joules).toBeGreaterThan(0);
    // Between steps (waiting for requests at 50 per second) the stacks stay in standby: the trace's
    // average power is at least the idle power (VDD x IDD2N / 2 per pseudo-channel: 64 of them).
    const idle = 64 * 1.2 * (0.04 / 2);
    expect(serve.energy.watts).toBeGreaterThanOrEqual(idle);
    const { system } = await chooseTarget({ system: HBM });
    const hbm = (await allTargets()).get("hbm-pim")!;
    expect(hbm.idlePower!(system)).toEqual({ background: idle });
    // AiM (CENT's power model): every channel's precharge standby and its global buffer's static power.
    const aimx = await chooseTarget({ system: "examples/systems/aimx.pim" });
    const w = aimx.target.idlePower!(aimx.system);
    expect(w.background).toBeCloseTo(32 * (0.3663 / 2), 12);
    expect(w.buffer).toBeCloseTo(32 * 0.06702101898e-3, 12);
    // Text: one line per step of bench, one for the trace of serve.
    const text = await pimc("bench", TINY, "--system", HBM, "--phase", "decode", "--batch", "1,2");
    expect(
      text.stdout.match(/^energy {4}batch \d+: [\d.]+ [mu]?J per token, [\d.,]+ tokens\/J, [\d.]+ W: /gm),
    ).toHaveLength(2);
  });
});
