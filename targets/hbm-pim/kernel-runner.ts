/**
 * `pimc kernel` on HBM-PIM (the Target contract's `kernel`): one kernel at DRAM-command level, in PIM
 * mode and streamed through the normal read path without PIM (the PIMSimulator benchmark): cycles,
 * time, commands per pseudo-channel and the speedup. `gemv NxK` (FP16 weights [N, K]), `add|mul N`,
 * `relu N` (N elements; K and M suffixes are powers of two: 1M = 1,048,576).
 */
import { UserError } from "../../src/errors.js";
import { kernelSize } from "../../src/limits.js";
import { int, ms } from "../../src/report/format.js";
import { table } from "../../src/report/table.js";
import type { KernelRunner } from "../index.js";
import { RD, WR } from "./controller.js";
import { runPimKernel, runStream, type KernelResult } from "./device.js";
import {
  eltwiseKernel,
  eltwiseLayout,
  gemvKernel,
  gemvLayout,
  type Payload,
  type PimKernel,
  type StreamPhase,
} from "./kernels.js";
import { COMMANDS, REFRESH_POLICIES, reservedRows, zHbmPimSystem, type HbmPimSystem } from "./standard.js";
import { commandTrace } from "./trace.js";
import { channelActivity, channelEnergy, commandEvents, scaled } from "./energy.js";
import { energyParts, joules } from "../../src/report/energy.js";
import { systemOf } from "./system.js";

const OPS = ["gemv", "add", "mul", "relu"] as const;

type Op = (typeof OPS)[number];

/** Rows below the lowest reserved row (park, mode and register rows). */
const dataRows = (sys: HbmPimSystem): number => Math.min(...reservedRows(sys), sys.rows);

interface Plan {
  readonly what: string;
  readonly kernel: PimKernel;
  /** The same data through the normal path: phases of reads, then the result's writes. */
  readonly stream: StreamPhase[];
  /** FP16 operations of the kernel (for the rate). */
  readonly flops: number;
}

function plan(sys: HbmPimSystem, op: Op, size: string): Plan {
  if (op === "gemv") {
    const m = /^(\w+)x(\w+)$/i.exec(size.trim());
    if (!m) throw new UserError(`gemv: expected a size NxK (outputs x inputs), got "${size}"`);
    const n = kernelSize(m[1]!, "gemv N");
    const k = kernelSize(m[2]!, "gemv K");
    const l = gemvLayout(sys, n, k);
    if (l.row0 + l.rows > dataRows(sys))
      throw new UserError(
        `gemv ${n}x${k}: needs ${l.rows} rows per bank, more than the ${dataRows(sys)} below the reserved rows`,
      );
    const w = 2 * n * k;
    return {
      what: `gemv ${n}x${k} fp16`,
      kernel: gemvKernel(sys, l),
      stream: [
        { kind: RD, bytes: w, at: 0 },
        { kind: RD, bytes: 2 * k, at: w },
        { kind: WR, bytes: 2 * n, at: w + 2 * k, fence: true },
      ],
      flops: 2 * n * k,
    };
  }
  const n = kernelSize(size, op);
  const l = eltwiseLayout(sys, n);
  if (l.rows[2] + l.rowsPerOperand > dataRows(sys))
    throw new UserError(
      `${op} ${n}: needs ${3 * l.rowsPerOperand} rows per bank, more than the ${dataRows(sys)} below the reserved rows`,
    );
  const b = 2 * n;
  const inputs = op === "relu" ? 1 : 2;
  return {
    what: `${op} ${n} fp16`,
    kernel: eltwiseKernel(sys, op, l),
    stream: [
      { kind: RD, bytes: inputs * b, at: 0 },
      { kind: WR, bytes: b, at: inputs * b, fence: true },
    ],
    flops: op === "relu" ? 0 : n,
  };
}

