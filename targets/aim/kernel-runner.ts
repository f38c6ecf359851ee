/**
 * `pimc kernel` on GDDR6-AiM: a GEMV at command level with the AiM units (MAC_ABK over the weights'
 * rows) and streamed through the channel's pins without them (the conventional read): cycles, time,
 * commands per channel, the rate and the speedup. `pimc kernel trace FILE`: an instruction trace in
 * the public AiM simulator's format, timed over every channel it addresses (trace.ts).
 */
import { gunzipSync } from "node:zlib";
import { UserError } from "../../src/errors.js";
import { kernelSize } from "../../src/limits.js";
import { int, ms } from "../../src/report/format.js";
import { table } from "../../src/report/table.js";
import type { KernelReport, KernelRunner, SystemModel } from "../index.js";
import { readInputFile } from "../../src/fsutil.js";
import { formatAimTrace, MAX_TRACE_BYTES, parseAimTrace, runAimTrace, type TraceStep } from "./trace.js";
import {
  ewmulProgram,
  rmsNormProgram,
  ropeProgram,
  softmaxFits,
  softmaxProgram,
  swigluProgram,
  vectorFits,
  type VectorBlock,
} from "./vectors.js";
import { runChannel, type ChannelRun } from "./device.js";
import { expand, gemvFits, gemvPlan, gemvShape, streamRead, type GemvPlan } from "./kernels.js";
import { AIM_COMMANDS, banksOf, poolOf, rowElements, type AimSystem } from "./standard.js";
import { systemOf } from "./system.js";
import { aimEnergy, traceEnergy, type AimEnergy } from "./energy.js";
import { energyParts, joules } from "../../src/report/energy.js";
import { tracks, type TraceEvent } from "../../src/report/trace.js";

/** CENT's element-wise programs (vectors.ts) on a whole device, by kernel name. */
const VECTOR_KERNELS: Readonly<Record<string, (b: VectorBlock, n: number) => TraceStep[]>> = {
  mul: (b, n) => ewmulProgram(b, n),
  silu: (b, n) => swigluProgram(b, n, "silu", Math.ceil(n / (b.channels * banksOf(b.sys)))),
  rmsnorm: (b, n) => rmsNormProgram(b, n),
  rope: (b, n) => ropeProgram(b, n),
};
const OPS = ["gemv", ...Object.keys(VECTOR_KERNELS), "softmax", "attention", "trace"];

