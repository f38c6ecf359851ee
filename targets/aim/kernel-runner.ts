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
import { MAX_TRACE_BYTES, parseAimTrace, runAimTrace } from "./trace.js";
import { runChannel, type ChannelRun } from "./device.js";
import { expand, gemvFits, gemvPlan, gemvShape, streamRead } from "./kernels.js";
import { AIM_COMMANDS, banksOf, poolOf, type AimSystem } from "./standard.js";
import { systemOf } from "./system.js";
import { aimEnergy, standbyEnergy, type AimEnergy } from "./energy.js";
import { energyParts, joules, sumEnergies } from "../../src/report/energy.js";
import { tracks, type TraceEvent } from "../../src/report/trace.js";

export const aimKernels: KernelRunner = {
  ops: ["gemv", "trace"],
  sizes: "gemv: NxK (outputs x inputs, 16-bit weights); trace: FILE, an AiM simulator trace",
  run(system, op, size, o) {
    if (op !== "gemv" && op !== "trace")
      throw new UserError(`unknown kernel "${op}" (available: gemv, trace)`);
    if (o.detailed)
      throw new UserError("--detailed: every AiM channel runs the same commands (one is timed)");
    if (o.ranks !== undefined) throw new UserError("--ranks: GDDR6-AiM channels have no ranks");
    if (op === "trace") return runTrace(system, size, o.channels);
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
    return { lines, json, trace };
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

/** `pimc kernel trace FILE`: the trace's instructions on the system's channels (of one device). */
function runTrace(system: SystemModel, file: string, channels?: number): KernelReport {
  const described = systemOf(system);
  const sys: AimSystem = { ...described, devices: 1, channels: channels ?? described.channels };
  const name = channels === undefined ? system.name : `${system.name} with ${channels} channels`;
  const raw = readInputFile(file, "an AiM trace", MAX_TRACE_BYTES);
  const text = (file.endsWith(".gz") ? gunzipBounded(raw, file) : raw).toString("utf8");
  const t0 = performance.now();
  const steps = parseAimTrace(text, file, sys);
  const r = runAimTrace(sys, steps);
  const wall = (performance.now() - t0) / 1e3;
  const tCK = sys.timing.tCK;
  const seconds = r.cycles * tCK;
  // Each channel's commands priced alone; every channel precharged while it has nothing to do.
  const one: AimSystem = { ...sys, channels: 1 };
  const energy = sumEnergies([
    ...[...r.channels.values()].map((c) =>
      sumEnergies([aimEnergy(one, c, 1), standbyEnergy(one, (r.cycles - c.cycles) * tCK)]),
    ),
    standbyEnergy({ ...sys, channels: sys.channels - r.channels.size }, seconds),
  ]);
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
    `kernel   trace ${file} on ${name}: ${r.channels.size} of ${sys.channels} channels addressed, tCK ${tCK * 1e9} ns`,
    `         instructions: ${instrs}`,
    t.toString(),
    `energy   ${energyParts(energy)}`,
    `emulated in ${ms(wall)}; commands over every channel; cycles until the trace's EOC`,
  ];
  const json = {
    kernel: "trace",
    file,
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
  return { lines, json, trace };
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
