/** `pimc bench --plot`: the vega-lite specs, their SVG rendering, the roofs, and the CLI end to end. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import type { BenchRow } from "../src/cli/bench.js";
import { benchRoofs } from "../targets/upmem/report.js";
import {
  ablationSpec,
  benchSpec,
  placeLabels,
  renderSvg,
  roofLine,
  rooflineSpec,
  rooflineSpecs,
  seconds,
  type BenchPlot,
  type Roof,
} from "../src/report/plot.js";
import { hostFlops } from "../targets/cpu/index.js";
import { decodeProgram } from "../targets/upmem/codec.js";
import { zUpmemSystem } from "../targets/upmem/system.js";
import { LLAMA_TINY, pimc, tempDir } from "./util.js";

const tmp = tempDir("pimc-plot-");

const HOST: Roof = { device: "host", flops: 1e12, bandwidth: 1e11 };
const DPUS: Roof = { device: "64 DPUs", flops: 64 * 4.5e8, bandwidth: 64 * 4.5e8 * 2, unit: "instr/s" };

const data: BenchPlot = {
  title: "tiny on upmem (64 DPUs at 450 MHz)",
  subtitle: "decode, context 16, 1 token(s) per step",
  engines: [
    { key: "host", label: "host compute" },
    { key: "to_pim", label: "transfers to PIM" },
    { key: "from_pim", label: "transfers from PIM" },
    { key: "kernels", label: "PIM kernels" },
  ],
  steps: [
    { batch: 1, seconds: 2e-3, busy: { host: 5e-4, to_pim: 1e-4, from_pim: 2e-4, kernels: 1.5e-3 } },
    { batch: 4, seconds: 3e-3, busy: { host: 9e-4, to_pim: 2e-4, from_pim: 3e-4, kernels: 2e-3 } },
  ],
  points: [
    {
      name: "gemm0 (gemm.f32 MixedGEMM 1x2x4)",
      device: "64 DPUs",
      batch: 1,
      seconds: 1e-3,
      bytes: 2e6,
      flops: 4e6,
    },
    { name: "rms_norm", device: "host", batch: 1, seconds: 1e-5, bytes: 4e4, flops: 1e4 },
    {
      name: "gemm0 (gemm.f32 MixedGEMM 1x2x4)",
      device: "64 DPUs",
      batch: 4,
      seconds: 1.2e-3,
      bytes: 2.5e6,
      flops: 1.6e7,
    },
    // No flops, no bytes or no time: nothing to place on a roofline.
    { name: "transpose", device: "host", batch: 1, seconds: 1e-5, bytes: 4e4, flops: 0 },
    { name: "positions", device: "host", batch: 1, seconds: 1e-6, bytes: 0, flops: 5 },
    { name: "idle", device: "host", batch: 1, seconds: 0, bytes: 10, flops: 5 },
  ],
  roofs: [HOST, DPUS],
};

type Layer = { data?: { values: Record<string, unknown>[] }; mark: { type: string } | string };
const layers = (spec: unknown): Layer[] => (spec as { layer: Layer[] }).layer;
const markType = (l: Layer) => (typeof l.mark === "string" ? l.mark : l.mark.type);

describe("plot specs", () => {
  test("an energy panel, per token and stacked by part, only where the steps have energy", () => {
    const without = benchSpec(data) as unknown as { vconcat: { title?: { text: string } }[] };
    expect(without.vconcat.some((v) => v.title?.text === "Energy per token")).toBe(false);
    const energy = [
      { batch: 1, perToken: { array: 2e-3, datapath: 1e-3, tiny: 1e-6 } },
      { batch: 4, perToken: { array: 1e-3, datapath: 3e-3, tiny: 1e-6 } },
    ];
    const spec = benchSpec({ ...data, energy }) as unknown as {
      vconcat: {
        title?: { text: string };
        data?: { values: { batch: number; part: string; j: number }[] };
      }[];
    };
    const panel = spec.vconcat.find((v) => v.title?.text === "Energy per token")!;
    expect(spec.vconcat.indexOf(panel)).toBe(1);
    // Parts under 1 % of every step's energy are left out; millijoules, the unit of the largest step.
    const values = panel.data!.values;
    expect(new Set(values.map((v) => v.part))).toEqual(new Set(["array", "datapath"]));
    expect(values.find((v) => v.batch === 4 && v.part === "datapath")!.j).toBeCloseTo(3, 12);
  });

  test("the breakdown stacks the four engines per batch size, with the latency as a tick", () => {
    const spec = benchSpec(data) as unknown as { vconcat: unknown[] };
    const [bars, tick, text] = layers(spec.vconcat[0]);
    expect(markType(bars!)).toBe("bar");
    const values = bars!.data!.values;
    expect(values).toHaveLength(8);
    // Milliseconds, the unit of the longest step.
    const at4 = values.filter((v) => v.batch === 4);
    expect(at4.map((v) => v.engine)).toEqual([
      "host compute",
      "transfers to PIM",
      "transfers from PIM",
      "PIM kernels",
    ]);
    [0.9, 0.2, 0.3, 2].forEach((t, i) => expect(at4[i]!.t).toBeCloseTo(t, 12));
    expect(markType(tick!)).toBe("tick");
    [2, 3].forEach((t, i) => expect(tick!.data!.values[i]!.t).toBeCloseTo(t, 12));
    expect(JSON.stringify(bars)).toContain('"title":"busy time (ms)"');
    expect(text!.data!.values.map((v) => v.label)).toEqual(["2.00 ms", "3.00 ms"]);
  });

  test("one roofline per unit: each point on its device's panel, under its roofs, labelled", () => {
    const [flops, instr, ...rest] = rooflineSpecs(data.points, data.roofs);
    expect(rest).toEqual([]);
    const check = (spec: unknown, roofs: readonly Roof[], unit: string, expected: unknown[][]) => {
      const all = layers(spec);
      const points = all.find((l) => markType(l) === "point")!.data!.values;
      expect(points.map((p) => [p.name, p.device, p.batch, p.intensity, p.throughput])).toEqual(expected);
      const lines = all.find((l) => markType(l) === "line")!.data!.values as {
        x: number;
        y: number;
        device: string;
      }[];
      // Each roof is min(peak, bandwidth x intensity), bending at its ridge point.
      expect(new Set(lines.map((l) => l.device))).toEqual(new Set(roofs.map((r) => r.device)));
      for (const r of roofs) {
        const line = lines.filter((l) => l.device === r.device);
        expect(line.length).toBe(3);
        expect(line[1]).toEqual({ x: r.flops / r.bandwidth, y: r.flops, device: r.device });
        for (const p of line) expect(p.y).toBeCloseTo(Math.min(r.flops, r.bandwidth * p.x), 6);
      }
      // One unit per axis: the panel's.
      const text = JSON.stringify(spec);
      expect(text).toContain(`"title":"achieved throughput (${unit})"`);
      expect(text).toContain(`"title":"operational intensity (${unit.replace("/s", "")}/byte)"`);
      const labels = all
        .filter((l) => markType(l) === "text")
        .flatMap((l) => l.data!.values.map((v) => v.label));
      return labels;
    };
    expect(check(flops, [HOST], "flop/s", [["rms_norm", "host", 1, 0.25, 1e4 / 1e-5]])).toEqual([
      "host: 1.00 Tflop/s, 100 GB/s",
      "rms_norm", // one batch size on this panel: no (bN)
    ]);
    expect(
      check(instr, [DPUS], "instr/s", [
        // Kernels by their name, without their tiling.
        ["gemm0", "64 DPUs", 1, 2, 4e6 / 1e-3],
        ["gemm0", "64 DPUs", 4, 6.4, 1.6e7 / 1.2e-3],
      ]),
    ).toEqual(["64 DPUs: 28.8 Ginstr/s, 57.6 GB/s", "gemm0 (b1)", "gemm0 (b4)"]);
    // Roofs in two units on one panel would put two units on an axis.
    expect(() => rooflineSpec(data.points, data.roofs)).toThrow(/flop\/s and instr\/s/);
  });

  test("labels: close points share one, a label moves to a free side inside the plot", () => {
    const at = (name: string, batch: number, intensity: number, throughput: number) => ({
      name,
      batch,
      intensity,
      throughput,
    });
    // 95 pixels per decade across, 140 up.
    const placed = placeLabels(
      [
        at("gemm7", 4, 3.1, 2.25e10),
        at("gemm1", 1, 3, 2.2e10),
        at("gemm1", 4, 3.03, 2.21e10),
        at("gemm3", 1, 3.1 * 10 ** (20 / 95), 2.25e10 / 10 ** (8 / 140)), // 20 px right, 8 px down
        at("logits", 1, 900, 1e10), // 4 px from the right edge
      ],
      [0.1, 1000],
      [1e9, 1e11],
      true,
    );
    expect(placed.map((p) => [p.label, p.side])).toEqual([
      // "gemm7 (b4), gemm1 (b1, b4)" would take more than a third of the plot's width.
      ["gemm7, gemm1 (b1, b4)", "ne"],
      ["", "ne"],
      ["", "ne"],
      ["gemm3 (b1)", "se"], // north-east would overlap the first label
      ["logits (b1)", "nw"], // east would leave the plot
    ]);
  });

  test("a roof whose ridge is outside the axis is a single segment", () => {
    expect(roofLine(HOST, [100, 1000])).toEqual([
      { x: 100, y: 1e12 },
      { x: 1000, y: 1e12 },
    ]);
    expect(roofLine(HOST, [0.01, 1])).toEqual([
      { x: 0.01, y: 1e9 },
      { x: 1, y: 1e11 },
    ]);
  });

  test("the ablation is one bar per configuration in order, labelled with the speedup", () => {
    const rows = [
      { config: "CPU only", seconds: 0.5, speedup_vs_basegemm: 80 },
      { config: "BaseGEMM", seconds: 40, speedup_vs_basegemm: 1 },
      { config: "+ Tile-Selector", seconds: 17.8, speedup_vs_basegemm: 40 / 17.8 },
    ];
    const spec = ablationSpec(rows, "Ablation", "prefill") as unknown as {
      data: { values: { config: string; seconds: number; label: string }[] };
    };
    expect(spec.data.values.map((v) => [v.config, v.seconds, v.label])).toEqual([
      ["CPU only", 0.5, "500 ms · 80.00x vs BaseGEMM"],
      ["BaseGEMM", 40, "40.0 s · 1.00x vs BaseGEMM"],
      ["+ Tile-Selector", 17.8, "17.8 s · 2.25x vs BaseGEMM"],
    ]);
  });

  test("seconds read with three digits", () => {
    expect([39.6, 1.5, 0.0852, 4.12e-4, 2e-3, 1234].map(seconds)).toEqual([
      "39.6 s",
      "1.50 s",
      "85.2 ms",
      "412 us",
      "2.00 ms",
      "1234 s",
    ]);
  });
});

describe("roofs", () => {
  test("the host's and the whole device's peaks", () => {
    const sys = zUpmemSystem.parse({ dpus: 64 });
    const [host, dpus] = benchRoofs(sys);
    expect(host).toEqual({
      device: "host",
      flops: hostFlops(sys.host),
      bandwidth: sys.host.memory_bandwidth,
    });
    expect(dpus).toMatchObject({
      device: "64 DPUs",
      flops: 64 * sys.frequency,
      bandwidth: (64 * sys.frequency) / sys.dma.beta,
    });
  });

  test("no op sits further below its roof than its share of the device's peak says", async () => {
    const pimx = join(tmp, "tiny.pimx");
    const system = "examples/systems/upmem-rank.pim";
    const c = await pimc("compile", LLAMA_TINY, "--system", system, "--no-cooperation", "-o", pimx);
    expect(c.code, c.stderr).toBe(0);
    const [host, dpus] = benchRoofs(decodeProgram(readFileSync(pimx), pimx).system);
    const r = await pimc(
      "bench",
      LLAMA_TINY,
      "--system",
      system,
      "--phase",
      "decode",
      "--no-cooperation",
      "--json",
    );
    expect(r.code, r.stderr).toBe(0);
    const rows = (JSON.parse(r.stdout) as { steps: { ops: BenchRow[] }[] }).steps[0]!.ops;
    const roof = (p: Roof, i: number) => Math.min(p.flops, p.bandwidth * i);
    const hostRows = rows.filter((k) => k.device === "host" && k.flops > 0 && k.bytes > 0);
    const dpuRows = rows.filter((k) => k.device === dpus!.device);
    expect(hostRows.length).toBeGreaterThan(0);
    expect(dpuRows.length).toBeGreaterThan(0);
    // Host: throughput / roof at the op's intensity is its peak_fraction (a row of several calls: at most).
    for (const k of hostRows)
      expect(k.flops / k.seconds / roof(host!, k.flops / k.bytes)).toBeLessThanOrEqual(
        k.peak_fraction! * (1 + 1e-9),
      );
    // DPUs on the whole device: the DMA traffic against the memory roof is at most the peak fraction.
    for (const k of dpuRows)
      expect(k.bytes / k.seconds / dpus!.bandwidth).toBeLessThanOrEqual(k.peak_fraction! * (1 + 1e-9));
  });
});

describe("rendering", () => {
  test("an SVG with the charts' labels, byte-identical when rendered again", async () => {
    const svg = await renderSvg(benchSpec(data));
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    for (const label of [
      "tiny on upmem (64 DPUs at 450 MHz)",
      "Where the time goes per step",
      "Roofline of host (flop/s)",
      "Roofline of 64 DPUs (instr/s)",
      "operational intensity (instr/byte)",
      "achieved throughput (instr/s)",
      "gemm0 (b4)",
      "host compute",
      "transfers to PIM",
      "transfers from PIM",
      "PIM kernels",
      "batch size",
      "operational intensity (flop/byte)",
      "achieved throughput (flop/s)",
      "host: 1.00 Tflop/s, 100 GB/s",
      "3.00 ms",
    ])
      expect(svg.includes(`>${label}<`), label).toBe(true);
    expect((await renderSvg(benchSpec(data))) === svg).toBe(true);
    const ab = await renderSvg(
      ablationSpec([{ config: "BaseGEMM", seconds: 2, speedup_vs_basegemm: 1 }], "Ablation: tiny"),
    );
    expect(ab.includes(">Ablation: tiny<")).toBe(true);
    expect(ab.includes(">2.00 s · 1.00x vs BaseGEMM<")).toBe(true);
  });
});

describe("pimc bench --plot", () => {
  const bench = async (...extra: string[]) =>
    await pimc(
      "bench",
      LLAMA_TINY,
      "--system",
      "examples/systems/upmem-rank.pim",
      "--phase",
      "decode",
      "--no-cooperation",
      ...(extra.includes("--batch") ? [] : ["--batch", "1,2"]),
      ...extra,
    );

  test("writes the breakdown and the roofline, the same bytes on every run", async () => {
    const file = join(tmp, "p.svg");
    const r = await bench("--plot", file);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/tokens\/s/);
    expect(r.stderr).toBe("");
    const svg = readFileSync(file, "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    for (const label of ["llama-tiny on upmem (64 DPUs at 450 MHz)", "DPU kernels", "64 DPUs", "host"])
      expect(svg.includes(`>${label}<`), label).toBe(true);
    expect(/>64 DPUs: [^<]+instr\/s, [^<]+B\/s</.test(svg)).toBe(true);
    const again = join(tmp, "p2.svg");
    expect((await bench("--plot", again)).code).toBe(0);
    expect(readFileSync(again, "utf8") === svg).toBe(true);
  });

  test("--json prints one JSON object and nothing on stderr (no progress bar off a terminal)", async () => {
    const file = join(tmp, "j.svg");
    const r = await bench("--json", "--plot", file);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const j = JSON.parse(r.stdout) as { steps: { batch: number }[] };
    expect(j.steps.map((s) => s.batch)).toEqual([1, 2]);
    expect(r.stdout.trimEnd().split("\n")).toHaveLength(1);
    expect(readFileSync(file, "utf8").startsWith("<svg")).toBe(true);
  });

  test("--ablation --plot draws the latency of each configuration", async () => {
    const file = join(tmp, "a.svg");
    const r = await bench("--ablation", "--batch", "1", "--json", "--plot", file);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const rows = (JSON.parse(r.stdout) as { ablation: { config: string }[] }).ablation;
    const svg = readFileSync(file, "utf8");
    for (const label of ["Ablation: llama-tiny", ...rows.map((row) => row.config)])
      expect(svg.includes(`>${label}<`), label).toBe(true);
    expect(svg.includes("1.00x vs BaseGEMM")).toBe(true);
  });

  test("--baselines draws the host-only and PIM-only steps as ticks beside the latency", async () => {
    const file = join(tmp, "b.svg");
    const r = await bench("--baselines", "--json", "--plot", file);
    expect(r.code, r.stderr).toBe(0);
    const steps = (JSON.parse(r.stdout) as { steps: { host_only_s: number; pim_only_s: number }[] }).steps;
    const svg = readFileSync(file, "utf8");
    expect(svg).toContain("brown tick: host only; pink tick: PIM only");
    // One tick per batch size and reference, at its time.
    const ticks = (color: string) =>
      [
        ...svg.matchAll(new RegExp(`aria-label="batch size: \\d+; t: ([\\d.]+)"[^>]*fill="${color}"`, "g")),
      ].map((m) => Number(m[1]));
    expect(ticks("#9d755d")).toHaveLength(steps.length);
    expect(ticks("#b279a2")).toHaveLength(steps.length);
  });
});