export const aimKernels: KernelRunner = {
  ops: OPS,
  sizes:
    "gemv: NxK (outputs x inputs, 16-bit weights); mul, silu, rmsnorm, rope: N (a vector's values); softmax: HxT (heads x tokens); attention: HxTxD (heads x cached tokens x head size); trace: FILE, an AiM simulator trace",
  run(system, op, size, o) {
    if (!OPS.includes(op)) throw new UserError(`unknown kernel "${op}" (available: ${OPS.join(", ")})`);
    if (o.ranks !== undefined) throw new UserError("--ranks: GDDR6-AiM channels have no ranks");
    if (o.refresh !== undefined)
      throw new UserError("--refresh: the AiM model's controller has no refresh policy to choose");
    if (op === "trace") return runTrace(system, size, o.channels);
    if (op !== "gemv") return runVector(system, op, size, o.channels);
    const m = /^(\w+)x(\w+)$/i.exec(size.trim());
    if (!m) throw new UserError(`gemv: expected a size NxK (outputs x inputs), got "${size}"`);
    const n = kernelSize(m[1]!, "gemv N", 1 << 20);
    const k = kernelSize(m[2]!, "gemv K", 1 << 20);
    // Every device's channels (CENT's devices share a GEMV; the CXL network is not in a kernel run).
    const described = poolOf(systemOf(system));
    const sys: AimSystem = o.channels === undefined ? described : { ...described, channels: o.channels };
    const name = o.channels === undefined ? system.name : `${system.name} with ${o.channels} channels`;
    // Checked before the instructions are built (a large W on few channels would be many).
    if (!gemvFits(sys, n, k)) {
      const s = gemvShape(sys, n, k);
      throw new UserError(
        `gemv ${n}x${k}: needs ${s.perBank * s.chunks} rows per bank, more than ${sys.rows}`,
      );
    }
    const plan = gemvPlan(sys, n, k);
    const t0 = performance.now();
    const pim = runChannel(sys, expand(plan.instrs, banksOf(sys)), true);
    // Without the units the host reads every byte of W through the channels' pins.
    const bytes = 2 * n * k;
    const base = o.baseline
      ? runChannel(sys, streamRead(sys, Math.ceil(bytes / sys.channels)), true)
      : undefined;
    const wall = (performance.now() - t0) / 1e3;
    const tCK = sys.timing.tCK;
    const flops = 2 * n * k;
    // Energy: CENT's power model on the commands (the conventional read uses every channel).
    const pimEnergy = aimEnergy(sys, pim, plan.channels);
    const baseEnergy = base && aimEnergy(sys, base, sys.channels);
    const row = (r: ChannelRun, e: AimEnergy) => ({
      cycles: r.cycles,
      seconds: r.cycles * tCK,
      commands: r.counts,
      energy: {
        joules: e.joules,
        watts: e.joules / (r.cycles * tCK),
        pj_per_bit: (e.joules / (8 * bytes)) * 1e12,
        breakdown: e.breakdown,
      },
    });
    const json = {
      kernel: `gemv ${n}x${k} 16-bit`,
      system: name,
      channels: sys.channels,
      channels_used: plan.channels,
      pim: row(pim, pimEnergy),
      ...(base && baseEnergy
        ? {
            non_pim: row(base, baseEnergy),
            speedup: base.cycles / pim.cycles,
            energy_ratio: baseEnergy.joules / pimEnergy.joules,
          }
        : {}),
      emulation_seconds: wall,
    };
    // The commands either run issued, in the standard's order.
    const shown = AIM_COMMANDS.filter((c) => pim.counts[c] > 0 || (base?.counts[c] ?? 0) > 0);
    const t = table(
      ["mode", "cycles", "time", ...shown, "GFLOP/s", "energy", "power"],
      ["left", ...new Array<"right">(shown.length + 5).fill("right")],
      { drop: ["GFLOP/s", ...shown] },
    );
    const add = (label: string, r: ChannelRun, rate: boolean, e: AimEnergy) =>
      t.push([
        label,
        int(r.cycles),
        ms(r.cycles * tCK),
        ...shown.map((c) => int(r.counts[c])),
        rate ? (flops / (r.cycles * tCK) / 1e9).toFixed(1) : "-",
        joules(e.joules),
        `${(e.joules / (r.cycles * tCK)).toFixed(1)} W`,
      ]);
    add("AiM", pim, true, pimEnergy);
    if (base && baseEnergy) add("non-PIM", base, false, baseEnergy);
    const lines = [
      `kernel   gemv ${n}x${k} 16-bit on ${name}: ${sys.channels} channels x ${banksOf(sys)} banks (${plan.channels} with data), tCK ${sys.timing.tCK * 1e9} ns`,
      `         ${plan.perBank} outputs per bank, ${plan.chunks} rows each; ${plan.instrs.length} AiM instructions per channel`,
      t.toString(),
      ...(base && baseEnergy
        ? [
            `speedup  ${(base.cycles / pim.cycles).toFixed(2)}x with the AiM units; energy ${(baseEnergy.joules / pimEnergy.joules).toFixed(2)}x less`,
          ]
        : []),
      `energy   AiM: ${energyParts(pimEnergy)}`,
      ...(baseEnergy ? [`         non-PIM: ${energyParts(baseEnergy)}`] : []),
      `emulated in ${ms(wall)}; commands per channel`,
    ];
    const trace = (): string =>
      commandTrace([{ name: "AiM", run: pim }, ...(base ? [{ name: "non-PIM", run: base }] : [])], tCK);
    return { lines, json, trace, program: () => formatAimTrace(gemvSteps(plan)) };
  },
};

