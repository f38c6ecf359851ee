/**
 * `pimc bench <model> --system <sys>`: compiles the model for each batch size and emulates one step
 * of the phase: latency per step, tokens/s, where the time goes (host compute, transfers to and from
 * the PIM device, PIM kernels), and a per-kernel table with device, time, bytes, flops, Op/B and the
 * share of the device's peak it reached. `--plot` draws the breakdown and a roofline of the ops as SVG.
 */
import { Command, Option } from "@commander-js/extra-typings";
import { UserError } from "../errors.js";
import { workloadEnv, type Workload } from "../frontend/workload.js";
import { bytes, int, opb, si } from "../report/format.js";
import type * as Plot from "../report/plot.js";
import { progress, type Progress } from "../report/progress.js";
import { table } from "../report/table.js";
import { breakdown, kernelRows, traceJson } from "../../targets/upmem/report.js";
import { timingTraceJson } from "../report/trace.js";
import { hostFlops } from "../../targets/cpu/index.js";
import { callViews, deviceLabel, type CostModel } from "../pipeline/cost-model.js";
import type { Precision } from "../../passes/quantize.js";
import type { RunReport } from "../../targets/upmem/machine.js";
import type { Program } from "../../targets/upmem/program.js";
import { loadForCli, warn, writeFileAtomic } from "./io.js";
import { WORKLOAD_LIMITS } from "../limits.js";
import { nonNegativeIntUpTo, plotFile, plotFormat, positiveInt, positiveIntUpTo } from "./options.js";
import { withPipelineFlags } from "./pipeline.js";
import { checkFits, chooseTarget, compileModel, type PipelineFlags } from "../driver/compile.js";
import { ms } from "./sim.js";
import { callTimer, timeStep, timingRows, type OpRow } from "../driver/run.js";
import { checkPositions } from "../pipeline/capacity.js";
import { resolveWorkload } from "./workload-flags.js";
import { describeWorkload } from "../frontend/workload.js";
import type { Module } from "../ir/module.js";
import { allTargets, type AblationStep, type CallTiming, type SystemModel } from "../../targets/index.js";
import type { LoadedModel } from "../frontend/hf/import.js";
import type { PassContext } from "../pipeline/pass.js";
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

export interface BenchRow extends OpRow {
  /** Fraction of the device's peak (host: flop/s or bytes/s roofline; DPUs: pipeline or DMA engine). */
  peak_fraction: number;
}

/** Commands of a report grouped into rows: host ops by opcode, transfers by kind, kernels by name. */
export function benchRows(r: RunReport, p: Program): BenchRow[] {
  const rows = new Map<string, BenchRow & { atPeak: number }>();
  const h = p.system.host;
  for (const c of r.commands) {
    let name: string;
    let device: string;
    // Seconds the command would take at the device's peak (its roofline).
    let atPeak = 0;
    if (c.kind === "host") {
      name = c.label.replace(/^host /, "");
      device = "host";
      atPeak = Math.max(c.flops / hostFlops(h), c.bytes / h.memory_bandwidth);
    } else if (c.kind === "launch") {
      name = c.label.replace(/^launch /, "");
      device = `${c.dpus ?? 0} DPUs`;
      // A DPU's peak: one instruction per cycle, or its DMA engine streaming at 1 / beta bytes per cycle.
      const k = c.kernel!;
      atPeak = Math.max(k.instructions, k.dmaBytes * p.system.dma.beta) / p.system.frequency;
    } else if (c.kind === "alloc" || c.kind === "load") {
      // dpu_alloc / dpu_load: synchronous runtime calls on the host.
      name = c.kind;
      device = "host";
    } else {
      name = c.kind === "pull" ? "from PIM" : c.kind === "push" || c.kind === "broadcast" ? "to PIM" : c.kind;
      device = "link";
    }
    const key = `${device}\u0000${name}`;
    const row = rows.get(key) ?? {
      name,
      device,
      calls: 0,
      seconds: 0,
      bytes: 0,
      flops: 0,
      peak_fraction: 0,
      atPeak: 0,
    };
    row.calls++;
    row.seconds += c.end - c.start;
    row.bytes += c.bytes;
    row.flops += c.flops;
    row.atPeak += atPeak;
    rows.set(key, row);
  }
  return [...rows.values()]
    .map(({ atPeak, ...row }) => ({ ...row, peak_fraction: row.seconds > 0 ? atPeak / row.seconds : 0 }))
    .sort((a, b) => b.seconds - a.seconds);
}

