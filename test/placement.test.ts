/**
 * Placement a user can read: the crossover search and the verdict on cost models whose answers are
 * known, and `pimc bench` / `pimc compile` printing them (with `bench --baselines`' two references).
 */
import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { parseModule } from "../src/ir/parser.js";
import type { Module } from "../src/ir/module.js";
import { PassContext } from "../src/pipeline/pass.js";
import type { CostModel } from "../src/pipeline/cost-model.js";
import { getPass } from "../passes/index.js";
import { placementNotes } from "../passes/partition.js";
import { batchSegments, crossoverText, explainPlacement, SCAN_BATCHES } from "../src/cli/placement.js";
import { llama7bLayers, pimc } from "./util.js";

describe("crossover search", () => {
  const label = (d: string) => d;
  test("one change: found exactly, between powers of two", () => {
    for (const flip of [2, 3, 8, 9, 100, 255, 256]) {
      const segs = batchSegments((b) => (b < flip ? "pim" : "host"), 256);
      expect(segs).toEqual([
        { from: 1, to: flip - 1, device: "pim" },
        { from: flip, to: 256, device: "host" },
      ]);
      expect(crossoverText(segs, label)).toBe(`host faster from batch ${flip}`);
    }
  });
  test("no change: one run up to the last batch size", () => {
    const segs = batchSegments(() => "host", 256);
    expect(segs).toEqual([{ from: 1, to: 256, device: "host" }]);
    expect(crossoverText(segs, label)).toBe("host faster at every batch up to 256");
  });
  test("back and forth: every run", () => {
    const segs = batchSegments((b) => (b >= 26 && b <= 32 ? "pim" : "host"), 256);
    expect(segs.map((s) => [s.from, s.to, s.device])).toEqual([
      [1, 25, "host"],
      [26, 32, "pim"],
      [33, 256, "host"],
    ]);
    expect(crossoverText(segs, label)).toBe("faster: host at 1-25, pim at 26-32, host at 33-256");
  });
  test("cheap: a few dozen evaluations, not one per batch size", () => {
    let calls = 0;
    batchSegments((b) => (calls++, b < 100 ? "pim" : "host"), 4096);
    expect(calls).toBeLessThan(30);
  });
});