/** A process per run, a track per command kind; times in microseconds. */
function commandTrace(runs: readonly { name: string; run: ChannelRun }[], tCK: number): string {
  const events: TraceEvent[] = [];
  runs.forEach(({ name, run }, i) => {
    const pid = i + 1;
    events.push({ name: "process_name", ph: "M", pid, tid: 0, args: { name } });
    const thread = tracks(events, pid);
    for (const c of run.log ?? [])
      events.push({
        name: c.cmd,
        ph: "X",
        pid,
        tid: thread(AIM_COMMANDS.indexOf(c.cmd) + 1, c.cmd),
        ts: c.at * tCK * 1e6,
        dur: tCK * 1e6,
        ...(c.bank !== undefined ? { args: { bank: c.bank } } : {}),
      });
  });
  return JSON.stringify({ traceEvents: events, displayTimeUnit: "ns" });
}

/** One device of the system (`channels` overriding its channels), and its name. */
function deviceOf(system: SystemModel, channels?: number): { sys: AimSystem; name: string } {
  const described = systemOf(system);
  return {
    sys: { ...described, devices: 1, channels: channels ?? described.channels },
    name: channels === undefined ? system.name : `${system.name} with ${channels} channels`,
  };
}

/** `pimc kernel trace FILE`: the trace's instructions on the system's channels (of one device). */
function runTrace(system: SystemModel, file: string, channels?: number): KernelReport {
  const { sys, name } = deviceOf(system, channels);
  const raw = readInputFile(file, "an AiM trace", MAX_TRACE_BYTES);
  const text = (file.endsWith(".gz") ? gunzipBounded(raw, file) : raw).toString("utf8");
  const t0 = performance.now();
  const steps = parseAimTrace(text, file, sys);
  return traceReport(sys, steps, t0, { kernel: "trace", file }, `trace ${file} on ${name}`, name);
}

/**
 * `pimc kernel mul|silu|rmsnorm|rope N`, `softmax HxT`: CENT's element-wise program (vectors.ts)
 * on a device's channels, its vectors written and read by the host.
 */
function runVector(system: SystemModel, op: string, size: string, channels?: number): KernelReport {
  const { sys, name } = deviceOf(system, channels);
  const block: VectorBlock = { sys, channels: sys.channels, copies: 1 };
  const t0 = performance.now();
  let steps: TraceStep[];
  let label: string;
  if (op === "attention") {
    const m = /^(\w+)x(\w+)x(\w+)$/i.exec(size.trim());
    if (!m)
      throw new UserError(`attention: expected a size HxTxD (heads x tokens x head size), got "${size}"`);
    const heads = kernelSize(m[1]!, "attention H", 1 << 12);
    const t = kernelSize(m[2]!, "attention T", 1 << 20);
    const d = kernelSize(m[3]!, "attention D", 1 << 14);
    steps = attentionProgram(block, heads, t, d);
    label = `attention ${heads}x${t}x${d}`;
  } else if (op === "softmax") {
    const m = /^(\w+)x(\w+)$/i.exec(size.trim());
    if (!m) throw new UserError(`softmax: expected a size HxT (heads x tokens), got "${size}"`);
    const heads = kernelSize(m[1]!, "softmax H", 1 << 12);
    const t = kernelSize(m[2]!, "softmax T", 1 << 20);
    if (!softmaxFits(block, heads, t))
      throw new UserError(`softmax ${heads}x${t}: the scores need more rows than a bank has`);
    steps = softmaxProgram(block, heads, t);
    label = `softmax ${heads}x${t}`;
  } else {
    const n = kernelSize(size, `${op} N`, 1 << 24);
    if (!vectorFits(block, op === "rope" ? 2 * n : n))
      throw new UserError(
        `${op} ${n}: more values than a row of one bank per bank group holds (${((sys.channels * banksOf(sys)) / 4) * rowElements(sys)} on ${sys.channels} channels)`,
      );
    steps = VECTOR_KERNELS[op]!(block, n);
    label = `${op} ${n}`;
  }
  return traceReport(sys, steps, t0, { kernel: label }, `${label} on ${name}`, name);
}