export const hbmPimKernels: KernelRunner = {
  ops: OPS,
  sizes: "gemv: NxK (outputs x inputs); element-wise: N (e.g. 1M = 2^20)",
  run(system, opArg, size, o) {
    if (!(OPS as readonly string[]).includes(opArg))
      throw new UserError(`unknown kernel "${opArg}" (available: ${OPS.join(", ")})`);
    const op = opArg as Op;
    const described = systemOf(system);
    if (o.refresh !== undefined && !(REFRESH_POLICIES as readonly string[]).includes(o.refresh))
      throw new UserError(`--refresh: expected ${REFRESH_POLICIES.join(", ")}, got "${o.refresh}"`);
    const refresh = o.refresh === undefined ? undefined : o.refresh === "off" ? false : o.refresh;
    const sys =
      o.channels === undefined && o.ranks === undefined && refresh === undefined
        ? described
        : zHbmPimSystem.parse({
            ...described,
            ...(o.channels !== undefined ? { pseudo_channels: o.channels } : {}),
            ...(o.ranks !== undefined ? { ranks: o.ranks } : {}),
            ...(refresh !== undefined ? { controller: { ...described.controller, refresh } } : {}),
          });
    const overrides = [
      ...(o.channels !== undefined ? [`${o.channels} pseudo-channels`] : []),
      ...(o.ranks !== undefined ? [`${o.ranks} rank${o.ranks === 1 ? "" : "s"}`] : []),
      ...(o.refresh !== undefined ? [`refresh ${o.refresh}`] : []),
    ];
    const name = overrides.length === 0 ? system.name : `${system.name} with ${overrides.join(", ")}`;
    const p = plan(sys, op, size);
    const t0 = performance.now();
    // One controller, or a few where the pseudo-channels' streams differ.
    const bar = o.progress;
    const run = { onChannel: () => bar.tick() };
    bar.label(`timing ${p.what} with PIM`);
    const pim = runPimKernel(sys, p.kernel, run);
    bar.label(`timing ${p.what} without PIM`);
    const base = o.baseline ? runStream(sys, p.stream, run) : undefined;
    const wall = (performance.now() - t0) / 1e3;
    // Energy: the timed pseudo-channel's commands replayed and priced, times the pseudo-channels.
    const channel = p.kernel.active[0] ?? 0;
    const energyOf = (r: KernelResult, payload?: (req: number) => Payload | undefined) => {
      const a = channelActivity(sys, r.log, r.cycles, payload);
      return { energy: scaled(channelEnergy(sys, a), sys.pseudo_channels), events: commandEvents(a.events) };
    };
    // The bytes the kernel reads and writes (what the non-PIM path streams), for energy per bit.
    const bytes = p.stream.reduce((n, x) => n + x.bytes, 0);
    const pimEnergy = energyOf(pim, (req) => p.kernel.payload(channel, req));
    const baseEnergy = base ? energyOf(base) : undefined;
    const row = (r: KernelResult, e: ReturnType<typeof energyOf>, flops: number) => ({
      cycles: r.cycles,
      seconds: r.seconds,
      commands: r.counts,
      controllers_timed: r.timed,
      ...(r.perChannel ? { per_channel: r.perChannel } : {}),
      energy: {
        joules: e.energy.joules,
        watts: e.energy.joules / r.seconds,
        ...(flops > 0 ? { flops_per_joule: flops / e.energy.joules } : {}),
        pj_per_bit: (e.energy.joules / (8 * bytes)) * 1e12,
        breakdown: e.energy.breakdown,
        events: e.events,
      },
    });
    const json = {
      kernel: p.what,
      system: name,
      pseudo_channels: sys.pseudo_channels,
      ranks: sys.ranks,
      refresh:
        sys.controller.refresh === true
          ? "jedec"
          : sys.controller.refresh === false
            ? "off"
            : sys.controller.refresh,
      pim: row(pim, pimEnergy, p.flops),
      ...(base && baseEnergy
        ? {
            non_pim: row(base, baseEnergy, p.flops),
            speedup: base.cycles / pim.cycles,
            energy_ratio: baseEnergy.energy.joules / pimEnergy.energy.joules,
          }
        : {}),
      emulation_seconds: wall,
    };
    const units = sys.pseudo_channels * sys.pim.units;
    const lines = [
      `kernel   ${p.what} on ${name}: ${sys.pseudo_channels} pseudo-channels, ${units} PIM units, tCK ${sys.timing.tCK * 1e9} ns`,
      `         ${p.kernel.summary}; CRF ${p.kernel.crf.length} instructions`,
    ];
    const t = table(
      ["mode", "cycles", "time", ...COMMANDS, "GFLOP/s", "energy", "power", "pJ/bit"],
      ["left", ...new Array<"right">(11).fill("right")],
      { drop: ["GFLOP/s", ...COMMANDS, "pJ/bit"] },
    );
    const add = (label: string, r: KernelResult, flops: number, e: ReturnType<typeof energyOf>) =>
      t.push([
        label,
        int(r.cycles),
        ms(r.seconds),
        ...COMMANDS.map((c) => int(r.counts[c])),
        flops > 0 ? (flops / r.seconds / 1e9).toFixed(1) : "-",
        joules(e.energy.joules),
        `${(e.energy.joules / r.seconds).toFixed(1)} W`,
        ((e.energy.joules / (8 * bytes)) * 1e12).toFixed(2),
      ]);
    add("PIM", pim, p.flops, pimEnergy);
    if (base && baseEnergy) add("non-PIM", base, 0, baseEnergy);
    lines.push(t.toString());
    if (base && baseEnergy)
      lines.push(
        `speedup  ${(base.cycles / pim.cycles).toFixed(2)}x with PIM; energy ${(baseEnergy.energy.joules / pimEnergy.energy.joules).toFixed(2)}x less`,
      );
    lines.push(`energy   PIM: ${energyParts(pimEnergy.energy)}`);
    if (baseEnergy) lines.push(`         non-PIM: ${energyParts(baseEnergy.energy)}`);
    lines.push(
      `emulated in ${ms(wall)} (${pim.timed + (base?.timed ?? 0)} controllers timed); commands per pseudo-channel`,
    );
    const runs = [
      { name: `${p.what}, PIM`, log: pim.log },
      ...(base ? [{ name: `${p.what}, non-PIM`, log: base.log }] : []),
    ];
    return {
      lines,
      json,
      trace: () => JSON.stringify({ traceEvents: commandTrace(sys, runs), displayTimeUnit: "ns" }),
    };
  },
};