describe("verdict", () => {
  // Two layers of two linear layers with a relu between: what the partition pass and the verdict see.
  const MODULE = parseModule(
    `module @m

const @L0.up : f32[64, 64]
const @L0.down : f32[64, 64]
const @L1.up : f32[64, 64]
const @L1.down : f32[64, 64]

func @decode(%x: f32[B, S, 64]) -> (f32[B, S, 64]) {
  %L0.up = linear(%x, @L0.up) : f32[B, S, 64]
  %L0.act = relu(%L0.up) : f32[B, S, 64]
  %L0.down = linear(%L0.act, @L0.down) : f32[B, S, 64]
  %L1.up = linear(%L0.down, @L1.up) : f32[B, S, 64]
  %L1.act = relu(%L1.up) : f32[B, S, 64]
  %L1.down = linear(%L1.act, @L1.down) : f32[B, S, 64]
  return %L1.down
}
`,
    "mlp.pimir",
  );
  /** Linear layers: 1 ms on the host, `pim(B)` on the DPUs; everything else on the host only. */
  const model = (pim: (batch: number) => number): CostModel => ({
    devices: [
      { name: "host", kind: "host" },
      { name: "pim", kind: "pim", label: "DPUs" },
    ],
    home: "host",
    opTime(v, device, env) {
      if (device === "host") return v.op.opcode === "linear" ? 1e-3 : 1e-6;
      return device === "pim" && v.op.opcode === "linear" ? pim(env.B ?? 1) : undefined;
    },
    transferTime: () => 0,
  });
  const placed = (cm: CostModel, batch: number, cooperation = true) => {
    const env = { B: batch, S: 1, P: 0 };
    const ctx = new PassContext({ costModel: cm, options: { envs: { decode: env } } });
    const module: Module = getPass("partition").run(MODULE, ctx);
    return explainPlacement({
      module,
      func: "decode",
      env,
      cm,
      notes: placementNotes(ctx),
      flags: { cooperation },
    });
  };

  test("the host wins from batch 8: the DPUs run the linear layers below it, and the verdict says so", () => {
    const cm = model((b) => b * 0.125e-3 + 1e-9);
    const p = placed(cm, 1);
    expect(p.groups.map((g) => [g.group, g.ops, g.device, g.crossover_text])).toEqual([
      ["L*.up", 2, "pim", "host faster from batch 8"],
      ["L*.down", 2, "pim", "host faster from batch 8"],
    ]);
    // Per step: both layers' ops, on each device.
    expect(p.groups[0]!.seconds.host).toBeCloseTo(2e-3, 12);
    expect(p.groups[0]!.seconds.pim).toBeCloseTo(0.25e-3, 8);
    expect(p.groups[0]!.reason).toBe("8.0x faster");
    expect(p.other).toEqual({ opcodes: ["relu"], ops: 2 });
    expect(p.verdict).toBe("linear layers on the DPUs: 2 of 2, host faster from batch 8");
    const big = placed(cm, 16);
    expect(big.groups.map((g) => g.device)).toEqual(["host", "host"]);
    expect(big.verdict).toMatch(
      /^nothing on the DPUs: the host is faster for every layer \(closest: L\*\.(up|down), host 2\.000 ms vs DPUs 4\.000 ms per step at batch 16\); host faster from batch 8$/,
    );
  });

  test("PIM never wins: nothing on the DPUs, and the host wins at every batch scanned", () => {
    const p = placed(
      model(() => 3e-3),
      4,
    );
    expect(p.groups.every((g) => g.device === "host" && g.fastest === "host")).toBe(true);
    expect(p.verdict).toBe(
      `nothing on the DPUs: the host is faster for every layer (closest: L*.up, host 2.000 ms vs DPUs 6.000 ms per step at batch 4); host faster at every batch up to ${SCAN_BATCHES}`,
    );
  });

  test("PIM always wins; a device forced by a flag is named as the reason", () => {
    expect(
      placed(
        model(() => 0.5e-3),
        64,
      ).verdict,
    ).toBe(`linear layers on the DPUs: 2 of 2, faster at every batch up to ${SCAN_BATCHES}`);
    // --no-cooperation: the host cannot run what the DPUs can; the explanation times it anyway.
    const slow = model(() => 3e-3);
    const forced: CostModel = {
      ...slow,
      opTime: (v, d, e) => (d === "host" && v.op.opcode === "linear" ? undefined : slow.opTime(v, d, e)),
    };
    const env = { B: 1, S: 1, P: 0 };
    const ctx = new PassContext({ costModel: forced, options: { envs: { decode: env } } });
    const module = getPass("partition").run(MODULE, ctx);
    const p = explainPlacement({ module, func: "decode", env, cm: slow, flags: { cooperation: false } });
    expect(p.groups.map((g) => [g.device, g.fastest, g.reason])).toEqual([
      ["pim", "host", "--no-cooperation"],
      ["pim", "host", "--no-cooperation"],
    ]);
    expect(p.verdict).toBe(
      "linear layers on the DPUs: 2 of 2 (--no-cooperation), host faster at every batch up to 256",
    );
  });

  test("a system of one device", () => {
    const one: CostModel = { ...model(() => 1), devices: [{ name: "host", kind: "host" }] };
    const p = explainPlacement({ module: MODULE, func: "decode", env: { B: 1, S: 1, P: 0 }, cm: one });
    expect(p.groups).toEqual([]);
    expect(p.verdict).toBe("everything on the host: the system has one device");
  });
});

interface Step {
  batch: number;
  seconds: number;
  host_only_s: number;
  pim_only_s: number | null;
  pim_only_error?: string;
  placement: {
    group: string;
    device: string;
    host_s: number;
    pim_s: number | null;
    fastest: string;
    reason: string;
    crossover: { from: number; to: number; device: string }[];
  }[];
  verdict: string;
}

/** The commands docs/upmem.md shows for placement; each is run below. */
const DOC_BENCH =
  "npx pimc bench examples/tiny-llama.pim --system examples/systems/upmem-2048-pimllm.pim --weights int8 --batch 1,16 --baselines --json";