/** The roofs of the roofline plot, with the peaks `benchRows` measures `peak_fraction` against. */
export function benchRoofs(sys: Program["system"]): Plot.Roof[] {
  const dpuCycles = sys.dpus * sys.frequency;
  return [
    { device: "host", flops: hostFlops(sys.host), bandwidth: sys.host.memory_bandwidth },
    // Every DPU retiring one instruction per cycle, or its DMA engine streaming 1 / beta bytes per cycle.
    { device: `${sys.dpus} DPUs`, flops: dpuCycles, bandwidth: dpuCycles / sys.dma.beta, unit: "instr/s" },
  ];
}

/**
 * The DPU kernels of a step for the roofline in instructions: instructions and DMA bytes of every
 * DPU the kernel ran on, on the roof of the whole device (`benchRoofs`).
 */
export function dpuPoints(r: RunReport, sys: Program["system"], batch: number): Plot.OpPoint[] {
  return kernelRows(r).map((k) => ({
    name: k.kernel,
    device: `${sys.dpus} DPUs`,
    batch,
    seconds: k.seconds,
    bytes: k.dma_bytes * k.dpus,
    flops: k.instructions * k.dpus,
  }));
}

/** "llama2_7b on upmem (2048 DPUs at 350 MHz)" */
const machineLine = (p: Program): string =>
  `${p.model} on upmem (${p.system.dpus} DPUs at ${p.system.frequency / 1e6} MHz)`;

/** "decode, context 1024, 1 token(s) per step" (the batch size aside) */
const phaseLine = (w: Workload): string =>
  `${w.phase}, ${w.phase === "prefill" ? `prompt ${w.prompt}` : `context ${w.context}, ${w.speculation} token(s) per step`}`;

/** Renders a plot spec (built once the plot module is loaded) to FILE, SVG or PNG by its extension. */
async function writePlot(file: string, spec: (p: typeof Plot) => Plot.Spec): Promise<void> {
  const p = await import("../report/plot.js");
  const svg = await p.renderSvg(spec(p));
  writeFileAtomic(file, plotFormat(file) === "png" ? await p.renderPng(svg) : svg);
}

type Emulate = (
  flags: PipelineFlags,
  w: Workload,
  label: string,
) => Promise<{ module: Module; system: SystemModel; program: Program; report: RunReport }>;

/**
 * The target's ablation (UPMEM: PIM-LLM's): each optimization added to the naive mapping in turn,
 * against the host CPU. The steps replace the command's cooperation and target flags.
 */
