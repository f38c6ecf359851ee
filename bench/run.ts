/**
 * `npm run bench`: speed figures, printed as a table (median of several runs).
 * - front end of Llama-2-70B (shape-only): parse the description, build prefill + decode, verify
 * - the default pass pipeline of each target on it
 * - printing its IR, and parsing the printed IR back
 * - `pimc dump examples/llama2-70b.pim` as a user runs it (a fresh process: start-up included)
 * - reference interpreter: prefill of 2 x 7 tokens and one decode step on llama-tiny
 * - the UPMEM Tile-Selector on each GEMM shape of Llama-2-7B/13B, Mistral-7B and OPT-6.7B (f32 and
 *   int8, prefill and decode, 2048 and 2556 DPUs): the mean and the largest over the shapes of each
 *   shape's median time, and (unless BENCH_ORACLE=0) per group its agreement with the best of every
 *   legal tiling on the emulator (geomean ratio, shapes within 5 %, size of the space): minutes
 * - compiling Llama-2-70B INT8 (shape-only) for 2048 UPMEM DPUs, and the UPMEM lowering and
 *   emulator (timing) on Llama-2-7B INT8: a decode step and a 128-token prefill
 * - the HBM-PIM emulator on PIMSimulator's GEMV 4096x4096 and ADD 1M, with PIM and without
 * - fidelity: every peer simulator's point (test/fixtures/peers) and every hardware measurement
 *   (test/fixtures/measured) beside pimc's figure, with the error
 * - `pimc sweep` on 200 cheap points: points per second on one thread and on two workers
 */
import { table } from "../src/report/table.js";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runSweep } from "../src/sweep/run.js";
import { h100Fidelity, readCsv } from "./fidelity.js";
import { gunzipSync } from "node:zlib";
import { chooseTarget } from "../src/driver/compile.js";
import { runChannel } from "../targets/aim/device.js";
import { expand, gemvPlan } from "../targets/aim/kernels.js";
import type { AimSystem } from "../targets/aim/standard.js";
import { parseAimTrace, runAimTrace } from "../targets/aim/trace.js";
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Interpreter, tokenTensor } from "../src/exec/interpreter.js";
import { importHf } from "../src/frontend/hf/import.js";
import { loadModel } from "../src/frontend/load.js";
import { parseModule } from "../src/ir/parser.js";
import { printModule } from "../src/ir/printer.js";
import { assertValid } from "../src/ir/verifier.js";
import { defaultWorkload, phaseEnvs } from "../src/frontend/workload.js";
import { PassContext, runPipeline } from "../src/pipeline/pass.js";
import { pipelineOf } from "../passes/index.js";
import { getTarget } from "../targets/index.js";
import { lowerModule } from "../targets/upmem/lower.js";
import { UpmemMachine } from "../targets/upmem/machine.js";
import { PLAN, planFor, planInputs, type PlanOptions } from "../targets/upmem/passes/plan.js";
import type { Program } from "../targets/upmem/program.js";
import { resolveWorkload } from "../src/cli/workload-flags.js";
import { summarize } from "../targets/upmem/tune.js";
import { selectLut } from "../targets/upmem/lut.js";
import { MODELS, SYSTEMS, tileSelectorSweep } from "./tile-selector.js";
import { DEFAULT_SYSTEM } from "../targets/upmem/system.js";
import { RD, WR } from "../targets/hbm-pim/controller.js";
import { runPimKernel, runStream } from "../targets/hbm-pim/device.js";
import { eltwiseKernel, eltwiseLayout, gemvKernel, gemvLayout } from "../targets/hbm-pim/kernels.js";
import { DEFAULT_SYSTEM as HBM_DEFAULT } from "../targets/hbm-pim/standard.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const RUNS = Number(process.env.BENCH_RUNS ?? 7);

function median(f: () => void, runs = RUNS): number {
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    f();
    t.push(performance.now() - t0);
  }
  return t.sort((a, b) => a - b)[Math.floor(t.length / 2)]!;
}

