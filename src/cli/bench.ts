/**
 * `pimc bench <model> --system <sys>`: compiles the model for each batch size and runs one step of
 * the phase through the Target contract (the target's program on its emulator, or the compiled IR on
 * its device or cost model): latency per step, tokens/s, busy time per engine, and a table of the ops
 * (kernels, transfers) with device, time, bytes, flops, Op/B and, where the executable knows its
 * devices' roofs, the share of the peak reached. `--plot` draws the breakdown and a roofline of the
 * ops (SVG or PNG), `--trace` writes the steps as a Chrome/Perfetto trace.
 */
import { Command, Option } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { workloadEnv, type Workload } from "../frontend/workload.js";
import { bytes, int, opb, si } from "../report/format.js";
import type * as Plot from "../report/plot.js";
import { progress, type Progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { energyJson, energyLine, joules, type EnergyJson } from "../report/energy.js";
import { callViews, deviceLabel, type CostModel } from "../pipeline/cost-model.js";
import type { Precision } from "../../passes/quantize.js";
import { loadForCli, warn, writeFileAtomic, writePlot } from "./io.js";
import { WORKLOAD_LIMITS } from "../limits.js";
import { nonNegativeIntUpTo, plotFile, positiveInt, positiveIntUpTo } from "./options.js";
import { withPipelineFlags } from "./pipeline.js";
import { checkFits, chooseTarget, compileModel, type PipelineFlags } from "../driver/compile.js";
import { ms } from "./sim.js";
import { timeStep } from "../driver/run.js";
import { checkPositions } from "../pipeline/capacity.js";
import { resolveWorkload } from "./workload-flags.js";
import { describeWorkload } from "../frontend/workload.js";
import type { Module } from "../ir/module.js";
import {
  allTargets,
  type AblationStep,
  type CallReport,
  type Energy,
  type Executable,
  type StepOp,
  type SystemModel,
} from "../../targets/index.js";
import type { LoadedModel } from "../frontend/hf/import.js";
import {
  explainStep,
  placementJson,
  placementLines,
  referenceSystem,
  type Placement,
  type PlacementFlags,
} from "./placement.js";

const batches = (v: string): number[] => {
  const out = v.split(",").map((x) => x.trim());
  if (out.some((x) => !/^[1-9]\d*$/.test(x) || Number(x) > WORKLOAD_LIMITS.batch))
    throw new UserError(
      `--batch: expected positive integers up to ${WORKLOAD_LIMITS.batch} separated by commas, got "${v}"`,
    );
  return out.map(Number);
};

/** A row of bench's table: an op (or kernel, or transfer) and, where known, the share of its device's peak. */
export type BenchRow = StepOp;

/** "decode, context 1024, 1 token(s) per step" (the batch size aside) */
const phaseLine = (w: Workload): string =>
  `${w.phase}, ${w.phase === "prefill" ? `prompt ${w.prompt}` : `context ${w.context}, ${w.speculation} token(s) per step`}`;

/** Compiles under `flags` for `w` and runs one step (`label`: for the progress bar). */
type RunStep = (
  flags: PipelineFlags,
  w: Workload,
  label: string,
) => Promise<{ module: Module; seconds: number }>;

/**
 * The target's ablation (UPMEM: PIM-LLM's): each optimization added to the naive mapping in turn,
 * against the host CPU. The steps replace the command's cooperation and target flags.
 */
async function ablation(
  w: Workload,
  flags: PipelineFlags,
  steps: readonly AblationStep[],
  emulate: RunStep,
  json: boolean,
  bar: Progress,
) {
  // PIM-LLM's setting is INT8 (W8A8); fp32 weights only when asked for.
  const opts: PipelineFlags = { ...flags, weights: flags.weights ?? "int8" };
  const rows: { config: string; seconds: number }[] = [];
  let cpu = 0;
  // The command's own target flags stay, but for those the steps set.
  const stepKeys = new Set(steps.flatMap((s) => Object.keys(s.flags.targetFlags ?? {})));
  const kept = Object.fromEntries(Object.entries(opts.targetFlags ?? {}).filter(([k]) => !stepKeys.has(k)));
  bar.start(steps.length);
  for (const [i, step] of steps.entries()) {
    const r = await emulate(
      {
        ...opts,
        cooperation: step.flags.cooperation ?? true,
        targetFlags: { ...kept, ...step.flags.targetFlags },
        disablePass: [...opts.disablePass, ...(step.disable ?? [])],
      },
      w,
      step.label,
    );
    rows.push({ config: step.label, seconds: r.seconds });
    // The host CPU alone: every op of the phase timed as the emulator times host ops (--baselines' host only).
    if (i === steps.length - 1) cpu = hostAlone(r.module, await referenceSystem(opts), w);
  }
  const base = rows[0]!.seconds;
  const out = [{ config: "CPU only (host model)", seconds: cpu }, ...rows].map((r) => ({
    ...r,
    speedup_vs_basegemm: base / r.seconds,
    speedup_vs_cpu: cpu / r.seconds,
  }));
  if (json) {
    process.stdout.write(`${JSON.stringify({ workload: w, weights: opts.weights, ablation: out })}\n`);
    return out;
  }
  const t = table(["configuration", "latency", "vs BaseGEMM", "vs CPU"], ["left", "right", "right", "right"]);
  for (const r of out)
    t.push([
      r.config,
      ms(r.seconds),
      `${r.speedup_vs_basegemm.toFixed(2)}x`,
      `${r.speedup_vs_cpu.toFixed(2)}x`,
    ]);
  const weights = `weights ${opts.weights}${flags.weights === undefined ? " (PIM-LLM's setting; --weights f32 for fp32)" : ""}`;
  process.stdout.write(`${describeWorkload(w)}; ${weights}\n${t.toString()}\n`);
  return out;
}

/** The workload of each batch size, with --seq and --context applied (within the model's positions). */
function stepWorkloads(
  model: LoadedModel,
  base: Workload,
  o: { seq?: number | undefined; context?: number | undefined },
  batchSizes: readonly number[],
): Workload[] {
  return batchSizes.map((b) => {
    const w = {
      ...base,
      batch: b,
      ...(o.seq !== undefined ? (base.phase === "prefill" ? { prompt: o.seq } : { speculation: o.seq }) : {}),
      ...(o.context !== undefined ? { context: o.context } : {}),
    };
    checkPositions(model, w);
    return w;
  });
}

const stepTokens = (w: Workload): number => w.batch * (w.phase === "prefill" ? w.prompt : w.speculation);

/** One batch size's step: the program run, its report, and why each layer group went where it did. */
interface StepResult {
  readonly w: Workload;
  readonly exe: Executable;
  readonly report: CallReport;
  readonly rows: readonly BenchRow[];
  readonly placement: Placement;
  readonly base?: Baselines | undefined;
}

/**
 * `pimc bench` on any target: per batch size the step run through the Target contract (the
 * target's program on its emulator, or the compiled IR on its device or cost model), its latency,
 * where the time goes per engine and per op, with a trace, a plot and JSON of the same report.
 */
async function benchSteps(
  model: LoadedModel,
  flags: PipelineFlags,
  steps: readonly Workload[],
  path: string,
  o: {
    readonly rows: number;
    readonly json: boolean;
    readonly compileOnce: boolean;
    readonly subBatches: number;
    readonly baselines: boolean;
    /** Files to write: the steps' ops as a trace, and the breakdown and rooflines as a plot. */
    readonly trace?: string;
    readonly plot?: string;
  },
): Promise<void> {
  const bar = progress();
  bar.start(steps.length * (o.baselines ? 2 : 1));
  const results: StepResult[] = [];
  // With compileOnce every step runs on the program compiled for the first one.
  const once = o.compileOnce ? await compileModel(model, flags, steps[0]!, 2, true) : undefined;
  const onceStep = once && timeStep(model, once, steps[0]!, { subBatches: o.subBatches, source: path });
  const reference = await referenceSystem(flags);
  const placed: PlacementFlags = { ...flags, ...(once ? { compiledFor: steps[0]!.batch } : {}) };
  try {
    for (const w of steps) {
      bar.label(`${once ? "" : "compiling and "}running batch ${w.batch}`);
      const c = once ?? (await compileModel(model, flags, w, 2, true));
      checkFits(model, c, w, { ...flags, warn });
      const { program: exe, report } = onceStep
        ? {
            program: onceStep.program,
            report: onceStep.program.open({ subBatches: o.subBatches }).call(w.phase, workloadEnv(w)),
          }
        : timeStep(model, c, w, { subBatches: o.subBatches, source: path });
      const placement = explainStep(c, w, reference.costModel, placed);
      bar.tick();
      const base = o.baselines
        ? await baselines(model, flags, reference, c.module, w, path, o.subBatches, bar)
        : undefined;
      results.push({ w, exe, report, rows: report.ops ?? [], placement, base });
    }
  } finally {
    bar.stop();
  }
  const first = results[0]!;
  const exe = first.exe;
  // The engines busy in some step, in the executable's order.
  const engines = Object.entries<string>(exe.engines).filter(([k]) =>
    results.some((r) => k in r.report.busy),
  );
  if (o.trace !== undefined) writeFileAtomic(o.trace, exe.trace(results.map((r) => r.report)));
  if (o.plot !== undefined) {
    const data: Plot.BenchPlot = {
      title: exe.title,
      subtitle: phaseLine(first.w),
      engines: engines.map(([key, label]) => ({ key, label })),
      steps: results.map(({ w, report, base }) => ({
        batch: w.batch,
        seconds: report.seconds,
        busy: report.busy,
        ...(base ? { host_only: base.host_only_s, pim_only: base.pim_only_s } : {}),
      })),
      energy: results.flatMap(({ w, report }) =>
        report.energy
          ? [
              {
                batch: w.batch,
                perToken: Object.fromEntries(
                  Object.entries(report.energy.breakdown).map(([k, j]) => [k, j / stepTokens(w)]),
                ),
              },
            ]
          : [],
      ),
      points: results.flatMap(({ w, report }) =>
        (report.points ?? []).map((p) => ({ ...p, batch: w.batch })),
      ),
      roofs: [...(exe.roofs ?? [])],
    };
    await writePlot(o.plot, (p) => p.benchSpec(data));
  }
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({
        model: exe.model,
        target: exe.target,
        system: reference.name,
        phase: first.w.phase,
        steps: results.map(({ w, report, rows, placement, base }) => ({
          batch: w.batch,
          env: report.env,
          seconds: report.seconds,
          tokens_per_second: stepTokens(w) / report.seconds,
          ...(report.energy ? { energy: energyJson(report.energy, stepTokens(w), report.seconds) } : {}),
          ...(base ?? {}),
          busy: report.busy,
          ops: rows,
          ...placementJson(placement),
        })),
      })}\n`,
    );
    return;
  }
  const heads = ["batch", "tokens/step", "latency", ...baselineHead(o.baselines, reference.costModel)];
  const labels = engines.map(([, label]) => label);
  const summary = table(
    [...heads, "tokens/s", ...labels],
    [...heads, "tokens/s", ...labels].map(() => "right" as const),
    // On a narrow terminal the engines between the host and the PIM device (transfers) go first.
    { drop: ["tokens/step", "tokens/s", ...labels.slice(1, -1)] },
  );
  for (const { w, report, base } of results)
    summary.push([
      String(w.batch),
      int(stepTokens(w)),
      ms(report.seconds),
      ...baselineCells(base),
      int(Math.round(stepTokens(w) / report.seconds)),
      ...engines.map(([k]) => ms(report.busy[k] ?? 0)),
    ]);
  // Shares of the device's peak, where the executable knows its devices' roofs.
  const peaks = first.rows.some((r) => r.peak_fraction !== undefined);
  const detail = table(
    ["op", "device", "calls", "time", "share", "bytes", "flops", "Op/B", ...(peaks ? ["% of peak"] : [])],
    ["left", "left", "right", "right", "right", "right", "right", "right", "right"],
    { drop: ["calls", "flops", "bytes", "Op/B"] },
  );
  for (const r of first.rows.slice(0, o.rows))
    detail.push([
      r.name,
      r.device,
      int(r.calls),
      ms(r.seconds),
      `${((100 * r.seconds) / first.report.seconds).toFixed(1)}%`,
      bytes(r.bytes),
      si(r.flops),
      opb(r.flops, r.bytes),
      ...(peaks ? [r.peak_fraction === undefined ? "" : `${(100 * r.peak_fraction).toFixed(1)}%`] : []),
    ]);
  process.stdout.write(
    [
      `model     ${exe.title}`,
      `phase     ${phaseLine(first.w)}`,
      summary.toString(),
      ...results.flatMap(({ w, report }) =>
        report.energy
          ? [`energy    batch ${w.batch}: ${energyLine(report.energy, stepTokens(w), report.seconds)}`]
          : [],
      ),
      ...baselineNotes(results),
      `where the time goes at batch ${first.w.batch} (busy time per op; engines overlap, so shares may exceed the latency):`,
      detail.toString(),
      ...placementLines(
        results.map((r) => r.placement),
        reference.costModel,
      ),
      "",
    ].join("\n"),
  );
}

/** One step under `flags`, compiled and run through the Target contract (timeStep). */
async function runStep(
  model: LoadedModel,
  flags: PipelineFlags,
  w: Workload,
  path: string,
  subBatches = 1,
): Promise<{ seconds: number; module: Module; system: SystemModel; target: string; energy?: Energy }> {
  const c = await compileModel(model, flags, w, 2, true);
  checkFits(model, c, w, { ...flags, warn });
  const { seconds, report } = timeStep(model, c, w, { subBatches, source: path });
  return {
    seconds,
    module: c.module,
    system: c.system,
    target: c.target.name,
    ...(report.energy ? { energy: report.energy } : {}),
  };
}

/**
 * The host CPU of a compiled system running every op of the phase alone, timed by the system's own
 * cost model for its host (the same rule its emulator or device model applies to host ops).
 */
function hostAlone(module: Module, system: SystemModel, w: Workload): number {
  const cm = system.costModel;
  const env = workloadEnv(w);
  return callViews(module, w.phase, env).reduce((t, v) => t + (cm.opTime(v, cm.home, env) ?? 0), 0);
}

/** `--baselines`: the step with every op on the host, and with every op the PIM device can run there. */
interface Baselines {
  readonly host_only_s: number;
  /** null: the system has no PIM device, or the PIM-only program cannot be built (`pim_only_error`). */
  readonly pim_only_s: number | null;
  readonly pim_only_error?: string;
}

/**
 * The two references of a step: host-only timed by the system's cost model for its host (what the
 * emulator and the device models time host ops with), PIM-only the same compile with the cost
 * comparison off (--no-cooperation), emulated or timed like the cooperative step.
 */
async function baselines(
  model: LoadedModel,
  flags: PipelineFlags,
  reference: SystemModel,
  module: Module,
  w: Workload,
  path: string,
  subBatches: number,
  bar: Progress,
): Promise<Baselines> {
  const host_only_s = hostAlone(module, reference, w);
  if (reference.costModel.devices.length < 2) {
    bar.tick();
    return { host_only_s, pim_only_s: null, pim_only_error: "the system has no PIM device" };
  }
  bar.label(`PIM only: compiling and running batch ${w.batch}`);
  try {
    const r = await runStep(model, { ...flags, cooperation: false }, w, path, subBatches);
    return { host_only_s, pim_only_s: r.seconds };
  } catch (e) {
    if (e instanceof UserError) return { host_only_s, pim_only_s: null, pim_only_error: e.message };
    throw e;
  } finally {
    bar.tick();
  }
}

/** The baseline columns' heads (empty without --baselines). */
const baselineHead = (on: boolean, cm: CostModel): string[] =>
  on ? [`${deviceLabel(cm, cm.home)} only`, "PIM only"] : [];

/** The baseline columns of a step (empty without --baselines). */
const baselineCells = (b: Baselines | undefined): string[] =>
  b ? [ms(b.host_only_s), b.pim_only_s === null ? "-" : ms(b.pim_only_s)] : [];

/** Why a PIM-only reference is missing: a line per reason, with its batch sizes unless it is all of them. */
function baselineNotes(rs: readonly { w: Workload; base?: Baselines | undefined }[]): string[] {
  const why = new Map<string, number[]>();
  for (const { w, base } of rs)
    if (base?.pim_only_error !== undefined)
      why.set(base.pim_only_error, [...(why.get(base.pim_only_error) ?? []), w.batch]);
  return [...why].map(
    ([e, bs]) => `PIM only${bs.length === rs.length ? "" : ` at batch ${bs.join(", ")}`}: ${e}`,
  );
}

interface CompareRow {
  readonly system: string;
  readonly target: string;
  readonly weights: string;
  readonly seconds: number;
  /** Against this system's host CPU alone, and against its INT8 configuration. */
  readonly speedup_vs_host: number;
  readonly speedup_vs_int8?: number;
  /** Where the target models energy. */
  readonly energy?: EnergyJson;
}

/**
 * Systems x weight precisions on the same model (SAIL / PIM-DL's comparison): per batch size one
 * step's latency of every configuration (INT8 is W8A8 with MAC kernels; INT4 / INT2 take INT8
 * activations, the LUT-GEMV formats), each system beside its own host CPU running every op alone
 * (INT8).
 */
async function compare(
  model: LoadedModel,
  flags: PipelineFlags,
  steps: readonly Workload[],
  systems: readonly string[],
  precisions: readonly Precision[],
  path: string,
  json: boolean,
): Promise<void> {
  const bar = progress();
  bar.start(steps.length * systems.length * (precisions.length + 1));
  const out: { batch: number; rows: CompareRow[] }[] = [];
  try {
    for (const w of steps) {
      const rows: CompareRow[] = [];
      for (const sys of systems) {
        const of = (p: Precision): PipelineFlags => ({
          ...flags,
          system: sys,
          target: undefined,
          weights: p,
          activations: p === "int8" || p === "f32" ? flags.activations : "int8",
        });
        // A target whose pipeline does not quantize runs the imported weights only (--precisions f32).
        const { target } = await chooseTarget({ system: sys });
        const quantizes = target.pipeline.includes("quantize");
        const runs = precisions.filter((p) => quantizes || p === "f32");
        bar.label(`${sys} host CPU batch ${w.batch}`);
        const base = await compileModel(model, of(quantizes ? "int8" : "f32"), w, 2);
        const host = hostAlone(base.module, base.system, w);
        bar.tick();
        const mine: CompareRow[] = [
          {
            system: base.system.name,
            target: "host CPU alone",
            weights: quantizes ? "int8" : "f32",
            seconds: host,
            speedup_vs_host: 1,
          },
        ];
        for (const p of precisions) {
          if (!runs.includes(p)) {
            bar.tick();
            continue;
          }
          bar.label(`${sys} ${p} batch ${w.batch}`);
          const r = await runStep(model, of(p), w, path);
          mine.push({
            system: r.system.name,
            target: r.target,
            weights: p === "int8" || p === "f32" ? p : `${p} (a8)`,
            seconds: r.seconds,
            speedup_vs_host: host / r.seconds,
            ...(r.energy ? { energy: energyJson(r.energy, stepTokens(w), r.seconds) } : {}),
          });
          bar.tick();
        }
        const int8 = mine.find((r, i) => i > 0 && r.weights === "int8");
        rows.push(
          ...mine.map((r, i) => (i > 0 && int8 ? { ...r, speedup_vs_int8: int8.seconds / r.seconds } : r)),
        );
      }
      out.push({ batch: w.batch, rows });
    }
  } finally {
    bar.stop();
  }
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ model: model.module.name, phase: steps[0]!.phase, steps: out })}\n`,
    );
    return;
  }
  const lines = [`model     ${model.module.name}`, `phase     ${phaseLine(steps[0]!)}`];
  // Energy per token where some configuration's target models it (docs/energy.md).
  const energy = out.some((o) => o.rows.some((r) => r.energy !== undefined));
  for (const o of out) {
    const t = table(
      [
        "system",
        "runs on",
        "weights",
        "latency",
        "tokens/s",
        "vs its host",
        "vs its int8",
        ...(energy ? ["J/token"] : []),
      ],
      ["left", "left", "left", "right", "right", "right", "right", "right"],
      { drop: ["tokens/s", "vs its int8"] },
    );
    const tokens = stepTokens({ ...steps[0]!, batch: o.batch });
    for (const r of o.rows)
      t.push([
        r.system,
        r.target,
        r.weights,
        ms(r.seconds),
        int(Math.round(tokens / r.seconds)),
        `${r.speedup_vs_host.toFixed(2)}x`,
        r.speedup_vs_int8 === undefined ? "" : `${r.speedup_vs_int8.toFixed(2)}x`,
        ...(energy ? [r.energy ? joules(r.energy.per_token_j) : "-"] : []),
      ]);
    lines.push(`batch ${o.batch}`, t.toString());
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

const PRECISION_CHOICES: readonly Precision[] = ["f32", "int8", "int4", "int2"];

const precisionList = (v: string): Precision[] => {
  const out = v.split(",").map((x) => x.trim());
  for (const x of out)
    if (!(PRECISION_CHOICES as readonly string[]).includes(x))
      throw new UserError(
        `--precisions: expected ${PRECISION_CHOICES.join("|")} separated by commas, got "${v}"`,
      );
  return out as Precision[];
};

const systemList = (v: string): string[] => {
  const out = v.split(",").map((x) => x.trim());
  if (out.some((x) => x === ""))
    throw new UserError(`--compare: expected system files separated by commas, got "${v}"`);
  return out;
};

export function benchCommand() {
  const cmd = new Command("bench")
    .description(
      "compile a model for a PIM system and emulate one step per batch size: latency, tokens/s, breakdown",
    )
    .argument("<model>", "description file (.pim), HuggingFace folder or IR file (.pimir)")
    .option("--model <name>", "model block to use when the file has several")
    .option("--workload <name>", "a workload block of the model's description file, or FILE.pim[:NAME]")
    .addOption(
      new Option("--phase <phase>", "prefill or decode (default: the workload's)").choices([
        "prefill",
        "decode",
      ]),
    )
    .option("--batch <list>", "sequences per step, e.g. 1,4,16 (default: the workload's)", batches)
    .option(
      "--seq <n>",
      "prefill: tokens per sequence; decode: tokens per step",
      positiveIntUpTo(WORKLOAD_LIMITS.prompt),
    )
    .option(
      "--context <n>",
      "decode: tokens already in the KV cache",
      nonNegativeIntUpTo(WORKLOAD_LIMITS.context),
    )
    .option("--rows <n>", "rows of the per-kernel table (default 12)", positiveInt, 12)
    .option("--trace <file>", "write a Chrome/Perfetto trace of the emulated steps")
    .option(
      "--plot <file>",
      "write a plot, FILE.svg or FILE.png: time breakdown per batch size and rooflines of the ops (with --ablation: latency per configuration)",
      plotFile,
    )
    .option(
      "--sub-batches <n>",
      "split each step's batch into n sub-batches whose host and PIM work overlap (NeuPIMs' interleaving; hbm-pim)",
      positiveIntUpTo(WORKLOAD_LIMITS.batch),
    )
    .option(
      "--compile-once",
      "compile for the first batch size only and time every batch size on that program (static placement; with --dynamic-placement each linear layer switches device by tokens per step, PAPI's rule)",
    )
    .option(
      "--ablation",
      "the target's ablation: its optimizations added one by one to a naive mapping (upmem: PIM-LLM's), beside the CPU alone",
    )
    .option(
      "--compare <systems>",
      "compare systems (FILE.pim[:NAME], comma-separated) at each weight precision of --precisions on the same model, each beside its own host CPU running every op alone",
      systemList,
    )
    .option(
      "--precisions <list>",
      "with --compare: weight precisions (default int8,int4,int2; int4 / int2 with INT8 activations, the LUT-GEMV formats; targets that do not quantize run f32 only)",
      precisionList,
    )
    .option(
      "--baselines",
      "beside each batch size's result, the host alone (every op on the host) and PIM only (--no-cooperation: every op the PIM device can run there)",
    )
    .option("--json", "print one JSON object");
  return withPipelineFlags(cmd, 2).action(async (path, o) => {
    const opts = o as typeof o & PipelineFlags;
    const model = loadForCli(path, opts.model);
    const base = resolveWorkload(
      path,
      {
        ...(opts.workload !== undefined ? { workload: opts.workload } : {}),
        ...(opts.phase !== undefined ? { phase: opts.phase } : {}),
      },
      model.config?.max_positions,
    );
    const batchSizes = opts.batch ?? [base.batch];
    if (opts.precisions !== undefined && opts.compare === undefined)
      throw new UserError("--precisions needs --compare");
    if (opts.compare !== undefined) {
      for (const [flag, given] of [
        ["--system", opts.system],
        ["--target", opts.target],
        ["--weights", opts.weights],
        ["--ablation", opts.ablation],
        ["--trace", opts.trace],
        ["--plot", opts.plot],
        ["--sub-batches", opts.subBatches],
        ["--compile-once", opts.compileOnce],
        ["--baselines", opts.baselines],
      ] as const)
        if (given !== undefined)
          throw new UserError(`${flag} does not go with --compare (it sets the systems and precisions)`);
      await compare(
        model,
        opts,
        stepWorkloads(model, base, opts, batchSizes),
        opts.compare,
        opts.precisions ?? ["int8", "int4", "int2"],
        path,
        opts.json === true,
      );
      return;
    }
    if (opts.ablation && batchSizes.length > 1)
      throw new UserError(`--ablation runs one batch size; got --batch ${batchSizes.join(",")}`);
    if (opts.ablation && opts.baselines)
      throw new UserError("--baselines does not go with --ablation (it has the CPU alone as a row)");
    const { target } = await chooseTarget(opts);
    if (opts.ablation !== undefined && !(target.ablation && target.load)) {
      const have = [...(await allTargets()).values()].filter((t) => t.ablation && t.load);
      throw new UserError(
        `--ablation: target ${target.name} has no ablation (${have.map((t) => `${t.name}: ${t.ablation!.title}`).join("; ")})`,
      );
    }
    const steps = stepWorkloads(model, base, opts, batchSizes);
    if (opts.compileOnce && target.emit)
      throw new UserError(
        `--compile-once: a ${target.name} program is lowered for the workload it is compiled for (tiles, memory plan); compile each batch size (leave out --compile-once)`,
      );
    if (opts.ablation) {
      if (opts.compileOnce || opts.subBatches !== undefined)
        throw new UserError(
          "--ablation compiles each configuration: it does not go with --compile-once or --sub-batches",
        );
      const bar = progress();
      const w = steps[0]!;
      /** Compiles the model under `flags` for workload `w` and runs one step (`label`: for the bar). */
      const run = async (flags: PipelineFlags, w: Workload, label: string) => {
        bar.label(label);
        const r = await runStep(model, flags, w, path);
        bar.tick();
        return r;
      };
      try {
        const rows = await ablation(w, opts, target.ablation!.steps, run, opts.json === true, bar);
        if (opts.plot !== undefined)
          await writePlot(opts.plot, (p) =>
            p.ablationSpec(rows, `Ablation: ${model.module.name}`, describeWorkload(w)),
          );
      } finally {
        bar.stop();
      }
      return;
    }
    await benchSteps(model, opts, steps, path, {
      rows: opts.rows,
      json: opts.json === true,
      compileOnce: opts.compileOnce === true,
      subBatches: opts.subBatches ?? 1,
      baselines: opts.baselines === true,
      ...(opts.trace !== undefined ? { trace: opts.trace } : {}),
      ...(opts.plot !== undefined ? { plot: opts.plot } : {}),
    });
  });
}