async function ablation(
  w: Workload,
  flags: PipelineFlags,
  steps: readonly AblationStep[],
  emulate: Emulate,
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
    rows.push({ config: step.label, seconds: r.report.seconds });
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

/**
 * Bench on a target that times ops from its device model (hbm-pim): per batch size the step's
 * latency and where it goes, ops of identical layers grouped.
 */
async function benchTimed(
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
  const { compileOnce, subBatches } = o;
  const bar = progress();
  bar.start(steps.length * (o.baselines ? 2 : 1));
  const results: {
    w: Workload;
    timing: CallTiming;
    rows: BenchRow[];
    system: string;
    target: string;
    summary: string;
    placement: Placement;
    base?: Baselines | undefined;
  }[] = [];
  // With compileOnce every step is timed on the program compiled for the first one.
  const once = compileOnce ? await compileModel(model, flags, steps[0]!, 2, true) : undefined;
  const reference = await referenceSystem(flags);
  const placed: PlacementFlags = { ...flags, ...(once ? { compiledFor: steps[0]!.batch } : {}) };
  try {
    for (const w of steps) {
      bar.label(`${once ? "" : "compiling and "}timing batch ${w.batch}`);
      const { module, target, system, ctx } = once ?? (await compileModel(model, flags, w, 2, true));
      checkFits(model, { module, target, system }, w, { ...flags, warn });
      const timing = callTimer(target)(module, system, w.phase, workloadEnv(w), { subBatches });
      const placement = explainStep({ module, ctx }, w, reference.costModel, placed);
      bar.tick();
      const base = o.baselines
        ? await baselines(model, flags, reference, module, w, path, subBatches, bar)
        : undefined;
      results.push({
        w,
        timing,
        rows: timingRows(timing).map((r) => ({ ...r, peak_fraction: 0 })),
        system: system.name,
        target: target.name,
        summary: target.summary,
        placement,
        base,
      });
    }
  } finally {
    bar.stop();
  }
  const first = results[0]!;
  if (o.trace !== undefined)
    writeFileAtomic(
      o.trace,
      timingTraceJson(results.map(({ w, timing }) => ({ phase: w.phase, env: workloadEnv(w), timing }))),
    );
  if (o.plot !== undefined) {
    const cm = reference.costModel;
    const used = new Set(results.flatMap((r) => Object.keys(r.timing.busy)));
    const devices = [
      ...cm.devices.map((d) => d.name),
      ...[...used].filter((d) => !cm.devices.some((x) => x.name === d)),
    ];
    const data: Plot.BenchPlot = {
      title: `${model.module.name} on ${first.target} (${first.system})`,
      subtitle: phaseLine(first.w),
      engines: devices.filter((d) => used.has(d)).map((d) => ({ key: d, label: deviceLabel(cm, d) })),
      steps: results.map(({ w, timing, base }) => ({
        batch: w.batch,
        seconds: timing.seconds,
        busy: timing.busy,
        ...(base ? { host_only: base.host_only_s, pim_only: base.pim_only_s } : {}),
      })),
      points: results.flatMap(({ w, rows }) => rows.map((r) => ({ ...r, batch: w.batch }))),
      roofs: cm.devices.flatMap((d) => (d.roof ? [{ device: d.name, ...d.roof }] : [])),
    };
    await writePlot(o.plot, (p) => p.benchSpec(data));
  }
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({
        model: model.module.name,
        target: first.target,
        system: first.system,
        phase: first.w.phase,
        steps: results.map(({ w, timing, rows, placement, base }) => ({
          batch: w.batch,
          seconds: timing.seconds,
          tokens_per_second: stepTokens(w) / timing.seconds,
          ...(base ?? {}),
          busy: timing.busy,
          ops: rows.map(({ peak_fraction: _, ...r }) => r),
          ...placementJson(placement),
        })),
      })}\n`,
    );
    return;
  }
  const devices = Object.keys(first.timing.busy);
  const heads = ["batch", "tokens/step", "latency", ...baselineHead(o.baselines, reference.costModel)];
  const summary = table(
    [...heads, "tokens/s", ...devices],
    [...heads, "tokens/s", ...devices].map(() => "right" as const),
    { drop: ["tokens/step", "tokens/s"] },
  );
  for (const { w, timing, base } of results)
    summary.push([
      String(w.batch),
      int(stepTokens(w)),
      ms(timing.seconds),
      ...baselineCells(base),
      int(Math.round(stepTokens(w) / timing.seconds)),
      ...devices.map((d) => ms(timing.busy[d] ?? 0)),
    ]);
  const detail = table(
    ["op", "device", "calls", "time", "share", "bytes", "flops", "Op/B"],
    ["left", "left", "right", "right", "right", "right", "right", "right"],
    { drop: ["calls", "flops", "bytes"] },
  );
  for (const r of first.rows.slice(0, o.rows))
    detail.push([
      r.name,
      r.device,
      int(r.calls),
      ms(r.seconds),
      `${((100 * r.seconds) / first.timing.seconds).toFixed(1)}%`,
      bytes(r.bytes),
      si(r.flops),
      opb(r.flops, r.bytes),
    ]);
  process.stdout.write(
    [
      `model     ${model.module.name} on ${first.target} (${first.system}): ${first.summary}`,
      `phase     ${phaseLine(first.w)}`,
      summary.toString(),
      ...baselineNotes(results),
      `where the time goes at batch ${first.w.batch}:`,
      detail.toString(),
      ...placementLines(
        results.map((r) => r.placement),
        reference.costModel,
      ),
      "",
    ].join("\n"),
  );
}

/**
 * One step under `flags`: the program emulated (targets with a program emulator: its report) or the
 * ops timed by the target's device model.
 */
async function runStep(
  model: LoadedModel,
  flags: PipelineFlags,
  w: Workload,
  path: string,
  subBatches = 1,
): Promise<{
  seconds: number;
  module: Module;
  ctx: PassContext;
  system: SystemModel;
  target: string;
  program?: Program;
  report?: RunReport;
}> {
  const c = await compileModel(model, flags, w, 2, true);
  checkFits(model, c, w, { ...flags, warn });
  // This command's UPMEM views (DPU kernels, rooflines, the trace) read the target's own program and report.
  const step = timeStep(model, c, w, { subBatches, source: path });
  const { seconds } = step;
  const program = step.program?.native as Program | undefined;
  const report = step.report?.native as RunReport | undefined;
  const { module, ctx, system, target } = c;
  return {
    seconds,
    module,
    ctx,
    system,
    target: target.name,
    ...(program ? { program } : {}),
    ...(report ? { report } : {}),
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
        bar.label(`${sys} host CPU batch ${w.batch}`);
        const base = await compileModel(model, of("int8"), w, 2);
        const host = hostAlone(base.module, base.system, w);
        bar.tick();
        const mine: CompareRow[] = [
          {
            system: base.system.name,
            target: "host CPU alone",
            weights: "int8",
            seconds: host,
            speedup_vs_host: 1,
          },
        ];
        for (const p of precisions) {
          bar.label(`${sys} ${p} batch ${w.batch}`);
          const r = await runStep(model, of(p), w, path);
          mine.push({
            system: r.system.name,
            target: r.target,
            weights: p === "int8" || p === "f32" ? p : `${p} (a8)`,
            seconds: r.seconds,
            speedup_vs_host: host / r.seconds,
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
  for (const o of out) {
    const t = table(
      ["system", "runs on", "weights", "latency", "tokens/s", "vs its host", "vs its int8"],
      ["left", "left", "left", "right", "right", "right", "right"],
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
      "with --compare: weight precisions (default int8,int4,int2; int4 / int2 with INT8 activations, the LUT-GEMV formats)",
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
    if (!target.emit) {
      await benchTimed(model, opts, stepWorkloads(model, base, opts, batchSizes), path, {
        rows: opts.rows,
        json: opts.json === true,
        compileOnce: opts.compileOnce === true,
        subBatches: opts.subBatches ?? 1,
        baselines: opts.baselines === true,
        ...(opts.trace !== undefined ? { trace: opts.trace } : {}),
        ...(opts.plot !== undefined ? { plot: opts.plot } : {}),
      });
      return;
    }
    if (opts.subBatches !== undefined)
      throw new UserError(
        `--sub-batches needs a target that times ops from its device model (hbm-pim); ${target.name} emulates programs`,
      );
    if (opts.compileOnce)
      throw new UserError(
        `--compile-once needs a target that times ops from its device model (hbm-pim, xpu); ${target.name} emulates programs`,
      );
    const results: {
      w: Workload;
      report: RunReport;
      program: Program;
      rows: BenchRow[];
      placement: Placement;
      base?: Baselines | undefined;
    }[] = [];
    const reference = await referenceSystem(opts);
    const bar = progress();
    /** Compiles the model under `flags` for workload `w` and emulates one step (`label`: for the bar). */
    const emulate = async (flags: PipelineFlags, w: Workload, label: string) => {
      bar.label(label);
      const r = await runStep(model, flags, w, path);
      if (!r.program || !r.report)
        throw new UserError(`pimc bench needs a target with an emulator (upmem); ${r.target} has none`);
      bar.tick();
      return { module: r.module, ctx: r.ctx, system: r.system, program: r.program, report: r.report };
    };
    if (!opts.ablation) bar.start(batchSizes.length * (opts.baselines ? 2 : 1));
    try {
      for (const w of stepWorkloads(model, base, opts, batchSizes)) {
        const b = w.batch;
        if (opts.ablation) {
          const rows = await ablation(w, opts, target.ablation!.steps, emulate, opts.json === true, bar);
          if (opts.plot !== undefined)
            await writePlot(opts.plot, (p) =>
              p.ablationSpec(rows, `Ablation: ${model.module.name}`, describeWorkload(w)),
            );
          return;
        }
        const { report, program, module, ctx } = await emulate(opts, w, `compiling and emulating batch ${b}`);
        const placement = explainStep({ module, ctx }, w, reference.costModel, opts);
        const baseRow = opts.baselines
          ? await baselines(model, opts, reference, module, w, path, 1, bar)
          : undefined;
        results.push({ w, report, program, rows: benchRows(report, program), placement, base: baseRow });
      }
    } finally {
      bar.stop();
    }
    if (opts.trace !== undefined)
      writeFileAtomic(
        opts.trace,
        traceJson(
          results.map((r) => r.report),
          results[0]!.program.system.dpus_per_rank,
        ),
      );
    if (opts.plot !== undefined) {
      const first = results[0]!;
      const data: Plot.BenchPlot = {
        title: machineLine(first.program),
        subtitle: phaseLine(first.w),
        engines: [
          { key: "host", label: "host compute" },
          { key: "to_pim", label: "transfers to PIM" },
          { key: "from_pim", label: "transfers from PIM" },
          { key: "kernels", label: "PIM kernels" },
        ],
        steps: results.map(({ w, report, base }) => ({
          batch: w.batch,
          seconds: report.seconds,
          busy: breakdown(report),
          ...(base ? { host_only: base.host_only_s, pim_only: base.pim_only_s } : {}),
        })),
        points: results.flatMap(({ w, rows, report }) => [
          ...rows.filter((r) => r.device === "host").map((r) => ({ ...r, batch: w.batch })),
          ...dpuPoints(report, first.program.system, w.batch),
        ]),
        roofs: benchRoofs(first.program.system),
      };
      await writePlot(opts.plot, (p) => p.benchSpec(data));
    }
    const tokens = stepTokens;
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify({
          model: results[0]!.program.model,
          target: "upmem",
          phase: base.phase,
          steps: results.map(({ w, report, rows, placement, base }) => ({
            batch: w.batch,
            env: report.env,
            seconds: report.seconds,
            tokens_per_second: tokens(w) / report.seconds,
            ...(base ?? {}),
            busy: breakdown(report),
            kernels: rows,
            ...placementJson(placement),
          })),
        })}\n`,
      );
      return;
    }
    const heads = [
      "batch",
      "tokens/step",
      "latency",
      ...baselineHead(opts.baselines === true, reference.costModel),
      "tokens/s",
    ];
    const summary = table(
      [...heads, "host", "to PIM", "from PIM", "PIM kernels"],
      [...heads, 1, 2, 3, 4].map(() => "right" as const),
      { drop: ["tokens/step", "from PIM", "to PIM", "tokens/s"] },
    );
    for (const { w, report, base } of results) {
      const b = breakdown(report);
      summary.push([
        String(w.batch),
        int(tokens(w)),
        ms(report.seconds),
        ...baselineCells(base),
        int(Math.round(tokens(w) / report.seconds)),
        ms(b.host!),
        ms(b.to_pim!),
        ms(b.from_pim!),
        ms(b.kernels!),
      ]);
    }
    const last = results[0]!; // the per-op table of the first batch size
    const detail = table(
      ["op / kernel", "device", "calls", "time", "share", "bytes", "flops", "Op/B", "% of peak"],
      ["left", "left", "right", "right", "right", "right", "right", "right", "right"],
      { drop: ["calls", "flops", "bytes", "Op/B"] },
    );
    for (const r of last.rows.slice(0, opts.rows))
      detail.push([
        r.name,
        r.device,
        int(r.calls),
        ms(r.seconds),
        `${((100 * r.seconds) / last.report.seconds).toFixed(1)}%`,
        bytes(r.bytes),
        si(r.flops),
        opb(r.flops, r.bytes),
        r.device === "link" ? "" : `${(100 * r.peak_fraction).toFixed(1)}%`,
      ]);
    const e = last.report.env;
    process.stdout.write(
      [
        `model     ${machineLine(last.program)}`,
        `phase     ${phaseLine(last.w)}`,
        summary.toString(),
        ...baselineNotes(results),
        `where the time goes at batch ${e.B} (busy time per op; engines overlap, so shares may exceed the latency):`,
        detail.toString(),
        ...placementLines(
          results.map((r) => r.placement),
          reference.costModel,
        ),
        "",
      ].join("\n"),
    );
  });
}