const rows: [string, number, string][] = [];
const llama70b = `${root}examples/llama2-70b.pim`;
let ops = 0;
rows.push([
  "front end: Llama-2-70B (parse .pim, build, verify)",
  median(() => {
    const m = loadModel(llama70b).module;
    assertValid(m);
    ops = m.funcs.reduce((s, f) => s + f.body.length, 0);
  }),
  "< 1000 ms",
]);
const m70 = loadModel(llama70b).module;
for (const name of ["cpu", "roofline"]) {
  const target = await getTarget(name);
  const system = target.system();
  rows.push([
    `pass pipeline (${name}: ${target.pipeline.join(", ")}) on Llama-2-70B`,
    median(() => {
      const ctx = new PassContext({
        costModel: system.costModel,
        options: { ...system.passOptions, envs: phaseEnvs(defaultWorkload("decode")) },
      });
      runPipeline(pipelineOf(name, target.pipeline), m70, ctx);
    }),
    "< 1000 ms",
  ]);
}
let text = "";
rows.push([`print IR (${ops} ops)`, median(() => (text = printModule(m70))), ""]);
rows.push(["parse printed IR", median(() => parseModule(text)), ""]);
rows.push([
  "pimc dump examples/llama2-70b.pim (fresh process)",
  median(() => {
    const r = spawnSync(process.execPath, [`${root}dist/src/cli/bin.js`, "dump", llama70b], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    if (r.status !== 0) throw new Error("pimc dump failed");
  }, 5),
  "< 1000 ms",
]);
const tiny = importHf(`${root}test/fixtures/llama-tiny`);
const it = new Interpreter(tiny.module, tiny.weights);
const prompt = tokenTensor([
  [47, 68, 25, 118, 67, 83, 23],
  [103, 92, 57, 14, 23, 72, 89],
]);
rows.push([
  "interpreter: llama-tiny prefill 2x7 + 1 decode step",
  median(() => {
    it.reset();
    it.run("prefill", [prompt]);
    it.run("decode", [tokenTensor([[1], [2]])]);
  }),
  "",
]);

const llama7b = `${root}examples/llama2-7b.pim`;
// The GEMM Tile-Selector over four models, two systems, two precisions and both phases; with the
// oracle (every legal tiling, branch-and-bound on the emulator) unless BENCH_ORACLE=0.
const withOracle = process.env.BENCH_ORACLE !== "0";
const t0 = performance.now();
const groups = await tileSelectorSweep(root, {
  oracle: withOracle,
  progress: (line) => process.stderr.write(`  ${line}\n`),
});
const sweepSeconds = (performance.now() - t0) / 1e3;
const selectTimes = groups.flatMap((g) => g.shapes.map((s) => s.selector.select_ms));
rows.push([
  `tile-selector per GEMM shape (${MODELS.length} models x ${SYSTEMS.length} systems x f32/int8 x prefill/decode, ${selectTimes.length} shapes): mean`,
  selectTimes.reduce((a, b) => a + b, 0) / selectTimes.length,
  "< 1 ms",
]);
rows.push(["tile-selector per GEMM shape: max", Math.max(...selectTimes), "< 1 ms"]);

// The LUT-GEMV Tile-Selector (W4A8 / W2A8) on the same layers' shapes, prefill 128 and decode 1
// jointly (one resident layout), as lowering calls it.
const lutTimes: number[] = [];
for (const bits of [4, 2])
  for (const [n, k] of [
    [12288, 4096],
    [4096, 4096],
    [22016, 4096],
    [4096, 11008],
    [32000, 4096],
  ] as const) {
    const t0 = performance.now();
    selectLut({ n, k, bits, group: 128 }, DEFAULT_SYSTEM, [128, 1]);
    lutTimes.push(performance.now() - t0);
  }
rows.push([
  "LUT tile-selector per W4A8 / W2A8 shape (llama2-7b, prefill + decode): max",
  Math.max(...lutTimes),
  "< 250 ms",
]);

// The UPMEM target on 2048 DPUs (every GEMM on the DPUs), INT8 weights.
const upmem = await getTarget("upmem");
const { selectSystem, loadDescription } = await import("../src/frontend/dsl/index.js");
const upmemSystem = upmem.system(selectSystem(loadDescription(`${root}examples/systems/upmem-2048.pim`)), {
  cooperation: false,
});
/** The pass pipeline on a model description, and the lowering's options under its workload. */
function upmemPasses(path: string) {
  const model = loadModel(path);
  const envs = phaseEnvs(resolveWorkload(path, {}));
  const ctx = new PassContext({
    costModel: upmemSystem.costModel,
    weights: model.weights,
    options: { ...upmemSystem.passOptions, envs, quantize: { weights: "int8" } },
  });
  const module = runPipeline(pipelineOf("upmem", upmem.pipeline, upmem.passes), model.module, ctx);
  // The plan upmem-plan made (it ends the pipeline), as emit reuses it.
  const inputs = planInputs(upmemSystem.passOptions[PLAN] as PlanOptions, envs, undefined);
  const lowering = { ...inputs, shapeOnly: true };
  return { module, weights: ctx.weights, lowering, plan: planFor(module, inputs) };
}

// Compiling Llama-2-70B (shape-only): front end, pass pipeline, lowering.
rows.push([
  "compile Llama-2-70B INT8 for 2048 UPMEM DPUs (shape-only: front end, passes, lowering)",
  median(() => {
    const c = upmemPasses(llama70b);
    lowerModule(c.module, c.weights, c.lowering, c.plan);
  }, 3),
  "< 5000 ms",
]);

// The UPMEM emulator (timing) on Llama-2-7B: compile once, then emulate calls.
{
  const { module, weights, lowering } = upmemPasses(llama7b);
  let program: Program | undefined;
  rows.push([
    "UPMEM lowering: Llama-2-7B INT8, every GEMM on 2048 DPUs",
    median(() => {
      program = lowerModule(module, weights, lowering).program;
    }, 3),
    "",
  ]);
  // A fresh machine per run: kernel timings are not cached across runs.
  const call = (phase: string, env: Record<string, number>) => () =>
    new UpmemMachine(program!, { functional: false }).run(phase, undefined, env);
  rows.push([
    "emulator: Llama-2-7B decode step (B=1, P=1024), timing, setup included",
    median(call("decode", { B: 1, S: 1, P: 1024 }), 3),
    "< 2000 ms",
  ]);
  rows.push([
    "emulator: Llama-2-7B prefill (S=128), timing",
    median(call("prefill", { B: 1, S: 128, P: 0 }), 3),
    "",
  ]);
}

// The HBM-PIM device model at DRAM-command level: PIMSimulator's benchmark kernels (it takes 2.25 s
// for the GEMV). The first run of a process (no warm JIT) is what `pimc kernel` pays.
{
  const sys = HBM_DEFAULT;
  const gemv = gemvKernel(sys, gemvLayout(sys, 4096, 4096));
  const add = eltwiseKernel(sys, "add", eltwiseLayout(sys, 1 << 20));
  const w = 2 * 4096 * 4096;
  const e = 2 << 20;
  const cases: [string, () => void][] = [
    ["GEMV 4096x4096 FP16, PIM", () => runPimKernel(sys, gemv)],
    [
      "GEMV 4096x4096 FP16, non-PIM",
      () =>
        runStream(sys, [
          { kind: RD, bytes: w + 8192, at: 0 },
          { kind: WR, bytes: 8192, at: w + 8192, fence: true },
        ]),
    ],
    ["ADD 1M FP16, PIM", () => runPimKernel(sys, add)],
    [
      "ADD 1M FP16, non-PIM",
      () =>
        runStream(sys, [
          { kind: RD, bytes: 2 * e, at: 0 },
          { kind: WR, bytes: e, at: 2 * e, fence: true },
        ]),
    ],
  ];
  for (const [name, f] of cases) {
    const first = median(f, 1);
    rows.push([
      `HBM-PIM emulator: ${name}, 64 pseudo-channels (first run ${first.toFixed(0)} ms)`,
      median(f),
      "< 200 ms",
    ]);
  }
}

const out = table(["benchmark", "median ms", "goal"], ["left", "right", "left"]);
for (const [name, ms, goal] of rows) out.push([name, ms < 1 ? ms.toFixed(3) : ms.toFixed(1), goal]);
process.stdout.write(`${out.toString()}\n`);

// The Tile-Selector's agreement with the full tiling space, per model, system, precision and phase.
const agree = table(
  [
    "model",
    "DPUs",
    "weights",
    "phase",
    "shapes",
    ...(withOracle ? ["legal tilings", "geomean", "within 5%"] : []),
    "select ms mean",
    "max",
  ],
  [
    "left",
    "right",
    "left",
    "left",
    "right",
    ...(withOracle ? (["right", "right", "right"] as const) : []),
    "right",
    "right",
  ],
);
const agreeRow = (label: string[], shapes: Parameters<typeof summarize>[0]): void => {
  const sum = summarize(shapes);
  agree.push([
    ...label,
    String(shapes.length),
    ...(withOracle
      ? [
          sum.space_size!.toExponential(2),
          sum.geomean_ratio!.toFixed(4),
          `${shapes.filter((r) => r.ratio! * 1.05 >= 1).length}/${shapes.length}`,
        ]
      : []),
    sum.mean_select_ms.toFixed(3),
    sum.max_select_ms.toFixed(3),
  ]);
};
for (const g of groups) agreeRow([g.model, String(g.dpus), g.weights, g.phase], g.shapes);
agreeRow(
  ["all", "", "", ""],
  groups.flatMap((g) => g.shapes),
);
process.stdout.write(
  `\nUPMEM Tile-Selector against ${withOracle ? "the best of every legal tiling on the emulator (pimc tune --exhaustive)" : "nothing (BENCH_ORACLE=0: timing only)"}, ${sweepSeconds.toFixed(0)} s\n${agree.toString()}\n`,
);

// Fidelity: the model against its peer simulators' measured points (test/fixtures/peers), each rerun
// as a user would (`pimc kernel` on the peer's configuration, `pimc kernel trace`): peer, pimc, error.
{
  const fid = table(
    ["peer", "kernel", "configuration", "peer cycles", "pimc", "error"],
    ["left", "left", "left", "right", "right", "right"],
  );
  const errors: { peer: string; e: number }[] = [];
  const add = (peer: string, kernel: string, config: string, want: number, got: number): void => {
    const e = (got / want - 1) * 100;
    errors.push({ peer, e: Math.abs(e) });
    fid.push([
      peer,
      kernel,
      config,
      want.toLocaleString("en-US"),
      got.toLocaleString("en-US"),
      `${e >= 0 ? "+" : ""}${e.toFixed(1)} %`,
    ]);
  };
  const noop = { start: () => {}, tick: () => {}, label: () => {} };
  const hbm = await chooseTarget({ system: "examples/systems/hbm-pim-64ch.pim" });
  for (const [file, peer] of [
    ["pimsimulator-points.csv", "PIMSimulator"],
    ["pimsimulator-sweep.csv", "PIMSimulator sweep"],
  ] as const)
    for (const p of readCsv(`test/fixtures/peers/${file}`)) {
      const op = p.kernel!.toLowerCase();
      const size = op === "gemv" ? `${p.out_dim}x${p.in_dim}` : p.in_dim!;
      // In the refresh policy that matches PIMSimulator's controller (docs/hbm-pim.md).
      const j = hbm.target.kernel!.run(hbm.system, op, size, {
        baseline: true,
        channels: Number(p.num_chans),
        ranks: Number(p.num_ranks),
        refresh: "deferred",
        progress: noop,
      }).json as { pim: { cycles: number }; non_pim: { cycles: number } };
      const config = `${p.num_chans} ch, ${p.num_ranks} rank${p.num_ranks === "1" ? "" : "s"}, refresh deferred`;
      add(peer, `${op} ${size}, PIM`, config, Number(p.pim_cycles), j.pim.cycles);
      add(peer, `${op} ${size}, non-PIM`, config, Number(p.nonpim_cycles), j.non_pim.cycles);
    }
  const aimx = await chooseTarget({ system: "examples/systems/aimx.pim" });
  const aimSys = aimx.system.config as AimSystem;
  for (const p of readCsv("test/fixtures/peers/aim-simulator-points.csv")) {
    const sys = { ...aimSys, channels: Number(p.channels) };
    const cycles = runChannel(sys, expand(gemvPlan(sys, Number(p.rows), Number(p.cols)).instrs)).cycles;
    // The simulator counts the trace's end too: the last RD_MAC's fence and EOC (3 cycles).
    add("AiM simulator", `gemv ${p.rows}x${p.cols}`, `${p.channels} ch`, Number(p.cycles), cycles + 3);
  }
  for (const [t, want] of [
    ["pp8_s128", 425471],
    ["pp8_s1024", 498047],
    ["tp8_s128", 37654],
  ] as const) {
    const file = `test/fixtures/peers/cent-llama2-7b-${t}.trace.gz`;
    const r = runAimTrace(
      aimSys,
      parseAimTrace(gunzipSync(readFileSync(file)).toString("utf8"), file, aimSys),
    );
    add("AiM simulator", `CENT Llama-2-7B block, ${t}`, "32 ch", want, r.cycles);
  }
  const summary = (peer: string): string => {
    const es = errors.filter((x) => x.peer === peer).map((x) => x.e);
    return `${peer}: ${es.length} figures, mean |error| ${(es.reduce((s, e) => s + e, 0) / es.length).toFixed(1)} %, ${es.filter((e) => e <= 5).length} within 5 %, ${es.filter((e) => e <= 10).length} within 10 %, largest ${Math.max(...es).toFixed(1)} %`;
  };
  process.stdout.write(
    `\nFidelity against peer simulators (test/fixtures/peers)\n${fid.toString()}\n${summary("PIMSimulator")}\n${summary("PIMSimulator sweep")}\n${summary("AiM simulator")}\n`,
  );

  // Hardware measured for the project: each figure with the constant fitted to it, if any.
  const hw = table(
    ["device", "figure", "batch", "measured", "pimc", "error", "fitted to it"],
    ["left", "left", "right", "right", "right", "right", "left"],
  );
  const figures = await h100Fidelity(root);
  for (const f of figures) {
    const what =
      f.op === "linear"
        ? `linear layers, ${f.layers} layers`
        : `${f.op} per layer${f.context !== undefined ? `, context ${f.context}` : ""}`;
    const e = f.error * 100;
    hw.push([
      "H100",
      what,
      String(f.batch),
      `${f.measuredMs.toPrecision(3)} ms`,
      `${f.modelMs.toFixed(4)} ms`,
      `${e >= 0 ? "+" : ""}${e.toFixed(1)} %`,
      f.fitted ?? "",
    ]);
  }
  const predicted = figures.filter((f) => f.fitted === undefined).map((f) => Math.abs(f.error) * 100);
  process.stdout.write(
    `\nFidelity against measured hardware (test/fixtures/measured)\n${hw.toString()}\nH100: ${figures.length} figures, ${figures.length - predicted.length} fitted; the ${predicted.length} predicted: ${predicted.filter((e) => e <= 5).length} within 5 %, ${predicted.filter((e) => e <= 10).length} within 10 %, largest ${Math.max(...predicted).toFixed(1)} %\n`,
  );
}

// Sweeps: points per second of `pimc sweep` on one thread and on two workers, on two grids of 200
// points: Llama-2-7B decode on two GPU systems (about 0.1 s a point: the goal's grid) and the tiny
// Llama (under 10 ms a point: there the workers' start-up, about 0.5 s each, and the results'
// writes on the main thread take most of the time).
{
  const dir = mkdtempSync(join(tmpdir(), "pimc-bench-sweep-"));
  const grid = (model: string, contexts: string) => {
    const spec = join(dir, `${model}.pim`);
    writeFileSync(
      spec,
      `sweep bench {
  models = ["${root}examples/${model}.pim"]
  systems = ["${root}examples/systems/h100.pim", "${root}examples/systems/a100.pim"]
  batch = [1, 2, 4, 8, 16]
  context = [${contexts}]
  set = { xpu = { overhead = [1 us, 2 us, 3 us, 4 us] } }
}
`,
    );
    return spec;
  };
  const rate = async (spec: string, jobs: number): Promise<number> => {
    const t0 = performance.now();
    const s = await runSweep(spec, undefined, { db: join(dir, `${s0++}.duckdb`), jobs });
    return s.ran / ((performance.now() - t0) / 1000);
  };
  let s0 = 0;
  const lines: string[] = [];
  for (const [model, contexts, goal] of [
    ["llama2-7b", "128, 256, 512, 1024, 2048", " (goal: 1.8x)"],
    ["tiny-llama", "8, 16, 32, 64, 96", ""],
  ] as const) {
    const spec = grid(model, contexts);
    const one = await rate(spec, 1);
    const two = await rate(spec, 2);
    lines.push(
      `  ${model}: ${one.toFixed(1)} points/s on one thread, ${two.toFixed(1)} on 2 workers: ${(two / one).toFixed(2)}x${goal}`,
    );
  }
  // The goal's grid as two processes of one thread at once, each a shard (what the machine gives
  // the same work without threads: its two vCPUs share caches and memory bandwidth).
  {
    const spec = join(dir, "llama2-7b.pim");
    const bin = join(root, "dist/src/cli/bin.js");
    const t0 = performance.now();
    await Promise.all(
      [1, 2].map(
        (i) =>
          new Promise<void>((done) =>
            spawn(process.execPath, [
              bin,
              "sweep",
              spec,
              "-j",
              "1",
              "--shard",
              `${i}/2`,
              "--db",
              join(dir, `shard-${i}.duckdb`),
            ]).on("close", () => done()),
          ),
      ),
    );
    lines.push(
      `  llama2-7b as two shard processes of one thread: ${(200 / ((performance.now() - t0) / 1000)).toFixed(1)} points/s`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`\npimc sweep, 200 points:\n${lines.join("\n")}\n`);
}