/**
 * One query row of attention over a KV cache in a device's banks, as the target maps it: each head's
 * scores a GEMV with its K [T, D] as the weight, the softmax's scaling passes over every head (CENT's
 * program: the near-memory units' exponentials are not in a kernel), each head's context a GEMV with
 * its V^T [D, T].
 */
function attentionProgram(block: VectorBlock, heads: number, t: number, d: number): TraceStep[] {
  const { sys } = block;
  const gemv = (n: number, k: number): TraceStep[] => {
    if (!gemvFits(sys, n, k)) {
      const s = gemvShape(sys, n, k);
      throw new UserError(
        `attention: a head's ${n}x${k} GEMV needs ${s.perBank * s.chunks} rows per bank, more than ${sys.rows}`,
      );
    }
    return gemvSteps(gemvPlan(sys, n, k));
  };
  if (!softmaxFits(block, heads, t))
    throw new UserError(`attention ${heads}x${t}x${d}: the scores need more rows than a bank has`);
  const scores = gemv(t, d);
  const context = gemv(d, t);
  return [
    ...Array<TraceStep[]>(heads).fill(scores),
    softmaxProgram(block, heads, t),
    ...Array<TraceStep[]>(heads).fill(context),
  ].flat();
}

/** A GEMV's instructions to every channel holding data (they run the same ones). */
function gemvSteps(plan: GemvPlan): TraceStep[] {
  const channels = [...Array(plan.channels).keys()];
  return plan.instrs.map((instr) => ({ instr, channels, line: 0 }));
}

/** The report of instructions timed on `sys` (a trace, a program): cycles, commands, energy. */
function traceReport(
  sys: AimSystem,
  steps: readonly TraceStep[],
  t0: number,
  head: Record<string, string>,
  title: string,
  name: string,
): KernelReport {
  const r = runAimTrace(sys, steps);
  const wall = (performance.now() - t0) / 1e3;
  const tCK = sys.timing.tCK;
  const seconds = r.cycles * tCK;
  const energy = traceEnergy(sys, r);
  const shown = AIM_COMMANDS.filter((c) => r.counts[c] > 0);
  const t = table(
    ["cycles", "time", ...shown, "energy"],
    new Array<"right">(shown.length + 3).fill("right"),
    {
      drop: [...shown],
    },
  );
  t.push([int(r.cycles), ms(seconds), ...shown.map((c) => int(r.counts[c])), joules(energy.joules)]);
  const instrs = Object.entries(r.instructions)
    .map(([op, n]) => `${op} ${int(n)}`)
    .join(", ");
  const lines = [
    `kernel   ${title}: ${r.channels.size} of ${sys.channels} channels addressed, tCK ${tCK * 1e9} ns`,
    `         instructions: ${instrs}`,
    t.toString(),
    `energy   ${energyParts(energy)}`,
    `emulated in ${ms(wall)}; commands over every channel; cycles until the last completes`,
  ];
  const json = {
    ...head,
    system: name,
    channels: sys.channels,
    channels_used: r.channels.size,
    cycles: r.cycles,
    seconds,
    instructions: r.instructions,
    commands: r.counts,
    energy: { joules: energy.joules, watts: energy.joules / seconds, breakdown: energy.breakdown },
    emulation_seconds: wall,
  };
  // The command log only when a trace is asked for (a block's trace issues millions of commands).
  const trace = (): string =>
    commandTrace(
      [...runAimTrace(sys, steps, true).channels].map(([c, run]) => ({ name: `channel ${c}`, run })),
      tCK,
    );
  return { lines, json, trace, program: () => formatAimTrace(steps) };
}

/** A gzip-compressed trace, at most MAX_TRACE_BYTES once inflated. */
function gunzipBounded(raw: Buffer, file: string): Buffer {
  try {
    return gunzipSync(raw, { maxOutputLength: MAX_TRACE_BYTES });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(
      code === "ERR_BUFFER_TOO_LARGE"
        ? `${file}: more than ${MAX_TRACE_BYTES} bytes once inflated`
        : `${file}: not a gzip file (${code ?? String(e)})`,
    );
  }
}