const DOC_COMPILE = "npx pimc compile examples/tiny-llama.pim --target upmem";
const run = async (command: string) => await pimc(...command.split(" ").slice(2));

describe("pimc bench --baselines and the placement lines", () => {
  const docs = readFileSync("docs/upmem.md", "utf8");

  test("the documented commands are the ones tested", () => {
    const start = (JSON.parse(readFileSync("package.json", "utf8")) as { scripts: { start: string } }).scripts
      .start;
    expect(start).toContain(" bench ");
    expect(start).toContain("--baselines");
    expect(readFileSync("README.md", "utf8")).toContain("--baselines");
    for (const c of [DOC_BENCH, DOC_COMPILE, `npx pimc ${start.split("bin.js ")[1]!}`])
      expect(docs.includes(c), c).toBe(true);
  });

  test("JSON: both references per step, the placement per group, and the cooperative step no slower than either", async () => {
    const r = await run(DOC_BENCH);
    expect(r.code, r.stderr).toBe(0);
    const steps = (JSON.parse(r.stdout) as { steps: Step[] }).steps;
    expect(steps.map((s) => s.batch)).toEqual([1, 16]);
    for (const s of steps) {
      expect(s.host_only_s).toBeGreaterThan(0);
      expect(s.pim_only_s).toBeGreaterThan(0);
      // Placement is per op by the cost model (the Tile-Selector's estimates, not emulated times), and
      // the PIM-only program lays weights out for both phases: so "no slower", within 5 %.
      expect(s.seconds).toBeLessThanOrEqual(Math.min(s.host_only_s, s.pim_only_s!) * 1.05);
      expect(s.placement.map((g) => g.group)).toEqual(
        expect.arrayContaining(["L*.qkv", "L*.o", "L*.gate_up", "L*.down", "L*.attn"]),
      );
      for (const g of s.placement) {
        expect(g.host_s).toBeGreaterThan(0);
        expect(g.pim_s).toBeGreaterThan(0);
        expect(["host", "pim"]).toContain(g.device);
        expect(g.crossover[0]!.from).toBe(1);
        expect(g.crossover.at(-1)!.to).toBeGreaterThanOrEqual(s.batch);
        // The device chosen is the faster by the numbers shown (cooperation on, no flags).
        expect(g.device).toBe(g.host_s <= g.pim_s! ? "host" : "pim");
        // The crossover agrees with the choice at this batch size.
        expect(g.crossover.find((c) => c.from <= s.batch && s.batch <= c.to)!.device).toBe(g.device);
      }
      const onPim = s.placement.filter((g) => g.device === "pim").length;
      if (onPim === 0) {
        expect(s.verdict).toMatch(/^nothing on the DPUs: the host is faster for every layer \(closest: /);
        // Wholly on the host: the emulated step is the host-only reference, to the last bit.
        expect(s.seconds).toBe(s.host_only_s);
      } else expect(s.verdict).toMatch(/(linear layers|attention) on the DPUs/);
    }
  });

  test("npm start's report: references beside each batch, the layers' placement and a verdict per batch", async () => {
    // npm start's command on Llama-2-7B with 2 of its 32 layers: the same placements and verdicts
    // (decided per layer), at a sixteenth of the work; its 32-layer figures are docs figures.
    const start = (JSON.parse(readFileSync("package.json", "utf8")) as { scripts: { start: string } }).scripts
      .start;
    const model = llama7bLayers(2);
    const args = start.split("bin.js ")[1]!.split(" ");
    expect(args[1]).toBe("examples/llama2-7b.pim");
    const r = await pimc(...args.map((a) => (a === "examples/llama2-7b.pim" ? model : a)));
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/│ +latency │ +host only │ +PIM only │/);
    // Summary rows: batch, tokens/step, latency, host only, PIM only (- with a reason when it does not fit).
    const toS = (x: string) =>
      Number(x.split(" ")[0]) * { s: 1, ms: 1e-3, us: 1e-6 }[x.split(" ")[1] as "s" | "ms" | "us"];
    const rows = [...out.matchAll(/^│ +(\d+) │ +\d+ │ +([\d.]+ \w+) │ +([\d.]+ \w+) │ +([\d.]+ \w+|-) │/gm)];
    expect(rows.map((m) => Number(m[1]))).toEqual([1, 4, 16]);
    for (const m of rows) {
      const [coop, host] = [toS(m[2]!), toS(m[3]!)];
      expect(coop).toBeLessThanOrEqual(host * 1.05);
      if (m[4] === "-")
        expect(out).toMatch(new RegExp(`^PIM only (at batch [\\d, ]*${m[1]}[\\d, ]*)?: .+`, "m"));
      else expect(coop).toBeLessThanOrEqual(toS(m[4]!) * 1.05);
    }
    expect(out).toMatch(/placement per layer group/);
    for (const g of ["L*.qkv", "L*.o", "L*.gate_up", "L*.down", "logits", "L*.attn"])
      expect(out).toContain(`│ ${g} `);
    const verdicts = [...out.matchAll(/^(?:verdict {3}| {10})batch (\d+): (.+)$/gm)];
    expect(verdicts.map((v) => Number(v[1]))).toEqual([1, 4, 16]);
    for (const v of verdicts) {
      const row = rows.find((m) => m[1] === v[1])!;
      if (v[2]!.startsWith("nothing on the DPUs")) {
        // Nothing on the DPUs: the step is the host-only reference, and the verdict says why.
        expect(row[2]).toBe(row[3]);
        expect(v[2]).toMatch(/: the host is faster for every layer \(closest: .+ per step at batch \d+\)/);
      } else expect(v[2]).toMatch(/^linear layers .*on the DPUs/);
      expect(v[2]).toMatch(/(faster from batch \d+|at every batch up to \d+)/);
    }
  });

  test("pimc compile prints the placement lines and the verdict (text and JSON)", async () => {
    const r = await run(DOC_COMPILE);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^placement per layer group/m);
    expect(r.stdout).toMatch(/│ layer group │ ops │ +host │ +DPUs │ runs on │ why +│ crossover/);
    expect(r.stdout).toMatch(/│ L\*\.gate_up +│ +2 │ .+ │ (host|DPUs) +│ \d+\.\dx faster +│ .*faster/);
    expect(r.stdout).toMatch(/other ops \(.*rms_norm.*\) run on the host: the DPUs cannot run them/);
    expect(r.stdout).toMatch(/^verdict {3}(nothing on the DPUs: .+|linear layers .*on the DPUs.*)$/m);
    const j = JSON.parse((await pimc(...DOC_COMPILE.split(" ").slice(2), "--json")).stdout) as Omit<
      Step,
      "batch"
    >;
    expect(j.placement.length).toBeGreaterThan(0);
    expect(j.verdict).toBe(/^verdict {3}(.+)$/m.exec(r.stdout)![1]);
    // The CPU target has one device: no placement to explain.
    expect((await pimc("compile", "examples/tiny-llama.pim")).stdout).not.toContain(
      "placement per layer group",
    );
  });

  test("hbm-pim (timed by its device model) gets the same fields", async () => {
    const r = await pimc(
      "bench",
      "examples/tiny-llama.pim",
      "--system",
      "examples/systems/hbm-pim-64ch.pim",
      "--phase",
      "decode",
      "--batch",
      "1",
      "--baselines",
      "--json",
    );
    expect(r.code, r.stderr).toBe(0);
    const s = (JSON.parse(r.stdout) as { steps: Step[] }).steps[0]!;
    expect(s.host_only_s).toBeGreaterThan(0);
    expect(s.pim_only_s).toBeGreaterThan(0);
    expect(s.seconds).toBeLessThanOrEqual(Math.min(s.host_only_s, s.pim_only_s!) * (1 + 1e-9));
    expect(s.placement.some((g) => g.group === "L*.qkv")).toBe(true);
    expect(s.verdict).toMatch(/linear layers|nothing on the PIM units/);
  });

  test("--baselines with --ablation or --compare: one clear line, exit 2", async () => {
    for (const extra of [
      ["--target", "upmem", "--ablation"],
      ["--compare", "examples/systems/upmem-2048.pim"],
    ]) {
      const r = await pimc("bench", "examples/tiny-llama.pim", "--baselines", ...extra);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toContain("--baselines");
    }
  });
});
